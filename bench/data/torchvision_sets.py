"""Pascal VOC 2012 and Cityscapes, located through torchvision's own dataset classes.

torchvision finds the files (``.images``/``.masks``, ``.images``/``.targets``); reading them goes
through :class:`FilePairDataset` so that every data set shares the same decoding errors, label
checks and joint transforms.

VOC has no public test annotations, so ``split="test"`` reads the ``val`` list (the usual
practice: VOC 2012 val is the reported evaluation set). Cityscapes' fine test annotations are
withheld too (its gtFine/test masks are all void), so its ``test`` split is kept but scores
nothing; evaluate Cityscapes on ``val``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from torchvision.datasets import Cityscapes, VOCSegmentation

from bench.data.errors import dataset_not_found
from bench.data.files import FilePairDataset
from bench.data.info import DatasetInfo, DatasetSpec, bit_palette, check_fixed, dataset_root

# ---- Pascal VOC 2012 -------------------------------------------------------------------------

VOC_CLASS_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
                   "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
                   "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
VOC_IGNORE = 255  # the object borders ("void") in SegmentationClass
VOC_SPLITS = {"train": "train", "val": "val", "test": "val"}
VOC_LAYOUT = """\
VOCdevkit/VOC2012/
  JPEGImages/<id>.jpg
  SegmentationClass/<id>.png          (palette PNG, index = class, 255 = border)
  ImageSets/Segmentation/train.txt val.txt"""
VOC_SOURCE = ("the official Pascal VOC 2012 site, http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ "
              "(VOCtrainval_11-May-2012.tar), or torchvision.datasets.VOCSegmentation(root, "
              "year='2012', download=True) on a machine with internet access")


def voc_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """VOC's 20 object classes plus background, the standard VOC colour map, 255 ignored."""
    names = list(VOC_CLASS_NAMES)
    return check_fixed(cfg, DatasetInfo("voc", len(names), VOC_IGNORE, names, bit_palette(len(names))))


def build_voc(cfg: Mapping[str, Any], split: str, resolution, transform) -> FilePairDataset:
    root = dataset_root(cfg)
    image_set = VOC_SPLITS[split]
    voc_dir = None if root is None else root / "VOCdevkit" / "VOC2012"
    list_file = None if voc_dir is None else voc_dir / "ImageSets" / "Segmentation" / f"{image_set}.txt"
    if list_file is None or not list_file.is_file():
        problem = None if root is None else f"{str(list_file.relative_to(root))!r} does not exist"
        raise dataset_not_found("Pascal VOC 2012", root, problem, env_var="VOC_ROOT",
                                layout=VOC_LAYOUT, source=VOC_SOURCE)
    voc = VOCSegmentation(str(root), year="2012", image_set=image_set, download=False)
    pairs = list(zip(map(Path, voc.images), map(Path, voc.masks)))
    return FilePairDataset(pairs, len(VOC_CLASS_NAMES), VOC_IGNORE, transform)


# ---- Cityscapes ------------------------------------------------------------------------------

CITYSCAPES_IGNORE = 255
_TRAIN_CLASSES = sorted((c for c in Cityscapes.classes if 0 <= c.train_id < CITYSCAPES_IGNORE),
                        key=lambda c: c.train_id)
CITYSCAPES_LAYOUT = """\
leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png"""
CITYSCAPES_SOURCE = ("https://www.cityscapes-dataset.com (free registration): download "
                     "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip and unzip both "
                     "into the root")


def cityscapes_label_map() -> np.ndarray:
    """256-entry lookup from Cityscapes label ids to the 19 train ids; everything else -> 255."""
    lut = np.full(256, CITYSCAPES_IGNORE, dtype=np.uint8)
    for cls in _TRAIN_CLASSES:
        lut[cls.id] = cls.train_id
    return lut


def cityscapes_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """The 19 evaluated Cityscapes classes in train-id order with their official colours."""
    return check_fixed(cfg, DatasetInfo("cityscapes", len(_TRAIN_CLASSES), CITYSCAPES_IGNORE,
                                        [c.name for c in _TRAIN_CLASSES],
                                        [tuple(c.color) for c in _TRAIN_CLASSES]))


def build_cityscapes(cfg: Mapping[str, Any], split: str, resolution, transform) -> FilePairDataset:
    root = dataset_root(cfg)
    needed = [] if root is None else [root / "leftImg8bit" / split, root / "gtFine" / split]
    missing = [path for path in needed if not path.is_dir()]
    if root is None or missing:
        problem = None if root is None else f"{str(missing[0].relative_to(root))!r} does not exist"
        raise dataset_not_found("Cityscapes", root, problem, env_var="CITYSCAPES_ROOT",
                                layout=CITYSCAPES_LAYOUT, source=CITYSCAPES_SOURCE)
    cityscapes = Cityscapes(str(root), split=split, mode="fine", target_type="semantic")
    # torchvision lists the folders in os.listdir order; sort so indices are stable across machines.
    pairs = sorted((Path(image), Path(targets[0]))
                   for image, targets in zip(cityscapes.images, cityscapes.targets))
    return FilePairDataset(pairs, len(_TRAIN_CLASSES), CITYSCAPES_IGNORE, transform,
                           label_map=cityscapes_label_map())


VOC_SPEC = DatasetSpec(info=voc_info, build=build_voc)
CITYSCAPES_SPEC = DatasetSpec(info=cityscapes_info, build=build_cityscapes)
