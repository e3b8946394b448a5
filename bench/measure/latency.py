"""Inference latency: warm-up, device synchronisation, adaptive iteration count, robust statistics.

Every iteration is timed on its own, so the spread (IQR, p90) is the spread of single calls.
On CPU a call is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events recorded
around it on the current stream, and the device is synchronised once before reading them all,
so the timing itself never stalls the GPU queue. Like ``torch.utils.benchmark``'s
``blocked_autorange``, the loop runs until both a minimum run time and a minimum iteration count
are reached.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import torch
from tqdm import tqdm

from bench.progress import tick

CPU_TIMER = "time.perf_counter per iteration"
CUDA_TIMER = "CUDA events per iteration, one device synchronisation at the end"


@dataclass(frozen=True)
class TimingConfig:
    warmup_iters: int = 3
    min_run_time: float = 1.0  # seconds of timed iterations, at least
    min_iters: int = 10
    max_iters: int = 10_000

    @classmethod
    def from_config(cls, measure: Mapping[str, Any]) -> "TimingConfig":
        """The loop's settings from the ``measure`` config (its other keys are not the loop's)."""
        return cls(**{f.name: measure[f.name] for f in fields(cls) if f.name in measure})


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    iqr_ms: float
    p90_ms: float
    mean_ms: float
    iters: int
    warmup_iters: int
    timer: str


def summarize(times_ms: list[float], warmup_iters: int, timer: str) -> LatencyStats:
    """Median, interquartile range and 90th percentile of per-iteration times."""
    if len(times_ms) < 2:
        raise ValueError("need at least two timed iterations for a spread")
    quartiles = statistics.quantiles(times_ms, n=4, method="inclusive")
    deciles = statistics.quantiles(times_ms, n=10, method="inclusive")
    return LatencyStats(
        median_ms=statistics.median(times_ms),
        iqr_ms=quartiles[2] - quartiles[0],
        p90_ms=deciles[8],
        mean_ms=statistics.fmean(times_ms),
        iters=len(times_ms),
        warmup_iters=warmup_iters,
        timer=timer,
    )


def _enough(elapsed: float, iters: int, config: TimingConfig) -> bool:
    return iters >= config.max_iters or (elapsed >= config.min_run_time and iters >= config.min_iters)


def _time_cpu(fn: Callable[[], object], config: TimingConfig, bar: tqdm) -> list[float]:
    times_ms: list[float] = []
    start_all = time.perf_counter()
    while not _enough(time.perf_counter() - start_all, len(times_ms), config):
        start = time.perf_counter()
        fn()
        times_ms.append((time.perf_counter() - start) * 1e3)
        bar.update()
        tick()
    return times_ms


def _time_cuda(fn: Callable[[], object], config: TimingConfig, bar: tqdm,
               device: torch.device) -> list[float]:
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    start_all = time.perf_counter()
    # The host clock only decides when to stop; the events measure the device's time.
    while not _enough(time.perf_counter() - start_all, len(events), config):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
        bar.update()
        tick()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def measure_latency(fn: Callable[[], object], device: torch.device,
                    config: TimingConfig = TimingConfig(), progress: bool = False) -> LatencyStats:
    """Time ``fn()`` (one forward pass of one batch) after ``config.warmup_iters`` warm-up calls."""
    for _ in range(config.warmup_iters):
        fn()
        tick()
    synchronize(device)
    with tqdm(desc="timing", unit="it", disable=not progress, leave=False) as bar:
        if device.type == "cuda":
            times_ms = _time_cuda(fn, config, bar, device)
            timer = CUDA_TIMER
        else:
            times_ms = _time_cpu(_synchronized(fn, device), config, bar)
            timer = CPU_TIMER if device.type == "cpu" else f"{CPU_TIMER} + {device.type} synchronize"
    return summarize(times_ms, config.warmup_iters, timer)


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device``; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    if device.type == "cpu":
        return fn

    def call_and_wait():
        fn()
        synchronize(device)

    return call_and_wait
