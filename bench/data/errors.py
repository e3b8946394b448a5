"""Errors raised while locating and reading data sets, with messages that say how to fix them."""
from __future__ import annotations

from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A data set's root, split file or listed file is missing.

    The message names the root looked at, the config key and environment variable that set it,
    the expected layout and where the data set can be obtained.
    """


class CorruptImageError(OSError):
    """An image or mask file exists but cannot be decoded (truncated download, wrong format)."""


def dataset_not_found(title: str, root: Path | None, problem: str | None = None, *,
                      env_var: str | None, layout: str, source: str) -> DatasetNotFoundError:
    """Build the error for a missing data set: ``problem`` says what is missing under ``root``
    (unused when no root is configured), ``layout`` is a short tree, ``source`` where to get it."""
    where = ("no root is configured (dataset.root is null)" if root is None
             else f"{problem} (looked in root {str(root)!r})")
    how = "set `dataset.root=/path/to/data`"
    if env_var:
        how += f" or the {env_var} environment variable"
    tree = "\n".join("    " + line for line in layout.strip("\n").splitlines())
    return DatasetNotFoundError(
        f"{title} not found: {where}.\n"
        f"  To fix: {how}.\n"
        f"  Expected layout under the root:\n{tree}\n"
        f"  Obtain it from: {source}")


class BadDataFilesError(ValueError):
    """Image/mask files of a data set that cannot be used (empty, truncated, missing, a mask whose
    size or labels are wrong), all reported at once by ``bench.data.check`` before any training."""
