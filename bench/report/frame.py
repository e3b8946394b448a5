"""The stored rows as pandas DataFrames, with the derived columns every table and plot uses.

Everything reads results through ``ResultStore.load()``; nothing here measures or invents a
value. ``current`` holds the newest row per ``job_key`` (what the report shows); older rows of
the same job are history (forced re-runs).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.report.repeats import training_budget
from bench.schema import columns
from bench.store import ResultStore

#: Rows store mIoU and per-class IoU as fractions (0-1); the papers print percentages.
PERCENT = 100.0
#: Nested columns stored as JSON text, so frames group, compare and serialise as plain values.
JSON_COLUMNS = ("config", "model_kwargs", "learning_curve", "backend_provider_options")
IOU_PREFIX = "iou."


def _json_text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str) if value else ""


def _per_class_frame(per_class: pd.Series) -> pd.DataFrame:
    """One ``iou.<class>`` column per class name, in first-seen order (NaN where absent)."""
    records = [d if isinstance(d, dict) else {} for d in per_class]
    flat = pd.DataFrame.from_records(records, index=per_class.index)
    return flat.add_prefix(IOU_PREFIX).astype(float)


def rows_to_frame(rows: list) -> pd.DataFrame:
    """A DataFrame of ``ResultRow``s (oldest first) with the derived columns added."""
    records = [row.__dict__ for row in rows]  # shallow: asdict's deep copy is slow on 1000s
    frame = pd.DataFrame.from_records(records, columns=columns())
    for name in JSON_COLUMNS:
        frame[name] = frame[name].map(_json_text)
    iou = _per_class_frame(frame.pop("per_class_iou"))
    height = frame["height"].astype("Int64")
    width = frame["width"].astype("Int64")
    derived = pd.DataFrame({
        "resolution": height.astype(str) + "x" + width.astype(str),
        "pixels": (height * width).astype(float),
        "gflops_per_image": frame["flops_per_image"].astype(float) / 1e9,
        "params_m": frame["params_total"].astype(float) / 1e6,
        "miou_pct": frame["miou"].astype(float) * PERCENT,
        "train_budget": frame["config"].map(training_budget),
    }, index=frame.index)
    derived.loc[height.isna() | width.isna(), "resolution"] = ""
    return pd.concat([frame, derived, iou], axis=1)


def newest_per_job(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest row of each ``job_key`` (by ``finished_at``, then ``run_id`` for ties)."""
    ordered = frame.sort_values(["finished_at", "run_id"], kind="stable")
    return ordered.drop_duplicates("job_key", keep="last").sort_index()


def load_frame(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """(every row, the newest row per job, unreadable row files) of ``results_dir``.

    The first frame carries ``is_current``: True for the rows the second frame holds.
    """
    loaded = ResultStore(results_dir).load()
    everything = rows_to_frame(loaded.rows)
    current = newest_per_job(everything)
    everything["is_current"] = everything.index.isin(current.index)
    return everything, current.reset_index(drop=True), loaded.unreadable


def iou_columns(frame: pd.DataFrame) -> list[str]:
    """The flattened per-class IoU columns that hold at least one value."""
    return [c for c in frame.columns if c.startswith(IOU_PREFIX) and frame[c].notna().any()]
