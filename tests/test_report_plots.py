"""The report's figures read as a reader needs: trade-offs at every resolution with their intervals,
no ranking from thin accuracy evidence, labels that do not collide, titles that say what was run."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import ErrorbarContainer

from bench.report import plots
from bench.report.evidence import EvidenceBar
from bench.report.frame import rows_to_frame
from bench.report.labels import CONNECTOR_GID
from tests.test_report import make_row

RESOLUTIONS = [(96, 128), (192, 256), (360, 480)]
#: A learning curve that has flattened: +0.5 points over its last quarter.
FLAT = [{"step": 50, "train_seconds": 5.0, "miou": 0.30}, {"step": 150, "train_seconds": 10.0, "miou": 0.395},
        {"step": 200, "train_seconds": 20.0, "miou": 0.40}]
BAR = EvidenceBar(min_seeds=3, min_train_steps=100, plateau_points=1.0)


def profiled(model: str, height: int, width: int, median: float, low: float, high: float, **extra):
    return make_row(model, height, width, latency_ms_median=median, latency_ms_ci_low=low,
                    latency_ms_ci_high=high, **extra)


def seeds(model: str, mious: list[float], latencies: list[float], steps: int = 200, curve=FLAT, **extra):
    """One accuracy row per seed, sharing a repeat key (repeats of one configuration)."""
    rows = []
    for seed, (miou, latency) in enumerate(zip(mious, latencies)):
        row = make_row(model, miou=miou, seed=seed, train_steps=steps, learning_curve=curve,
                       latency_ms_median=latency, latency_ms_ci_low=latency - 1, latency_ms_ci_high=latency + 1,
                       **extra)
        row.job_key, row.repeat_key = f"{model}-acc-s{seed}", f"{model}-acc"
        rows.append(row)
    return rows


def containers(ax) -> dict[str, ErrorbarContainer]:
    return {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}


def bar_extent(container: ErrorbarContainer, axis: str) -> tuple[float, float]:
    """(low, high) of a single point's error bar along ``axis``."""
    _, _, bars = container.lines
    has_x = container.has_xerr
    collection = bars[0] if axis == "x" else bars[1 if has_x else 0]
    (start, end), = collection.get_segments()
    index = 0 if axis == "x" else 1
    return tuple(sorted((start[index], end[index])))


def renderer_of(figure):
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def test_latency_memory_has_a_panel_per_resolution_with_latency_intervals():
    rows = [profiled(m, h, w, 10.0 * k * h / 96, 9.0 * k * h / 96, 12.0 * k * h / 96)
            for k, m in enumerate(["fcn8s", "segnet", "unet"], 1) for h, w in RESOLUTIONS]
    rows.append(profiled("segnet", 96, 128, 50.0, float("nan"), float("nan"), device="cuda"))
    frame = rows_to_frame(rows)
    figure, caption = plots.latency_memory_figure(frame, plots.model_colors(frame["model"]))
    titles = [ax.get_title() for ax in figure.axes]
    assert titles == ["cpu, 96x128, batch 1, fp32, eager", "cpu, 192x256, batch 1, fp32, eager",
                      "cpu, 360x480, batch 1, fp32, eager", "cuda, 96x128, batch 1, fp32, eager"]
    cpu_192 = figure.axes[1]
    points = containers(cpu_192)
    assert sorted(points) == ["fcn8s", "segnet", "unet"]          # one point per model
    segnet = points["segnet"]
    assert segnet.has_yerr and not segnet.has_xerr
    assert bar_extent(segnet, "y") == pytest.approx((36.0, 48.0))  # ci_low, ci_high x scale 2
    assert segnet.lines[0].get_xydata()[0] == pytest.approx([400.0, 40.0])  # memory, median
    assert not containers(figure.axes[3])["segnet"].has_yerr       # no interval: no bar
    assert "counter: tensor storages" in cpu_192.get_xlabel()
    assert "distribution-free 95% interval" in caption and "n = 1 job per point" in caption


def test_latency_memory_never_puts_two_memory_counters_on_one_axis():
    rows = [profiled("fcn8s", 96, 128, 10, 9, 11), profiled("segnet", 96, 128, 20, 19, 21),
            profiled("unet", 96, 128, 30, 29, 31, memory_counter="process peak resident set (VmHWM)")]
    frame = rows_to_frame(rows)
    figure, caption = plots.latency_memory_figure(frame, plots.model_colors(frame["model"]))
    [ax] = figure.axes
    assert sorted(containers(ax)) == ["fcn8s", "segnet"]
    assert ax.get_xlabel().endswith("counter: tensor storages")
    assert "1 rows counted by another method are left out" in caption


def test_thin_accuracy_evidence_draws_no_front_and_says_it_is_not_a_ranking():
    rows = [make_row("fcn8s", miou=0.40, seed=0, train_steps=3, latency_ms_median=10.0),
            make_row("segnet", miou=0.45, seed=0, train_steps=4, latency_ms_median=20.0),
            make_row("unet", 192, 256, miou=0.50, seed=0, train_steps=3, latency_ms_median=30.0)]
    frame = rows_to_frame(rows)
    figure, caption = plots.accuracy_latency_figure(frame, plots.model_colors(frame["model"]), BAR)
    assert len(figure.axes) == 2                                   # every resolution with accuracy
    for ax in figure.axes:
        assert not [line for line in ax.get_lines() if line.get_gid() == plots.FRONT_GID]
        title = " ".join(ax.get_title().split())
        assert "accuracy below the evidence bar (e.g. 1 seed, " in title and "not a ranking" in title
        assert "training steps" in title
        assert all(not c.has_yerr for c in containers(ax).values())  # one seed: no accuracy bar
    assert figure.axes[0].get_title().startswith("cpu, synthetic 96x128, batch 1, fp32, eager")
    assert figure.axes[1].get_title().startswith("cpu, synthetic 192x256, batch 1, fp32, eager")
    assert "'not a ranking' (2 of 2 here)" in caption


def test_the_default_bar_is_the_published_one():
    rows = [make_row("fcn8s", miou=0.40, seed=0, train_steps=3), make_row("segnet", miou=0.45, seed=0, train_steps=4)]
    frame = rows_to_frame(rows)
    figure, _ = plots.accuracy_latency_figure(frame, plots.model_colors(frame["model"]))
    assert "not a ranking" in figure.axes[0].get_title().replace("\n", " ")


def test_sufficient_evidence_draws_an_interval_aware_front():
    # Three seeds each; latency: the mean of the medians with its t interval (t(0.975, 2) = 4.303).
    # fcn_basic: 10 ms [8.76, 11.24], 40 mIoU. segnet_basic: 11.5 ms [10.26, 12.74], 38 mIoU: its
    # interval overlaps fcn_basic's, a tie, so it stays on the front. segnet: 30 ms [28.76, 31.24],
    # 39 mIoU: fcn_basic is more accurate and wholly faster, off the front. fcn8s: the most accurate.
    rows = (seeds("fcn_basic", [0.39, 0.40, 0.41], [9.5, 10.0, 10.5])
            + seeds("segnet_basic", [0.37, 0.38, 0.39], [11.0, 11.5, 12.0])
            + seeds("segnet", [0.38, 0.39, 0.40], [29.5, 30.0, 30.5])
            + seeds("fcn8s", [0.40, 0.42, 0.44], [10.0, 12.0, 14.0]))
    frame = rows_to_frame(rows)
    figure, caption = plots.accuracy_latency_figure(frame, plots.model_colors(frame["model"]), BAR)
    [ax] = figure.axes
    assert "not a ranking" not in ax.get_title()
    [front] = [line for line in ax.get_lines() if line.get_gid() == plots.FRONT_GID]
    on_front = {tuple(np.round(xy, 6)) for xy in front.get_xydata()}
    assert (11.5, 38.0) in on_front and (10.0, 40.0) in on_front   # overlapping latencies: a tie
    assert (30.0, 39.0) not in on_front                            # surely slower and no more accurate
    assert (12.0, 42.0) in on_front
    fcn8s = containers(ax)["fcn8s"]
    # mIoU 40, 42, 44: mean 42, t(0.975, 2) = 4.303 -> 42 ± 4.97; latency medians 10, 12, 14 likewise.
    assert bar_extent(fcn8s, "y") == pytest.approx((37.03, 46.97), abs=0.01)
    assert bar_extent(fcn8s, "x") == pytest.approx((7.03, 16.97), abs=0.01)
    assert "n = 3 seeds per point" in caption and "t interval of the mean" in caption


def test_a_model_short_of_the_bar_withholds_the_front_for_its_panel():
    rows = (seeds("fcn_basic", [0.39, 0.40, 0.41], [10.0, 10.0, 10.0])
            + seeds("segnet", [0.38, 0.39, 0.40], [30.0, 30.0, 30.0], steps=50))
    frame = rows_to_frame(rows)
    figure, _ = plots.accuracy_latency_figure(frame, plots.model_colors(frame["model"]), BAR)
    [ax] = figure.axes
    assert not [line for line in ax.get_lines() if line.get_gid() == plots.FRONT_GID]
    assert "e.g. 50 training steps): not a ranking" in " ".join(ax.get_title().split())


def test_labels_of_near_identical_models_do_not_overlap():
    # Six VGG-16-sized models within 1% of each other in parameters and FLOPs, as the FCNs are.
    vgg = ["fcn32s", "fcn16s", "fcn8s", "dilated_frontend", "dilated8", "segnet"]
    rows = [make_row(m, params_total=134_000_000 + 100_000 * i, flops_per_image=6.0e9 + 1e7 * i)
            for i, m in enumerate(vgg)] + [make_row("fcn_basic", params_total=650_000, flops_per_image=3e7)]
    frame = rows_to_frame(rows)
    figure = plots.params_flops_figure(frame, plots.model_colors(frame["model"]))
    renderer = renderer_of(figure)
    [ax] = figure.axes
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(boxes) == set(vgg) | {"fcn_basic"}
    assert not [(a, b) for (a, x), (b, y) in combinations(boxes.items(), 2) if x.overlaps(y)]
    inside = ax.get_window_extent(renderer)
    assert all(inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) for box in boxes.values())
    assert not figure.legends[0].get_window_extent(renderer).overlaps(inside)   # the legend is beside
    assert "96x128" in ax.get_title() and "batch" in ax.get_title()


def test_trade_off_labels_do_not_overlap_when_points_coincide_and_are_joined_to_their_point():
    rows = [profiled(m, 96, 128, 10.0, 9.0, 12.0) for m in ["fcn8s", "segnet", "unet", "fcn_basic", "segnet_basic"]]
    frame = rows_to_frame(rows)
    figure, _ = plots.latency_memory_figure(frame, plots.model_colors(frame["model"]))
    renderer = renderer_of(figure)
    [ax] = figure.axes
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 5
    assert not [(i, j) for (i, x), (j, y) in combinations(enumerate(boxes), 2) if x.overlaps(y)]
    assert not figure.legends[0].get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    # Every label was moved off the one point they share: one line each, from the point to the
    # label, under the labels, whose white ground hides the line's end.
    [lines] = [c for c in ax.collections if c.get_gid() == CONNECTOR_GID]
    assert lines.get_zorder() < min(text.get_zorder() for text in ax.texts)
    assert len(lines.get_segments()) == 5
    ends = {tuple(np.round(segment[1], 6)) for segment in lines.get_segments()}
    assert ends == {tuple(np.round(text.get_position(), 6)) for text in ax.texts}
    point = ax.transData.transform(tuple(lines.get_segments()[0][0]))
    assert not any(box.contains(*point) for box in boxes)
    assert all(text.get_bbox_patch() is not None for text in ax.texts)


def test_log_axes_tick_labels_are_plain_numbers():
    rows = [make_row("fcn8s", params_total=134_000_000, flops_per_image=6.0e9),
            make_row("fcn_basic", params_total=650_000, flops_per_image=3e7)]
    figure = plots.params_flops_figure(rows_to_frame(rows), plots.model_colors(["fcn8s", "fcn_basic"]))
    renderer_of(figure)
    [ax] = figure.axes
    shown = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert "100" in shown and "1" in shown and not [text for text in shown if "$" in text]


def test_log_axes_read_at_one_two_and_five_times_each_power_of_ten():
    from matplotlib.figure import Figure

    def labels(low: float, high: float) -> list[str]:
        figure = Figure()
        ax = figure.add_subplot()
        ax.plot([low, high], [1.0, 2.0])
        plots.log_scale(ax, "x")
        renderer_of(figure)
        return [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_text()]

    assert {"20", "50", "100", "200", "500"} <= set(labels(15.0, 900.0))   # crosses two powers of ten
    assert not {"30", "40"} & set(labels(15.0, 900.0))                      # the 1-2-5 series only
    wide = labels(1.0, 1e5)                                                 # crosses five: the powers alone
    assert "100" in wide and not {"20", "50", "200"} & set(wide)


def test_scaling_figure_has_latency_error_bars_and_says_batch_and_resolutions():
    rows = [profiled("fcn8s", h, w, 10.0 * h / 96, 9.0 * h / 96, 12.0 * h / 96) for h, w in RESOLUTIONS]
    frame = rows_to_frame(rows)
    figure, method = plots.scaling_figure(frame, plots.model_colors(frame["model"]), "latency_ms_median",
                                          "latency per batch (ms)", "Latency against input size")
    [ax] = figure.axes
    assert ax.get_title() == "cpu: batch 1, fp32, eager, 3 resolutions, 96x128 to 360x480"
    [line] = containers(ax).values()
    _, _, (bars,) = line.lines
    extents = sorted(sorted((a[1], b[1])) for a, b in bars.get_segments())
    assert np.array(extents) == pytest.approx(np.array([[9.0, 12.0], [18.0, 24.0], [33.75, 45.0]]))
    assert "distribution-free 95% interval" in method

    memory, method = plots.scaling_figure(frame, plots.model_colors(frame["model"]), "peak_memory_mib",
                                          "peak memory (MiB)", "Memory against input size")
    [ax] = memory.axes
    assert not containers(ax)["fcn8s"].has_yerr and "tensor storages" in ax.get_ylabel()
    assert "Counted by: tensor storages" in method


def test_many_rows_draw_one_point_per_model_and_panel():
    rows = [profiled(f"model{i % 4}", 96, 128, 10.0 + i % 4, 9.0, 15.0, seed=i) for i in range(200)]
    for i, row in enumerate(rows):
        row.job_key, row.repeat_key = f"job{i}", f"model{i % 4}"
    frame = rows_to_frame(rows)
    figure, caption = plots.latency_memory_figure(frame, plots.model_colors(frame["model"]))
    [ax] = figure.axes
    assert len(containers(ax)) == 4 and len(ax.texts) == 4
    assert "n = 50 jobs per point" in caption


def test_write_plots_keeps_its_contract(tmp_path):
    rows = (seeds("fcn_basic", [0.39, 0.40, 0.41], [10.0, 10.0, 10.0])
            + [profiled("segnet", h, w, 20.0, 19.0, 21.0) for h, w in RESOLUTIONS[:2]])
    frame = rows_to_frame(rows)
    figures, notes = plots.write_plots(frame, tmp_path / "out", tmp_path / "cache")
    names = {path.name: caption for path, caption in figures}
    assert {"latency_vs_memory.png", "accuracy_vs_latency.png", "latency_vs_resolution.png",
            "params_vs_flops.png"} <= set(names)
    assert all(path.stat().st_size > 0 for path, _ in figures)
    assert "n = " in names["latency_vs_memory.png"] and "95%" in names["accuracy_vs_latency.png"]
    assert isinstance(notes, list)


def test_backend_figure_has_latency_error_bars_and_a_legend_beside_the_bars():
    rows = [profiled(m, 96, 128, base * factor, base * factor - 1, base * factor + 2, backend=backend)
            for m, base in [("fcn8s", 10.0), ("segnet", 20.0)]
            for backend, factor in [("eager", 1.0), ("onnxruntime", 0.5)]]
    frame = rows_to_frame(rows)
    figure = plots.backend_latency_figure(frame)
    [ax] = figure.axes
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "errorbar")}
    assert set(bars) == {"eager", "onnxruntime"}
    _, _, (lines,) = bars["onnxruntime"].errorbar.lines
    extents = sorted(sorted((a[1], b[1])) for a, b in lines.get_segments())
    assert np.array(extents) == pytest.approx(np.array([[4.0, 7.0], [9.0, 12.0]]))
    assert "96x128, batch 1" in ax.get_title()
    renderer = renderer_of(figure)
    assert not figure.legends[0].get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
