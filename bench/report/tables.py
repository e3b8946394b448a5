"""The report's tables as DataFrames of display strings, and a small Markdown writer.

(``DataFrame.to_markdown`` needs ``tabulate``, which segbench does not depend on.)
"""
from __future__ import annotations

import math

import pandas as pd

#: The order rows appear in every table.
SORT_KEYS = ["model", "dataset", "device", "pixels", "batch_size", "precision", "mode"]


def fmt(value, spec: str = "{:.2f}") -> str:
    """``value`` formatted with ``spec``; '' for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return spec.format(value)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (values shown with ``str``)."""
    def cell(value) -> str:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def _sorted(current: pd.DataFrame) -> pd.DataFrame:
    return current.sort_values(SORT_KEYS, kind="stable", na_position="last")


def _latency(row) -> str:
    if pd.isna(row.latency_ms_median):
        return ""
    return f"{row.latency_ms_median:.2f} (IQR {row.latency_ms_iqr:.2f})"


def headline_table(current: pd.DataFrame) -> pd.DataFrame:
    """One line per job: size, compute, latency, memory, accuracy and status."""
    rows = _sorted(current)
    return pd.DataFrame({
        "model": rows["model"],
        "dataset": rows["dataset"],
        "device": rows["device"],
        "resolution": rows["resolution"],
        "batch": rows["batch_size"].map(lambda b: fmt(b, "{:.0f}")),
        "precision": rows["precision"],
        "params (M)": rows["params_m"].map(fmt),
        "GFLOP/img": rows["gflops_per_image"].map(lambda v: fmt(v, "{:.1f}")),
        "latency/batch ms, median (IQR)": [_latency(r) for r in rows.itertuples()],
        "p90 ms": rows["latency_ms_p90"].map(fmt),
        "throughput img/s": rows["throughput_ips"].map(lambda v: fmt(v, "{:.1f}")),
        "peak MiB": rows["peak_memory_mib"].map(lambda v: fmt(v, "{:.0f}")),
        "activation MiB": rows["activation_peak_mib"].map(lambda v: fmt(v, "{:.0f}")),
        "train step ms, median": rows["train_latency_ms_median"].map(lambda v: fmt(v, "{:.1f}")),
        "train peak MiB": rows["train_peak_memory_mib"].map(lambda v: fmt(v, "{:.0f}")),
        "mIoU (%)": rows["miou_pct"].map(lambda v: fmt(v, "{:.1f}")),
        "status": rows["status"],
    }).reset_index(drop=True)


def failures_table(current: pd.DataFrame) -> pd.DataFrame:
    """The jobs whose newest row is not ``ok``, with the recorded cause."""
    rows = _sorted(current[current["status"] != "ok"])
    return pd.DataFrame({
        "model": rows["model"], "dataset": rows["dataset"], "device": rows["device"],
        "resolution": rows["resolution"], "batch": rows["batch_size"].map(lambda b: fmt(b, "{:.0f}")),
        "precision": rows["precision"], "status": rows["status"], "cause": rows["error"],
        "traceback": rows["traceback_file"], "job_key": rows["job_key"],
    }).reset_index(drop=True)


def environment_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct values of each environment column across ``frame``'s rows."""
    names = {"host": "hosts", "device_name": "device names", "torch_version": "torch",
             "cuda_version": "CUDA", "python_version": "Python", "threads": "CPU threads",
             "git_commit": "git commits", "segbench_version": "segbench"}
    records = [{"": label, "values": distinct(frame[column])} for column, label in names.items()]
    return pd.DataFrame.from_records(records)


def distinct(series: pd.Series) -> str:
    """The distinct non-empty values of ``series``, sorted and comma-separated."""
    values = series.dropna()
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        values = values.astype(int)  # an int column with gaps reads back as float
    return ", ".join(sorted({str(v) for v in values} - {""})) or "(none recorded)"
