"""FLOPs of one forward pass, counted by torch.utils.flop_counter (1 multiply-add = 2 FLOP)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, inputs: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Total FLOPs of ``model(inputs)`` for the whole batch, and the output of that pass.

    FlopCounterMode counts the matrix-multiply-like operators (convolutions, transposed
    convolutions, matmuls) at 2 FLOP per multiply-add; elementwise ops, pooling and
    normalisation are not counted, as in the papers' and fvcore's conventions.
    """
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        output = model(inputs)
    return counter.get_total_flops(), output
