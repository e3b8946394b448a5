"""Segmentation metrics from a confusion matrix, and SegNet's median-frequency class weights.

Accumulate, then compute (as mmsegmentation's ``IoUMetric`` does): sum the confusion matrices of
every batch of a split and compute the metrics once from the total. Averaging per-image or
per-batch scores instead would weight small images and rare classes differently.

Conventions, for a C x C confusion matrix ``n`` (rows: ground truth, columns: prediction):

* IoU_c = n_cc / (t_c + p_c - n_cc), with t_c the ground-truth and p_c the predicted pixels of c.
  A class absent from both ground truth and prediction (t_c + p_c = 0) has no IoU: it is NaN in
  ``per_class_iou`` and left out of ``miou``. A class that is predicted but absent from the ground
  truth has IoU 0 and does count.
* Class accuracy_c = n_cc / t_c, NaN (and left out of ``mean_accuracy``) where t_c = 0.
* pixel accuracy = sum_c n_cc / sum_c t_c.
* frequency-weighted IoU (Long et al., FCN, sec. 5) = sum_c (t_c / sum_k t_k) IoU_c.
* Boundary IoU (Cheng et al., CVPR 2021) of class c: the IoU of the ground truth's and the
  prediction's *boundary bands* of c, each the pixels of the class within ``band`` pixels of its
  contour (the image's edge counts as contour); mIoU rewards a blob in the right place, this
  rewards its outline. Intersections and unions are summed over a split, as the confusion matrix
  is; ``boundary_miou`` averages the classes whose bands are not both empty.

Pixels whose ground truth is the ignore index never enter the matrix or the boundary counts.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

#: Boundary IoU's band: this fraction of the image diagonal, at least one pixel (Cheng et al.'s
#: default, "2% of the image diagonal").
BOUNDARY_BAND_FRACTION = 0.02
BOUNDARY_METHOD = ("Boundary IoU (Cheng et al. 2021): IoU of the ground truth's and the prediction's "
                   "boundary bands, per class, the band {band} of the image diagonal wide (Chebyshev "
                   "distance, the image edge counting as contour), summed over the split")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int) -> torch.Tensor:
    """int64 ``num_classes`` x ``num_classes`` counts; row = ground truth, column = prediction.

    ``pred`` and ``target`` are integer label maps of the same shape (any number of dimensions).
    Pixels whose target is ``ignore_index`` or outside [0, num_classes) are excluded.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    pred, target = pred[keep], target[keep]
    if pred.numel() and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"predictions must lie in [0, {num_classes}), got {pred.min()}..{pred.max()}")
    # One bin per (ground truth, prediction) pair, row-major.
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def _nanmean(values: torch.Tensor) -> float:
    """Mean over the non-NaN entries; NaN when there are none."""
    return float(torch.nanmean(values)) if not values.isnan().all() else math.nan


def segmentation_metrics(confmat: torch.Tensor, class_names: Sequence[str] | None = None) -> dict:
    """``miou``, ``per_class_iou`` (name -> IoU or NaN), ``pixel_accuracy``, ``mean_accuracy``,
    ``fw_iou`` from an accumulated confusion matrix; plain Python floats (see the module notes)."""
    confmat = confmat.detach().cpu().double()
    num_classes = confmat.shape[0]
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if confmat.shape != (num_classes, num_classes) or len(names) != num_classes:
        raise ValueError(f"need a square confusion matrix and one name per class, got "
                         f"{tuple(confmat.shape)} and {len(names)} names")
    true_positive = confmat.diag()
    ground_truth = confmat.sum(dim=1)
    predicted = confmat.sum(dim=0)
    union = ground_truth + predicted - true_positive
    nan = torch.tensor(math.nan, dtype=torch.float64)
    iou = torch.where(union > 0, true_positive / union, nan)
    class_accuracy = torch.where(ground_truth > 0, true_positive / ground_truth, nan)
    total = ground_truth.sum()
    frequency = ground_truth / total if total > 0 else torch.full_like(ground_truth, math.nan)
    return {
        "miou": _nanmean(iou),
        "per_class_iou": {name: float(value) for name, value in zip(names, iou)},
        "pixel_accuracy": float(true_positive.sum() / total) if total > 0 else math.nan,
        "mean_accuracy": _nanmean(class_accuracy),
        # Classes with t_c = 0 have weight 0 (their IoU may be NaN, hence the mask).
        "fw_iou": float((frequency * iou)[ground_truth > 0].sum()) if total > 0 else math.nan,
    }


def boundary_band_px(height: int, width: int, fraction: float = BOUNDARY_BAND_FRACTION) -> int:
    """The band width for an image of this size: ``fraction`` of its diagonal, at least 1 pixel."""
    return max(1, round(fraction * math.hypot(height, width)))


def boundary_band(masks: torch.Tensor, band: int) -> torch.Tensor:
    """The pixels of each boolean mask (C x H x W) within ``band`` pixels of a pixel outside it
    (Chebyshev distance: the reference code erodes with a 3x3 square ``band`` times), the image
    edge counting as outside."""
    outside = F.pad((~masks).float().unsqueeze(0), (band, band, band, band), value=1.0)
    near_outside = F.max_pool2d(outside, 2 * band + 1, stride=1).squeeze(0) > 0
    return masks & near_outside


def boundary_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int,
                    band: int) -> torch.Tensor:
    """int64 2 x ``num_classes``: per class, the intersection and the union of the ground truth's
    and the prediction's boundary bands in one H x W label map, ignored pixels left out."""
    if pred.shape != target.shape or pred.dim() != 2:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be one H x W map each")
    classes = torch.arange(num_classes, device=target.device).view(-1, 1, 1)
    valid = target != ignore_index
    truth = boundary_band(target.unsqueeze(0) == classes, band) & valid
    predicted = boundary_band(pred.unsqueeze(0) == classes, band) & valid
    return torch.stack([(truth & predicted).flatten(1).sum(1), (truth | predicted).flatten(1).sum(1)])


def boundary_miou(counts: torch.Tensor) -> float:
    """The mean Boundary IoU over the classes whose bands are not both empty (NaN if none)."""
    intersection, union = counts.double()
    return _nanmean(torch.where(union > 0, intersection / union.clamp_min(1), torch.tensor(math.nan)))


def median_frequency_weights(class_pixel_counts: torch.Tensor,
                             image_pixel_counts: torch.Tensor | None = None) -> torch.Tensor:
    """Median-frequency balancing (Eigen & Fergus 2015, used by SegNet): w_c = median(f) / f_c.

    f_c = (pixels of class c) / (pixels of the images in which c is present), given as
    ``image_pixel_counts``; without it, the total number of labelled pixels is used for every
    class. The median is taken over the classes that occur (the mean of the two middle values
    for an even count, as numpy's); classes that never occur get weight 0.
    """
    counts = torch.as_tensor(class_pixel_counts, dtype=torch.float64)
    present = counts > 0
    if not present.any():
        raise ValueError("no labelled pixels: cannot compute class frequencies")
    denominator = (torch.as_tensor(image_pixel_counts, dtype=torch.float64)
                   if image_pixel_counts is not None else counts.sum().expand_as(counts))
    frequency = torch.where(present, counts / denominator.clamp_min(1), torch.zeros_like(counts))
    median = frequency[present].quantile(0.5)
    weights = torch.where(present, median / frequency.where(present, torch.ones_like(counts)),
                          torch.zeros_like(counts))
    return weights.float()
