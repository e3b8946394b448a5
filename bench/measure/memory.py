"""Peak memory of one forward pass.

On CUDA the caching allocator's own statistics are exact (``max_memory_allocated`` after
``reset_peak_memory_stats``). On CPU there is no allocator counter, so ``TensorMemoryTracker``
watches every tensor storage that an operator creates while it is active, and keeps the
running total of those still alive: the peak of that total is the activation memory the forward
pass needed above what existed before it (weights, input).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.measure.size import MIB

CPU_COUNTER = "tensor storages created during the forward pass (TorchDispatchMode)"
CUDA_COUNTER = "torch.cuda.max_memory_allocated (caching allocator)"


class TensorMemoryTracker(TorchDispatchMode):
    """Tracks the bytes of live tensor storages created under it; ``peak_bytes`` is the maximum.

    A storage counts once however many views share it, and stops counting when it is freed
    (its weak reference expires). The peak is read right after each operator returns, when its
    outputs and inputs are both alive, which is when real memory use peaks too.
    """

    def __init__(self):
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current_bytes = 0
        self.peak_bytes = 0

    def _forget_freed(self) -> None:
        for key in [k for k, (ref, _) in self._live.items() if ref.expired()]:
            self.current_bytes -= self._live.pop(key)[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._forget_freed()
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor) and tensor.device.type == "cpu":
                storage = tensor.untyped_storage()
                key = storage._cdata
                if key not in self._live:
                    self._live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        return out


@dataclass(frozen=True)
class MemoryReading:
    peak_mib: float        # weights + input + activation peak
    activation_mib: float  # peak above the pre-forward baseline
    counter: str


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def forward_peak_memory(model: nn.Module, inputs: torch.Tensor, device: torch.device,
                        autocast_dtype: torch.dtype | None = None) -> MemoryReading:
    """Peak memory of one inference forward pass of ``model`` on ``inputs``."""
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        with torch.inference_mode(), autocast:
            model(inputs)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return MemoryReading(peak / MIB, (peak - baseline) / MIB, CUDA_COUNTER)
    resident = _tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    tracker = TensorMemoryTracker()
    with torch.inference_mode(), autocast, tracker:
        model(inputs)
    counter = CPU_COUNTER if device.type == "cpu" else f"{CPU_COUNTER}, {device.type} not tracked"
    return MemoryReading((resident + tracker.peak_bytes) / MIB, tracker.peak_bytes / MIB, counter)
