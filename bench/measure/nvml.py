"""The GPU memory a process holds as the driver counts it (NVML), to set beside torch's allocator.

``torch.cuda.max_memory_allocated`` counts the tensors the caching allocator hands out. The driver
counts everything the process holds on the device: those tensors, the blocks the allocator keeps
reserved but unused, the CUDA context, and the libraries' handles and loaded kernels. NVML
(package ``nvidia-ml-py``, the project's ``gpu`` extra) reads the driver's figure per process.

In a container with its own PID namespace NVML reports the host's process ids, so this process
is not found by its own id; the figure is then the rise of the device's used memory since the
reader was made, which is this process's share when the reader is made before the process creates
its CUDA context and nothing else starts on the device meanwhile.
"""
from __future__ import annotations

import os

import torch

PER_PROCESS = "NVML per-process used memory"
DEVICE_RISE = "NVML device used memory above its level before this process's CUDA context"


class NvmlUnavailable(RuntimeError):
    """NVML cannot be read here: the package is not installed, or no NVIDIA driver answers."""


def _handle(nvml, device: torch.device):
    """The NVML handle of the torch device: by UUID, since CUDA's device order may differ from
    NVML's; by index where the UUID is not found."""
    try:
        return nvml.nvmlDeviceGetHandleByUUID(f"GPU-{torch.cuda.get_device_properties(device).uuid}")
    except nvml.NVMLError:
        return nvml.nvmlDeviceGetHandleByIndex(device.index or 0)


class ProcessMemory:
    """Reads the bytes this process holds on ``device``; make it before the first CUDA allocation
    (see the module docstring)."""

    def __init__(self, device: torch.device):
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable("nvidia-ml-py is not installed (pip install -e '.[gpu]'; "
                                  "make gpu-check installs it where nvidia-smi is present)") from exc
        try:
            pynvml.nvmlInit()
            self._handle = _handle(pynvml, device)
            self._device_used_before = pynvml.nvmlDeviceGetMemoryInfo(self._handle).used
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVML could not be read: {exc}") from exc
        self._nvml = pynvml

    def read(self) -> tuple[int, str]:
        """(bytes held by this process on the device, how they were counted)."""
        for process in self._nvml.nvmlDeviceGetComputeRunningProcesses(self._handle):
            if process.pid == os.getpid() and process.usedGpuMemory is not None:
                return int(process.usedGpuMemory), PER_PROCESS
        used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used
        return int(used - self._device_used_before), DEVICE_RISE
