"""Joint image + mask transforms (torchvision transforms v2 with tv_tensors).

Eval: resize to the requested resolution (bilinear, antialiased, for images; nearest for masks,
which v2 picks for ``tv_tensors.Mask``, unless ``resize_mask=False`` keeps the mask at its own
size for scoring there), then ImageNet normalisation. Train adds, after the resize, the steps of
an :class:`Augmentation`: by default a random scale jitter, a random crop back to the resolution
(padding when the jittered image is smaller) and a horizontal flip; v2 applies the same random
draw to image and mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from bench.grid import parse_resolution

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pad images with the mean colour so padding normalises to zero rather than to a strong negative.
_MEAN_RGB_UINT8 = tuple(round(255 * m) for m in IMAGENET_MEAN)
# The usual range for segmentation training (DeepLab, PSPNet): half to twice the size.
DEFAULT_SCALE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class Augmentation:
    """The random steps of training, after the resize to the job's resolution.

    ``crop``: size of the random crop (None: the resolution itself, which only matters after a
    jitter); ``scale_range``: random rescale before the crop (None: none); ``hflip``: random
    horizontal flips. The default is segbench's protocol; the recipes (conf/train/) set the papers'.
    """

    crop: tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = DEFAULT_SCALE_RANGE
    hflip: bool = True

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any]) -> "Augmentation":
        crop, jitter = train_cfg.get("crop"), train_cfg.get("scale_jitter", DEFAULT_SCALE_RANGE)
        if jitter is not None and not (len(jitter) == 2 and 0 < float(jitter[0]) <= float(jitter[1])):
            raise ValueError(f"train.scale_jitter must be [min, max] with 0 < min <= max, or null; got {jitter!r}")
        return cls(crop=None if crop is None else parse_resolution(crop),
                   scale_range=None if jitter is None else (float(jitter[0]), float(jitter[1])),
                   hflip=bool(train_cfg.get("hflip", True)))


class SegmentationTransform:
    """Callable ``(uint8 image 3xHxW, int64 mask HxW) -> (float32 image 3xhxw, int64 mask hxw)``."""

    def __init__(self, resolution: tuple[int, int], train: bool, ignore_index: int,
                 augmentation: Augmentation = Augmentation(), resize_mask: bool = True):
        if train and not resize_mask:
            raise ValueError("training crops and flips image and mask together: resize_mask must be true")
        self.resolution = tuple(int(side) for side in resolution)
        self.train = train
        self.resize_mask = resize_mask
        steps = [v2.Resize(self.resolution, antialias=True)]
        if train:
            if augmentation.scale_range is not None:
                steps.append(v2.ScaleJitter(self.resolution, scale_range=augmentation.scale_range, antialias=True))
            steps.append(v2.RandomCrop(augmentation.crop or self.resolution, pad_if_needed=True,
                                       fill={tv_tensors.Image: _MEAN_RGB_UINT8, tv_tensors.Mask: ignore_index}))
            if augmentation.hflip:
                steps.append(v2.RandomHorizontalFlip())
        steps += [
            v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.resize_mask:   # evaluation at the labels' own size: no random step to share
            return self.pipeline(tv_tensors.Image(image)).as_subclass(torch.Tensor), mask
        image, mask = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        # Plain tensors out: tv_tensor subclasses would leak into the model and collate code.
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"SegmentationTransform(resolution={self.resolution}, train={self.train})"


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: a uint8 tensor 3 x H x W (for figures)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
