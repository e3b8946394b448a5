"""Claiming a job before running it, so any number of workers over one grid run each job once.

A claim is a lease file, ``<results>/leases/<job_key>.lease``, created exclusively
(``O_CREAT | O_EXCL``: of all the processes that try, on any hosts sharing the directory, one
succeeds). It names its owner (host, pid, start time), and the owner refreshes the file's
modification time every ``heartbeat_seconds`` while the job makes progress (bench/progress.py:
its loops tick; a hung job stops refreshing its claim). A lease is stale, and the next worker
takes it over, when its owner is a process of this host that no longer exists, or when its
heartbeat is older than ``stale_after_seconds`` (an owner that died or hung, on any host). An
owner that wakes after losing its claim sees ``Lease.held()`` false and must not store an ok row.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.paths import inside
from bench.progress import seconds_since_tick, tick

LEASES_DIR = "leases"


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started_at: str
    token: str  # tells this claim from a later one by the same process

    @classmethod
    def me(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(),
                   datetime.now(timezone.utc).isoformat(timespec="seconds"), uuid.uuid4().hex)

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started_at}"


def _read_owner(path: Path) -> Owner | None:
    """The lease's owner, or None if the file is gone or not (yet) a whole lease."""
    try:
        return Owner(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def holds(path: Path, token: str) -> bool:
    """Whether the lease at ``path`` is still the claim with ``token`` (for an isolated job's
    process, which checks its parent's claim before storing a row)."""
    holder = _read_owner(path)
    return holder is not None and holder.token == token


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def is_stale(path: Path, owner: Owner | None, stale_after_seconds: float) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: nothing to take over
    if owner is None:  # unreadable: a writer killed between creating and filling it, or corrupt
        return age > stale_after_seconds
    if owner.host == socket.gethostname() and not _process_exists(owner.pid):
        return True
    return age > stale_after_seconds


class Lease:
    """A held claim; a daemon thread refreshes it while the job ticks, until released."""

    def __init__(self, path: Path, owner: Owner, heartbeat_seconds: float, silent_after_seconds: float):
        self.path, self.owner = path, owner
        self.silent_after_seconds = silent_after_seconds
        self._stop = threading.Event()
        tick()  # claiming is progress: the job's own loops tick from here on
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_seconds,), daemon=True)
        self._beat.start()

    def held(self) -> bool:
        """Whether the file is still this claim (not taken over by another worker meanwhile)."""
        return holds(self.path, self.owner.token)

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            if seconds_since_tick() > self.silent_after_seconds:
                continue  # the job looks hung: let the claim go stale so another worker can take over
            if not self.held():
                return  # taken over, or the directory went away: never refresh another's claim
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Stop the heartbeat and remove the file, if it is still this claim's."""
        self._stop.set()
        if self.held():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def other_workers_here(results_dir: str | Path) -> int:
    """How many other live processes on this host hold a claim in ``results_dir`` now: workers
    that compete with this one for the CPUs (this process and its parent, which may hold the
    claim of the job this process runs isolated, are not counted)."""
    host, mine = socket.gethostname(), {os.getpid(), os.getppid()}
    owners = (_read_owner(path) for path in (Path(results_dir) / LEASES_DIR).glob("*.lease"))
    return len({owner.pid for owner in owners if owner is not None and owner.host == host
                and owner.pid not in mine and _process_exists(owner.pid)})


def _create(path: Path, owner: Owner) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(owner), handle)
    return True


def _take_over(path: Path, stale: Owner | None) -> None:
    """Move a stale lease aside so a new claim can be created; only one worker's move succeeds."""
    aside = path.with_name(f"{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another worker moved it first
    moved = _read_owner(aside)
    if stale is not None and (moved is None or moved.token != stale.token):
        # Between our look and our move the lease was renewed by a new owner: give it back.
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def claim(results_dir: str | Path, job_key: str, stale_after_seconds: float,
          heartbeat_seconds: float) -> Lease | Owner:
    """Claim ``job_key``: a held ``Lease``, or the ``Owner`` of the live claim that holds it.

    The lease's heartbeat stops refreshing it once the job has not ticked for
    ``stale_after_seconds`` (bench/progress.py), so a hung job's claim goes stale too."""
    path = inside(Path(results_dir) / LEASES_DIR, f"{job_key}.lease")
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Owner.me()
    for _ in range(3):  # a stale lease is moved aside once; losing a race to a new claim ends it
        if _create(path, me):
            return Lease(path, me, heartbeat_seconds, stale_after_seconds)
        holder = _read_owner(path)
        if not path.exists():
            continue  # released between our two looks: claim it now
        if not is_stale(path, holder, stale_after_seconds):
            return holder or Owner("unknown", -1, "", "")
        _take_over(path, holder)
    return _read_owner(path) or Owner("unknown", -1, "", "")
