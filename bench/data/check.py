"""Checking every file of the splits a job will read, before any training.

Reading only a split's first sample let a truncated image, an empty file or a mask with labels
out of range fail a job mid-training, one file per attempt, or only after the whole training
budget when the file is in the test split. ``check_split_files`` decodes every image/mask pair
of a file-backed data set and reports all bad pairs in one error.

Pairs found good are remembered in ``<cache_dir>/data_check.json`` by path, size and
modification time (per label space: a mask good for 11 classes may not be for 2), so an
unchanged data set is re-checked by ``stat`` alone. Bad pairs are never remembered; a cache
that cannot be read or written only costs a full check. Workers sharing a cache may overwrite
each other's additions, which again only costs a re-check.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

from bench.atomic import atomic_write_text
from bench.data.errors import BadDataFilesError
from bench.data.files import FilePairDataset
from bench.data.registry import build_dataset

CACHE_NAME = "data_check.json"
CACHE_VERSION = 1
# What FilePairDataset.load raises for a bad pair: a missing, unreadable or undecodable file
# (OSError), a colour mask, a mask/image size mismatch or labels out of range (ValueError).
_BAD_PAIR_ERRORS = (OSError, ValueError)

Stamp = list[int]  # [image size, image mtime_ns, mask size, mask mtime_ns]


def _label_space(dataset: FilePairDataset) -> str:
    """The cache section of ``dataset``'s label space: labels are valid only within one."""
    label_map = (None if dataset.label_map is None
                 else hashlib.sha1(dataset.label_map.tobytes()).hexdigest())
    return f"classes={dataset.num_classes} ignore={dataset.ignore_index} label_map={label_map}"


def _stamp(image: Path, mask: Path) -> Stamp | None:
    """Size and mtime of both files, or None when one cannot be stat'ed (decoding will say why)."""
    try:
        stats = [os.stat(image), os.stat(mask)]
    except OSError:
        return None
    return [value for st in stats for value in (st.st_size, st.st_mtime_ns)]


def _problem(split: str, dataset: FilePairDataset, index: int) -> str | None:
    """Why pair ``index`` cannot be used (its load error names the file), or None when it can."""
    try:
        dataset.load(index)
    except _BAD_PAIR_ERRORS as err:
        return f"{split}: {err}"
    return None


def _read_cache(path: Path | None) -> dict[str, dict[str, Stamp]]:
    """Good pairs by label space, then by "image\\nmask" absolute paths; empty when unreadable."""
    try:
        cache = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return cache.get("good", {}) if isinstance(cache, dict) and cache.get("version") == CACHE_VERSION else {}


def _write_cache(path: Path, good: dict[str, dict[str, Stamp]]) -> None:
    try:
        atomic_write_text(path, json.dumps({"version": CACHE_VERSION, "good": good}))
    except OSError:
        pass  # a read-only results disk costs a full check next time, not the job


def _file_pairs(dataset_cfg: Mapping[str, Any], splits: set[str], resolution
                ) -> dict[tuple[Path, Path], tuple[str, FilePairDataset, int]]:
    """Each pair of the file-backed ``splits`` once (VOC's test split is its val split), with the
    split, data set and index that read it. A generated split just has its first sample read,
    as a smoke test of the generator: decoding it all would mean rendering it all."""
    pairs: dict[tuple[Path, Path], tuple[str, FilePairDataset, int]] = {}
    for split in sorted(splits):
        dataset = build_dataset(dataset_cfg, split, resolution, train=False)
        if not isinstance(dataset, FilePairDataset):
            if len(dataset):
                dataset[0]
            continue
        for index, pair in enumerate(dataset.pairs):
            pairs.setdefault(pair, (split, dataset, index))
    return pairs


def _problems(checks: list[tuple[str, FilePairDataset, int]]) -> list[str | None]:
    """``_problem`` of each check, in order, decoded on several threads (PIL releases the GIL).
    Ctrl-C cancels the checks not yet started instead of waiting for all of them."""
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        return list(pool.map(lambda check: _problem(*check), checks))
    finally:
        pool.shutdown(cancel_futures=True)


def check_split_files(dataset_cfg: Mapping[str, Any], splits: set[str], resolution,
                      cache_dir: str | Path | None = None) -> None:
    """Check every image/mask pair of ``splits``: decodes, sizes match, labels in range.

    Raises one :class:`BadDataFilesError` naming every bad pair with its reason; a data set
    that is missing or lists missing files fails earlier, when it is built
    (``DatasetNotFoundError``). ``cache_dir`` (callers pass ``<results_dir>/cache``) keeps the
    pairs found good, so that unchanged files are not decoded again; None checks every file.
    """
    cache_file = Path(cache_dir) / CACHE_NAME if cache_dir is not None else None
    good = _read_cache(cache_file)
    checks, records = [], []
    for (image, mask), (split, dataset, index) in _file_pairs(dataset_cfg, splits, resolution).items():
        section = good.setdefault(_label_space(dataset), {})
        key, stamp = f"{os.path.abspath(image)}\n{os.path.abspath(mask)}", _stamp(image, mask)
        if stamp is None or section.get(key) != stamp:
            checks.append((split, dataset, index))
            records.append((section, key, stamp))
    if not checks:
        return

    problems = _problems(checks)
    for (section, key, stamp), problem in zip(records, problems):
        if problem is None and stamp is not None:
            section[key] = stamp
        else:
            section.pop(key, None)
    if cache_file is not None:
        _write_cache(cache_file, good)

    problems = [problem for problem in problems if problem is not None]
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise BadDataFilesError(
            f"{len(problems)} image/mask pair(s) of dataset {dataset_cfg.get('name')!r} cannot be used "
            f"(every file of the {', '.join(sorted(splits))} split(s) was checked before training):\n"
            f"{listed}\n"
            "  To fix: repair or replace each file named, or delete it together with its image or "
            "mask partner; then run again.")
