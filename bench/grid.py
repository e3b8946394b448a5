"""What several layers need to name a job's data and shape (the data sets, the job spec, the
preflight check): the splits, the resolution's syntax, the error a bad value raises. It imports
nothing heavy, so the data layer does not load the job and backend layers for them."""
from __future__ import annotations

import re
from typing import Any

#: The splits a job may read (``eval_split``, ``train.curve_split``).
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """A configuration value that cannot name a job; the message says what is accepted."""


class UnofferedError(ConfigError):
    """Valid values that one backend does not offer together (backend=eager precision=int8).
    Alone it is an error; in a sweep that crosses those axes it is a combination to leave out."""


def parse_resolution(value: Any) -> tuple[int, int]:
    """``"360x480"`` (height x width), ``"256"`` or 256 (square), or (height, width) -> (height, width)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        value = f"{value[0]}x{value[1]}"
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if not match:
        raise ConfigError(f"resolution must look like HEIGHTxWIDTH, e.g. resolution=360x480; got {value!r}")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 1 or width < 1:
        raise ConfigError(f"resolution must be positive, got {value!r}")
    return height, width
