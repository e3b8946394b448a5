"""KITTI semantic segmentation (the KITTI 2015 semantics benchmark, ``data_semantics.zip``).

Source: the devkit_semantics README, "THE KITTI VISION BENCHMARK: SEMANTIC/INSTANCE SEGMENTATION
BENCHMARKS" (A. Geiger, H. Abu Alhaija), shipped with the data at
http://www.cvlibs.net/datasets/kitti/eval_semseg.php. It describes
200 training and 200 test images of about 1242x375, annotated like Cityscapes::

    training/image_2/000000_10.png     RGB image
    training/semantic/000000_10.png    single-channel uint8, each pixel its Cityscapes label id
    training/instance/ training/semantic_rgb/   (not read)
    testing/image_2/                   (labels not public)

Masks are mapped through Cityscapes' label map to its 19 train ids (every other id, e.g. 0
unlabeled or 1 ego vehicle, becomes the ignore index 255); class names and colours are
Cityscapes'. KITTI's own test labels are not public, so train, val and test are all cut from
training/: the names are sorted and the first ``1 - val_fraction - test_fraction`` go to train,
then ``val_fraction`` to val, then ``test_fraction`` to test (defaults 0.1 and 0.1: 160 / 20 / 20).
Scores on that test split are therefore not comparable with the KITTI leaderboard's.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from bench.data.errors import dataset_not_found
from bench.data.files import FilePairDataset
from bench.data.folder import split_slice
from bench.data.info import DatasetInfo, DatasetSpec, check_fixed, dataset_root
from bench.data.torchvision_sets import cityscapes_info, cityscapes_label_map

ENV_VAR = "KITTI_ROOT"
LAYOUT = """\
training/image_2/<name>.png     (200 RGB PNGs, e.g. 000000_10.png)
training/semantic/<name>.png    (single-channel PNGs of Cityscapes label ids, same names)
testing/image_2/                (not used: no public labels)"""
SOURCE = ("the KITTI semantic segmentation benchmark, "
          "http://www.cvlibs.net/datasets/kitti/eval_semseg.php: download "
          "data_semantics.zip and unzip it into the root")
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1


def kitti_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """Cityscapes' 19 train classes, colours and ignore index, under KITTI's name."""
    # cityscapes_info({}) skips its config check; the check below names kitti in its message.
    info = dataclasses.replace(cityscapes_info({}), name="kitti")
    return check_fixed(cfg, info)


def _not_found(root: Path | None, problem: str | None = None):
    return dataset_not_found("KITTI semantic segmentation", root, problem, env_var=ENV_VAR,
                             layout=LAYOUT, source=SOURCE)


def _training_folders(root: Path | None) -> tuple[Path, Path]:
    """``training/image_2`` and ``training/semantic`` under ``root``, or the not-found error."""
    if root is None:
        raise _not_found(root)
    image_dir, mask_dir = root / "training" / "image_2", root / "training" / "semantic"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise _not_found(root, f"{str(folder.relative_to(root))!r} does not exist")
    return image_dir, mask_dir


def _labelled_pairs(root: Path, image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    """Every training image with its semantic mask, sorted by name.

    All of training/ is checked, not only one split's share: a missing mask would otherwise
    shift the cut between the splits without anyone noticing.
    """
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise _not_found(root, f"{str(image_dir.relative_to(root))!r} holds no PNG images")
    pairs = [(image, mask_dir / image.name) for image in images]
    missing = [str(mask) for _, mask in pairs if not mask.is_file()]
    if missing:
        raise _not_found(root, f"{len(missing)} image(s) have no semantic mask, e.g. {missing[0]!r}")
    return pairs


def build_kitti(cfg: Mapping[str, Any], split: str, resolution, transform) -> FilePairDataset:
    root = dataset_root(cfg)
    image_dir, mask_dir = _training_folders(root)
    pairs = _labelled_pairs(root, image_dir, mask_dir)
    share = split_slice(len(pairs), split,
                         float(cfg.get("val_fraction", DEFAULT_VAL_FRACTION)),
                         float(cfg.get("test_fraction", DEFAULT_TEST_FRACTION)))
    pairs = pairs[share]
    if not pairs:
        raise _not_found(root, f"the {split} split has no images (val_fraction and test_fraction "
                               "cut it from the sorted training/ images)")
    info = kitti_info(cfg)
    return FilePairDataset(pairs, info.num_classes, info.ignore_index, transform,
                           label_map=cityscapes_label_map())


SPEC = DatasetSpec(info=kitti_info, build=build_kitti)
