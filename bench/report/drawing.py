"""Draws the report's figures: in parallel, and each PNG only when what it plots has changed.

A figure task builds its figures with their point labels not yet placed
(``bench.report.labels.deferred_labels``); the figure's fingerprint (``fingerprint``: every
artist's data, text, colour, scale and tick, the figure's size) then keys its PNG in the cache, so
a new row that leaves a figure's points, lines and titles as they were reuses its PNG, and only a
changed figure pays for label placement and savefig. Captions come from the build, every time.

The tasks run in a pool of forked processes (``run_tasks``), one task per worker at a time, while
the caller goes on (the report builds its tables meanwhile); where fork is not available, or one
CPU, they run in this process when their results are asked for. A task's exception is raised by
``Pending.result`` as the task raised it.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure

from bench.atomic import atomic_write
from bench.report.labels import deferred_labels, place_pending_labels

#: What a figure build returns: (file name, the figure or None when the rows hold nothing for it,
#: caption), one per figure; and notes for the page.
Built = tuple[list[tuple[str, Figure | None, str]], list[str]]
#: What a task returns to the caller: ([(file name, caption)] drawn, [names not drawn], [notes]).
Drawn = tuple[list[tuple[str, str]], list[str], list[str]]

#: The getters whose values make a figure's fingerprint, where an artist has them (positions and
#: data in data coordinates, so the fingerprint needs no layout).
GETTERS = ("get_xydata", "get_offsets", "get_segments", "get_xy", "get_width", "get_height", "get_array",
           "get_text", "get_position", "get_rotation", "get_horizontalalignment", "get_fontsize",
           "get_color", "get_facecolor", "get_edgecolor", "get_marker", "get_markersize", "get_linestyle",
           "get_linewidth", "get_visible", "get_label", "get_gid", "get_xscale", "get_yscale", "get_xlim",
           "get_ylim", "get_xticks", "get_yticks", "get_zorder")
#: PNGs kept in the cache per figure file name (the newest used).
KEPT_PER_FIGURE = 4


def _as_bytes(value) -> bytes:
    if isinstance(value, np.ndarray) or np.ma.isMaskedArray(value):
        array = np.ma.filled(value, np.nan) if np.ma.isMaskedArray(value) else value
        return repr((array.shape, str(array.dtype))).encode() + np.ascontiguousarray(array).tobytes()
    if isinstance(value, (list, tuple)):
        return b"[" + b",".join(_as_bytes(v) for v in value) + b"]"
    return repr(value).encode()


def fingerprint(figure: Figure) -> str:
    """A hash of what ``figure`` shows: each artist's type and the ``GETTERS`` values it has, and
    each axis' fixed tick labels. Equal figures (the same points, lines, texts, colours, scales,
    limits and ticks) give equal fingerprints; it is computed before the labels are placed."""
    digest = hashlib.sha1(_as_bytes(figure.get_size_inches()))
    for artist in figure.findobj():
        digest.update(type(artist).__name__.encode())
        for name in GETTERS:
            getter = getattr(artist, name, None)
            if getter is None:
                continue
            try:
                value = getter()
            except (TypeError, ValueError, AttributeError, RuntimeError):
                value = "?"  # a getter that needs arguments or a renderer: the same for equal figures
            digest.update(name.encode() + _as_bytes(value))
        formatter = getattr(artist, "get_major_formatter", None)
        if formatter is not None:
            digest.update(_as_bytes(getattr(formatter(), "seq", type(formatter()).__name__)))
    return digest.hexdigest()


def save_figures(build: Callable[[], Built], out_dir: Path, png_cache: Path, salt: bytes, save: dict) -> Drawn:
    """Runs ``build`` (labels deferred) and writes each figure into ``out_dir``: from ``png_cache``
    when a figure of the same fingerprint (and ``salt``: the drawing code and versions) was drawn
    before, else with its labels placed and saved (``save``: savefig's options) there first."""
    with deferred_labels():
        figures, notes = build()
    drawn, missing = [], []
    for name, figure, caption in figures:
        if figure is None:
            missing.append(name)
            continue
        key = hashlib.sha1(salt + fingerprint(figure).encode()).hexdigest()[:16]
        cached = png_cache / f"{Path(name).stem}_{key}.png"
        if cached.exists():
            os.utime(cached)  # the newest used are kept
        else:
            place_pending_labels(figure)
            atomic_write(cached, lambda partial, figure=figure: figure.savefig(partial, format="png", **save))
            _prune(png_cache, Path(name).stem)
        shutil.copyfile(cached, out_dir / name)
        drawn.append((name, caption))
    return drawn, missing, notes


def _prune(png_cache: Path, stem: str) -> None:
    pattern = f"{stem}_" + "?" * 16 + ".png"
    for old in sorted(png_cache.glob(pattern), key=lambda p: p.stat().st_mtime)[:-KEPT_PER_FIGURE]:
        old.unlink(missing_ok=True)


#: The tasks of the running pool, inherited by its forked workers (never pickled).
_TASKS: list[Callable[[], object]] = []


def _run(index: int):
    return _TASKS[index]()


def workers_for(tasks: list) -> int:
    """Processes to run ``tasks`` in: one per task up to the CPUs; 0 (this process) without fork."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 0
    workers = min(len(tasks), os.cpu_count() or 1)
    return workers if workers > 1 else 0


class Pending:
    """Tasks under way; ``result`` waits for them and returns their results in task order."""

    def __init__(self, tasks: list[Callable[[], object]], workers: int):
        self._tasks, self._pool, self._futures = tasks, None, []
        if workers:
            global _TASKS
            _TASKS = tasks
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
            self._futures: list[Future] = [self._pool.submit(_run, i) for i in range(len(tasks))]

    def result(self) -> list:
        if self._pool is None:
            return [task() for task in self._tasks]
        try:
            return [future.result() for future in self._futures]
        finally:
            self._pool.shutdown(cancel_futures=True)


def run_tasks(tasks: list[Callable[[], object]], workers: int | None = None) -> Pending:
    """Starts ``tasks`` (the longest first, for the pool to finish early) in ``workers`` forked
    processes (``workers_for`` by default; 0: in this process, when ``result`` is called)."""
    return Pending(tasks, workers_for(tasks) if workers is None else workers)
