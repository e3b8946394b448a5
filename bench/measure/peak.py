"""The machine's measured ceilings, and how close a model's forward pass comes to them.

The compute ceiling is a large square matrix multiply (the operation convolutions are lowered
to); the memory ceiling a triad-style copy (``a = b + s * c`` over arrays far larger than the
caches), so the report can tell compute-bound from memory-bound models. Both are timed by
``torch.utils.benchmark.Timer.blocked_autorange`` and taken as the **best block**, not a median:
a ceiling is what the machine can do, and anything else running only makes blocks slower. They
are measured once per device, precision, thread count and torch version and cached as JSON under
``<results_dir>/cache/peak/``. A row whose model beats the cached peak is flagged, and the peak
is measured again first in case the cached one was taken on a busy machine.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.atomic import atomic_write_text

PEAK_SIZE = 2048  # large enough to be compute-bound on a CPU core or a GPU, small enough to take ~10 ms
TRIAD_ELEMENTS = 1 << 24  # 64 MiB per float32 array: well past the last-level cache of a CPU
PEAK_MIN_RUN_TIME = 2.0   # seconds per ceiling: enough blocks for a stable best
METHOD_VERSION = 2        # 2: best block of torch.utils.benchmark (1 was a median of the latency loop)
BEATS_PEAK = ("the forward pass beat the dense matmul ceiling (measured again first): its kernels do "
              "fewer multiply-adds than the FLOP count credits them with (e.g. Winograd convolutions) "
              "or keep the cores busier than a 2048x2048 matmul does; read its GFLOP/s as "
              "counted-FLOP equivalents, not as work done")


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


@dataclass(frozen=True)
class Efficiency:
    """Achieved FLOP/s of the timed forward pass against the machine's measured ceilings."""
    achieved_flops_per_s: float           # flops_per_image x batch / median latency
    peak_flops_per_s: float               # the machine's matmul peak in this precision
    peak_fraction: float                  # achieved / peak
    peak_method: str
    peak_exceeded: bool                   # achieved above the peak: see peak_note
    peak_note: str                        # why a model can beat the matmul ceiling
    memory_bandwidth_bytes_per_s: float | None  # the machine's memory ceiling (triad), beside the peak
    bandwidth_method: str


def efficiency(flops_per_image: float, batch_size: int, latency_ms: float, peak: dict) -> Efficiency:
    """The achieved FLOP/s, its fraction of ``peak`` (``cached_peak``'s ceilings), flagged with the
    reason above 1, and the machine's memory bandwidth beside it."""
    achieved = achieved_flops_per_s(flops_per_image, batch_size, latency_ms)
    fraction = peak_fraction(achieved, peak["flops_per_s"])
    return Efficiency(achieved, peak["flops_per_s"], fraction, peak["method"], fraction > 1,
                      BEATS_PEAK if fraction > 1 else "", peak.get("bytes_per_s"), peak.get("bandwidth_method", ""))


def matmul_flops(size: int) -> float:
    """FLOPs of one size x size by size x size matrix multiply (1 multiply-add = 2 FLOP)."""
    return 2.0 * size ** 3


def best_block_seconds(stmt: str, tensors: dict[str, torch.Tensor], min_run_time: float) -> tuple[float, int]:
    """The fastest block's time per call of ``stmt`` at this process's thread count, and the
    number of blocks (``Timer`` synchronises CUDA and defaults to one thread, hence the count)."""
    # Imported here: torch.utils.benchmark imports cpp_extension, which warns on every CPU-only
    # start-up that it found no CUDA runtime; only measuring a peak needs it.
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(stmt=stmt, globals=tensors, num_threads=torch.get_num_threads())
    measurement = timer.blocked_autorange(min_run_time=min_run_time)
    return min(measurement.times), len(measurement.times)


def measure_peak(device: torch.device, dtype: torch.dtype, size: int = PEAK_SIZE,
                 min_run_time: float = PEAK_MIN_RUN_TIME) -> dict:
    """The matmul ceiling in FLOP/s, with its method."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    with torch.inference_mode():
        seconds, blocks = best_block_seconds("a @ b", {"a": a, "b": b}, min_run_time)
    return {"flops_per_s": matmul_flops(size) / seconds,
            "method": (f"{size}x{size} {str(dtype).removeprefix('torch.')} matmul, best of {blocks} blocks "
                       f"(torch.utils.benchmark blocked_autorange, {min_run_time:g} s), "
                       f"{torch.get_num_threads()} threads")}


def measure_bandwidth(device: torch.device, elements: int = TRIAD_ELEMENTS,
                      min_run_time: float = PEAK_MIN_RUN_TIME) -> dict:
    """The memory ceiling in bytes/s: ``a = b + 2 c`` reads two arrays and writes one."""
    a, b, c = (torch.empty(elements, device=device, dtype=torch.float32).uniform_() for _ in range(3))
    with torch.inference_mode():
        seconds, blocks = best_block_seconds("torch.add(b, c, alpha=2.0, out=a)", {"a": a, "b": b, "c": c, "torch": torch},
                                             min_run_time)
    return {"bytes_per_s": 3 * elements * 4 / seconds,
            "method": (f"triad a = b + 2c over 3 x {elements * 4 >> 20} MiB float32, best of {blocks} blocks "
                       f"(torch.utils.benchmark blocked_autorange), {torch.get_num_threads()} threads")}


def _cache_path(cache_dir: Path, device: torch.device, device_name: str, dtype: torch.dtype, size: int) -> Path:
    environment = {"device": device_name, "type": device.type, "dtype": str(dtype), "method": METHOD_VERSION,
                   "threads": torch.get_num_threads(), "torch": torch.__version__, "size": size}
    digest = hashlib.sha1(json.dumps(environment, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir / f"{device.type}_{str(dtype).removeprefix('torch.')}_{digest}.json"


def cached_peak(cache_dir: Path, device: torch.device, device_name: str, dtype: torch.dtype,
                size: int = PEAK_SIZE, remeasure: bool = False) -> dict:
    """The ceilings for this environment from ``cache_dir``: {"flops_per_s", "method",
    "bytes_per_s", "bandwidth_method"}; measured and stored on the first call, or when
    ``remeasure`` (a model beat the cached peak). A re-measured peak never goes down: the best
    block of either measurement is the machine's ceiling."""
    path = _cache_path(cache_dir, device, device_name, dtype, size)
    cached = json.loads(path.read_text()) if path.exists() else None
    if cached is not None and not remeasure:
        return cached
    compute, memory = measure_peak(device, dtype, size), measure_bandwidth(device)
    if cached is not None and cached["flops_per_s"] >= compute["flops_per_s"]:
        compute = {"flops_per_s": cached["flops_per_s"], "method": cached["method"]}
    peak = {**compute, "bytes_per_s": max(memory["bytes_per_s"], (cached or {}).get("bytes_per_s", 0.0)),
            "bandwidth_method": memory["method"], "remeasured": cached is not None}
    atomic_write_text(path, json.dumps(peak, indent=1))
    return peak
