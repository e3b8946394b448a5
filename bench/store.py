"""Rows on disk: one JSON file per execution, written atomically, never overwritten.

Layout under the results directory::

    rows/<job_key>/<finished_at>_<run_id>.json    one file per execution of a grid point
    rows/<job_key>/<finished_at>_<run_id>.traceback.txt   beside a failed one

One file per row means many processes (joblib, SLURM array jobs on many hosts) can write into
one shared directory without locks: names never clash, and ``os.replace`` makes each file
appear whole or not at all, so a job killed mid-write leaves at worst a stray ``.partial`` file,
which readers ignore.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.atomic import atomic_write_text
from bench.paths import inside
from bench.schema import ResultRow, RowFormatError

log = logging.getLogger(__name__)

ROWS_DIR = "rows"

#: What to do about the usual reasons a results directory cannot be written.
_ELSEWHERE = "point results_dir (or SEGBENCH_RESULTS) at "
_OS_ERROR_ADVICE = {
    errno.ENOSPC: f"free some space, or {_ELSEWHERE}another disk",
    errno.EDQUOT: f"free some space, or {_ELSEWHERE}another disk",
    errno.EROFS: f"{_ELSEWHERE}a writable directory",
    errno.EACCES: f"{_ELSEWHERE}a directory you can write",
    errno.EPERM: f"{_ELSEWHERE}a directory you can write",
}


class ResultsNotWritableError(RuntimeError):
    """The results directory cannot take a row; raised before any job runs."""


def describe_os_error(exc: OSError) -> str:
    """One line: what failed (the error names the file), then what to do for the usual causes."""
    advice = _OS_ERROR_ADVICE.get(exc.errno)
    return f"{exc}; {advice}" if advice else str(exc)


@dataclass
class LoadedRows:
    rows: list[ResultRow]   # empty where the reader keeps them as a frame (the report's read_new_rows)
    files: list[Path] = field(default_factory=list)       # the file of each row (of each read: the report)
    unreadable: list[Path] = field(default_factory=list)  # incomplete, corrupt or odd files, skipped
    problems: dict[Path, str] = field(default_factory=dict)  # why each unreadable file was skipped

    def warning_lines(self) -> list[str]:
        """One ``warning:`` line per skipped file, for the console (the report and a job's resume
        check print the same): a skipped file is easy to miss, and it may hold a job's only row."""
        return [f"warning: skipped unreadable row file {path} ({self.problems[path]}); a job killed "
                "mid-write leaves none, so it was damaged or edited: fix or delete it" for path in self.unreadable]


def _strict_json(value):
    """NaN and infinities become null (e.g. the IoU of a class absent from a split), so every
    row file is standard JSON that any reader accepts."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(item) for item in value]
    return value


class ResultStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.rows_dir = self.root / ROWS_DIR
        self._warned: set[str] = set()  # warning lines has_ok_row printed already

    def row_path(self, row: ResultRow) -> Path:
        stamp = row.finished_at.replace(":", "").replace("-", "")
        return inside(self.rows_dir, row.job_key, f"{stamp}_{row.run_id}.json")

    def write(self, row: ResultRow, traceback_text: str = "") -> Path:
        """Store ``row`` (and its traceback, if any) and return the row's path."""
        path = self.row_path(row)
        if traceback_text:
            tb_path = path.with_suffix(".traceback.txt")
            try:
                atomic_write_text(tb_path, traceback_text)
                row.traceback_file = str(tb_path)
            except OSError as exc:  # the row, with the job's own error, matters more: write it anyway
                row.error += f" (its traceback was not saved: {describe_os_error(exc)})"
        atomic_write_text(path, json.dumps(_strict_json(row.to_dict()), indent=1, sort_keys=True,
                                             default=str, allow_nan=False))
        return path

    def check_writable(self) -> None:
        """Raise ResultsNotWritableError (one clear line) unless a row file can be written here."""
        probe = self.rows_dir / f".write_check_{uuid.uuid4().hex}"
        try:
            atomic_write_text(probe, "segbench checks that rows can be written here\n")
            probe.unlink()
        except OSError as exc:
            raise ResultsNotWritableError(f"cannot write results under {self.root.resolve()}: "
                                          f"{describe_os_error(exc)}") from exc

    def read(self, path: Path) -> ResultRow:
        # The report reads thousands of these; orjson's errors are json.JSONDecodeErrors too.
        return ResultRow.from_json(Path(path).read_bytes())

    def row_names(self, job_key: str | None = None) -> list[str]:
        """The row files (of one job, if given) as ``<job_key>/<file>`` under ``rows_dir``, in name
        order: plain strings, as the report lists 10,000 of them on every run."""
        if job_key is not None:
            jobs = [job_key] if (self.rows_dir / job_key).is_dir() else []
        else:
            jobs = ([entry.name for entry in os.scandir(self.rows_dir) if entry.is_dir() and not entry.name.startswith(".")]
                    if self.rows_dir.is_dir() else [])
        return sorted(f"{job}/{entry.name}" for job in jobs for entry in os.scandir(self.rows_dir / job)
                      if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file())

    def row_files(self, job_key: str | None = None) -> list[Path]:
        """The row files (of one job, if given), in name order."""
        return [self.rows_dir / name for name in self.row_names(job_key)]

    def read_files(self, paths: list[Path]) -> LoadedRows:
        """The rows in ``paths``, oldest first; unreadable files are listed with the reason."""
        read: list[tuple[ResultRow, Path]] = []
        loaded = LoadedRows(rows=[])
        for path in paths:
            try:
                read.append((self.read(path), path))
            except (json.JSONDecodeError, RowFormatError, UnicodeDecodeError, OSError) as exc:
                loaded.unreadable.append(path)
                loaded.problems[path] = f"{type(exc).__name__}: {exc}"
        read.sort(key=lambda pair: pair[0].finished_at)
        loaded.rows, loaded.files = [row for row, _ in read], [path for _, path in read]
        return loaded

    def load(self, job_key: str | None = None) -> LoadedRows:
        """Every stored row (of one job, if given), oldest first; unreadable files are listed."""
        return self.read_files(self.row_files(job_key))

    def has_ok_row(self, job_key: str) -> bool:
        """The resume check. A skipped row file of the job is warned about on stderr, once per store
        (a job looks twice: before and after claiming it), since the job runs again if it held the ok row."""
        loaded = self.load(job_key)
        for line in loaded.warning_lines():
            if line not in self._warned:
                log.warning(line)
                self._warned.add(line)
        return any(row.status == "ok" for row in loaded.rows)
