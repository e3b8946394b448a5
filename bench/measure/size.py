"""Parameter counts and model size."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from bench.records import column

MIB = 2**20


@dataclass(frozen=True)
class ModelSize:
    params_total: int
    params_trainable: int
    size_mib: float = column("model_size_mib")  # parameters and buffers (e.g. BN running statistics), as stored


def model_size(model: nn.Module) -> ModelSize:
    """PyTorch's convention: every parameter counts, buffers do not (but do count in size_mib)."""
    params = list(model.parameters())
    tensor_bytes = sum(t.numel() * t.element_size() for t in [*params, *model.buffers()])
    return ModelSize(
        params_total=sum(p.numel() for p in params),
        params_trainable=sum(p.numel() for p in params if p.requires_grad),
        size_mib=tensor_bytes / MIB,
    )
