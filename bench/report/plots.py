"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display).

Each ``*_figure`` function takes the current rows and the model colours, and returns a Figure,
or None when no row holds what it plots (those whose caption depends on the rows: the figure and
its caption). ``write_plots`` picks the colours once, so a model has the same colour in every
figure.

The figures are for reading, not decoration: a point of a trade-off plot carries its interval as
error bars and the caption says which interval and over how many runs; a title names the
resolution, batch size, precision and backend it shows; a Pareto front is drawn only from accuracy
that meets the evidence bar (``bench.report.evidence``); point labels are moved apart (adjustText)
and legends sit beside the panels, never over a point.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import textwrap
from importlib.metadata import version as _version
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, LogLocator, NullLocator

from bench.paths import safe_name
from bench.report.deployment import SETTING
from bench.report.drawing import KEY_LENGTH, Built, Drawn, save_figures
from bench.report.tasks import run_tasks
from bench.report.evidence import EvidenceBar, shortfalls
from bench.report.frame import IOU_PREFIX, ROW_FILE, consolidated_path, iou_columns, json_value
from bench.report.labels import label, place_labels
from bench.report.pareto import Interval, front as undominated
from bench.report.contenders import TORCHVISION_MODELS
from bench.report.repeats import CONFIDENCE, repeat_groups, spread

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


#: Minor ticks of a log axis, per decade: the 1-2-5 series. Labelled on an axis that crosses up to
#: ``LABELLED_POWERS`` powers of ten; on a wider one, the powers alone.
LOG_MINOR_TICKS = (2.0, 5.0)
LABELLED_POWERS = 2


def log_scale(ax, axis: str) -> None:
    """A log scale on ``ax``'s ``axis`` ("x" or "y") that reads as plain numbers (20, 50, 100, 5e-02)
    at 1, 2 and 5 times each power of ten. Not matplotlib's defaults: its powers of ten are
    mathtext, whose parsing took a tenth of a large report's drawing time, and its eight minor
    ticks per decade (each a tick, a grid line and a label to lay out) a fifth."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    ticks = ax.xaxis if axis == "x" else ax.yaxis
    ticks.set_major_formatter(LogFormatter())
    ticks.set_minor_locator(LogLocator(subs=LOG_MINOR_TICKS))
    ticks.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(LABELLED_POWERS, math.inf)))


def _log_if_wide(ax, values, axis: str) -> None:
    values = np.asarray(values, dtype=float)
    values = values[values > 0]
    if values.size and values.max() / values.min() > WIDE_RANGE:
        log_scale(ax, axis)


def _panels(n: int, width: float = 5.5, height: float = 4.2) -> tuple[Figure, list]:
    figure = Figure(figsize=(width * n + 2.5, height), layout="constrained")
    axes = figure.subplots(1, n, squeeze=False)[0]
    return figure, list(axes)


def _legend_outside(figure: Figure, axes: list) -> None:
    """One legend right of the panels, each label once (a model may be in some panels only). A
    point with error bars shows in it as its marker alone: the bars say nothing of the model, and
    drawing them in every entry cost a tenth of a figure's drawing time."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(name, handle[0] if isinstance(handle, ErrorbarContainer) else handle)
    if entries:
        # Centred on the right: at the top it would cover the end of a long figure title.
        figure.legend(list(entries.values()), list(entries), loc="outside right center", fontsize="small")


def _most_common_variant(rows: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the most frequent (batch size, precision, backend), so one panel compares like
    with like."""
    counts = rows.groupby(["batch_size", "precision", "backend"]).size()
    batch, precision, backend = counts.idxmax()
    chosen = rows[(rows["batch_size"] == batch) & (rows["precision"] == precision)
                  & (rows["backend"] == backend)]
    return chosen, f"batch {batch:.0f}, {precision}, {backend}"


#: Panels per row of a figure with a panel per device and resolution.
PANEL_COLUMNS = 3
#: The counter column of each memory quantity: a panel never mixes two counting methods.
MEMORY_COUNTERS = {"peak_memory_mib": "memory_counter", "train_peak_memory_mib": "train_memory_counter"}
#: The gid of the Pareto front's rings (tests find them by this).
FRONT_GID = "pareto-front"
NOT_A_RANKING = "not a ranking"


def _grid(n: int, width: float = 5.2, height: float = 4.4) -> tuple[Figure, list]:
    """``n`` panels, ``PANEL_COLUMNS`` to a row, room on the right for the legend."""
    columns = min(n, PANEL_COLUMNS)
    rows = -(-n // columns)
    figure = Figure(figsize=(width * columns + 2.5, height * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    for spare in axes[n:]:
        figure.delaxes(spare)
    return figure, axes[:n]


def _counter_name(counter: str) -> str:
    """A memory counter's short name for an axis label: its text before the first ':' or ' ('."""
    name = re.split(r":| \(", counter or "", maxsplit=1)[0].strip()
    return textwrap.shorten(name, 48, placeholder="...") if name else "counter not recorded"


def _one_counter(rows: pd.DataFrame, quantity: str) -> tuple[pd.DataFrame, str, int]:
    """The rows that counted ``quantity`` with its most common method, the method ('' for a
    quantity that is no memory figure: all rows) and the number of rows left out."""
    column = MEMORY_COUNTERS.get(quantity)
    if column is None:
        return rows, "", 0
    counters = rows[column].fillna("")
    counter = counters.value_counts().idxmax()
    kept = rows[counters == counter]
    return kept, counter, len(rows) - len(kept)


def _chosen_runs(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group (a model; a model and resolution), the rows of its most-run configuration
    (its largest repeat group, the newest on a tie), one per seed (the newest): a point stands for
    one configuration's seeds, never for a mix of configurations."""
    rows = rows.assign(_group=repeat_groups(rows)).sort_values("finished_at", kind="stable")
    sizes = (rows.groupby([*by, "_group"], sort=False)["finished_at"].agg(["size", "max"])
             .reset_index().sort_values(["size", "max"], kind="stable"))
    best = sizes.drop_duplicates(by, keep="last")[[*by, "_group"]]
    chosen = rows.merge(best, on=[*by, "_group"])  # an inner merge keeps the left (time) order
    return chosen.drop_duplicates([*by, "seed"], keep="last")


def _value(row: pd.Series, column: str) -> float:
    value = row.get(column)
    return float(value) if value is not None and pd.notna(value) else math.nan


def _latency(runs: pd.DataFrame, prefix: str = "latency_ms") -> tuple[float, float, float, int]:
    """(centre, low, high, n) of the runs' latency per batch. One run: its median and the median's
    distribution-free 95% interval (NaN where too few calls gave none); several (seeds): the mean
    of their medians and the t interval of that mean, as the headline folds them."""
    medians = runs[f"{prefix}_median"].dropna()
    if medians.empty:
        return math.nan, math.nan, math.nan, 0
    if len(medians) == 1:
        row = runs.loc[medians.index[0]]
        return float(medians.iloc[0]), _value(row, f"{prefix}_ci_low"), _value(row, f"{prefix}_ci_high"), 1
    folded = spread(medians)
    return folded.mean, folded.low, folded.high, folded.n


def _errors(centre, low, high):
    """errorbar's (2, N) extents below and above ``centre``; None when no point has an interval."""
    centre, low, high = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (centre, low, high))
    if np.isnan(low).all() or np.isnan(high).all():
        return None
    return np.clip(np.vstack([centre - low, high - centre]), 0, None)


def _n_text(counts: list[int], unit: str) -> str:
    low, high = min(counts), max(counts)
    plural = unit if high == 1 else f"{unit}s"
    return f"n = {low} {plural} per point" if low == high else f"n = {low} to {high} {plural} per point"


#: How a point's latency and its error bar are made, for captions.
LATENCY_METHOD = (f"Latency error bars: for one job, its median with the median's distribution-free "
                  f"{CONFIDENCE:.0%} interval (no bar where too few calls gave one); for several jobs "
                  f"(seeds of one configuration), the mean of their medians with the {CONFIDENCE:.0%} "
                  f"t interval of the mean")


def _resolution_span(rows: pd.DataFrame) -> str:
    shown = rows.drop_duplicates("pixels").sort_values("pixels")["resolution"].tolist()
    return f"at {shown[0]}" if len(shown) == 1 else f"{len(shown)} resolutions, {shown[0]} to {shown[-1]}"


def backend_latency_figure(current: pd.DataFrame) -> Figure | None:
    """Latency per backend (fp32, default layout) per model, bars side by side, at the device,
    resolution and batch measured with more than one backend for the most models."""
    rows = current[(current["status"] == "ok") & (current["precision"] == "fp32")
                   & ~current["channels_last"].astype(bool) & current["latency_ms_median"].notna()]
    rows = rows.sort_values("finished_at").drop_duplicates([*SETTING, "backend"], keep="last")
    several = rows.groupby(SETTING)["backend"].transform("nunique") > 1
    rows = rows[several]
    if rows.empty:
        return None
    where = rows.groupby(SETTING[1:])["model"].nunique().idxmax()
    chosen = rows[(rows[SETTING[1:]] == pd.Series(where, index=SETTING[1:])).all(axis=1)]
    table = chosen.pivot(index="model", columns="backend", values="latency_ms_median")
    # The median's distribution-free 95% interval as the error bar (NaN, no bar, where too few calls).
    low, high = (chosen.pivot(index="model", columns="backend", values=column).reindex_like(table)
                 for column in ("latency_ms_ci_low", "latency_ms_ci_high"))
    figure = Figure(figsize=(max(6.0, 1.2 * len(table) + 2) + 2.0, 4.2), layout="constrained")
    ax = figure.subplots()
    width = 0.8 / len(table.columns)
    for i, backend in enumerate(table.columns):
        median = table[backend].to_numpy(dtype=float)
        errors = np.clip(np.vstack([median - low[backend].to_numpy(dtype=float),
                                    high[backend].to_numpy(dtype=float) - median]), 0, None)
        ax.bar(np.arange(len(table)) + i * width, median, width, label=backend,
               yerr=None if np.isnan(errors).all() else errors, capsize=3, error_kw={"elinewidth": 1})
    ax.set_xticks(np.arange(len(table)) + width * (len(table.columns) - 1) / 2, table.index,
                  rotation=30, fontsize="small")
    ax.set_ylabel("latency per batch, median (ms)")
    device, threads, resolution, batch = where
    ax.set_title(f"Latency per backend: {device}, {threads:.0f} threads, {resolution}, batch {batch:.0f}, fp32")
    ax.grid(True, axis="y", alpha=0.3)
    figure.legend(loc="outside right upper", fontsize="small")  # beside the bars, never over one
    return figure


def scaling_figure(current: pd.DataFrame, colors: dict, quantity: str, ylabel: str,
                   title: str) -> tuple[Figure | None, str]:
    """``quantity`` against input pixels, a line per model, a panel per device at its most common
    batch size, precision and backend (a memory quantity: its most common counter too, named on
    the axis). Latency points carry their interval as error bars. Returns the figure (None when no
    row holds ``quantity``) and the method of its points for the caption."""
    rows = _ok(current, quantity, "pixels")
    if rows.empty:
        return None, ""
    prefix = quantity.removesuffix("_median")
    interval = quantity.endswith("_median") and f"{prefix}_ci_low" in rows.columns
    devices = sorted(rows["device"].unique())
    figure, axes = _panels(len(devices))
    counts, counters, left_out = [], set(), 0
    for ax, device in zip(axes, devices):
        chosen, variant = _most_common_variant(rows[rows["device"] == device])
        chosen, counter, dropped = _one_counter(chosen, quantity)
        left_out += dropped
        counters.add(counter)
        for model, mine in _chosen_runs(chosen, ["model", "pixels"]).groupby("model"):
            line = []
            for pixels, at in mine.groupby("pixels"):
                if interval:
                    centre, low, high, n = _latency(at, prefix)
                else:
                    centre, low, high, n = float(at[quantity].median()), math.nan, math.nan, len(at)
                line.append((pixels, centre, low, high))
                counts.append(n)
            x, centre, low, high = (np.array(v, dtype=float) for v in zip(*line))
            ax.errorbar(x, centre, yerr=_errors(centre, low, high), marker=model_marker(model),
                        color=colors[model], label=model, capsize=3, elinewidth=1)
        _log_if_wide(ax, chosen["pixels"], "x")  # before the ticks: a scale change resets them
        _log_if_wide(ax, chosen[quantity], "y")
        ticks = chosen.drop_duplicates("pixels").sort_values("pixels")
        ax.set_xticks(ticks["pixels"], ticks["resolution"], rotation=30, fontsize="small")
        ax.xaxis.set_minor_locator(NullLocator())  # only the resolution ticks on a log x axis
        ax.set_xlabel("input resolution H×W (x position: pixels per image)")
        ax.set_ylabel(ylabel + (f"\ncounter: {_counter_name(counter)}" if counter else ""))
        ax.set_title(f"{device}: {variant}, {_resolution_span(chosen)}", fontsize="medium")
        ax.grid(True, alpha=0.3)
    figure.suptitle(title)
    _legend_outside(figure, axes)
    if interval:
        method = f"{LATENCY_METHOD}; {_n_text(counts, 'job')}."
    else:
        method = f"Each point: the median of its jobs ({_n_text(counts, 'job')})."
    if counters - {""}:
        method += f" Counted by: {'; '.join(sorted(counters))}."
    if left_out:
        method += f" {left_out} rows counted by another method are left out (never two methods on one axis)."
    return figure, method


def _reference_resolution(rows: pd.DataFrame) -> str:
    """The resolution measured for the most models (the smallest such, on a tie)."""
    measured = rows.groupby(["pixels", "resolution"])["model"].nunique().reset_index()
    return measured.sort_values(["model", "pixels"], ascending=[False, True]).iloc[0]["resolution"]


def params_flops_figure(current: pd.DataFrame, colors: dict) -> Figure | None:
    """Parameters against FLOPs per image, one labelled point per model, log-log; the labels are
    moved apart, so models of near-equal size (the VGG-16 family) stay readable."""
    rows = _ok(current, "params_m", "gflops_per_image")
    if rows.empty:
        return None
    resolution = _reference_resolution(rows)
    points = rows[rows["resolution"] == resolution].groupby("model")[["gflops_per_image", "params_m"]].median()
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    ax = figure.subplots()
    for model, point in points.iterrows():
        ax.scatter(point["gflops_per_image"], point["params_m"], color=colors[model], s=40,
                   marker=model_marker(model), label=model)
    texts = label(ax, points["gflops_per_image"], points["params_m"], points.index)
    log_scale(ax, "x")
    log_scale(ax, "y")
    ax.margins(0.15)
    ax.set_xlabel(f"GFLOP per image, forward pass at {resolution}")
    ax.set_ylabel("parameters (millions)")
    ax.set_title(f"Model size against compute at {resolution}\n(per image: the same at any batch size)")
    ax.grid(True, which="both", alpha=0.3)
    _legend_outside(figure, [ax])
    place_labels(figure, [(ax, texts)])
    return figure


def _point_labels(rows: pd.DataFrame) -> pd.Series:
    """The model name, with the resolution when several resolutions are shown."""
    if rows["resolution"].nunique() > 1:
        return rows["model"] + " " + rows["resolution"]
    return rows["model"]


@dataclasses.dataclass
class Point:
    """One model in one panel: its most-run configuration's seeds folded into one point."""
    model: str
    latency: float
    latency_low: float      # NaN: no interval
    latency_high: float
    jobs: int
    memory: float = math.nan
    miou: float = math.nan
    miou_low: float = math.nan
    miou_high: float = math.nan
    seeds: int = 0
    short: tuple[str, ...] = ()   # why its accuracy falls short of the evidence bar; () when it meets it

    def intervals(self) -> tuple[Interval, Interval]:
        """(latency, mIoU) with their intervals, for the Pareto front; a figure without one is exact."""
        def interval(value: float, low: float, high: float) -> Interval:
            return Interval.exact(value) if math.isnan(low) or math.isnan(high) else Interval(value, low, high)
        return interval(self.latency, self.latency_low, self.latency_high), interval(self.miou, self.miou_low, self.miou_high)


def _points(rows: pd.DataFrame, bar: EvidenceBar | None = None) -> list[Point]:
    """A point per model of one panel's rows; with ``bar``, its mIoU over seeds and the evidence
    check too."""
    points = []
    for model, runs in _chosen_runs(rows, ["model"]).groupby("model"):
        point = Point(model, *_latency(runs), memory=float(runs["peak_memory_mib"].median()))
        if bar is not None:
            miou = spread(runs["miou_pct"])
            point.miou, point.miou_low, point.miou_high, point.seeds = miou.mean, miou.low, miou.high, miou.n
            point.short = tuple(shortfalls(model, runs, bar))
        points.append(point)
    return points


def _draw_point(ax, x: float, y: float, xerr, yerr, model: str, colors: dict) -> None:
    ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=model_marker(model), color=colors[model], markersize=6,
                capsize=3, elinewidth=1, label=model)


def _latency_errors(point: Point):
    return _errors(point.latency, point.latency_low, point.latency_high)


#: Trade-off panels per figure, at most: the settings measured with the most models (the
#: All jobs table holds the rest); a grid of 20 resolutions would be unreadable and slow to label.
MAX_PANELS = 6


def _panels_of(rows: pd.DataFrame, keys: list[str]) -> tuple[list[tuple[tuple, pd.DataFrame, str]], str]:
    """(key, rows, variant) per panel: the rows of each ``keys`` group (by device, then input
    size), at that group's most common batch size, precision and backend; at most ``MAX_PANELS``
    of them, and a caption sentence naming how many were left out."""
    groups = list(rows.groupby(keys, sort=True))
    most = sorted(range(len(groups)), key=lambda i: -groups[i][1]["model"].nunique())[:MAX_PANELS]
    kept = [groups[i] for i in sorted(most)]
    panels = []
    for key, mine in kept:
        chosen, variant = _most_common_variant(mine)
        panels.append((key, chosen, variant))
    note = (f" {len(groups) - len(kept)} more settings are left out: the figure shows the {len(kept)} "
            "measured with the most models." if len(groups) > len(kept) else "")
    return panels, note


def latency_memory_figure(current: pd.DataFrame, colors: dict) -> tuple[Figure | None, str]:
    """Latency per batch against peak memory of one forward pass, a panel per device and
    resolution (every resolution measured), one point per model with its latency interval.
    Each panel holds one memory counter, named on its axis. Returns the figure and its caption."""
    rows = _ok(current, "latency_ms_median", "peak_memory_mib", "pixels")
    if rows.empty:
        return None, ""
    panels, left_out_note = _panels_of(rows, ["device", "pixels", "resolution"])
    figure, axes = _grid(len(panels))
    labelled, jobs, counters, left_out = [], [], set(), 0
    for ax, ((device, _, resolution), chosen, variant) in zip(axes, panels):
        chosen, counter, dropped = _one_counter(chosen, "peak_memory_mib")
        counters.add(counter)
        left_out += dropped
        points = _points(chosen)
        for point in points:
            _draw_point(ax, point.memory, point.latency, None, _latency_errors(point), point.model, colors)
            jobs.append(point.jobs)
        labelled.append((ax, label(ax, [p.memory for p in points], [p.latency for p in points],
                                    [p.model for p in points])))
        _log_if_wide(ax, [p.memory for p in points], "x")
        _log_if_wide(ax, [p.latency for p in points], "y")
        ax.margins(0.12)
        ax.set_xlabel(f"peak memory, one forward pass (MiB)\ncounter: {_counter_name(counter)}")
        ax.set_ylabel("latency per batch (ms)")
        ax.set_title(f"{device}, {resolution}, {variant}", fontsize="medium")
        ax.grid(True, which="both", alpha=0.3)
    figure.suptitle("Latency against memory")
    _legend_outside(figure, axes)
    place_labels(figure, labelled)
    caption = ("Latency per batch against peak memory of one forward pass, a panel per device and "
               "resolution at its most common batch size, precision and backend; one point per model "
               "(its most-run configuration; memory: the median of its jobs). "
               f"{LATENCY_METHOD}; {_n_text(jobs, 'job')}. Memory counted by: "
               f"{'; '.join(sorted(c or 'not recorded' for c in counters))} (one counter per panel, named on its axis).")
    if left_out:
        caption += f" {left_out} rows counted by another method are left out."
    return figure, f"{caption}{left_out_note} {MARKER_CAPTION}"


def _reason(model: str, reason: str) -> str:
    """A shortfall without its model name and its requirement: '1 seed', '3 training steps'."""
    reason = re.sub(rf"^{re.escape(model)}:? ", "", reason)
    return re.sub(r" \(needs[^)]*\)", "", reason)


def not_a_ranking_note(points: list[Point]) -> str:
    """'' when every point's accuracy meets the evidence bar, else the note that says the panel
    ranks nothing, with the weakest point's reasons as the example."""
    short = [p for p in points if p.short]
    if not short:
        return ""
    weakest = max(short, key=lambda p: len(p.short))
    example = ", ".join(_reason(weakest.model, r) for r in weakest.short)
    return f"accuracy below the evidence bar (e.g. {example}): {NOT_A_RANKING}"


def accuracy_latency_figure(current: pd.DataFrame, colors: dict,
                            bar: EvidenceBar | None = None) -> tuple[Figure | None, str]:
    """mIoU against latency per batch, a panel per device, data set and resolution (every one
    measured), one point per model: its seeds' mean mIoU with the t interval, and its latency
    interval. The Pareto front is drawn only in a panel whose every model meets the evidence bar
    (``bar``; conf/published.yaml's by default), and there overlapping latency intervals are ties;
    elsewhere the panel says it is not a ranking. Returns the figure and its caption."""
    rows = _ok(current, "miou_pct", "latency_ms_median", "pixels")
    if rows.empty:
        return None, ""
    bar = bar or evidence_bar()
    panels, left_out_note = _panels_of(rows, ["device", "dataset", "pixels", "resolution"])
    figure, axes = _grid(len(panels))
    labelled, seeds, jobs, fronts = [], [], [], 0
    for ax, ((device, dataset, _, resolution), chosen, variant) in zip(axes, panels):
        points = _points(chosen, bar)
        for point in points:
            yerr = None if point.seeds < 2 else _errors(point.miou, point.miou_low, point.miou_high)
            _draw_point(ax, point.latency, point.miou, _latency_errors(point), yerr, point.model, colors)
            seeds.append(point.seeds)
            jobs.append(point.jobs)
        labelled.append((ax, label(ax, [p.latency for p in points], [p.miou for p in points],
                                    [p.model for p in points])))
        note = not_a_ranking_note(points)
        if not note:
            fronts += 1
            front = [points[i] for i in undominated([p.intervals() for p in points])]
            # Rings, no connecting line: with latency ties the front need not fall as latency rises.
            ax.plot([p.latency for p in front], [p.miou for p in front], linestyle="none", marker="o",
                    markersize=14, markerfacecolor="none", markeredgecolor="black", zorder=1, gid=FRONT_GID,
                    label="Pareto front (ringed; ties kept)")
        _log_if_wide(ax, [p.latency for p in points], "x")
        ax.margins(0.12)
        ax.set_xlabel("latency per batch (ms)")
        ax.set_ylabel("mIoU (%), mean over seeds")
        title = f"{device}, {dataset} {resolution}, {variant}"
        if note:
            title += "\n" + textwrap.fill(note, 60)
        ax.set_title(title, fontsize="medium", color="firebrick" if note else "black")
        ax.grid(True, alpha=0.3)
    figure.suptitle("Accuracy against latency")
    _legend_outside(figure, axes)
    place_labels(figure, labelled)
    caption = (f"mIoU against latency per batch, a panel per device, data set and resolution at its most "
               f"common batch size, precision and backend; one point per model (its most-run "
               f"configuration). mIoU: the mean over seeds with the {CONFIDENCE:.0%} t interval of the "
               f"mean (no bar for one seed; {_n_text(seeds, 'seed')}). {LATENCY_METHOD}; "
               f"{_n_text(jobs, 'job')}. Black rings, the Pareto front, are drawn only where every "
               f"model's accuracy meets the evidence bar ({bar.min_seeds} seeds, {bar.min_train_steps} "
               f"training steps, a learning curve gaining under {bar.plateau_points:g} points in its "
               f"last quarter): a point is off it only when another is clearly faster (the latency "
               f"intervals do not overlap) and not clearly less accurate (the mIoU intervals), or "
               f"clearly more accurate and not clearly slower; the rule of the page's picks. Panels "
               f"short of the bar say "
               f"'{NOT_A_RANKING}' ({len(panels) - fronts} of {len(panels)} here).{left_out_note} {MARKER_CAPTION}")
    return figure, caption


def evidence_bar() -> EvidenceBar:
    """conf/published.yaml's evidence bar (imported here: published.py reads the tables module)."""
    from bench.report.published import load_published
    return EvidenceBar.from_published(load_published())


def _training_batches(rows: pd.DataFrame) -> str:
    """'training batch 4' (or '4, 8') as the rows' configs set it (``train.batch_size``, also the
    evaluation batch)."""
    batches = set()
    for config in rows["config"].drop_duplicates():
        batch = (json_value(config, {}).get("train") or {}).get("batch_size")
        if isinstance(batch, (int, float)):
            batches.add(batch)
    if not batches:
        return "training batch not recorded"
    return "training batch " + ", ".join(f"{b:g}" for b in sorted(batches))


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
        log_scale(ax, "x")
        ax.set_xlabel("training time (s, validation passes excluded)")
        ax.set_ylabel("validation mIoU (%)")
        ax.set_title(f"{dataset}, {resolution}, {_training_batches(mine)}")
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
        resolutions = ", ".join(mine.drop_duplicates("pixels").sort_values("pixels")["resolution"])
        ax.set_title(f"Per-class IoU, {dataset} ({', '.join(sorted(mine['split'].unique()))}), "
                     f"{resolutions}, {_training_batches(mine)}")
        figure.colorbar(image, ax=ax, label="IoU (%)")
        figures[str(dataset)] = figure
    return figures


PER_DEVICE = "a line per model, a panel per device at its most common batch size, precision and backend."


@dataclasses.dataclass(frozen=True)
class FigureBuild:
    """One build: its name (a file stem: its record in the cache), the current rows it plots (a
    mask; the build sees those alone, so equal rows build equal figures) and the build, which takes
    them and returns ([(file name, figure or None, caption)], [notes])."""
    name: str
    rows: pd.Series
    build: Callable[[pd.DataFrame], Built]

    def __call__(self, current: pd.DataFrame) -> Built:
        return self.build(current[self.rows])


def _figure_builds(current: pd.DataFrame, bar: EvidenceBar, colors: dict) -> list[FigureBuild]:
    """One build per figure (the per-class heatmaps: one for all), the costliest first, each model
    in its ``colors``. Each figure's own first filter picks from its rows again: the mask is what
    that filter keeps or more (a backend figure's rows: every ok latency), never less."""
    ok = current["status"] == "ok"

    def holding(*columns: str) -> pd.Series:
        return ok & current[list(columns)].notna().all(axis=1)

    def scaling(name: str, quantity: str, ylabel: str, title: str, caption: str) -> FigureBuild:
        def build(rows: pd.DataFrame) -> Built:
            figure, method = scaling_figure(rows, colors, quantity, ylabel, title)
            return [(f"{name}.png", figure, f"{caption} {method}")], []
        return FigureBuild(name, holding(quantity, "pixels"), build)

    def latency_memory(rows: pd.DataFrame) -> Built:
        return [("latency_vs_memory.png", *latency_memory_figure(rows, colors))], []

    def accuracy(rows: pd.DataFrame) -> Built:
        return [("accuracy_vs_latency.png", *accuracy_latency_figure(rows, colors, bar))], []

    def backends(rows: pd.DataFrame) -> Built:
        return [("latency_per_backend.png", backend_latency_figure(rows),
                 "Latency per batch of each model on each deployment backend that passed parity (fp32): "
                 "the newest job's median, with the median's distribution-free 95% interval as the error "
                 "bar (none where too few calls gave one); n = 1 job per bar.")], []

    def params(rows: pd.DataFrame) -> Built:
        return [("params_vs_flops.png", params_flops_figure(rows, colors),
                 f"Parameters against FLOPs per image (log-log), one point per model (the median of its "
                 f"jobs; deterministic counts). {MARKER_CAPTION}")], []

    def curves(rows: pd.DataFrame) -> Built:
        figure, note = learning_curve_figure(rows, colors)
        return [("learning_curves.png", figure, "Validation mIoU against training time, one line per run "
                 "(a model's seeds share a colour).")], [note] if note else []

    def heatmaps(rows: pd.DataFrame) -> Built:
        return [(f"per_class_iou_{safe_name(name)}.png", figure, f"Per-class IoU on {name}.")  # a user's name
                for name, figure in iou_heatmap_figures(rows).items()], []

    classes = iou_columns(current)
    return [
        # The labelled ones first: label placement is most of the drawing.
        FigureBuild("latency_vs_memory", holding("latency_ms_median", "peak_memory_mib", "pixels"), latency_memory),
        FigureBuild("params_vs_flops", holding("params_m", "gflops_per_image"), params),
        FigureBuild("accuracy_vs_latency", holding("miou_pct", "latency_ms_median", "pixels"), accuracy),
        scaling("latency_vs_resolution", "latency_ms_median", "latency per batch (ms)",
                "Latency against input size", f"Latency per batch against input resolution, {PER_DEVICE}"),
        scaling("train_latency_vs_resolution", "train_latency_ms_median", "training step per batch (ms)",
                "Training-step latency against input size",
                "One training step (forward, cross-entropy, backward, optimizer step) per batch against "
                f"input resolution, {PER_DEVICE}"),
        scaling("memory_vs_resolution", "peak_memory_mib", "peak memory, one forward pass (MiB)",
                "Memory against input size",
                f"Peak memory of one forward pass against input resolution, {PER_DEVICE}"),
        scaling("train_memory_vs_resolution", "train_peak_memory_mib", "peak memory, one training step (MiB)",
                "Training memory against input size",
                "Peak memory of one training step (weights, gradients, optimizer state, activations) "
                f"against input resolution, {PER_DEVICE}"),
        FigureBuild("latency_per_backend", holding("latency_ms_median"), backends),
        FigureBuild("learning_curves", ok & (current["learning_curve"].fillna("") != ""), curves),
        FigureBuild("per_class_iou", ok & current[classes].notna().any(axis=1), heatmaps),
    ]


#: The order of the figures on the page.
PAGE_ORDER = ("latency_vs_resolution.png", "train_latency_vs_resolution.png", "memory_vs_resolution.png",
              "train_memory_vs_resolution.png", "latency_vs_memory.png", "accuracy_vs_latency.png",
              "latency_per_backend.png", "params_vs_flops.png", "learning_curves.png")


def _drawing_salt(bar: EvidenceBar) -> bytes:
    """The drawing code, the libraries' versions and the evidence bar: part of every figure's key."""
    code = b"".join(Path(__file__).with_name(name).read_bytes() for name in DRAWING_CODE)
    versions = f"{_version('matplotlib')} {_version('adjustText')} {dataclasses.astuple(bar)} {SAVE}"
    return code + versions.encode()


def _rows_key(current: pd.DataFrame, rows: pd.Series) -> bytes:
    """What names ``current``'s ``rows`` and their values. Rows read by ``load_frame``: their files
    and the consolidated table's name (a row file is written once and never changed; the table's
    name says how the frame's columns were derived): hashing 10,000 rows' values took 0.15 to
    0.35 s. Other frames: their values."""
    if ROW_FILE in current:
        return "\n".join([consolidated_path("").name, *current.loc[rows, ROW_FILE]]).encode()
    return pd.util.hash_pandas_object(current[rows], index=False).values.tobytes()


def _figure_tasks(current: pd.DataFrame, out_dir: Path, cache_dir: Path,
                  bar: EvidenceBar | None = None) -> list[Callable[[], Drawn]]:
    """One task per figure build, drawing into ``out_dir`` what the rows support. A build whose
    rows, colours, frame columns and drawing code are those of a build before is not run: its
    figures are copied from the cache (its record in ``cache_dir/figure_builds``); a build that
    runs draws again only the figures whose content changed (``bench.report.drawing``).
    ``bar``: the evidence bar a Pareto front needs (conf/published.yaml's by default)."""
    bar = bar or evidence_bar()
    out_dir.mkdir(parents=True, exist_ok=True)
    png_cache, records = cache_dir / "figure_pngs", cache_dir / "figure_builds"
    png_cache.mkdir(parents=True, exist_ok=True)
    records.mkdir(parents=True, exist_ok=True)
    code, colors = _drawing_salt(bar), model_colors(current["model"])
    # The colours (a new model recolours every figure) and the frame's columns (their order orders
    # a heatmap's classes) are in every build's key.
    salt = code + json.dumps(list(current.columns)).encode() + repr(sorted(colors.items())).encode()
    tasks = []
    for figure in _figure_builds(current, bar, colors):
        key = hashlib.sha1(salt + _rows_key(current, figure.rows)).hexdigest()[:KEY_LENGTH]
        tasks.append(functools.partial(save_figures, functools.partial(figure, current), out_dir, png_cache,
                                       code, SAVE, records / f"{figure.name}_{key}.json"))
    return tasks


def _drawn_in_page_order(drawings: list[Drawn]) -> tuple[list[tuple[str, str]], list[str]]:
    """The figure tasks' results as ([(file name, caption)] in page order, [notes])."""
    drawn = [pair for pairs, _, _ in drawings for pair in pairs]
    order = {name: i for i, name in enumerate(PAGE_ORDER)}
    drawn.sort(key=lambda pair: order.get(pair[0], len(order)))  # stable: heatmaps keep theirs
    missing = sorted((name for _, names, _ in drawings for name in names), key=lambda n: order.get(n, 0))
    notes = ([f"{name} not drawn: no ok row holds what it plots." for name in missing]
             + [note for _, _, notes in drawings for note in notes])
    return drawn, notes


#: The modules whose code decides what the figures show (drawing, folding, the front, the bar).
DRAWING_CODE = ("plots.py", "labels.py", "drawing.py", "deployment.py", "pareto.py", "evidence.py", "repeats.py")


#: What the figures come to: ([(png path, caption)], [notes on figures left out]).
Figures = tuple[list[tuple[Path, str]], list[str]]


def figure_work(current: pd.DataFrame, out_dir: Path,
                cache_dir: Path) -> tuple[list[Callable[[], Drawn]], Callable[[list[Drawn]], Figures]]:
    """``write_plots``' work in two parts, so the caller can run the tasks beside its own (in
    other processes: ``bench.report.tasks.run_tasks``): the figure tasks, and the call that takes
    their results and returns what ``write_plots`` returns."""
    def finish(drawings: list[Drawn]) -> Figures:
        drawn, notes = _drawn_in_page_order(drawings)
        return [(out_dir / name, caption) for name, caption in drawn], notes
    return _figure_tasks(current, out_dir, cache_dir, evidence_bar()), finish


def write_plots(current: pd.DataFrame, out_dir: Path, cache_dir: Path) -> Figures:
    """Every figure the rows support, in ``out_dir``; returns ([(png path, caption)], [notes on
    figures left out]).

    Drawing is most of a large report's time, so a figure is built again only when the rows it
    plots changed (or the colours, the columns, the drawing code), and drawn again only when what
    it shows changed: a figure whose points, lines and texts are as before is copied from its PNG
    in ``cache_dir/figure_pngs`` (``bench.report.drawing``). The figures are drawn in parallel.
    """
    tasks, finish = figure_work(current, out_dir, cache_dir)
    return finish(run_tasks(tasks).result())
