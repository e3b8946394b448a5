"""Writing a file so it appears whole or not at all, for every file segbench writes.

Rows, checkpoints, training states, ONNX exports and cached peaks are written to a unique
partial file beside the target, flushed to disk, then renamed over it (``os.replace`` is atomic
within a file system). A killed writer leaves the previous file or the new one, never half a
file; any failure (a full disk included) removes the partial file and raises an OSError that
names the file it could not write.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

#: Partial files end with this; readers and globs for finished files never match it.
PARTIAL_SUFFIX = ".partial"
#: Less free space than this when a write failed means the disk filled up.
NEARLY_FULL_BYTES = 1 << 20


def _disk_filled_up(directory: Path) -> bool:
    try:
        return shutil.disk_usage(directory).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(partial_path)`` and move the finished file to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    os.close(fd)
    partial = Path(name)
    try:
        write(partial)
        with open(partial, "rb") as handle:  # durable before it becomes visible under its name
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException as exc:
        # torch.save reports a full disk as a RuntimeError from its zip writer ("unexpected pos"):
        # name the real cause, read off the disk before the partial file frees its space.
        full = not isinstance(exc, OSError) and isinstance(exc, Exception) and _disk_filled_up(path.parent)
        partial.unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, f"could not write {path}: {os.strerror(errno.ENOSPC)} "
                                        f"({type(exc).__name__}: {exc})") from exc
        if isinstance(exc, OSError) and str(path) not in str(exc):
            raise OSError(exc.errno, f"could not write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda partial: partial.write_text(text))
