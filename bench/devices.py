"""Turning ``device=cpu|cuda|mps`` into a torch.device, or a clear reason why not."""
from __future__ import annotations

import torch


class DeviceUnavailableError(RuntimeError):
    """The requested device is not present on this machine (the row's status is 'unavailable')."""


def resolve_device(name: str, index: int | None = None) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"CUDA is not available on this machine (torch {torch.__version__}, built for CUDA "
                f"{torch.version.cuda or 'none'}; torch.cuda.is_available() is False). "
                "Run with device=cpu, or on a machine with an NVIDIA GPU and driver.")
        count = torch.cuda.device_count()
        if index is not None and not 0 <= index < count:
            raise DeviceUnavailableError(f"cuda:{index} requested but this machine has {count} GPU(s)")
        return torch.device("cuda", index or 0)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceUnavailableError(
                "MPS (Apple GPU) is not available on this machine; run with device=cpu.")
        return torch.device("mps")
    raise ValueError(f"unknown device {name!r}; choose one of cpu, cuda, mps")
