"""The report's tables as DataFrames of display strings, and a small Markdown writer.

(``DataFrame.to_markdown`` needs ``tabulate``, which segbench does not depend on.)
"""
from __future__ import annotations

import json
import math

import pandas as pd

from dataclasses import dataclass

from bench.formatting import format_ms, significant
from bench.report.evidence import EvidenceBar, evidence_gaps, seed_runs
from bench.report.frame import PLUGIN_PREFIX, plugin_columns
from bench.report.neutral import markdown_text
from bench.report.repeats import repeat_groups, spread, spread_text, train_limits

#: The order rows appear in every table.
SORT_KEYS = ["model", "dataset", "device", "pixels", "batch_size", "precision", "backend", "mode"]


def fmt(value, spec: str = "{:.2f}") -> str:
    """``value`` formatted with ``spec``; '' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return spec.format(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (values shown with ``str``, their markup inert)."""
    def cell(value) -> str:
        return "" if value is None or (isinstance(value, float) and math.isnan(value)) else markdown_text(value)

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _sorted(current: pd.DataFrame) -> pd.DataFrame:
    return current.sort_values(SORT_KEYS, kind="stable", na_position="last")


def _is(value, expected: bool) -> bool:
    """A boolean column read back from the row table is ``expected`` (None/NaN: not known, never)."""
    return not pd.isna(value) and bool(value) is expected


def latency_cell(ok: pd.DataFrame, prefix: str = "") -> str:
    """One job: its median with the median's 95% interval and n, flagged when the loop stopped
    short of its precision or the machine was busy. Several jobs (repeats): their medians
    folded into a mean with its t interval."""
    if len(ok) != 1:
        return _fold(ok[f"{prefix}latency_ms_median"])
    row = ok.iloc[0]
    median, low, high = (row.get(f"{prefix}latency_ms_{name}") for name in ("median", "ci_low", "ci_high"))
    if pd.isna(median):
        return ""
    text = format_ms(median) + (f" [{format_ms(low)}, {format_ms(high)}]" if not pd.isna(low) else "")
    text += f" n={row.get(f'{prefix}latency_iters'):.0f}"
    if _is(row.get(f"{prefix}latency_precision_reached"), False):
        text += f" short of ±{row.get(f'{prefix}latency_target_rel_ci'):.0%}"
    if _is(row.get("contention_busy"), True):
        text += " UNDER LOAD"
    return text


def jobs_table(current: pd.DataFrame) -> pd.DataFrame:
    """One line per job: size, compute, latency, memory, accuracy and status (the full table,
    shown interactive in the page). Numbers stay numbers (rounded), so they sort as numbers."""
    rows = _sorted(current)
    numbers = {
        "seed": (rows["seed"], 0), "params (M)": (rows["params_m"], 2),
        "GFLOP/img": (rows["gflops_per_image"], 1),
        "latency/batch ms, median": (rows["latency_ms_median"], 2), "IQR ms": (rows["latency_ms_iqr"], 2),
        "95% CI low ms": (rows["latency_ms_ci_low"], 2), "95% CI high ms": (rows["latency_ms_ci_high"], 2),
        "timed calls": (rows["latency_iters"], 0),
        "other processes' CPU (%)": (rows["contention_other_cpu_fraction"] * 100, 0),
        "throughput img/s": (rows["throughput_ips"], 1), "peak MiB": (rows["peak_memory_mib"], 0),
        "train step ms, median": (rows["train_latency_ms_median"], 1),
        "train peak MiB": (rows["train_peak_memory_mib"], 0), "mIoU (%)": (rows["miou_pct"], 1),
    }
    table = rows[["model", "dataset", "device", "resolution", "batch_size", "precision", "backend"]].rename(
        columns={"batch_size": "batch"})
    for name, (values, digits) in numbers.items():
        table[name] = pd.to_numeric(values, errors="coerce").astype(float).round(digits)
    table.insert(table.columns.get_loc("peak MiB") + 1, "memory method", rows["memory_counter"].map(memory_method))
    for name in plugin_columns(rows):   # a plug-in instrument's figures, under their column names
        table[name.removeprefix(PLUGIN_PREFIX)] = rows[name]
    table["status"], table["job_key"] = rows["status"], rows["job_key"]
    return table.reset_index(drop=True)


#: What tells one configuration from another in the headline: the rows sharing these (seeds,
#: repeats, profile and accuracy runs of one setting) fold into one line.
CONFIGURATION = ["model", "dataset", "device", "resolution", "batch_size", "precision", "channels_last",
                 "backend", "threads"]


def _fold(values: pd.Series, scale: float = 1.0) -> str:
    """"mean [95% CI low, high] n=N" of the non-missing values, three significant figures; the
    value alone for one."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return significant(values.iloc[0] * scale)
    folded = spread(values)
    return (f"{significant(folded.mean * scale)} [{significant(folded.low * scale)}, "
            f"{significant(folded.high * scale)}] n={folded.n}")


def memory_method(counter: str) -> str:
    """A short name for a row's ``memory_counter``: the two methods never share a column unnamed."""
    if not isinstance(counter, str) or not counter or counter.startswith("not measured"):
        return "not measured"
    return "resident-set growth" if "resident set" in counter else "allocator"


def accuracy_caveat(runs: pd.DataFrame, bar: EvidenceBar) -> str:
    """'' when one configuration's accuracy runs (one per seed) meet the evidence bar; else the
    warning a reader must not miss: what training they had and where they fall short."""
    runs = seed_runs(runs)
    if runs.empty:
        return ""
    gaps = evidence_gaps(runs, bar)
    if not gaps:
        return ""
    budget = runs["train_budget"].dropna()
    trained = f"{budget.iloc[0]} of training on " if not budget.empty and budget.iloc[0] else "trained on "
    return f"⚠ not decision-grade ({trained}{runs['dataset'].iloc[0]}): {', '.join(gaps)}"


def _name_memory_method(table: pd.DataFrame) -> pd.DataFrame:
    """One memory method: named in the column's header; several: beside each value."""
    measured = table["peak MiB"] != ""
    methods = table.loc[measured, "_method"].unique()
    if len(methods) == 1:
        return table.rename(columns={"peak MiB": f"peak MiB ({methods[0]})"})
    table.loc[measured, "peak MiB"] += " (" + table.loc[measured, "_method"] + ")"
    return table.rename(columns={"peak MiB": "peak MiB (method)"})


@dataclass
class Headline:
    caption: str                              # the columns whose value is the same in every line
    groups: list[tuple[str, pd.DataFrame]]    # (device and resolution, its lines by latency)


#: Headline columns that may move to the caption when every line shares their value.
CAPTIONABLE = ["dataset", "device", "resolution", "batch", "precision", "backend", "threads", "failed"]


def headline(current: pd.DataFrame, bar: EvidenceBar = EvidenceBar()) -> Headline:
    """One line per configuration (``CONFIGURATION``): its ok rows folded into the mean with the
    95% t interval and n (latency: of each job's median), a caveat beside an accuracy short of the
    evidence bar, and its failed jobs. Grouped by device and resolution, each group fastest first;
    the columns constant over every line are said once, in the caption."""
    records = []
    keyed = _sorted(current).fillna({"channels_last": False, "threads": -1})
    for key, mine in keyed.groupby(CONFIGURATION, sort=False, dropna=False):
        ok = mine[mine["status"] == "ok"]
        config = dict(zip(CONFIGURATION, key))
        failed = mine.loc[mine["status"] != "ok", "status"].value_counts()
        methods = sorted({memory_method(c) for c in ok["memory_counter"].dropna()}) or ["not measured"]
        caveat = accuracy_caveat(ok, bar)
        records.append({
            "model": config["model"], "dataset": config["dataset"], "device": config["device"],
            "resolution": config["resolution"], "batch": fmt(config["batch_size"], "{:.0f}"),
            "precision": config["precision"] + (" channels_last" if config["channels_last"] else ""),
            "backend": config["backend"],
            "threads": "" if config["threads"] == -1 else fmt(config["threads"], "{:.0f}"),
            "latency/batch ms, median [95% CI] n": latency_cell(ok),
            "throughput img/s": _fold(ok["throughput_ips"]),
            "peak MiB": _fold(ok["peak_memory_mib"]),
            "_method": ", ".join(methods),
            "params (M)": significant(ok["params_m"].median()),
            "GFLOP/img": significant(ok["gflops_per_image"].median()),
            "train step ms": latency_cell(ok, "train_"),
            "train peak MiB": _fold(ok["train_peak_memory_mib"]),
            "mIoU (%)": " ".join(x for x in (_fold(ok["miou"], scale=100), caveat) if x),
            "jobs ok": f"{len(ok)} of {len(mine)}",
            "failed": ", ".join(f"{n} {status}" for status, n in failed.items()),
            "_latency": ok["latency_ms_median"].median(),
            "_pixels": mine["pixels"].iloc[0],
        })
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return Headline("", [])
    table = _name_memory_method(table)
    constant = [c for c in CAPTIONABLE if table[c].nunique(dropna=False) == 1]
    caption = "; ".join(f"{c} {table[c].iloc[0]}" for c in constant if table[c].iloc[0] != "")
    empty = [c for c in table.columns if (table[c] == "").all()]
    groups = []
    table = table.sort_values(["device", "_pixels", "_latency", "model"], ascending=[True, False, True, True],
                              kind="stable", na_position="last")
    for (device, resolution), lines in table.groupby(["device", "resolution"], sort=False):
        hidden = dict.fromkeys([*constant, *empty, "device", "resolution", "_latency", "_pixels", "_method"])
        shown = lines.drop(columns=list(hidden))
        groups.append((f"{device}, {resolution}", shown.reset_index(drop=True)))
    return Headline(caption, groups)


def _time_to_target(mine: pd.DataFrame) -> str:
    """E.g. "40% mIoU: 3 of 3 seeds, 4.2 s (mean)" or "40% mIoU: not reached in 15 s"."""
    targets = mine["target_miou"].dropna()
    if targets.empty:
        return ""
    reached = mine["time_to_target_seconds"].dropna()
    head = f"{targets.iloc[0] * 100:g}% mIoU: "
    if reached.empty:
        return head + f"not reached in {mine['train_seconds'].max():.0f} s"
    return head + f"{len(reached)} of {len(mine)} seeds, {reached.mean():.1f} s (mean)"


#: Up to this many seeds a cell lists each one; beyond, it summarises them.
LISTED_SEEDS = 5


def _seed_list(seeds: pd.Series) -> str:
    """E.g. "1 (seed 0)", "3 (seeds 0, 1, 2)", "12 (seeds 0 to 11)"."""
    seeds = sorted(int(s) for s in seeds.dropna())
    if not seeds:
        return "not recorded"
    named = ", ".join(map(str, seeds)) if len(seeds) <= LISTED_SEEDS else f"{seeds[0]} to {seeds[-1]}"
    return f"{len(seeds)} (seed{'s' if len(seeds) != 1 else ''} {named})"


def _best_points(mine: pd.DataFrame) -> str:
    """Each seed's best validation point, or their mean [interval] when there are many seeds."""
    best = mine[["best_val_miou", "best_val_seconds"]].dropna()
    if len(best) <= LISTED_SEEDS:
        return "; ".join(f"{b * 100:.1f} at {t:.1f}" for b, t in best.itertuples(index=False))
    return f"{_fold(best['best_val_miou'], scale=100)}, at {best['best_val_seconds'].mean():.1f} (mean)"


def accuracy_table(current: pd.DataFrame, bar: EvidenceBar = EvidenceBar()) -> pd.DataFrame:
    """One line per configuration: mIoU, Boundary IoU and pixel accuracy over its seeds (mean ± std,
    t interval, n), the caveat where they fall short of the evidence bar, the training they had, the best
    validation point and the time to the target mIoU."""
    rows = current[(current["status"] == "ok") & current["miou"].notna()]
    if rows.empty:
        return pd.DataFrame()
    records = []
    for _, mine in _sorted(rows).groupby(repeat_groups(rows), sort=False):
        first = mine.iloc[0]
        records.append({
            "model": first["model"], "dataset": first["dataset"], "split": first["split"],
            "device": first["device"], "resolution": first["resolution"],
            "scored at": (f"{first['eval_height']:.0f}x{first['eval_width']:.0f}" if pd.notna(first["eval_height"])
                          else "each label map's own size"),
            "training budget": first["train_budget"],
            "seeds run": _seed_list(mine["seed"]),
            "training steps (mean)": fmt(mine["train_steps"].mean(), "{:.0f}"),
            "mIoU (%)": spread_text(mine["miou"]),
            "evidence": accuracy_caveat(mine, bar) or "meets the bar",
            "boundary mIoU (%), band px": _boundary(mine),
            "pixel accuracy (%)": spread_text(mine["pixel_accuracy"]),
            "best val mIoU (%), at s": _best_points(mine),
            "time to target": _time_to_target(mine),
        })
    return pd.DataFrame.from_records(records)


def _boundary(runs: pd.DataFrame) -> str:
    """The runs' mean Boundary IoU (``bench.metrics``) as mIoU is shown, with its band width."""
    text = spread_text(runs["boundary_miou"])
    bands = runs["boundary_band_px"].dropna().unique()
    return f"{text}, {bands[0]:.0f} px" if text and len(bands) == 1 else text


def accuracy_heading(current: pd.DataFrame) -> str:
    """"Accuracy after 15 seconds of CPU training" when every accuracy row had that one time
    budget on one device; "Accuracy" otherwise."""
    rows = current[(current["status"] == "ok") & current["miou"].notna()]
    budgets, devices = set(rows["config"].drop_duplicates().map(train_limits)), set(rows["device"])
    if len(budgets) == 1 and len(devices) == 1:
        [limits], [device] = budgets, devices
        if len(limits) == 1 and limits[0][0] == "max_seconds":
            return f"Accuracy after {limits[0][1]:g} seconds of {device.upper()} training"
    return "Accuracy"


def _not_measured(instrument_errors: str) -> str:
    """A row's ``instrument_errors`` (JSON text in the frame) in words; '' for none."""
    errors = json.loads(instrument_errors) if isinstance(instrument_errors, str) and instrument_errors else {}
    return "; ".join(f"{instrument} not measured: {why}" for instrument, why in errors.items())


def failures_table(current: pd.DataFrame) -> pd.DataFrame:
    """The jobs whose newest row is not ``ok``, with the recorded cause; and the ok jobs with an
    instrument that could not run (status ``ok, partly``), with why."""
    not_measured = current["instrument_errors"].map(_not_measured)
    rows = _sorted(current[(current["status"] != "ok") | (not_measured != "")])
    not_measured = not_measured[rows.index]
    partly = (rows["status"] == "ok") & (not_measured != "")
    return pd.DataFrame({
        "model": rows["model"], "dataset": rows["dataset"], "device": rows["device"],
        "resolution": rows["resolution"], "batch": rows["batch_size"].map(lambda b: fmt(b, "{:.0f}")),
        "precision": rows["precision"], "status": rows["status"].where(~partly, "ok, partly"),
        "cause": ["; ".join(part for part in parts if part) for parts in zip(rows["error"].fillna(""), not_measured)],
        "traceback": rows["traceback_file"], "job_key": rows["job_key"],
    }).reset_index(drop=True)


def environment_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct values of each environment column across ``frame``'s rows."""
    names = {"host": "hosts", "device_name": "device names", "torch_version": "torch",
             "cuda_version": "CUDA", "python_version": "Python", "threads": "CPU threads",
             "git_commit": "git commits", "segbench_version": "segbench",
             "backend_runtime": "backend runtimes", "peak_method": "peak FLOP/s measured as"}
    records = [{"": label, "values": distinct(frame[column])} for column, label in names.items()]
    return pd.DataFrame.from_records(records)


def distinct(series: pd.Series) -> str:
    """The distinct non-empty values of ``series``, sorted and comma-separated."""
    values = pd.Series(series.dropna().unique(), dtype=series.dtype)  # a few values of 10,000 rows
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        values = values.astype(int)  # an int column with gaps reads back as float
    return ", ".join(sorted({str(v) for v in values} - {""})) or "(none recorded)"
