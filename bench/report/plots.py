"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display).

Each ``*_figure`` function takes the current rows and the model colours, and returns a Figure,
or None when no row holds what it plots. ``write_plots`` picks the colours once, so a model has
the same colour in every figure.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from bench.atomic import atomic_write, atomic_write_text
from bench.paths import safe_name
from bench.report.deployment import backend_latency_figure
from bench.report.frame import IOU_PREFIX, iou_columns
from bench.report.pareto import pareto_front
from bench.report.contenders import TORCHVISION_MODELS

DPI = 110
#: savefig's options for every figure: zlib level 1 encodes in a fraction of the default level 6's
#: time for a file about 10% larger.
SAVE = {"dpi": DPI, "pil_kwargs": {"compress_level": 1}}
#: A quantity spanning more than this factor is drawn on a log axis.
WIDE_RANGE = 20.0
#: Point markers that tell today's contenders (torchvision's models) from the classics.
CONTENDER_MARKER, CLASSIC_MARKER = "^", "o"
MARKER_CAPTION = "Triangles: torchvision's segmentation models; circles: the classics."


def model_marker(model: str) -> str:
    return CONTENDER_MARKER if model in TORCHVISION_MODELS else CLASSIC_MARKER


def model_colors(models) -> dict[str, tuple]:
    """A colour per model name: tab20's ten strong colours first, then their light pairs."""
    tab20 = colormaps["tab20"].colors
    palette = tab20[0::2] + tab20[1::2]
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(set(models)))}


def _ok(current: pd.DataFrame, *needed: str) -> pd.DataFrame:
    rows = current[current["status"] == "ok"]
    return rows.dropna(subset=list(needed))


def _log_if_wide(ax, values, axis: str) -> None:
    values = np.asarray(values, dtype=float)
    values = values[values > 0]
    if values.size and values.max() / values.min() > WIDE_RANGE:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")


def _panels(n: int, width: float = 5.5, height: float = 4.2) -> tuple[Figure, list]:
    figure = Figure(figsize=(width * n + 2.5, height), layout="constrained")
    axes = figure.subplots(1, n, squeeze=False)[0]
    return figure, list(axes)


def _legend_outside(figure: Figure, axes: list) -> None:
    """One legend right of the panels, each label once (a model may be in some panels only)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        figure.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize="small")


def _most_common_variant(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the most frequent (batch size, precision, backend), so one panel compares like
    with like."""
    counts = rows.groupby(["batch_size", "precision", "backend"]).size()
    batch, precision, backend = counts.idxmax()
    chosen = rows[(rows["batch_size"] == batch) & (rows["precision"] == precision)
                  & (rows["backend"] == backend)]
    return chosen, f"batch {batch:.0f}, {precision}, {backend}"


def scaling_figure(current: pd.DataFrame, colors: dict, quantity: str, ylabel: str,
                   title: str) -> Figure | None:
    """``quantity`` against input pixels, a line per model, a panel per device."""
    rows = _ok(current, quantity, "pixels")
    if rows.empty:
        return None
    devices = sorted(rows["device"].unique())
    figure, axes = _panels(len(devices))
    for ax, device in zip(axes, devices):
        chosen, variant = _most_common_variant(rows[rows["device"] == device])
        for model, group in chosen.groupby("model"):
            line = group.groupby("pixels")[quantity].median()
            ax.plot(line.index, line.values, marker="o", color=colors[model], label=model)
        _log_if_wide(ax, chosen["pixels"], "x")  # before the ticks: a scale change resets them
        _log_if_wide(ax, chosen[quantity], "y")
        ticks = chosen.drop_duplicates("pixels").sort_values("pixels")
        ax.set_xticks(ticks["pixels"], ticks["resolution"], rotation=30, fontsize="small")
        ax.xaxis.set_minor_locator(NullLocator())  # only the resolution ticks on a log x axis
        ax.set_xlabel("input resolution H×W (x position: pixels per image)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{device} ({variant})")
        ax.grid(True, alpha=0.3)
    figure.suptitle(title)
    _legend_outside(figure, axes)
    return figure


def _reference_resolution(rows: pd.DataFrame) -> str:
    """The resolution measured for the most models (the smallest such, on a tie)."""
    spread = rows.groupby(["pixels", "resolution"])["model"].nunique().reset_index()
    return spread.sort_values(["model", "pixels"], ascending=[False, True]).iloc[0]["resolution"]


def params_flops_figure(current: pd.DataFrame, colors: dict) -> Figure | None:
    """Parameters against FLOPs per image, one labelled point per model, log-log."""
    rows = _ok(current, "params_m", "gflops_per_image")
    if rows.empty:
        return None
    resolution = _reference_resolution(rows)
    points = rows[rows["resolution"] == resolution].groupby("model")[["gflops_per_image", "params_m"]].median()
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.subplots()
    for model, point in points.iterrows():
        ax.scatter(point["gflops_per_image"], point["params_m"], color=colors[model], s=40,
                   marker=model_marker(model))
        ax.annotate(model, (point["gflops_per_image"], point["params_m"]), fontsize="small",
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"GFLOP per image, forward pass at {resolution}")
    ax.set_ylabel("parameters (millions)")
    ax.set_title(f"Model size against compute ({resolution})")
    ax.grid(True, which="both", alpha=0.3)
    return figure


def _point_labels(rows: pd.DataFrame) -> pd.Series:
    """The model name, with the resolution when several resolutions are shown."""
    if rows["resolution"].nunique() > 1:
        return rows["model"] + " " + rows["resolution"]
    return rows["model"]


def accuracy_latency_figure(current: pd.DataFrame, colors: dict) -> Figure | None:
    """mIoU against latency per batch, a panel per device, the Pareto front drawn as a step line.

    One point per model and resolution: its rows (seeds, repeats) folded into the mean mIoU and
    the median latency, so the figure reads the same at 10 rows or 10,000.
    """
    rows = _ok(current, "miou_pct", "latency_ms_median")
    if rows.empty:
        return None
    devices = sorted(rows["device"].unique())
    figure, axes = _panels(len(devices))
    for ax, device in zip(axes, devices):
        chosen, variant = _most_common_variant(rows[rows["device"] == device])
        mine = chosen.groupby(["model", "resolution"], as_index=False).agg(
            miou_pct=("miou_pct", "mean"), latency_ms_median=("latency_ms_median", "median"))
        for label, row in zip(_point_labels(mine), mine.itertuples()):
            ax.scatter(row.latency_ms_median, row.miou_pct, color=colors[row.model], s=40,
                       marker=model_marker(row.model))
            ax.annotate(label, (row.latency_ms_median, row.miou_pct), fontsize="x-small",
                        xytext=(4, 3), textcoords="offset points")
        front = pareto_front(zip(mine["latency_ms_median"], mine["miou_pct"]))
        ax.step(*zip(*front), where="post", color="black", linestyle="--", linewidth=1)
        ax.scatter(*zip(*front), s=140, facecolors="none", edgecolors="black",
                   label="Pareto front: no other point is both faster and more accurate")
        _log_if_wide(ax, mine["latency_ms_median"], "x")
        ax.set_xlabel("latency per batch, median (ms)")
        ax.set_ylabel("mIoU (%), mean over seeds")
        ax.set_title(f"{device} ({variant})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    figure.suptitle("Accuracy against latency")
    return figure


#: Learning curves drawn per model and panel at most (the first seeds): more lines hide each other.
MAX_CURVES = 5


def learning_curve_figure(current: pd.DataFrame, colors: dict) -> tuple[Figure | None, str]:
    """Validation mIoU against training seconds (log x), a line per run, a panel per data set and
    resolution; a model's seeds share its colour. Returns the figure and a note on runs left out."""
    rows = current[(current["status"] == "ok") & (current["learning_curve"].fillna("") != "")]
    if rows.empty:
        return None, ""
    panels = sorted(rows.groupby(["dataset", "resolution"]).groups)
    figure, axes = _panels(len(panels))
    left_out = 0
    for ax, (dataset, resolution) in zip(axes, panels):
        mine = rows[(rows["dataset"] == dataset) & (rows["resolution"] == resolution)]
        for model, runs in mine.groupby("model"):
            runs = runs.sort_values("seed", kind="stable")
            left_out += max(0, len(runs) - MAX_CURVES)
            for i, curve in enumerate(runs["learning_curve"].iloc[:MAX_CURVES]):
                points = [p for p in json.loads(curve) if p["train_seconds"] > 0]
                ax.plot([p["train_seconds"] for p in points], [100 * p["miou"] for p in points],
                        marker="o", markersize=3, linewidth=1.5 if len(runs) == 1 else 1,
                        color=colors[model], label=model if i == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, validation passes excluded)")
        ax.set_ylabel("validation mIoU (%)")
        ax.set_title(f"{dataset}, {resolution}")
        ax.grid(True, which="both", alpha=0.3)
    figure.suptitle("Learning curves")
    _legend_outside(figure, axes)
    note = (f"learning_curves.png shows at most {MAX_CURVES} runs per model and panel (lowest seeds); "
            f"{left_out} more runs are in the rows." if left_out else "")
    return figure, note


def iou_heatmap_figures(current: pd.DataFrame) -> dict[str, Figure]:
    """Per-class IoU (%) of each model, one heatmap per data set (class names differ)."""
    figures = {}
    rows = current[current["status"] == "ok"]
    for dataset, mine in rows.groupby("dataset"):
        classes = iou_columns(mine)
        if not classes:
            continue
        mine = mine.dropna(subset=classes, how="all")
        table = mine[classes].groupby(_point_labels(mine).values).mean() * 100
        figure = Figure(figsize=(max(6.0, 2.5 + 0.6 * len(classes)), 1.8 + 0.4 * len(table)),
                        layout="constrained")
        ax = figure.subplots()
        image = ax.imshow(table.values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(classes)), [c.removeprefix(IOU_PREFIX) for c in classes],
                      rotation=45, ha="right")
        ax.set_yticks(range(len(table)), table.index)
        if table.size <= 400:  # numbers stay legible up to about 20 x 20 cells
            for (i, j), value in np.ndenumerate(table.values):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize="x-small",
                            color="white" if value < 60 else "black")
        ax.set_xlabel("class")
        ax.set_ylabel("model")
        ax.set_title(f"Per-class IoU, {dataset} ({', '.join(sorted(mine['split'].unique()))})")
        figure.colorbar(image, ax=ax, label="IoU (%)")
        figures[str(dataset)] = figure
    return figures


def _synthetic_row(current: pd.DataFrame) -> tuple[dict, tuple[int, int]] | None:
    """(dataset config, (height, width)) of the first row that used the synthetic data set."""
    for config, height, width in zip(current["config"], current["height"], current["width"]):
        dataset = json.loads(config).get("dataset", {}) if config else {}
        if dataset.get("name") == "synthetic" and pd.notna(height) and pd.notna(width):
            return dataset, (int(height), int(width))
    return None


def dataset_sample_figure(current: pd.DataFrame, n: int = 4) -> tuple[Figure | None, str]:
    """Image/mask pairs of the synthetic data set as the rows configured it, with a class key.

    Optional: returns (None, reason) when no row used the synthetic data set or ``bench.data``
    cannot draw it, so the report never depends on the data module.
    """
    found = _synthetic_row(current)
    if found is None:
        return None, "no row records a synthetic data-set config"
    cfg, resolution = found
    try:
        from bench.data import dataset_info, sample_grid
        samples = sample_grid(cfg, n=n, resolution=resolution)
        info = dataset_info(cfg)
    except Exception as exc:  # noqa: BLE001  (an optional figure must not stop the report)
        return None, f"bench.data could not draw samples: {type(exc).__name__}: {exc}"
    figure = Figure(figsize=(2.8 * len(samples), 5.2), layout="constrained")
    axes = figure.subplots(2, len(samples), squeeze=False)
    for column, (image, mask) in zip(axes.T, samples):
        column[0].imshow(image)
        column[1].imshow(mask)
    for ax in axes.flat:
        ax.set_axis_off()
    key = [Patch(color=np.asarray(rgb) / 255, label=name) for rgb, name in zip(info.palette, info.class_names)]
    key.append(Patch(color="black", label="ignored (void)"))  # colorize draws ignored labels black
    figure.legend(handles=key, loc="outside lower center", ncols=6, fontsize="small")
    figure.suptitle(f"Synthetic data set ({resolution[0]}x{resolution[1]}): images (top), masks (bottom)")
    return figure, ""


def dataset_sample_png(current: pd.DataFrame, path: Path, cache_dir: Path) -> tuple[Path | None, str]:
    """``dataset_sample_figure`` saved as ``path``, drawn once per data-set config and resolution:
    later reports copy it from ``cache_dir`` (the key covers the code that draws the samples)."""
    found = _synthetic_row(current)
    if found is None:
        return None, "no row records a synthetic data-set config"
    # The drawing code's source, read rather than imported: importing bench.data costs seconds.
    data = Path(__file__).resolve().parent.parent / "data"
    code = b"".join(path.read_bytes() for path in (data / "synthetic.py", data / "visualize.py", Path(__file__)))
    key = hashlib.sha1(json.dumps(found, sort_keys=True).encode() + code).hexdigest()[:12]
    cached = cache_dir / f"dataset_sample_{key}.png"
    if not cached.exists():
        figure, why_not = dataset_sample_figure(current)
        if figure is None:
            return None, why_not
        atomic_write(cached, lambda partial: figure.savefig(partial, format="png", **SAVE))
    shutil.copyfile(cached, path)
    return path, ""


def _draw_plots(current: pd.DataFrame, out_dir: Path, cache_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Draw every figure the rows support into ``out_dir``: ([(file name, caption)], [notes])."""
    colors = model_colors(current["model"])
    curves, curves_note = learning_curve_figure(current, colors)
    figures: list[tuple[str, Figure | None, str]] = [
        ("latency_vs_resolution.png",
         scaling_figure(current, colors, "latency_ms_median", "latency per batch, median (ms)",
                        "Latency against input size"),
         "Latency per batch against input resolution, per device."),
        ("train_latency_vs_resolution.png",
         scaling_figure(current, colors, "train_latency_ms_median",
                        "training step per batch, median (ms)", "Training-step latency against input size"),
         "One training step (forward, cross-entropy, backward, optimizer step) per batch against "
         "input resolution, per device."),
        ("memory_vs_resolution.png",
         scaling_figure(current, colors, "peak_memory_mib", "peak memory, one forward pass (MiB)",
                        "Memory against input size"),
         "Peak memory of one forward pass against input resolution, per device."),
        ("train_memory_vs_resolution.png",
         scaling_figure(current, colors, "train_peak_memory_mib", "peak memory, one training step (MiB)",
                        "Training memory against input size"),
         "Peak memory of one training step (weights, gradients, optimizer state, activations) "
         "against input resolution, per device."),
        ("latency_per_backend.png", backend_latency_figure(current),
         "Latency per batch of each model on each deployment backend that passed parity (fp32)."),
        ("params_vs_flops.png", params_flops_figure(current, colors),
         f"Parameters against FLOPs (log-log). {MARKER_CAPTION}"),
        ("accuracy_vs_latency.png", accuracy_latency_figure(current, colors),
         f"mIoU against latency; the dashed step line is the Pareto front. {MARKER_CAPTION}"),
        ("learning_curves.png", curves,
         "Validation mIoU against training time, one line per run (a model's seeds share a colour)."),
    ]
    figures += [(f"per_class_iou_{safe_name(name)}.png", fig, f"Per-class IoU on {name}.")  # a user's name
                for name, fig in iou_heatmap_figures(current).items()]
    notes = [f"{name} not drawn: no ok row holds what it plots."
             for name, figure, _ in figures if figure is None] + ([curves_note] if curves_note else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, figure, caption in figures:
        if figure is not None:
            figure.savefig(out_dir / name, **SAVE)
            drawn.append((name, caption))
    sample, why_not = dataset_sample_png(current, out_dir / "dataset_sample.png", cache_dir)
    if sample is None:
        notes.append(f"No data-set sample figure: {why_not}.")
    else:
        drawn.append((sample.name, "Samples of the synthetic data set."))
    return drawn, notes


#: Figure sets kept in the cache (the newest): a report on unchanged rows copies its figures.
KEPT_FIGURE_SETS = 3


def _figures_key(current: pd.DataFrame) -> str:
    """The rows' values and the drawing code: the same key, the same figures."""
    code = b"".join(path.read_bytes() for path in (Path(__file__), Path(__file__).with_name("deployment.py")))
    rows = pd.util.hash_pandas_object(current, index=False).values.tobytes()
    names = json.dumps(list(current.columns)).encode()
    return hashlib.sha1(rows + names + code + matplotlib.__version__.encode()).hexdigest()[:16]


def write_plots(current: pd.DataFrame, out_dir: Path, cache_dir: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    """Every figure the rows support, in ``out_dir``; returns ([(png path, caption)], [notes on
    figures left out]).

    Drawing is most of a large report's time, so the figures are drawn once per set of rows (and
    drawing code) into ``cache_dir/figures/<key>/`` and copied from there by later reports.
    """
    figure_sets = cache_dir / "figures"
    drawn_dir = figure_sets / _figures_key(current)
    manifest = drawn_dir / "figures.json"
    if not manifest.exists():
        drawn, notes = _draw_plots(current, drawn_dir, cache_dir)
        atomic_write_text(manifest, json.dumps({"figures": drawn, "notes": notes}))
        for old in sorted(figure_sets.iterdir(), key=lambda p: p.stat().st_mtime)[:-KEPT_FIGURE_SETS]:
            shutil.rmtree(old, ignore_errors=True)
    kept = json.loads(manifest.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, _ in kept["figures"]:
        shutil.copyfile(drawn_dir / name, out_dir / name)
    return [(out_dir / name, caption) for name, caption in kept["figures"]], kept["notes"]
