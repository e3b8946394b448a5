"""The stored rows as pandas DataFrames, with the derived columns every table and plot uses.

Everything reads results through ``ResultStore``; nothing here measures or invents a value.
``current`` holds the newest row per ``job_key`` (what the report shows); older rows of the same
job are history (forced re-runs).

Reading thousands of JSON files takes seconds, so the frame is also kept consolidated in one
Parquet file (``results/cache/rows-<schema>.parquet``). It is never stale: row files are written
once under unique names and never changed, so the table is extended with the files it has not
seen and loses those that were deleted; the JSON files stay the store (the write path).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.atomic import atomic_write
from bench.report.repeats import training_budget
from bench.report.tasks import run_tasks
from bench.schema import SCHEMA_VERSION, columns
from bench.store import LoadedRows, ResultStore

#: Rows store mIoU and per-class IoU as fractions (0-1); the papers print percentages.
PERCENT = 100.0
#: Nested columns stored as JSON text, so frames group, compare and serialise as plain values.
JSON_COLUMNS = ("config", "model_kwargs", "learning_curve", "backend_provider_options", "latency_times_ms",
                "train_latency_times_ms", "throughput_search", "instrument_errors", "growth_receptive_fields",
                "growth_params")
IOU_PREFIX = "iou."
#: Plug-in instruments' columns (``ResultRow.extra``) in the frame: ``plugin.<column>``.
PLUGIN_PREFIX = "plugin."


def _json_text(value) -> str:
    """Compact, keys sorted (so equal values give equal text); orjson: 70,000 of these at 10,000 rows."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str).decode() if value else ""


def json_value(text: str, empty):
    """A JSON_COLUMNS cell read back (``_json_text``'s inverse): ``empty`` for an empty cell."""
    return json.loads(text) if text else empty


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
    extra = frame.pop("extra")   # plug-in instruments' columns, each a column of its own
    plugins = (pd.DataFrame.from_records([d if isinstance(d, dict) else {} for d in extra], index=frame.index)
               .add_prefix(PLUGIN_PREFIX) if any(extra) else None)
    height = frame["height"].astype("Int64")
    width = frame["width"].astype("Int64")
    derived = pd.DataFrame({
        "resolution": height.astype(str) + "x" + width.astype(str),
        "pixels": (height * width).astype(float),
        "gflops_per_image": frame["flops_per_image"].astype(float) / 1e9,
        "params_m": frame["params_total"].astype(float) / 1e6,
        "miou_pct": frame["miou"].astype(float) * PERCENT,
        "train_budget": [training_budget(row.config) for row in rows],
    }, index=frame.index)
    derived.loc[height.isna() | width.isna(), "resolution"] = ""
    return pd.concat([frame, derived, iou, plugins], axis=1)


def newest_per_job(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest row of each ``job_key`` (by ``finished_at``, then ``run_id`` for ties)."""
    ordered = frame[["finished_at", "run_id", "job_key"]].sort_values(["finished_at", "run_id"], kind="stable")
    return frame.loc[ordered.drop_duplicates("job_key", keep="last").index.sort_values()]


#: Bump when ``rows_to_frame`` derives its columns differently, or row files are read more strictly
#: (2: ``ResultRow.from_dict`` checks every field's type; 3: nested columns as compact JSON text):
#: the consolidated table is rebuilt.
FRAME_VERSION = 3
ROW_FILE = "row_file"  # the consolidated table's column naming each row's file (relative to rows/)


def consolidated_path(results_dir: str | Path) -> Path:
    """The Parquet table of every readable row, named for the row schema it was built with."""
    schema = json.dumps([SCHEMA_VERSION, FRAME_VERSION, columns()])
    return Path(results_dir) / "cache" / f"rows-{hashlib.sha1(schema.encode()).hexdigest()[:10]}.parquet"


#: New row files per forked reader, at the least: fewer are read sooner in this process than a
#: reader forks and hands its frame back.
FILES_PER_READER = 2000


def _read_as_frame(store: ResultStore, paths: list[Path]) -> tuple[pd.DataFrame | None, LoadedRows]:
    """``paths``' rows as a frame with ``ROW_FILE`` (None when no file held a row), and what was
    read: the files, and the unreadable ones with why (not the rows: they are in the frame)."""
    loaded = store.read_files(paths)
    read = dataclasses.replace(loaded, rows=[])
    if not loaded.rows:
        return None, read
    frame = rows_to_frame(loaded.rows)
    frame[ROW_FILE] = [f"{path.parent.name}/{path.name}" for path in loaded.files]
    return frame, read


def read_new_rows(store: ResultStore, paths: list[Path]) -> tuple[pd.DataFrame | None, LoadedRows]:
    """``_read_as_frame`` of ``paths``, in as many forked processes as there are CPUs where the
    files are many (JSON parsing and checking is most of a first report's reading)."""
    readers = max(1, min(len(paths) // FILES_PER_READER, os.cpu_count() or 1))
    shares = [paths[i * len(paths) // readers:(i + 1) * len(paths) // readers] for i in range(readers)]
    read = run_tasks([functools.partial(_read_as_frame, store, share) for share in shares]).result()
    frames = [frame for frame, _ in read if frame is not None]
    loaded = LoadedRows(rows=[], files=[f for _, part in read for f in part.files],
                        unreadable=[f for _, part in read for f in part.unreadable],
                        problems={f: why for _, part in read for f, why in part.problems.items()})
    return (pd.concat(frames, ignore_index=True) if frames else None), loaded


def consolidated_rows(results_dir: str | Path) -> tuple[pd.DataFrame, LoadedRows]:
    """Every row as a frame (oldest first), read through the consolidated table; and what was
    read from JSON this time: the files new to the table (``files``; their rows are in the frame,
    not in ``rows``) and the unreadable ones."""
    store = ResultStore(results_dir)
    names = store.row_names()
    table = consolidated_path(results_dir)
    cached = pd.read_parquet(table) if table.exists() else rows_to_frame([]).assign(**{ROW_FILE: ""})
    # A deleted row file leaves the table too. (A set, not pandas' isin: a quarter of its time on Arrow strings.)
    on_disk = set(names)
    kept = np.fromiter((name in on_disk for name in cached[ROW_FILE]), bool, len(cached))
    deleted = int((~kept).sum())
    if deleted:
        cached = cached[kept]
    seen = set(cached[ROW_FILE])
    fresh, new = read_new_rows(store, [store.rows_dir / name for name in names if name not in seen])
    if fresh is not None:
        cached = fresh if cached.empty else pd.concat([cached, fresh], ignore_index=True)
    # New rows are mostly the newest: sort (a copy of every column) only when they are not.
    frame = (cached if cached["finished_at"].is_monotonic_increasing
             else cached.sort_values("finished_at", kind="stable")).reset_index(drop=True)
    if new.files or deleted or not table.exists():
        # The frame is taken back from the Arrow table written, as reading the file back would
        # give it (ten times faster): new rows' column types differ from Parquet's, and the figures
        # are cached by the frame's hash, so the next report on the same rows must see the same frame.
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        atomic_write(table, lambda partial: pq.write_table(arrow, partial))
        frame = arrow.to_pandas()
    return frame, new


def load_frame(results_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, LoadedRows]:
    """(every row, the newest row per job, what was read from JSON this time) of ``results_dir``;
    the last names the unreadable row files and why.

    The first frame carries ``is_current``: True for the rows the second frame holds.
    """
    everything, loaded = consolidated_rows(results_dir)
    current = newest_per_job(everything)
    everything["is_current"] = everything.index.isin(current.index)
    return everything, with_object_strings(current).reset_index(drop=True), loaded


def with_object_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its string columns as Python objects. The tables and figures filter the
    current rows hundreds of times, and a filter copies every Arrow-backed string column (pandas'
    default): five times slower at 10,000 rows than copying object pointers. Values compare,
    group and print alike either way. (``astype`` leaves a block per column: the copy joins them.)"""
    strings = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)]
    return frame.astype(dict.fromkeys(strings, object)).copy() if strings else frame


def plugin_columns(frame: pd.DataFrame) -> list[str]:
    """The plug-in instruments' columns (``PLUGIN_PREFIX``) that hold at least one value."""
    return [c for c in frame.columns if c.startswith(PLUGIN_PREFIX) and frame[c].notna().any()]


def iou_columns(frame: pd.DataFrame) -> list[str]:
    """The flattened per-class IoU columns that hold at least one value."""
    return [c for c in frame.columns if c.startswith(IOU_PREFIX) and frame[c].notna().any()]
