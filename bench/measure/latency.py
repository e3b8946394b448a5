"""Inference latency: warm-up, device synchronisation, timing to a stated precision, robust statistics.

Every call is timed on its own, so the spread (IQR, p90, p99) is the spread of single calls. On
CPU a call is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events recorded around
it on the current stream, read after one device synchronisation per block of calls, so the timing
itself never stalls the GPU queue mid-call.

When to stop (as MLPerf LoadGen's valid run: a minimum duration *and* a minimum count, then a
precision target): after at least ``min_run_time`` seconds and ``min_iters`` calls, as soon as the
distribution-free 95% interval of the median lies within ``rel_ci`` of the median; at the latest
after ``max_run_time`` seconds (and the 6 calls an interval needs) or ``max_iters`` calls, and then
the stats say the precision was not reached. Timings are skewed with a heavy right tail, so the interval comes from order
statistics, not from a normal approximation of the mean.
"""
from __future__ import annotations

import bisect
import functools
import math
import statistics
import time
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import torch
from tqdm import tqdm

from bench.config_schema import MeasureConfig
from bench.progress import tick
from bench.records import column

CPU_TIMER = "time.perf_counter per iteration"
CUDA_TIMER = "CUDA events per iteration, one device synchronisation per block of calls"
#: The coverage of the median's interval.
CONFIDENCE = 0.95
#: The fewest calls with a 95% interval of the median: the run-time cap waits for them (a run
#: shorter than that could state no precision at all); only ``max_iters`` stops sooner.
MIN_CALLS_FOR_INTERVAL = 6
#: A percentile is reported only from enough calls to have one beyond it: p99 needs 100.
P99_MIN_CALLS = 100
#: Up to this many calls an interval's ranks come from the exact Binomial(n, q); above it from the
#: normal approximation (for the median j = n/2 - 0.98 sqrt(n)), which agrees with it to a rank there.
EXACT_RANKS_UP_TO = 300
#: 1.96 standard normal deviations: the two-sided 95% point.
Z95 = 1.959964

STOP_PRECISION = "precision reached"
STOP_MAX_RUN_TIME = "max_run_time reached"
STOP_MAX_ITERS = "max_iters reached"


_MEASURE = MeasureConfig()   # the defaults, written once: in the config schema


@dataclass(frozen=True)
class TimingConfig:
    """The loop's own settings (``measure.*``; their help in bench/config_schema.py)."""
    warmup_iters: int = _MEASURE.warmup_iters
    min_run_time: float = _MEASURE.min_run_time   # seconds of timed calls, at least (a floor, like min_iters)
    min_iters: int = _MEASURE.min_iters
    max_iters: int = _MEASURE.max_iters
    rel_ci: float = _MEASURE.rel_ci               # stop once the median's 95% interval is within this fraction of it
    max_run_time: float = _MEASURE.max_run_time   # stop here even if the precision is not reached (flagged)

    @classmethod
    def from_config(cls, measure: Mapping[str, Any]) -> "TimingConfig":
        """The loop's settings from the ``measure`` config (its other keys are not the loop's)."""
        return cls(**{f.name: measure[f.name] for f in fields(cls) if f.name in measure})


@functools.cache
def quantile_interval_ranks(n: int, q: float = 0.5) -> tuple[int, int] | None:
    """1-based ranks (j, k) of the order statistics x(j) <= x(k) that cover the population's
    ``q`` quantile with at least 95% probability whatever the distribution (the number of calls
    below that quantile is Binomial(n, q)); None when ``n`` is too small for such ranks (fewer
    than 6 calls for the median, about 36 for the 90th percentile)."""
    alpha = (1 - CONFIDENCE) / 2
    if n > EXACT_RANKS_UP_TO:
        spread = Z95 * math.sqrt(n * q * (1 - q))
        j, k = math.floor(n * q - spread), math.ceil(n * q + 1 + spread)
    else:
        pmf = [math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(n + 1)]
        # j: the largest rank with P(B < j) <= alpha; k: the smallest with P(B >= k) <= alpha.
        j = next(i for i in range(n + 1) if sum(pmf[:i + 1]) > alpha)
        k = next(i for i in range(n, -1, -1) if sum(pmf[i:]) > alpha) + 1
    return (j, k) if 1 <= j and k <= n else None


def median_interval_ranks(n: int) -> tuple[int, int] | None:
    return quantile_interval_ranks(n, 0.5)


def quantile_interval(sorted_ms: list[float], q: float) -> tuple[float, float] | None:
    """The ``q`` quantile's distribution-free 95% interval from sorted times, or None (too few)."""
    ranks = quantile_interval_ranks(len(sorted_ms), q)
    return None if ranks is None else (sorted_ms[ranks[0] - 1], sorted_ms[ranks[1] - 1])


def median_interval(sorted_ms: list[float]) -> tuple[float, float] | None:
    return quantile_interval(sorted_ms, 0.5)


def relative_half_width(sorted_ms: list[float]) -> float | None:
    """How far the interval reaches from the median, as a fraction of it (the larger side)."""
    interval = median_interval(sorted_ms)
    if interval is None:
        return None
    median = statistics.median(sorted_ms)
    return max(median - interval[0], interval[1] - median) / median if median > 0 else math.inf


def stop_reason(elapsed: float, sorted_ms: list[float], config: TimingConfig) -> str:
    """Why the loop stops now, or "" to go on (see the module's docstring)."""
    n = len(sorted_ms)
    if n >= config.max_iters:
        return STOP_MAX_ITERS
    if elapsed >= config.max_run_time and n >= MIN_CALLS_FOR_INTERVAL:
        return STOP_MAX_RUN_TIME
    if elapsed >= config.min_run_time and n >= config.min_iters:
        width = relative_half_width(sorted_ms)
        if width is not None and width <= config.rel_ci:
            return STOP_PRECISION
    return ""


@dataclass(frozen=True)
class LatencyStats:
    """A timing loop's figures; as row columns (bench/records.py) ``latency_*`` for inference and
    ``train_latency_*`` for the training step."""
    median_ms: float = column("latency_ms_median")
    iqr_ms: float = column("latency_ms_iqr")
    p90_ms: float = column("latency_ms_p90")
    p90_ci_low_ms: float | None = column("latency_ms_p90_ci_low")  # the p90's 95% interval; None below about 36 calls
    p90_ci_high_ms: float | None = column("latency_ms_p90_ci_high")
    p99_ms: float | None = column("latency_ms_p99")      # None below P99_MIN_CALLS calls
    mean_ms: float = column("latency_ms_mean")
    ci_low_ms: float | None = column("latency_ms_ci_low")  # the median's 95% interval; None below 6 calls
    ci_high_ms: float | None = column("latency_ms_ci_high")
    rel_ci: float | None = column("latency_rel_ci")      # the interval's reach from the median, as a fraction of it
    target_rel_ci: float = column("latency_target_rel_ci")
    precision_reached: bool = column("latency_precision_reached")
    stop_reason: str = column("latency_stop_reason")
    iters: int = column("latency_iters")
    warmup_iters: int = column("warmup_iters")
    timer: str = column("timer")
    times_ms: tuple[float, ...] = column("latency_times_ms")  # every timed call, in order (0.1 us)


def summarize(times_ms: list[float], warmup_iters: int, timer: str, target_rel_ci: float = TimingConfig.rel_ci,
              stopped_because: str = "") -> LatencyStats:
    """Median with its interval, IQR, p90 (and p99 from 100 calls) of per-call times."""
    if len(times_ms) < 2:
        raise ValueError("need at least two timed iterations for a spread")
    ordered = sorted(times_ms)
    quartiles = statistics.quantiles(ordered, n=4, method="inclusive")
    percentiles = statistics.quantiles(ordered, n=100, method="inclusive")
    interval, p90_interval = median_interval(ordered), quantile_interval(ordered, 0.9)
    width = relative_half_width(ordered)
    return LatencyStats(
        median_ms=statistics.median(ordered),
        iqr_ms=quartiles[2] - quartiles[0],
        p90_ms=percentiles[89],
        p90_ci_low_ms=p90_interval[0] if p90_interval else None,
        p90_ci_high_ms=p90_interval[1] if p90_interval else None,
        p99_ms=percentiles[98] if len(ordered) >= P99_MIN_CALLS else None,
        mean_ms=statistics.fmean(ordered),
        ci_low_ms=interval[0] if interval else None,
        ci_high_ms=interval[1] if interval else None,
        rel_ci=width,
        target_rel_ci=target_rel_ci,
        precision_reached=width is not None and width <= target_rel_ci,
        stop_reason=stopped_because,
        iters=len(ordered),
        warmup_iters=warmup_iters,
        timer=timer,
        times_ms=tuple(round(t, 4) for t in times_ms),
    )


def _cpu_block(fn: Callable[[], object], calls: int) -> list[float]:
    times_ms = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times_ms.append((time.perf_counter() - start) * 1e3)
    return times_ms


def _cuda_block(fn: Callable[[], object], calls: int, device: torch.device) -> list[float]:
    """The device time of each call; the host waits once, after the block."""
    events = []
    for _ in range(calls):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def time_until_precise(time_block: Callable[[int], list[float]], config: TimingConfig,
                       bar: tqdm | None = None, grow_blocks: bool = False) -> tuple[list[float], str]:
    """Per-call times from ``time_block(calls)`` until ``stop_reason`` says stop; returns the
    times and the reason. With ``grow_blocks`` (CUDA) the first block is the calls the loop
    needs before it may stop, each later one a quarter of the calls so far, so the device is
    synchronised a logarithmic number of times."""
    times_ms: list[float] = []
    ordered: list[float] = []
    started = time.perf_counter()
    while True:
        if not grow_blocks:
            calls = 1
        elif times_ms:
            calls = max(1, len(times_ms) // 4)
        else:
            calls = max(config.min_iters, MIN_CALLS_FOR_INTERVAL)
        block = time_block(min(calls, config.max_iters - len(times_ms)))
        times_ms += block
        for value in block:
            bisect.insort(ordered, value)
        tick()
        if bar is not None:
            bar.update(len(block))
        reason = stop_reason(time.perf_counter() - started, ordered, config)
        if reason:
            return times_ms, reason


def measure_latency(fn: Callable[[], object], device: torch.device,
                    config: TimingConfig = TimingConfig(), progress: bool = False) -> LatencyStats:
    """Time ``fn()`` (one forward pass of one batch) after ``config.warmup_iters`` warm-up calls."""
    for _ in range(config.warmup_iters):
        fn()
        tick()
    synchronize(device)
    with tqdm(desc="timing", unit="it", disable=not progress, leave=False) as bar:
        if device.type == "cuda":
            times_ms, reason = time_until_precise(lambda calls: _cuda_block(fn, calls, device), config, bar,
                                                  grow_blocks=True)
            timer = CUDA_TIMER
        else:
            call = synchronized(fn, device)
            times_ms, reason = time_until_precise(lambda calls: _cpu_block(call, calls), config, bar)
            timer = CPU_TIMER if device.type == "cpu" else f"{CPU_TIMER} + {device.type} synchronize"
    return summarize(times_ms, config.warmup_iters, timer, config.rel_ci, reason)
def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device``; a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def synchronized(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    if device.type == "cpu":
        return fn

    def call_and_wait():
        fn()
        synchronize(device)

    return call_and_wait
