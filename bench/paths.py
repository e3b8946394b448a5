"""Names from users (model, data set and device names) made safe to use as file and folder names.

Job keys, run folders, lease files and export caches are built from names a plugin or a config
chooses. A name such as ``smp/unet`` would otherwise write one folder deeper (where nothing
looks for it), and one such as ``../..`` outside the results directory. Ordinary names pass
unchanged, so existing job keys stay the same.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

_ORDINARY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name: object) -> str:
    """``name`` itself when it is an ordinary file name (letters, digits, ``._+-``, not starting
    with a dot, at most 100 characters); otherwise its unsafe characters replaced by ``-`` and a
    digest of the original appended, so two different names never share a folder."""
    text = str(name)
    if _ORDINARY.fullmatch(text):
        return text
    cleaned = _UNSAFE_RUN.sub("-", text).strip(".-")[:60] or "name"
    return f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


class PathEscapeError(ValueError):
    """A path built from names would land outside the directory it belongs in."""


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts``, refused unless it stays under ``root`` (a last line of defence: every
    part should already be a ``safe_name``)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise PathEscapeError(f"{'/'.join(parts)!r} would be written outside {base}; "
                              "names used in paths must not contain '/' or '..'")
    return Path(root).joinpath(*parts)
