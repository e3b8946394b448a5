"""Output parity of a deployment backend against eager PyTorch on the same input.

A backend that changes the model's predictions is a different model, so its latency is not
comparable: the profile stage records these figures and, below the threshold, does not time it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float       # largest absolute logit difference
    argmax_agreement: float   # fraction of pixels whose predicted class is the same (0..1)
    threshold: float | None = None  # the agreement below which the row is status mismatch


def parity(reference: torch.Tensor, candidate: torch.Tensor) -> Parity:
    """Compare N x classes x H x W logits: ``candidate`` (a backend's) against ``reference`` (eager's)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logits of shape {tuple(candidate.shape)} cannot be compared with eager's "
                         f"{tuple(reference.shape)}")
    reference, candidate = reference.float().cpu(), candidate.float().cpu()
    agree = (reference.argmax(dim=1) == candidate.argmax(dim=1)).float().mean()
    return Parity((reference - candidate).abs().max().item(), agree.item())
