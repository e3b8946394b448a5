"""``python -m bench.compare OLD NEW``: every configuration measured in both result sets, side by side.

OLD and NEW are two results directories, or one directory given once with ``--old-filter`` and
``--new-filter`` (``column=value``, any row column: ``torch_version``, ``host``, ``git_commit``,
``device_name``...). Each side's configuration is its newest ``ok`` row per grid point (model,
data set, model arguments, device, resolution, batch, precision, layout, backend, threads, mode,
scenario; not ``job_key``, which may differ between versions). For each configuration in both:

- the latency ratio NEW/OLD of the medians of the raw per-call times, with a 95% percentile
  bootstrap interval (the two samples resampled independently) and a two-sided Mann-Whitney U
  test on the same samples; the training step's the same way where both rows timed it;
- peak memory (NEW - OLD in MiB, and the ratio) and mIoU (points) where both rows have them;
- whether either side was measured under load (``contention_busy``);
- a verdict: *slower* / *faster* when the interval lies wholly above 1 + tolerance / below
  1 - tolerance **and** p < 0.05, else *within noise*; rows without raw times (older schemas)
  are not decided.

Regressions come first. The table is printed and written as ``compare.csv`` and ``compare.md``
(default under ``NEW/compare/``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from bench.formatting import format_ms
from bench.schema import ResultRow, columns
from bench.store import ResultStore

#: What makes two rows the same configuration, in the tables' column order.
GRID_COLUMNS = ("model", "dataset", "model_kwargs", "device", "height", "width", "batch_size", "precision",
                "channels_last", "backend", "threads", "mode", "scenario")
CONFIDENCE = 0.95
ALPHA = 0.05              # the Mann-Whitney p-value below which a difference counts
# Ratios inside 1 ± this are no change worth reporting. Not smaller: the bootstrap treats one run's
# calls as a sample, but between two runs of the same job on an idle 2-core machine the median moved
# by up to 10% (benchmarks/latency_agreement.py, README), so a narrower band calls drift a change.
TOLERANCE = 0.10
N_RESAMPLES = 2000
SEED = 0
MIN_CALLS = 5             # fewer raw times than this on a side: no interval, no test

SLOWER, FASTER, NOISE = "slower", "faster", "within noise"
NO_RAW = "no raw times: not decided"
FEW_RAW = "too few raw times: not decided"
NOT_TIMED = "not timed"   # e.g. accuracy rows: only their mIoU compares
#: Table order: regressions first.
VERDICT_ORDER = {SLOWER: 0, FASTER: 1, NOISE: 2, FEW_RAW: 3, NO_RAW: 4, NOT_TIMED: 5}

Key = tuple


# --- selecting and pairing rows ------------------------------------------------------------------

@dataclass(frozen=True)
class RowFilter:
    column: str
    value: str

    @classmethod
    def parse(cls, text: str) -> "RowFilter":
        """``column=value``; ValueError naming the problem otherwise."""
        column, sep, value = text.partition("=")
        column = column.strip()
        if not sep or not column:
            raise ValueError(f"filter {text!r} is not column=value")
        if column not in columns():
            raise ValueError(f"filter {text!r}: no row column {column!r} (see bench/schema.py)")
        return cls(column, value)

    def matches(self, row: ResultRow) -> bool:
        """The column's text equals the value; or reads it plus a local version (torch_version=2.14.1
        matches 2.14.1+cu130); or, for git_commit, starts with it (a short hash); true/false for
        a flag in any case."""
        value = getattr(row, self.column)
        if isinstance(value, bool) or value is None:
            return _text(value) == self.value.lower()
        text = _text(value)
        return (text == self.value or text.startswith(self.value + "+")
                or (self.column == "git_commit" and len(self.value) >= 4 and text.startswith(self.value)))

    def __str__(self) -> str:
        return f"{self.column}={self.value}"


def _text(value) -> str:
    """A row value as a filter compares it: true/false, '' for null, else ``str``."""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def select(rows: Iterable[ResultRow], filters: Sequence[RowFilter]) -> list[ResultRow]:
    """The rows every filter matches."""
    return [row for row in rows if all(f.matches(row) for f in filters)]


def grid_key(row: ResultRow) -> Key:
    """The configuration a row measured (model arguments as sorted text, so dicts compare)."""
    return tuple(json.dumps(row.model_kwargs, sort_keys=True, default=str) if name == "model_kwargs"
                 else getattr(row, name) for name in GRID_COLUMNS)


def configurations(rows: Iterable[ResultRow]) -> dict[Key, ResultRow]:
    """The newest ok row of each configuration (by ``finished_at``, then ``run_id``)."""
    newest: dict[Key, ResultRow] = {}
    for row in sorted((r for r in rows if r.status == "ok"), key=lambda r: (r.finished_at, r.run_id)):
        newest[grid_key(row)] = row
    return newest


@dataclass
class Pairing:
    pairs: list[tuple[ResultRow, ResultRow]]   # (old, new), one per configuration in both
    only_old: list[ResultRow]
    only_new: list[ResultRow]


def pair(old: dict[Key, ResultRow], new: dict[Key, ResultRow]) -> Pairing:
    """Match the two sides' configurations on their grid point."""
    return Pairing(pairs=[(old[key], new[key]) for key in old if key in new],
                   only_old=[row for key, row in old.items() if key not in new],
                   only_new=[row for key, row in new.items() if key not in old])


# --- statistics of one pair ----------------------------------------------------------------------

@dataclass(frozen=True)
class RatioTest:
    """NEW/OLD of the medians, its bootstrap interval and the Mann-Whitney p-value."""
    ratio: float
    low: float
    high: float
    p_value: float
    n_old: int
    n_new: int


def _clean(times: Sequence[float]) -> np.ndarray:
    values = np.asarray(times, dtype=float)
    return values[np.isfinite(values) & (values > 0)]


def _median_ratio(new, old, axis=-1):
    return np.median(new, axis=axis) / np.median(old, axis=axis)


#: Resamples drawn at a time: a batch of bootstrap samples is resamples x calls floats.
BATCH = 200


def ratio_interval(old: np.ndarray, new: np.ndarray, *, seed: int = SEED, n_resamples: int = N_RESAMPLES,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile bootstrap interval of the ratio of medians NEW/OLD, each sample resampled
    on its own (the calls of two runs are not paired), with its own generator per pair so that a
    pair's interval does not depend on what else is compared.

    Written with numpy rather than ``scipy.stats.bootstrap`` (which computes the same percentile
    interval): importing scipy.stats takes over two seconds, half the report's budget after a new
    row, and the report shows this interval for every deployment."""
    rng = np.random.default_rng(seed)
    ratios = np.concatenate([
        _median_ratio(new[rng.integers(0, len(new), (size, len(new)))],
                      old[rng.integers(0, len(old), (size, len(old)))])
        for size in (min(BATCH, n_resamples - start) for start in range(0, n_resamples, BATCH))])
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return float(low), float(high)


def ratio_test(old_times: Sequence[float], new_times: Sequence[float], *, seed: int = SEED,
               n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
               p_value: bool = True) -> RatioTest | None:
    """The latency ratio NEW/OLD with its interval (``ratio_interval``) and, with ``p_value``, the
    two-sided Mann-Whitney U test of the two samples (NaN without); None with under
    ``MIN_CALLS`` times a side."""
    old, new = _clean(old_times), _clean(new_times)
    if min(len(old), len(new)) < MIN_CALLS:
        return None
    low, high = ratio_interval(old, new, seed=seed, n_resamples=n_resamples, confidence=confidence)
    p = math.nan
    if p_value:
        from scipy import stats  # two seconds to import: only when a verdict needs the test

        p = float(stats.mannwhitneyu(new, old, alternative="two-sided").pvalue)
    return RatioTest(float(_median_ratio(new, old)), low, high, p, len(old), len(new))


def verdict(test: RatioTest | None, *, tolerance: float = TOLERANCE, alpha: float = ALPHA,
            raw_times: bool = True) -> str:
    """slower / faster when the interval lies wholly outside 1 ± ``tolerance`` and p < ``alpha``."""
    if test is None:
        return FEW_RAW if raw_times else NO_RAW
    significant = test.p_value < alpha  # NaN (every call tied) is not
    if significant and test.low > 1 + tolerance:
        return SLOWER
    if significant and test.high < 1 - tolerance:
        return FASTER
    return NOISE


def _difference(old: float | None, new: float | None, scale: float = 1.0) -> float:
    return (new - old) * scale if old is not None and new is not None else math.nan


def _ratio(old: float | None, new: float | None) -> float:
    return new / old if old and new is not None else math.nan


def _load(old: ResultRow, new: ResultRow) -> str:
    sides = [name for name, row in (("old", old), ("new", new)) if row.contention_busy]
    return "both under load" if len(sides) == 2 else f"{sides[0]} under load" if sides else ""


#: The figures ``timing_columns`` gives beside its verdict, each under its prefix.
TIMING_FIGURES = ("old_ms", "new_ms", "ratio", "ratio_low", "ratio_high", "p_value", "old_calls", "new_calls")


def timing_columns(old: ResultRow, new: ResultRow, prefix: str = "", *, tolerance: float = TOLERANCE,
                   seed: int = SEED, n_resamples: int = N_RESAMPLES) -> dict:
    """The ``<prefix>verdict``, medians, ratio, interval, p-value and call counts of one timing
    (prefix '': inference; 'train_': the training step). Without raw times on both sides, the
    stored medians give the ratio and nothing is decided; with no timing on either side, the
    verdict reads "not timed"."""
    times = getattr(old, f"{prefix}latency_times_ms"), getattr(new, f"{prefix}latency_times_ms")
    medians = getattr(old, f"{prefix}latency_ms_median"), getattr(new, f"{prefix}latency_ms_median")
    if None in medians and not all(times):
        return {f"{prefix}verdict": NOT_TIMED if prefix == "" else "", f"{prefix}ratio": math.nan}
    test = ratio_test(*times, seed=seed, n_resamples=n_resamples)
    if test is not None:
        medians = tuple(float(np.median(_clean(t))) for t in times)
    return {
        f"{prefix}verdict": verdict(test, tolerance=tolerance, raw_times=all(times)),
        f"{prefix}old_ms": medians[0], f"{prefix}new_ms": medians[1],
        f"{prefix}ratio": test.ratio if test else _ratio(*medians),
        f"{prefix}ratio_low": test.low if test else math.nan, f"{prefix}ratio_high": test.high if test else math.nan,
        f"{prefix}p_value": test.p_value if test else math.nan,
        f"{prefix}old_calls": len(times[0]), f"{prefix}new_calls": len(times[1]),
    }


def compare_pair(old: ResultRow, new: ResultRow, *, tolerance: float = TOLERANCE, seed: int = SEED,
                 n_resamples: int = N_RESAMPLES) -> dict:
    """One line of the comparison: the configuration, then every figure as a number (NaN: none)."""
    line = {name: getattr(new, name) for name in GRID_COLUMNS}
    line["model_kwargs"] = ", ".join(f"{k}={v}" for k, v in sorted(new.model_kwargs.items()))
    for prefix in ("", "train_"):
        line.update(timing_columns(old, new, prefix, tolerance=tolerance, seed=seed, n_resamples=n_resamples))
    line.update({
        "old_peak_memory_mib": old.peak_memory_mib, "new_peak_memory_mib": new.peak_memory_mib,
        "peak_memory_change_mib": _difference(old.peak_memory_mib, new.peak_memory_mib),
        "peak_memory_ratio": _ratio(old.peak_memory_mib, new.peak_memory_mib),
        "memory_methods_differ": bool(old.memory_counter and new.memory_counter
                                      and old.memory_counter != new.memory_counter),
        "old_miou": old.miou, "new_miou": new.miou, "miou_change_points": _difference(old.miou, new.miou, 100.0),
        "old_contention_busy": old.contention_busy, "new_contention_busy": new.contention_busy,
        "load": _load(old, new),
        "old_run_id": old.run_id, "new_run_id": new.run_id, "old_job_key": old.job_key, "new_job_key": new.job_key,
    })
    return line


def comparison_frame(pairs: Sequence[tuple[ResultRow, ResultRow]], **options) -> pd.DataFrame:
    """One line per pair: slower first (largest ratio first), then faster (smallest first), then
    within noise, then the undecided."""
    frame = pd.DataFrame([compare_pair(old, new, **options) for old, new in pairs])
    if frame.empty:
        return frame
    missing = [f"{prefix}{name}" for prefix in ("", "train_") for name in TIMING_FIGURES
               if f"{prefix}{name}" not in frame]  # no line timed (e.g. accuracy rows only)
    frame = frame.assign(**{name: math.nan for name in missing})
    order = frame["verdict"].map(VERDICT_ORDER)
    signed = frame["ratio"].where(frame["verdict"] != SLOWER, -frame["ratio"])  # slower: largest first
    return (frame.assign(_order=order, _signed=signed)
            .sort_values(["_order", "_signed", "model"], kind="stable", na_position="last")
            .drop(columns=["_order", "_signed"]).reset_index(drop=True))


def any_regression(frame: pd.DataFrame) -> bool:
    """Whether any configuration's inference or training step is slower."""
    return not frame.empty and bool(frame.filter(like="verdict").eq(SLOWER).any(axis=None))


# --- display -------------------------------------------------------------------------------------

def _num(value, spec: str = "{:.3f}") -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else spec.format(value)


def _ratio_text(line: pd.Series, prefix: str = "") -> str:
    ratio, low, high = (line.get(f"{prefix}{name}", math.nan) for name in ("ratio", "ratio_low", "ratio_high"))
    if pd.isna(ratio):
        return ""
    return f"{ratio:.3f} [{low:.3f}, {high:.3f}]" if not pd.isna(low) else f"{ratio:.3f} (stored medians)"


def _ms(value) -> str:
    return "" if value is None or pd.isna(value) else format_ms(float(value))


def display_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """The comparison as display strings, and the configuration columns that hold one value in
    every line (moved out of the table into a caption)."""
    shown = pd.DataFrame(index=frame.index)
    config = {"resolution": frame["height"].astype(str) + "x" + frame["width"].astype(str),
              **{name: frame[name].astype(str) for name in GRID_COLUMNS if name not in ("height", "width")}}
    constant = {name: values.iloc[0] for name, values in config.items()
                if values.nunique() == 1 and name != "model"}  # the model stays: it names each line
    hidden = [name for name, value in constant.items() if value == ""]  # e.g. no model arguments anywhere
    constant = {name: value for name, value in constant.items() if name not in hidden}
    for name, values in config.items():
        if name not in constant and name not in hidden:
            shown[name] = values
    shown["verdict"] = frame["verdict"]
    shown["old ms"], shown["new ms"] = frame["old_ms"].map(_ms), frame["new_ms"].map(_ms)
    shown["NEW/OLD [95% CI]"] = frame.apply(_ratio_text, axis=1)
    shown["p"] = frame["p_value"].map(lambda p: _num(p, "{:.2g}"))
    shown["calls old/new"] = [f"{_num(o, '{:.0f}')}/{_num(n, '{:.0f}')}" if not pd.isna(o) else ""
                              for o, n in zip(frame["old_calls"], frame["new_calls"])]
    if frame["train_verdict"].ne("").any():
        shown["train verdict"] = frame["train_verdict"]
        shown["train NEW/OLD [95% CI]"] = frame.apply(_ratio_text, axis=1, prefix="train_")
    shown["peak MiB change"] = [
        "" if pd.isna(change) else f"{change:+.3g} (x{ratio:.3f})" + (" methods differ" if differ else "")
        for change, ratio, differ in zip(frame["peak_memory_change_mib"], frame["peak_memory_ratio"],
                                         frame["memory_methods_differ"])]
    if frame["miou_change_points"].notna().any():
        shown["mIoU change (points)"] = frame["miou_change_points"].map(lambda v: _num(v, "{:+.2f}"))
    shown["load"] = frame["load"]
    return shown.reset_index(drop=True), constant


def describe(row: ResultRow) -> str:
    """A configuration in one line, e.g. "fcn8s synthetic cpu 96x128 batch 1 fp32 eager 2 threads profile"."""
    layout = " channels_last" if row.channels_last else ""
    kwargs = f" ({', '.join(f'{k}={v}' for k, v in sorted(row.model_kwargs.items()))})" if row.model_kwargs else ""
    return (f"{row.model}{kwargs} {row.dataset} {row.device} {row.height}x{row.width} batch {row.batch_size} "
            f"{row.precision}{layout} {row.backend} {row.threads} threads {row.mode} {row.scenario}")


def _printable(value: str) -> str:
    """For the console: control characters (a terminal's escape sequences) shown as '?'."""
    return "".join(c if c.isprintable() else "?" for c in value)


@dataclass
class Side:
    directory: Path
    filters: list[RowFilter]

    def label(self) -> str:
        return str(self.directory) + (f" ({', '.join(map(str, self.filters))})" if self.filters else "")


def machine_line(pairs: Sequence[tuple[ResultRow, ResultRow]]) -> str:
    """The machine's own ceilings (matmul peak, memory bandwidth) NEW/OLD over the paired rows: a
    machine that got faster or slower between the runs moves every ratio with it, whatever the code
    did ('' when the rows hold no ceilings)."""
    parts = []
    for name, column in (("matmul peak", "peak_flops_per_s"), ("memory bandwidth", "memory_bandwidth_bytes_per_s")):
        ratios = [getattr(new, column) / getattr(old, column) for old, new in pairs
                  if getattr(old, column) and getattr(new, column)]
        if ratios:
            parts.append(f"{name} {float(np.median(ratios)):.2f}")
    return ("the machine itself, NEW/OLD: " + ", ".join(parts) + " (ratios of that size may be the machine, "
            "not the change)") if parts else ""


def summary_lines(old: Side, new: Side, pairing: Pairing, frame: pd.DataFrame, tolerance: float,
                  listed: int = 10) -> list[str]:
    """The lines above and below the table (plain text; the Markdown writer escapes them)."""
    counts = frame["verdict"].value_counts() if not frame.empty else pd.Series(dtype=int)
    lines = [f"OLD: {old.label()}", f"NEW: {new.label()}",
             f"{len(pairing.pairs)} configuration{'' if len(pairing.pairs) == 1 else 's'} in both: " + ", ".join(
                 f"{int(counts.get(v, 0))} {v}" for v in VERDICT_ORDER if counts.get(v, 0)),
             f"only in OLD: {len(pairing.only_old)}, only in NEW: {len(pairing.only_new)}",
             machine_line(pairing.pairs) or "the machine itself: no ceilings in the rows (measure.peak_flops=false)",
             f"verdict: NEW/OLD of the median latency; slower/faster when its {CONFIDENCE:.0%} bootstrap "
             f"interval lies outside 1 ± {tolerance:g} and the Mann-Whitney p < {ALPHA:g}; 'load': a side "
             "measured while other processes took over 10% of the CPU time (may explain a slowdown)"]
    for name, rows in (("only in OLD", pairing.only_old), ("only in NEW", pairing.only_new)):
        lines += [f"  {name}: {describe(row)}" for row in rows[:listed]]
        if len(rows) > listed:
            lines.append(f"  {name}: ... and {len(rows) - listed} more")
    return lines


def write_outputs(frame: pd.DataFrame, shown: pd.DataFrame, constant: dict[str, str], lines: list[str],
                  out_dir: Path) -> list[Path]:
    """compare.csv (every figure as a number, text cells neutralised) and compare.md (escaped)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    from bench.report.neutral import csv_safe, markdown_text
    from bench.report.tables import to_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "compare.csv", out_dir / "compare.md"
    table = pa.Table.from_pandas(frame.astype({"model_kwargs": str}), preserve_index=False) \
        if not frame.empty else pa.table({"verdict": pa.array([], pa.string())})
    pa_csv.write_csv(csv_safe(table), csv_path)
    caption = ", ".join(f"{name} {value}" for name, value in constant.items())
    text = ["# Comparison", "", *(f"- {markdown_text(line.strip())}" for line in lines), ""]
    if caption:
        text += [f"Every line: {markdown_text(caption)}.", ""]
    text.append(to_markdown(shown) if not shown.empty else "No configuration is in both.\n")
    md_path.write_text("\n".join(text))
    return [csv_path, md_path]


# --- command line --------------------------------------------------------------------------------

def _load_side(side: Side, seen_warnings: set[str]) -> dict[Key, ResultRow]:
    loaded = ResultStore(side.directory).load()
    for line in loaded.warning_lines():
        if line not in seen_warnings:  # one directory given twice: warn once
            print(line, file=sys.stderr)
            seen_warnings.add(line)
    rows = select(loaded.rows, side.filters)
    if not rows and side.filters and loaded.rows:
        for f in side.filters:
            present = sorted({_text(getattr(row, f.column)) for row in loaded.rows})[:10]
            print(f"warning: {side.directory}: {f}: values present: {', '.join(present)}", file=sys.stderr)
    return configurations(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="examples:\n"
               "  python -m bench.compare results-torch2.14 results-torch2.15\n"
               "  python -m bench.compare results --old-filter torch_version=2.14.1 \\\n"
               "      --new-filter torch_version=2.15.0\n"
               "  python -m bench.compare old new --fail-on-regression   # CI: exit 1 when anything is slower")
    parser.add_argument("old", type=Path, help="the OLD results directory (holding rows/)")
    parser.add_argument("new", type=Path, nargs="?",
                        help="the NEW results directory (default: OLD, compared through the two filters)")
    parser.add_argument("--old-filter", action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep only OLD rows whose COLUMN reads VALUE (any row column; repeatable; "
                             "torch_version=2.14.1 also matches 2.14.1+cu130, git_commit a short hash)")
    parser.add_argument("--new-filter", action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep only NEW rows whose COLUMN reads VALUE (repeatable)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="ratios within 1 ± this are never slower or faster (default %(default)s)")
    parser.add_argument("--out", type=Path, help="where compare.csv and compare.md go (default: NEW/compare)")
    parser.add_argument("--resamples", type=int, default=N_RESAMPLES,
                        help="bootstrap resamples per interval (default %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="the bootstrap's seed (default %(default)s)")
    parser.add_argument("--fail-on-regression", action="store_true",
                        help="exit 1 when any configuration (inference or training step) is slower")
    args = parser.parse_args(argv)
    try:
        args.old_filter = [RowFilter.parse(text) for text in args.old_filter]
        args.new_filter = [RowFilter.parse(text) for text in args.new_filter]
    except ValueError as exc:
        parser.error(str(exc))
    if args.new is None and not (args.old_filter or args.new_filter):
        parser.error("one directory compares with itself: give NEW, or --old-filter and --new-filter")
    if not 0 <= args.tolerance < 1:
        parser.error("--tolerance must be at least 0 and below 1")
    if args.resamples < 100:
        parser.error("--resamples must be at least 100")
    args.new = args.new or args.old
    args.out = args.out or args.new / "compare"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    old, new = Side(args.old, args.old_filter), Side(args.new, args.new_filter)
    warned: set[str] = set()
    sides = {side.label(): _load_side(side, warned) for side in (old, new)}
    for side in (old, new):
        if not sides[side.label()]:
            print(f"error: no ok row in {side.label()}", file=sys.stderr)
            return 2
    pairing = pair(sides[old.label()], sides[new.label()])
    frame = comparison_frame(pairing.pairs, tolerance=args.tolerance, seed=args.seed, n_resamples=args.resamples)
    shown, constant = display_table(frame) if not frame.empty else (pd.DataFrame(), {})
    lines = summary_lines(old, new, pairing, frame, args.tolerance)
    print("\n".join(_printable(line) for line in lines[:5]))
    if constant:
        print("every line: " + _printable(", ".join(f"{k} {v}" for k, v in constant.items())))
    if not shown.empty:
        print(shown.map(_printable).to_string(index=False))
    print("\n".join(_printable(line) for line in lines[5:]))
    for path in write_outputs(frame, shown, constant, lines, args.out):
        print(path)
    return 1 if args.fail_on_regression and any_regression(frame) else 0


if __name__ == "__main__":
    sys.exit(main())
