"""The machine's measured peak throughput, and how close a model's forward pass comes to it.

The peak is a large square matrix multiply (the operation convolutions are lowered to) timed
by the same latency loop as the models, in the precision of the row, once per device, thread
count and torch version; the figure is cached as JSON beside its method under
``<results_dir>/cache/peak/``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bench.atomic import atomic_write_text
from bench.measure.latency import TimingConfig, measure_latency

PEAK_SIZE = 2048  # large enough to be compute-bound on a CPU core or a GPU, small enough to take ~1 s


def achieved_flops_per_s(flops_per_image: float, batch_size: int, latency_ms: float) -> float:
    """FLOP/s of one batch's forward pass: FLOPs per image x batch / median latency."""
    if latency_ms <= 0:
        raise ValueError(f"latency must be positive, got {latency_ms} ms")
    return flops_per_image * batch_size / (latency_ms / 1e3)


def peak_fraction(achieved: float, peak: float) -> float:
    """Achieved FLOP/s as a fraction of the measured peak (above 1 when the model beats the matmul)."""
    if peak <= 0:
        raise ValueError(f"peak FLOP/s must be positive, got {peak}")
    return achieved / peak


def matmul_flops(size: int) -> float:
    """FLOPs of one size x size by size x size matrix multiply (1 multiply-add = 2 FLOP)."""
    return 2.0 * size ** 3


def measure_peak(device: torch.device, dtype: torch.dtype, timing: TimingConfig,
                 size: int = PEAK_SIZE) -> dict:
    """Time ``a @ b`` with the models' loop; returns {"flops_per_s", "method"}."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    with torch.inference_mode():
        stats = measure_latency(lambda: a @ b, device, timing)
    method = (f"{size}x{size} {str(dtype).removeprefix('torch.')} matmul, median of the latency loop "
              f"({stats.timer}, {stats.iters} calls), {torch.get_num_threads()} threads")
    return {"flops_per_s": matmul_flops(size) / (stats.median_ms / 1e3), "method": method}


def cached_peak(cache_dir: Path, device: torch.device, device_name: str, dtype: torch.dtype,
                timing: TimingConfig, size: int = PEAK_SIZE) -> dict:
    """The peak for this environment from ``cache_dir``, measured and stored on the first call."""
    environment = {"device": device_name, "type": device.type, "dtype": str(dtype),
                   "threads": torch.get_num_threads(), "torch": torch.__version__, "size": size}
    digest = hashlib.sha1(json.dumps(environment, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"{device.type}_{str(dtype).removeprefix('torch.')}_{digest}.json"
    if path.exists():
        return json.loads(path.read_text())
    peak = {**measure_peak(device, dtype, timing, size), "environment": environment}
    atomic_write_text(path, json.dumps(peak, indent=1))
    return peak
