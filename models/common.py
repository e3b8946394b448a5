"""Pieces every architecture shares."""
from __future__ import annotations

import torch


class InputTooSmallError(ValueError):
    """The input is smaller than the architecture's documented minimum."""


def check_input_size(x: torch.Tensor, minimum: int, model: str) -> None:
    """Fail clearly when H or W is below ``minimum`` (the model's total downsampling, usually)."""
    height, width = x.shape[-2:]
    if height < minimum or width < minimum:
        raise InputTooSmallError(
            f"{model} needs inputs of at least {minimum}x{minimum} pixels, got {height}x{width}; "
            f"choose a larger resolution (e.g. resolution={max(minimum, 64)}x{max(minimum, 64)})")
