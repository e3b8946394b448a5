"""Data sets by name: ``dataset_info`` and ``build_dataset`` dispatch on the config's ``name``."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset

from bench.data import camvid, folder, kitti, synthetic, torchvision_sets
from bench.data.info import DatasetInfo, DatasetSpec
from bench.data.transforms import Augmentation, SegmentationTransform
from bench.grid import SPLITS, parse_resolution

_DATASETS: dict[str, DatasetSpec] = {
    "synthetic": synthetic.SPEC,
    "camvid": camvid.SPEC,
    "voc": torchvision_sets.VOC_SPEC,
    "cityscapes": torchvision_sets.CITYSCAPES_SPEC,
    "kitti": kitti.SPEC,
    "folder": folder.SPEC,
}


class UnknownDatasetError(ValueError):
    """Raised for a data set name that is not registered; the message lists the known ones."""


def register_dataset(name: str, spec: DatasetSpec) -> None:
    """Add a data set (e.g. from a plugin module); names must be unique."""
    if name in _DATASETS:
        raise ValueError(f"dataset {name!r} is registered twice")
    _DATASETS[name] = spec


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def _spec(cfg: Mapping[str, Any]) -> DatasetSpec:
    name = cfg.get("name")
    if name in _DATASETS:
        return _DATASETS[name]
    close = difflib.get_close_matches(str(name), list(_DATASETS), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownDatasetError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}")


def dataset_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """Label space of the data set ``cfg`` describes (the ``dataset`` config group, or a dict)."""
    return _spec(cfg).info(cfg)


def build_dataset(cfg: Mapping[str, Any], split: str = "train", resolution=(128, 128),
                  train: bool = False, augmentation: Augmentation = Augmentation()) -> Dataset:
    """The ``split`` of the data set ``cfg`` describes, yielding (image, mask) at ``resolution``.

    image: float32 3 x H x W, ImageNet-normalised; mask: int64 H x W, values in
    [0, num_classes) or ``ignore_index``. ``train=True`` adds ``augmentation``'s random steps
    (scale jitter, crop, flip; the crop sets the training size). Without it,
    a data set whose labels have a size of their own (``DatasetSpec.native_labels``) keeps the
    mask at that size, as the papers score them.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    spec = _spec(cfg)
    info = spec.info(cfg)
    resolution = parse_resolution(resolution)
    transform = SegmentationTransform(resolution, train=train, ignore_index=info.ignore_index,
                                      augmentation=augmentation, resize_mask=train or not spec.native_labels)
    return spec.build(cfg, split=split, resolution=resolution, transform=transform)


def first_batches(cfg: Mapping[str, Any], split: str, resolution, batch_size: int,
                  count: int) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """The first ``count`` images of ``split`` (evaluation transform) in whole batches of
    ``batch_size``: (images stacked, label maps each at its own size). Fewer when the split is
    smaller; none when it holds less than one batch. What the accuracy gate scores and int8
    calibration reads: always the same images for the same data set."""
    dataset = build_dataset(cfg, split, resolution, train=False)
    usable = min(count, len(dataset)) // batch_size * batch_size
    batches = []
    for start in range(0, usable, batch_size):
        pairs = [dataset[i] for i in range(start, start + batch_size)]
        batches.append((torch.stack([image for image, _ in pairs]), [mask for _, mask in pairs]))
    return batches
