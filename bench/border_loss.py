"""U-Net's weighted cross-entropy (Ronneberger, Fischer, Brox, MICCAI 2015, sec. 3, eq. 2).

The paper weights each pixel's cross-entropy by

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)),    w0 = 10, sigma ~ 5 pixels,

``w_c`` balancing the class frequencies, d1 and d2 the distances to the borders of the nearest
and the second nearest cell, so that the thin background gaps between touching cells weigh most.
The paper's labels are cell instances on a background; segbench's are semantic classes, so here:

- **Objects.** Every 8-connected component of every non-ignored class is an object. segbench's
  data sets name no background class (CamVid's road and sky are as much objects as its cars), so
  no class is singled out. 8-connectivity keeps a thin diagonal structure one object; with
  4-connectivity it would break into single pixels, each another object, and spray border
  weight along its length.
- **d1, d2.** For every pixel, the Euclidean distances (``scipy.ndimage.distance_transform_edt``,
  pixel centre to pixel centre: an adjacent pixel is 1 away) to the nearest pixel of the nearest
  and the second nearest object *other than the one containing the pixel*. On the paper's data a
  background pixel between two cells gets exactly the paper's term (its own background region
  is left out, the two cells are nearest); a cell's pixels next to a close neighbour are
  weighted too, where the paper leaves d1, d2 undefined. A pixel with fewer than two objects
  besides its own (every pixel, in an image of fewer than three objects) gets no border term.
- **w_c.** segbench's class weights when the recipe has ``class_weighting`` (median frequency,
  which ``train=unet`` uses for the paper's unstated formula), else 1.
- **Ignored pixels** (``ignore_index``) weigh 0: they are not in the loss, nor objects.
- **Reduction.** sum(w * ce) / sum(w): the weighted mean that ``nn.CrossEntropyLoss(weight=w_c)``
  already computes for class weights, so with w0 = 0 this loss *is* segbench's existing one and
  switching the border term on does not rescale the loss (and the learning rate's effect) by
  the image's mean weight. The paper's eq. 1 writes a plain sum; per batch the two differ by a
  positive factor, so each update points the same way, and the scale is segbench's choice.

The weight map is computed on the CPU (numpy/scipy) from each image's mask, then moved to the
logits' device: one Euclidean distance transform per object and image, cheap at the
resolutions segbench trains at, costly for masks with hundreds of components.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

#: Objects are 8-connected components (see the module docstring for why).
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class BorderWeight:
    """The border term's parameters (sec. 3): ``w0`` its height, ``sigma_px`` its width in pixels."""

    w0: float = 10.0
    sigma_px: float = 5.0

    def __post_init__(self):
        if not float(self.w0) >= 0:
            raise ValueError(f"train.border_weight.w0 must be at least 0, got {self.w0!r}")
        if not float(self.sigma_px) > 0:
            raise ValueError(f"train.border_weight.sigma_px must be above 0, got {self.sigma_px!r}")

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any]) -> "BorderWeight | None":
        """``train.border_weight``: null (plain cross-entropy) or ``{w0: W, sigma_px: S}``."""
        block = train_cfg.get("border_weight")
        if block is None:
            return None
        if not isinstance(block, Mapping) or set(block) != {"w0", "sigma_px"}:
            raise ValueError(f"train.border_weight must be null or {{w0: W, sigma_px: S}}, got {block!r}")
        return cls(w0=float(block["w0"]), sigma_px=float(block["sigma_px"]))


def label_objects(labels: np.ndarray, ignore_index: int) -> tuple[np.ndarray, int]:
    """Every 8-connected component of every non-ignored class, numbered 1..count (0: ignored)."""
    objects = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for value in np.unique(labels):
        if value == ignore_index:
            continue
        components, found = ndimage.label(labels == value, structure=EIGHT_CONNECTED)
        inside = components > 0
        objects[inside] = components[inside] + count
        count += found
    return objects, count


def two_nearest_other_objects(objects: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the distances d1 <= d2 to the nearest and second nearest object other than its
    own (inf where there is no such object). Keeps two running minima rather than one distance
    map per object, so memory stays two images whatever the number of objects."""
    nearest = np.full(objects.shape, np.inf)
    second = np.full(objects.shape, np.inf)
    for index in range(1, count + 1):
        inside = objects == index
        distance = ndimage.distance_transform_edt(~inside)
        distance[inside] = np.inf          # a pixel's own object is not one of its neighbours
        second = np.minimum(second, np.maximum(nearest, distance))
        nearest = np.minimum(nearest, distance)
    return nearest, second


def border_term(labels: np.ndarray, ignore_index: int, border: BorderWeight) -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) per pixel of one H x W label image (sec. 3, eq. 2);
    0 at ignored pixels and wherever a pixel has fewer than two other objects (d2 = inf)."""
    objects, count = label_objects(labels, ignore_index)
    nearest, second = two_nearest_other_objects(objects, count)
    term = border.w0 * np.exp(-((nearest + second) ** 2) / (2 * border.sigma_px ** 2))
    term[labels == ignore_index] = 0.0
    return term


def weight_map(labels: np.ndarray, ignore_index: int, border: BorderWeight,
               class_weights: np.ndarray | None = None) -> np.ndarray:
    """w(x) = w_c(x) + the border term (sec. 3, eq. 2) for one H x W label image; 0 where ignored."""
    ignored = labels == ignore_index
    if class_weights is None:
        balance = np.ones(labels.shape)
    else:
        balance = np.asarray(class_weights, dtype=np.float64)[np.where(ignored, 0, labels)]
    balance[ignored] = 0.0
    return balance + border_term(labels, ignore_index, border)


class BorderWeightedCrossEntropy(nn.Module):
    """Pixel-wise cross-entropy weighted by U-Net's w(x), called as ``criterion(logits, mask)``
    like ``nn.CrossEntropyLoss``; the mean is sum(w * ce) / sum(w) over the batch (module
    docstring)."""

    def __init__(self, border: BorderWeight, ignore_index: int, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.border, self.ignore_index = border, ignore_index
        self.class_weights = None if class_weights is None else class_weights.detach().cpu().double().numpy()

    def pixel_weights(self, mask: torch.Tensor) -> torch.Tensor:
        """N x H x W weights, computed per image on the CPU."""
        labels = mask.detach().cpu().numpy()
        maps = [weight_map(image_labels, self.ignore_index, self.border, self.class_weights)
                for image_labels in labels]
        return torch.from_numpy(np.stack(maps)).float()

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = self.pixel_weights(mask).to(logits.device, non_blocking=True)
        per_pixel = F.cross_entropy(logits.float(), mask, ignore_index=self.ignore_index, reduction="none")
        # A batch of ignored pixels only has no weight at all: a zero loss, not 0 / 0.
        return (weights * per_pixel).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)

    def extra_repr(self) -> str:
        return f"w0={self.border.w0}, sigma_px={self.border.sigma_px}, ignore_index={self.ignore_index}"
