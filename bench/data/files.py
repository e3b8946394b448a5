"""Reading image/mask files and a Dataset over a list of (image path, mask path) pairs."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.data.errors import CorruptImageError

# PIL raises all of these for broken files: OSError (truncated data, unidentified format),
# SyntaxError (bad PNG chunks), ValueError (bad header fields), DecompressionBombError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _decode(path: Path, what: str) -> Image.Image:
    """Open and fully decode ``path`` (PIL is lazy), turning decoder failures into one clear error."""
    try:
        image = Image.open(path)
        image.load()  # also closes the file PIL opened
        return image
    except FileNotFoundError:
        raise  # already names the file; not a decoding problem
    except _DECODE_ERRORS as err:
        raise CorruptImageError(f"cannot read {what} file {str(path)!r}: it is truncated or corrupt "
                                f"({type(err).__name__}: {err})") from err


def read_image(path: Path) -> torch.Tensor:
    """An RGB image as a uint8 tensor 3 x H x W."""
    array = np.asarray(_decode(path, "image").convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_mask(path: Path) -> np.ndarray:
    """A label image as an H x W integer array of class indices.

    Palette PNGs (VOC) give their indices, not their colours; a colour (RGB) mask is rejected
    because its values are not class indices.
    """
    image = _decode(path, "mask")
    if image.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"mask {str(path)!r} has mode {image.mode!r}; expected a single-channel "
                         "(greyscale or palette) PNG of class indices")
    return np.asarray(image)


class FilePairDataset(Dataset):
    """(image, mask) pairs read from files, masks optionally remapped through a lookup table.

    ``label_map`` (a 256-entry array) maps stored values to training labels, e.g. Cityscapes'
    label ids to train ids. Every mask is checked against ``num_classes``/``ignore_index`` so that
    a wrong data set or colour-coded masks fail loudly instead of training on garbage labels.
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], num_classes: int, ignore_index: int,
                 transform: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                 label_map: np.ndarray | None = None):
        self.pairs = list(pairs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The untransformed pair: uint8 image 3 x H x W, int64 mask H x W."""
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path)
        mask = read_mask(mask_path)
        if self.label_map is not None:
            mask = self.label_map[mask]
        if tuple(mask.shape) != tuple(image.shape[1:]):
            raise ValueError(f"mask {str(mask_path)!r} is {mask.shape[1]}x{mask.shape[0]} but image "
                             f"{str(image_path)!r} is {image.shape[2]}x{image.shape[1]}")
        mask = torch.from_numpy(mask.astype(np.int64))
        self._check_labels(mask, mask_path)
        return image, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.load(index))

    def _check_labels(self, mask: torch.Tensor, path: Path) -> None:
        bad = (mask >= self.num_classes) | (mask < 0)
        bad &= mask != self.ignore_index
        if bad.any():
            values = sorted(set(mask[bad].unique().tolist()))[:10]
            raise ValueError(f"mask {str(path)!r} has values {values} outside [0, {self.num_classes}) "
                             f"that are not the ignore index {self.ignore_index}")
