"""The report's picture of the synthetic data set: images and masks as the rows configured it.

Drawn from ``bench.data.scenes`` (NumPy: no torch to import), once per data-set config and
resolution, into ``results/cache/dataset_sample_<key>.png`` (the key covers the code that draws
it), and copied from there; the report draws it beside its other figures.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.atomic import atomic_write
from bench.data.camvid import CLASS_NAMES, PALETTE
from bench.data.scenes import render_scene, scene_seed, scenes_in
from bench.data.visualize import colorize

SAMPLE_NAME = "dataset_sample.png"
CAPTION = "Samples of the synthetic data set."
Source = tuple[dict, tuple[int, int]]   # (data-set config, (height, width))


def sample_source(current: pd.DataFrame) -> Source | None:
    """The data-set config and resolution of the first job (in job-key order) of the current rows
    that used the synthetic data set."""
    synthetic = current[(current["dataset"] == "synthetic") & current["height"].notna() & current["width"].notna()]
    for config, height, width in (synthetic[["job_key", "config", "height", "width"]].sort_values("job_key")
                                  [["config", "height", "width"]].itertuples(index=False)):
        dataset = json.loads(config or "{}").get("dataset") or {}
        if dataset.get("name") == "synthetic":
            return dataset, (int(height), int(width))
    return None


def cached_path(source: Source, cache_dir: Path) -> Path:
    """Where the sample of ``source`` is kept; the name covers the code that draws it."""
    data = Path(__file__).resolve().parent.parent / "data"
    code = b"".join(p.read_bytes() for p in (data / "scenes.py", data / "visualize.py", Path(__file__)))
    key = hashlib.sha1(json.dumps(source, sort_keys=True).encode() + code).hexdigest()[:12]
    return cache_dir / f"dataset_sample_{key}.png"


def sample_figure(source: Source, n: int = 4) -> Figure:
    """Image/mask pairs of the synthetic data set as ``source`` configures it, with a class key."""
    cfg, resolution = source
    indices = range(min(n, scenes_in(cfg, "val")))
    scenes = [render_scene(scene_seed(cfg), "val", index, resolution) for index in indices]
    samples = [(image.transpose(1, 2, 0), colorize(label, PALETTE)) for image, label in scenes]
    figure = Figure(figsize=(2.8 * len(samples), 5.2), layout="constrained")
    axes = figure.subplots(2, len(samples), squeeze=False)
    for column, (image, mask) in zip(axes.T, samples):
        column[0].imshow(image)
        column[1].imshow(mask)
    for ax in axes.flat:
        ax.set_axis_off()
    key = [Patch(color=np.asarray(rgb) / 255, label=name) for rgb, name in zip(PALETTE, CLASS_NAMES)]
    key.append(Patch(color="black", label="ignored (void)"))  # colorize draws ignored labels black
    figure.legend(handles=key, loc="outside lower center", ncols=6, fontsize="small")
    figure.suptitle(f"Synthetic data set ({resolution[0]}x{resolution[1]}): images (top), masks (bottom)")
    return figure


def draw_sample(source: Source, cached: Path, save: dict) -> str:
    """Draws the sample into ``cached``; '' or why it could not (an optional figure must not stop
    the report)."""
    try:
        figure = sample_figure(source)
    except Exception as exc:  # noqa: BLE001
        return f"bench.data could not draw samples: {type(exc).__name__}: {exc}"
    atomic_write(cached, lambda partial: figure.savefig(partial, format="png", **save))
    return ""


def write_sample(current: pd.DataFrame, cache_dir: Path, out_dir: Path, save: dict) -> tuple[Path | None, str]:
    """The sample of ``current``'s synthetic data set in ``out_dir`` (drawn into the cache first if
    it is not there): (its path, '') or (None, why not)."""
    source = sample_source(current)
    if source is None:
        return None, "no row records a synthetic data-set config"
    cached = cached_path(source, cache_dir)
    if not cached.exists():
        why_not = draw_sample(source, cached, save)
        if why_not:
            return None, why_not
    shutil.copyfile(cached, out_dir / SAMPLE_NAME)
    return out_dir / SAMPLE_NAME, ""
