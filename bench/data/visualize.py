"""Figures for the report: coloured masks and (image, mask) samples of any data set.

``colorize`` needs NumPy alone (the report colours the synthetic scenes' masks without torch);
``sample_grid`` builds a data set, so it imports torch when called.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def colorize(mask, palette: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """uint8 H x W x 3 colours of an H x W label mask (an array or a CPU tensor); labels outside the
    palette (ignore) are black."""
    mask = np.asarray(mask)
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    known = (mask >= 0) & (mask < len(colours))
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    out[known] = colours[mask[known]]
    return out


def sample_grid(cfg: Mapping[str, Any], n: int = 4, resolution=(128, 128),
                split: str = "val") -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``n`` (image, coloured mask) pairs of ``split``, both uint8 H x W x 3, eval transforms."""
    from bench.data.registry import build_dataset, dataset_info  # noqa: PLC0415  (imports torch)
    from bench.data.transforms import denormalize  # noqa: PLC0415
    palette = dataset_info(cfg).palette
    dataset = build_dataset(cfg, split=split, resolution=resolution, train=False)
    samples = []
    for index in range(min(n, len(dataset))):
        image, mask = dataset[index]
        samples.append((denormalize(image).permute(1, 2, 0).numpy(), colorize(mask, palette)))
    return samples
