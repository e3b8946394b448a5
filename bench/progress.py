"""Proof that a job is getting on, for its lease (bench/lease.py).

The job's own loops (training steps, evaluation batches, timed calls) call ``tick()``. A lease's
heartbeat refreshes the claim only while ticks keep coming, so a job stuck in a call that never
returns stops refreshing it: after ``lease.stale_after_seconds`` another worker takes the job over.
A live heartbeat thread alone proves nothing: it keeps running while the main thread hangs.

An isolated job (``isolate=true``) ticks in its own process: it touches the file named by
``SEGBENCH_PROGRESS_FILE`` (at most once a second), and the parent that holds the lease follows it.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PROGRESS_FILE_ENV = "SEGBENCH_PROGRESS_FILE"

_last_tick = time.monotonic()
_last_touch = 0.0
_followed: Path | None = None


def tick() -> None:
    """The job made progress just now."""
    global _last_tick, _last_touch
    _last_tick = time.monotonic()
    shared = os.environ.get(PROGRESS_FILE_ENV)
    if shared and _last_tick - _last_touch >= 1.0:
        try:
            os.utime(shared)
            _last_touch = _last_tick
        except OSError:
            pass  # the parent went away; nothing listens


def seconds_since_tick() -> float:
    """Since this process's last tick, or the followed child's, whichever is later."""
    silent = time.monotonic() - _last_tick
    if _followed is not None:
        try:
            silent = min(silent, time.time() - _followed.stat().st_mtime)
        except OSError:
            pass
    return silent


@contextmanager
def child_ticks(path: Path) -> Iterator[dict[str, str]]:
    """Count a child process's ticks as ours while it runs; yields the environment to give it."""
    global _followed
    path.touch()
    _followed = path
    try:
        yield {PROGRESS_FILE_ENV: str(path)}
    finally:
        _followed = None
