"""What the rest of segbench needs to know about a data set, and small helpers to read its config."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:   # torch only to build a data set: a data set's info and its scenes are read without it
    from torch.utils.data import Dataset

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DatasetInfo:
    """Label space of a data set: enough to build a model, a loss and a coloured figure.

    ``class_weights`` are median-frequency weights where the data set's authors published them
    (CamVid: SegNet's), otherwise None.
    """

    name: str
    num_classes: int
    ignore_index: int
    class_names: list[str]
    palette: list[RGB]
    class_weights: list[float] | None = None

    def __post_init__(self):
        for field, values in (("class_names", self.class_names), ("palette", self.palette),
                              ("class_weights", self.class_weights)):
            if values is not None and len(values) != self.num_classes:
                raise ValueError(f"{self.name}: {field} has {len(values)} entries for "
                                 f"{self.num_classes} classes")


@dataclass(frozen=True)
class DatasetSpec:
    """How to describe and build one registered data set.

    ``build(cfg, split, resolution, transform)`` returns a Dataset of (image, mask) pairs with
    ``transform(image_uint8, mask_int64)`` applied; ``resolution`` is only used by data sets that
    generate their images (file-based ones leave resizing to ``transform``).

    ``native_labels``: the label maps have a size of their own (files on disk), at which the
    papers score them; evaluation then keeps them at that size (the image is still resized to the
    job's resolution, see ``bench.evaluate``). False for data generated at the job's resolution.
    """

    info: Callable[[Mapping[str, Any]], DatasetInfo]
    build: Callable[..., Dataset]
    native_labels: bool = True


def bit_palette(num_classes: int) -> list[RGB]:
    """The Pascal VOC colour map (bits of the class index spread over R, G, B), any length."""
    palette = []
    for index in range(num_classes):
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette.append(tuple(rgb))
    return palette


def dataset_root(cfg: Mapping[str, Any]) -> Path | None:
    """The configured root (``~`` expanded), or None when it is not set."""
    root = cfg.get("root")
    return None if root in (None, "") else Path(os.path.expanduser(str(root)))


def check_fixed(cfg: Mapping[str, Any], info: DatasetInfo) -> DatasetInfo:
    """Reject a config whose ``num_classes``/``ignore_index`` contradict the data set's fixed ones.

    A silent mismatch would build a model with the wrong number of outputs (some CamVid ports
    use 12), so an override of these keys is an error rather than ignored.
    """
    for key in ("num_classes", "ignore_index"):
        value = cfg.get(key)
        if value is not None and int(value) != getattr(info, key):
            raise ValueError(f"dataset {info.name!r} has {key}={getattr(info, key)}, "
                             f"but the config sets {key}={value}")
    return info
