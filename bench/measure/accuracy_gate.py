"""The accuracy gate: a deployment other than fp32 eager (another backend, a reduced precision, a
memory layout) scored against fp32 eager on real images, with the same weights.

Parity on one random input (bench/measure/parity.py) shows that a backend computes the same
function; it cannot show what reduced precision costs on segmentation images. MLPerf Inference
accepts a submission only at 99% (or 99.9%) of the FP32 reference's accuracy on the validation
set; here, the first ``images`` of the job's data set's validation split, at the job's resolution,
in whole batches of the job's batch size, are scored both ways (one confusion matrix each, label
maps at their own size as bench/evaluate.py scores them) and the deployment's mIoU is divided by
fp32 eager's. Random weights predict next to nothing, so their ratio says nothing about the
deployment: the gate decides rows whose weights were trained or loaded, and says so in the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GateRecord:
    """Row columns ``gate_*``. ``gated``: whether the ratio decided the row's status."""
    weights: str                       # what was scored: trained by the job, a checkpoint, or random
    gated: bool
    note: str
    images: int | None = None
    split: str | None = None
    miou_reference: float | None = None   # fp32 eager
    miou_deployment: float | None = None
    ratio: float | None = None            # deployment / reference (None: the reference scored 0)
    threshold: float | None = None        # parity.min_accuracy_ratio


def miou_ratio(reference: float, deployment: float) -> float | None:
    """The deployment's share of the reference's mIoU; None when the reference has none to keep."""
    return deployment / reference if reference > 0 else None


def mious(predictors: tuple[Predict, Predict], batches: Iterable[tuple[torch.Tensor, list[torch.Tensor]]],
          num_classes: int, ignore_index: int) -> tuple[float, float]:
    """(reference mIoU, deployment mIoU) over ``batches`` of (images, label maps)."""
    from bench.evaluate import predict_at
    from bench.metrics import confusion_matrix, segmentation_metrics

    confmats = [torch.zeros(num_classes, num_classes, dtype=torch.int64) for _ in predictors]
    for images, masks in batches:
        for predict, confmat in zip(predictors, confmats):
            for logits, mask in zip(predict(images).float().cpu(), masks):
                confmat += confusion_matrix(predict_at(logits, tuple(mask.shape)), mask, num_classes, ignore_index)
    reference, deployment = (segmentation_metrics(confmat)["miou"] for confmat in confmats)
    return reference, deployment


def verdict(record: GateRecord) -> str:
    """Why a gated row fails (``status=mismatch``), or "" when it passes or is not gated."""
    if not record.gated or record.ratio is None or record.ratio >= record.threshold:
        return ""
    return (f"keeps {record.ratio:.2%} of fp32 eager's mIoU on {record.images} {record.split} images "
            f"({record.miou_deployment:.4f} against {record.miou_reference:.4f}), below "
            f"parity.min_accuracy_ratio={record.threshold:.2%}")
