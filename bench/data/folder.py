"""Your own data set: a folder of images with same-named index masks.

::

    root/images/<stem>.png|.jpg|.jpeg    root/masks/<stem>.png    (one pool, split by sorted order)
  or
    root/train/images/ root/train/masks/ root/val/... root/test/...   (explicit splits)

Masks are single-channel PNGs (greyscale or palette) whose values are class indices, with
``ignore_index`` (default 255) for unlabelled pixels. With explicit split folders those are used
as they are. Otherwise the stems are sorted and cut in order: the first
``1 - val_fraction - test_fraction`` go to train, then val, then test (a deterministic split
that does not depend on a random seed; shuffle the file names beforehand if their order is
meaningful, e.g. frames of one video).

The label space comes from the config: ``num_classes``, optional ``class_names`` (default
``class_0`` ...), ``ignore_index``; the palette is the VOC colour map.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from bench.data.errors import dataset_not_found
from bench.data.files import FilePairDataset
from bench.data.info import DatasetInfo, DatasetSpec, bit_palette, dataset_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ENV_VAR = "SEGBENCH_FOLDER_ROOT"
LAYOUT = """\
images/<stem>.png|.jpg   masks/<stem>.png          (split by sorted order)
or train/images/ train/masks/ val/... test/...   (explicit splits)"""
SOURCE = "your own images and single-channel PNG masks of class indices"


def folder_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """Label space from the config; ``class_names`` must match ``num_classes`` when both are set."""
    names = cfg.get("class_names")
    num_classes = cfg.get("num_classes")
    if names is None and num_classes is None:
        raise ValueError("dataset 'folder' needs num_classes or class_names in its config")
    names = [str(n) for n in names] if names is not None else [f"class_{i}" for i in range(int(num_classes))]
    if num_classes is not None and int(num_classes) != len(names):
        raise ValueError(f"dataset 'folder': num_classes={num_classes} but {len(names)} class_names")
    ignore_index = cfg.get("ignore_index")
    ignore_index = 255 if ignore_index is None else int(ignore_index)
    return DatasetInfo(str(cfg.get("name", "folder")), len(names), ignore_index, names,
                       bit_palette(len(names)))


def _not_found(root: Path | None, problem: str | None = None):
    return dataset_not_found("Folder data set", root, problem, env_var=ENV_VAR, layout=LAYOUT,
                             source=SOURCE)


def _image_files(image_dir: Path) -> list[Path]:
    """Image files of ``image_dir``, sorted by name."""
    return sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split_slice(count: int, split: str, val_fraction: float, test_fraction: float) -> slice:
    """The ``split``'s share of ``count`` sorted items: train first, then val, then test."""
    num_val, num_test = round(count * val_fraction), round(count * test_fraction)
    num_train = count - num_val - num_test
    bounds = {"train": (0, num_train), "val": (num_train, num_train + num_val),
              "test": (num_train + num_val, count)}
    return slice(*bounds[split])


def build_folder(cfg: Mapping[str, Any], split: str, resolution, transform) -> FilePairDataset:
    root = dataset_root(cfg)
    if root is None:
        raise _not_found(root)
    info = folder_info(cfg)
    base = root / split if (root / split / "images").is_dir() else root
    if not (base / "images").is_dir() or not (base / "masks").is_dir():
        raise _not_found(root, f"no images/ and masks/ folders (nor {split}/images/)")
    images = _image_files(base / "images")
    if base == root:
        images = images[split_slice(len(images), split, float(cfg.get("val_fraction", 0.1)),
                                     float(cfg.get("test_fraction", 0.1)))]
    if not images:
        raise _not_found(root, f"the {split} split has no images")
    pairs = [(image, base / "masks" / f"{image.stem}.png") for image in images]
    missing = [str(mask) for _, mask in pairs if not mask.is_file()]
    if missing:
        raise _not_found(root, f"{len(missing)} image(s) have no mask, e.g. {missing[0]!r}")
    return FilePairDataset(pairs, info.num_classes, info.ignore_index, transform)


SPEC = DatasetSpec(info=folder_info, build=build_folder)
