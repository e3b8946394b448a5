"""The synthetic street scenes (``bench.data.scenes``) as a torch Dataset: the offline default data set."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.camvid import CLASS_NAMES, PALETTE, VOID
from bench.data.info import DatasetInfo, DatasetSpec, check_fixed
from bench.data.scenes import SPLIT_IDS, render_scene, scene_seed, scenes_in


# ---- dataset ---------------------------------------------------------------------------------

class SyntheticStreetScenes(Dataset):
    """``size`` scenes of one split, rendered on access at ``resolution`` (nothing is cached)."""

    def __init__(self, size: int, seed: int, split: str, resolution: tuple[int, int],
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]):
        if split not in SPLIT_IDS:
            raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_IDS)}")
        self.size, self.seed, self.split = size, seed, split
        self.resolution = tuple(int(side) for side in resolution)
        self.transform = transform

    def __len__(self) -> int:
        return self.size

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The untransformed pair: uint8 image 3 x H x W, int64 mask H x W."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} scenes")
        image, label = render_scene(self.seed, self.split, index, self.resolution)
        return torch.from_numpy(image), torch.from_numpy(label.astype(np.int64))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.load(index))


def synthetic_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """CamVid's label space; no class weights (none are published for generated data)."""
    info = DatasetInfo("synthetic", len(CLASS_NAMES), VOID, list(CLASS_NAMES), list(PALETTE))
    return check_fixed(cfg, info)


def build_synthetic(cfg: Mapping[str, Any], split: str, resolution, transform) -> SyntheticStreetScenes:
    return SyntheticStreetScenes(scenes_in(cfg, split), scene_seed(cfg), split, resolution, transform)


SPEC = DatasetSpec(info=synthetic_info, build=build_synthetic, native_labels=False)  # made at the job's size
