"""Does the harness's latency agree with torch.utils.benchmark, do its intervals cover repeated
medians, and what does its timing cost?

    .venv/bin/python benchmarks/latency_agreement.py [--models fcn_basic,segnet_basic,unet]
        [--resolution 96x128] [--threads 2] [--rounds 5]

Run it alone on the machine: anything else running moves both timers.
1. Agreement: per model, the same input timed by the harness (``measure_latency``, to its stated
   precision) and by ``torch.utils.benchmark.Timer(..., num_threads=N).blocked_autorange()``,
   alternating A/B/A/B so that drift of the machine hits both; the ratio of their medians should
   be within 5% of 1.
2. Coverage: each harness round's 95% interval of the median, and how many of the *other*
   rounds' medians it covers (a repeated measurement should land inside it most of the time).
3. Overhead: the harness's loop around a call that does nothing costs this much per iteration,
   as a share of the model's median latency (must be under 1%).
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
import torch.utils.benchmark as tbench

import models
from bench.jobspec import parse_resolution
from bench.measure.latency import LatencyStats, TimingConfig, measure_latency

CPU = torch.device("cpu")


def agreement(forward: Callable[[], object], device: torch.device, threads: int, rounds: int,
              config: TimingConfig) -> tuple[list[LatencyStats], list[float]]:
    """Per round, the harness's stats and ``blocked_autorange``'s median in ms, alternated so that
    drift of the machine hits both (the GPU kit, benchmarks/gpu_checks.py, runs it on CUDA)."""
    timer = tbench.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
    harness, reference_ms = [], []
    for _ in range(rounds):
        harness.append(measure_latency(forward, device, config))
        reference_ms.append(timer.blocked_autorange(min_run_time=config.min_run_time).median * 1e3)
    return harness, reference_ms


def covered(rounds: list[LatencyStats]) -> tuple[int, int]:
    """How many (interval, other round's median) pairs have the median inside the interval."""
    pairs = [(mine, other) for mine in rounds for other in rounds if other is not mine and mine.ci_low_ms is not None]
    return sum(mine.ci_low_ms <= other.median_ms <= mine.ci_high_ms for mine, other in pairs), len(pairs)


def report_model(name: str, height: int, width: int, threads: int, rounds: int, config: TimingConfig) -> float:
    """Print one model's agreement and coverage; returns its harness median (ms)."""
    model = models.create_model(name, num_classes=11).eval()
    x = torch.randn(1, 3, height, width)

    def forward():
        with torch.inference_mode():
            model(x)

    harness, reference_ms = agreement(forward, CPU, threads, rounds, config)
    median = statistics.median(stats.median_ms for stats in harness)
    ratio = median / statistics.median(reference_ms)
    inside, pairs = covered(harness)
    print(f"{name}: harness/blocked_autorange = {ratio:.3f} ({'within' if abs(ratio - 1) < 0.05 else 'OUTSIDE'} 5%); "
          f"intervals cover {inside} of {pairs} other rounds' medians")
    for number, (stats, reference) in enumerate(zip(harness, reference_ms)):
        print(f"  round {number}: harness {stats.median_ms:.3f} ms [{stats.ci_low_ms:.3f}, {stats.ci_high_ms:.3f}] "
              f"n={stats.iters} ({stats.stop_reason}); blocked_autorange {reference:.3f} ms")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fcn_basic,segnet_basic,unet")
    parser.add_argument("--resolution", default="96x128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    height, width = parse_resolution(args.resolution)
    config = TimingConfig(warmup_iters=3, min_run_time=args.min_run_time, min_iters=10)
    print(f"resolution={height}x{width} threads={args.threads} torch={torch.__version__} rounds={args.rounds} "
          f"min_run_time={args.min_run_time}s rel_ci={config.rel_ci} max_run_time={config.max_run_time}s")
    medians = [report_model(name, height, width, args.threads, args.rounds, config) for name in args.models.split(",")]

    # What timing adds to each measured iteration (the clock read and the call), and what the
    # whole loop costs per iteration (bookkeeping included), both measured around a no-op.
    started = time.perf_counter()
    noop = measure_latency(lambda: None, CPU, TimingConfig(warmup_iters=10, min_run_time=1.0, min_iters=1000,
                                                           max_iters=1000))
    loop_ms = (time.perf_counter() - started) * 1e3 / (noop.iters + noop.warmup_iters)
    fastest = min(medians)
    print(f"timing overhead / iteration : {noop.median_ms * 1e3:9.3f} us = {noop.median_ms / fastest:.4%} of the "
          f"fastest model's latency ({'under' if noop.median_ms / fastest < 0.01 else 'OVER'} 1%)")
    print(f"loop cost / iteration       : {loop_ms * 1e3:9.3f} us = {loop_ms / fastest:.4%} of it "
          "(bookkeeping outside the timed region included)")


if __name__ == "__main__":
    main()
