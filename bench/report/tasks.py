"""Tasks run in a pool of forked processes while the caller goes on: the report reads its row
files, draws its figures and writes its tidy files so, beside the tables it builds itself.

One task per worker at a time; the tasks are inherited by the forked workers, never pickled (only
their results are). Where fork is not available, or on one CPU, they run in this process when
their results are asked for. A task's exception is raised by ``Pending.result`` as the task
raised it. Tasks must not use torch: a process forked after torch started its threads can hang
in its first parallel operation (the report imports no torch: ``bench.report.sample`` draws
NumPy scenes).
"""
from __future__ import annotations

import gc
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Callable

#: The tasks of the pool started last, which its workers inherit (never pickled): a fork pool forks
#: every worker at its first submission, so pools started later leave them their own tasks.
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
            # Frozen, this process's objects are left out of the workers' garbage collections,
            # which would otherwise write to (and so copy) every inherited page holding one: a
            # first report at 10,000 rows took 4% less time (4.36 against 4.52 s). Unfrozen once the
            # workers are forked.
            gc.freeze()
            try:
                self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
                self._futures: list[Future] = [self._pool.submit(_run, i) for i in range(len(tasks))]
            finally:
                gc.unfreeze()

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
