"""Joint image + mask transforms (torchvision transforms v2 with tv_tensors).

Eval: resize to the requested resolution (bilinear, antialiased, for images; nearest for masks,
which v2 picks for ``tv_tensors.Mask``, unless ``resize_mask=False`` keeps the mask at its own
size for scoring there), then ImageNet normalisation. Train adds, after the resize, the steps of
an :class:`Augmentation`: by default a random scale jitter, a random crop back to the resolution
(padding when the jittered image is smaller) and a horizontal flip; v2 applies the same random
draw to image and mask. A recipe may add U-Net's elastic deformation (:class:`ElasticDeformation`),
applied last, on the normalised training tile.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from bench.grid import parse_resolution

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Pad images with the mean colour so padding normalises to zero rather than to a strong negative.
_MEAN_RGB_UINT8 = tuple(round(255 * m) for m in IMAGENET_MEAN)
# The usual range for segmentation training (DeepLab, PSPNet): half to twice the size.
DEFAULT_SCALE_RANGE = (0.5, 2.0)


def _is_whole_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()


@dataclass(frozen=True)
class ElasticDeformation:
    """U-Net's smooth deformations (Ronneberger et al. 2015, sec. 3.1): "random displacement
    vectors on a coarse 3 by 3 grid ... sampled from a Gaussian distribution with 10 pixels
    standard deviation. Per-pixel displacements are then computed using bicubic interpolation."

    ``grid``: the coarse grid's side (its corners sit on the image's corners); ``sigma_px``: the
    displacements' standard deviation in pixels of the training tile (0: the identity).

    Not torchvision's ``v2.ElasticTransform``: that one draws an independent displacement per
    pixel and smooths the field with a Gaussian blur (Simard et al.'s alpha/sigma model), a
    different distribution of fields from the paper's coarse grid with bicubic interpolation.
    """

    grid: int = 3
    sigma_px: float = 10.0

    def __post_init__(self):
        if not _is_whole_number(self.grid) or self.grid < 2:
            raise ValueError(f"train.elastic.grid must be a whole number of at least 2 (bicubic "
                             f"interpolation needs two grid points per side), got {self.grid!r}")
        if not float(self.sigma_px) >= 0:
            raise ValueError(f"train.elastic.sigma_px must be at least 0, got {self.sigma_px!r}")

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any]) -> "ElasticDeformation | None":
        """``train.elastic``: null (off) or ``{grid: N, sigma_px: S}``, both keys given."""
        block = train_cfg.get("elastic")
        if block is None:
            return None
        if not isinstance(block, Mapping) or set(block) != {"grid", "sigma_px"}:
            raise ValueError(f"train.elastic must be null or {{grid: N, sigma_px: S}}, got {block!r}")
        return cls(grid=block["grid"], sigma_px=block["sigma_px"])

    def sample_grid(self) -> torch.Tensor:
        """Coarse displacements 2 x grid x grid (x, then y), drawn from torch's global generator
        so the job's seed (and each DataLoader worker's) reproduces them."""
        return torch.randn(2, int(self.grid), int(self.grid)) * float(self.sigma_px)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return deform(image, mask, self.sample_grid(), ignore_index)


def displacement_field(coarse: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-pixel displacements 2 x height x width from the coarse 2 x g x g grid, by bicubic
    interpolation (sec. 3.1); align_corners puts the grid's outer points on the corner pixels."""
    return F.interpolate(coarse[None].float(), size=(height, width), mode="bicubic", align_corners=True)[0]


def _sampling_grid(displacement: torch.Tensor) -> torch.Tensor:
    """grid_sample's 1 x H x W x 2 grid: output pixel (y, x) reads the input at (y + dy, x + dx),
    in grid_sample's [-1, 1] coordinates (align_corners=True: -1 and 1 are the edge pixels' centres)."""
    _, height, width = displacement.shape
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                                torch.arange(width, dtype=torch.float32), indexing="ij")
    x = (cols + displacement[0]) * (2 / max(width - 1, 1)) - 1
    y = (rows + displacement[1]) * (2 / max(height - 1, 1)) - 1
    return torch.stack((x, y), dim=-1)[None]


def deform(image: torch.Tensor, mask: torch.Tensor, coarse: torch.Tensor,
           ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp a float image C x H x W and its int64 mask H x W by the same field, given by the
    coarse displacement grid ``coarse`` (2 x g x g, pixels; channel 0 x, channel 1 y).

    The image is sampled bilinearly; outside it reads 0, which after the ImageNet normalisation
    is the mean colour the random crop pads with. The mask is sampled at the nearest pixel, so
    labels stay labels, and where the field reads outside the image it gets ``ignore_index``:
    those pixels have no ground truth."""
    grid = _sampling_grid(displacement_field(coarse, *mask.shape[-2:]))
    warped_image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    # A channel of ones, sampled alongside, marks the pixels that read from inside the image.
    labels_and_inside = torch.stack((mask.float(), torch.ones(mask.shape)))[None]
    warped = F.grid_sample(labels_and_inside, grid, mode="nearest", padding_mode="zeros", align_corners=True)[0]
    warped_mask = torch.where(warped[1] > 0.5, warped[0].round().long(), torch.tensor(ignore_index))
    return warped_image, warped_mask.to(mask.dtype)


@dataclass(frozen=True)
class Augmentation:
    """The random steps of training, after the resize to the job's resolution.

    ``crop``: size of the random crop (None: the resolution itself, which only matters after a
    jitter); ``scale_range``: random rescale before the crop (None: none); ``hflip``: random
    horizontal flips; ``elastic``: U-Net's elastic deformation, last (None: none). The default is
    segbench's protocol; the recipes (conf/train/) set the papers'.
    """

    crop: tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = DEFAULT_SCALE_RANGE
    hflip: bool = True
    elastic: ElasticDeformation | None = None

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any]) -> "Augmentation":
        crop, jitter = train_cfg.get("crop"), train_cfg.get("scale_jitter", DEFAULT_SCALE_RANGE)
        if jitter is not None and not (len(jitter) == 2 and 0 < float(jitter[0]) <= float(jitter[1])):
            raise ValueError(f"train.scale_jitter must be [min, max] with 0 < min <= max, or null; got {jitter!r}")
        return cls(crop=None if crop is None else parse_resolution(crop),
                   scale_range=None if jitter is None else (float(jitter[0]), float(jitter[1])),
                   hflip=bool(train_cfg.get("hflip", True)),
                   elastic=ElasticDeformation.from_config(train_cfg))


class SegmentationTransform:
    """Callable ``(uint8 image 3xHxW, int64 mask HxW) -> (float32 image 3xhxw, int64 mask hxw)``."""

    def __init__(self, resolution: tuple[int, int], train: bool, ignore_index: int,
                 augmentation: Augmentation = Augmentation(), resize_mask: bool = True):
        if train and not resize_mask:
            raise ValueError("training crops and flips image and mask together: resize_mask must be true")
        self.resolution = tuple(int(side) for side in resolution)
        self.train = train
        self.resize_mask = resize_mask
        self.ignore_index = ignore_index
        # Last, on the normalised tile: sigma_px is in the pixels the network sees.
        self.elastic = augmentation.elastic if train else None
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
        image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        if self.elastic is not None:
            image, mask = self.elastic(image, mask, self.ignore_index)
        return image, mask

    def __repr__(self) -> str:
        return f"SegmentationTransform(resolution={self.resolution}, train={self.train})"


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: a uint8 tensor 3 x H x W (for figures)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).mul(255).round().clamp(0, 255).to(torch.uint8)
