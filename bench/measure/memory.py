"""Peak memory of one pass: an inference forward pass, or a whole training step.

Every figure is a peak *above the memory that existed before the pass* (weights, inputs, and for
training the gradients and optimizer state), read from the allocator itself:

* CUDA: the caching allocator's own statistics (``max_memory_allocated`` after
  ``reset_peak_memory_stats``), which include cuDNN/cuBLAS workspaces.
* CPU: the CPU allocator has no peak counter, so the pass runs under ``torch.profiler`` with
  ``profile_memory=True``, which records every allocation and free the allocator makes, in any
  thread, operator-internal ones included (im2col buffers, oneDNN weight re-layouts, reduction
  scratch). The running sum of those records in time order peaks at the pass's peak.

``TensorMemoryTracker`` counts something narrower, kept as its own column: the tensor storages
that operators *return* (activation tensors). It misses what an operator allocates and frees
inside itself; for VGG's fc6 (a 7x7x512x4096 weight re-laid out on every call) that is most of
the memory of the pass.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch import nn
from torch._C._autograd import DeviceType
from torch.multiprocessing.reductions import StorageWeakRef
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from bench.measure.size import MIB
from bench.records import column

CPU_COUNTER = ("CPU allocator: every allocation and free during the pass "
               "(torch.profiler, profile_memory=True)")
CUDA_COUNTER = "torch.cuda.max_memory_allocated (caching allocator)"
MEASURED_WINDOW = "segbench: measured pass"
TENSOR_COUNTER = "tensor storages returned by operators during the pass (TorchDispatchMode)"


class TensorMemoryTracker(TorchDispatchMode):
    """Tracks the bytes of live tensor storages created under it; ``peak_bytes`` is the maximum.

    A storage counts once however many views share it, and stops counting when it is freed
    (its weak reference expires). The peak is read right after each operator returns, when its
    outputs and inputs are both alive.
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


def running_peak(deltas: Iterable[int]) -> int:
    """The highest point of the running sum of allocation (+) and free (-) sizes, from 0."""
    return max(accumulate(deltas, initial=0))


@contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: Kineto prints start/stop lines (and a failed GPU probe) there
    from C++ on every profile, whatever its log level."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def cpu_allocator_peak(run: Callable[[], object], lead_in: Callable[[], object] | None = None) -> int:
    """Bytes: the CPU allocator's peak during ``run()`` above what was allocated before it.

    The profiler cannot report the free of a block allocated before it started, so a pass that
    frees what an earlier one made (a training step frees the previous step's gradients) needs
    that earlier pass profiled too: ``lead_in()`` runs first, under the profiler but outside the
    measured window.
    """
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _stderr_silenced():
        prof.start()
    try:
        if lead_in is not None:
            # Its frees of blocks made before the profiler started make c10 print a warning.
            with _stderr_silenced():
                lead_in()
        with record_function(MEASURED_WINDOW):
            run()
    finally:
        with _stderr_silenced():
            prof.stop()
    events = prof.profiler.kineto_results.events()
    window = next(event for event in events if event.name() == MEASURED_WINDOW)
    records = sorted((event for event in events
                      if event.name() == "[memory]" and event.device_type() == DeviceType.CPU
                      and window.start_ns() <= event.start_ns() <= window.end_ns()),
                     key=lambda event: event.start_ns())
    return running_peak(event.nbytes() for event in records)


def tensor_peak(run: Callable[[], object]) -> int:
    """Bytes: the peak of live tensor storages that operators returned during ``run()``."""
    tracker = TensorMemoryTracker()
    with tracker:
        run()
    return tracker.peak_bytes


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {name}")


def resident_peak_rise(run: Callable[[], object]) -> int:
    """Bytes the process's peak resident set rose above its resident set before ``run()``.

    For memory no allocator of torch's sees (ONNX Runtime's arena): Linux's VmHWM, reset first
    through ``/proc/self/clear_refs`` (value 5). Raises OSError elsewhere.
    """
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    run()
    return (_status_kib("VmHWM") - before) * 1024


@dataclass(frozen=True)
class PassMemory:
    peak_bytes: int   # above what existed before the pass
    counter: str


def pass_peak(run: Callable[[], object], device: torch.device,
              lead_in: Callable[[], object] | None = None) -> PassMemory:
    """Peak memory of ``run()`` above the memory allocated before it, from the device's allocator.

    ``lead_in`` (CPU only; see :func:`cpu_allocator_peak`) runs just before ``run()``.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return PassMemory(torch.cuda.max_memory_allocated(device) - baseline, CUDA_COUNTER)
    if device.type == "cpu":
        return PassMemory(cpu_allocator_peak(run, lead_in), CPU_COUNTER)
    return PassMemory(tensor_peak(run), f"{TENSOR_COUNTER}, CPU tensors only: {device.type} not tracked")


@dataclass(frozen=True)
class MemoryReading:
    """One inference forward pass's memory; as row columns (bench/records.py) under their old names."""
    peak_mib: float = column("peak_memory_mib")                 # weights + input + activation peak
    activation_mib: float = column("activation_peak_mib")       # peak above the pre-forward baseline
    tensor_activation_mib: float | None = column("tensor_activation_peak_mib")  # CPU: live activation tensors only
    counter: str = column("memory_counter")


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of ``tensors``' elements (a tensor listed twice counts twice)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def forward_peak_memory(model: nn.Module, inputs: torch.Tensor, device: torch.device,
                        autocast_dtype: torch.dtype | None = None) -> MemoryReading:
    """Peak memory of one inference forward pass of ``model`` on ``inputs``."""
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def forward() -> None:
        with torch.inference_mode(), autocast:
            model(inputs)

    resident = tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    measured = pass_peak(forward, device)
    activation = measured.peak_bytes
    if device.type == "cuda":
        # The allocator's peak already holds everything on the device, weights and input included.
        peak = torch.cuda.max_memory_allocated(device)
        return MemoryReading(peak / MIB, activation / MIB, None, measured.counter)
    tensors = tensor_peak(forward) if device.type == "cpu" else None
    return MemoryReading((resident + activation) / MIB, activation / MIB,
                         None if tensors is None else tensors / MIB, measured.counter)
