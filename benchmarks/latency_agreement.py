"""Does the harness's latency agree with torch.utils.benchmark, and what does its timing cost?

    .venv/bin/python benchmarks/latency_agreement.py [--model unet] [--resolution 128x128] [--threads 2]

1. Agreement: the same model and input timed by the harness (``measure_latency``) and by
   ``torch.utils.benchmark.Timer(..., num_threads=N).blocked_autorange()``, alternating A/B/A/B
   so that drift of the machine hits both; the medians must agree within 5%.
2. Overhead: the harness's loop around a call that does nothing costs this much per iteration,
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
from bench.measure.latency import TimingConfig, measure_latency

CPU = torch.device("cpu")


def agreement(forward: Callable[[], object], device: torch.device, threads: int, rounds: int,
              min_run_time: float) -> tuple[list[float], list[float]]:
    """Per round, the median latency in ms of ``forward()`` by the harness and by
    ``blocked_autorange``, alternated so that drift of the machine hits both."""
    config = TimingConfig(warmup_iters=3, min_run_time=min_run_time, min_iters=10)
    timer = tbench.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
    harness_ms, reference_ms = [], []
    for _ in range(rounds):
        harness_ms.append(measure_latency(forward, device, config).median_ms)
        reference_ms.append(timer.blocked_autorange(min_run_time=min_run_time).median * 1e3)
    return harness_ms, reference_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--resolution", default="128x128")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-run-time", type=float, default=2.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    height, width = parse_resolution(args.resolution)
    model = models.create_model(args.model, num_classes=11).eval()
    x = torch.randn(1, 3, height, width)

    def forward():
        with torch.inference_mode():
            model(x)

    harness_ms, reference_ms = agreement(forward, CPU, args.threads, args.rounds, args.min_run_time)
    harness, reference = statistics.median(harness_ms), statistics.median(reference_ms)
    difference = (harness - reference) / reference

    # What timing adds to each measured iteration (the clock read and the call), and what the
    # whole loop costs per iteration (bookkeeping included), both measured around a no-op.
    started = time.perf_counter()
    noop = measure_latency(lambda: None, CPU, TimingConfig(warmup_iters=10, min_run_time=1.0, min_iters=1000))
    loop_ms = (time.perf_counter() - started) * 1e3 / (noop.iters + noop.warmup_iters)
    overhead = noop.median_ms / harness

    print(f"model={args.model} resolution={height}x{width} threads={args.threads} "
          f"torch={torch.__version__} rounds={args.rounds} min_run_time={args.min_run_time}s")
    print(f"harness median latency      : {harness:9.3f} ms  (per round: {', '.join(f'{t:.3f}' for t in harness_ms)})")
    print(f"blocked_autorange median    : {reference:9.3f} ms  (per round: {', '.join(f'{t:.3f}' for t in reference_ms)})")
    print(f"difference                  : {difference:+.2%}  ({'within' if abs(difference) < 0.05 else 'OUTSIDE'} 5%)")
    print(f"timing overhead / iteration : {noop.median_ms * 1e3:9.3f} us = {overhead:.4%} of the model's latency "
          f"({'under' if overhead < 0.01 else 'OVER'} 1%)")
    print(f"loop cost / iteration       : {loop_ms * 1e3:9.3f} us = {loop_ms / harness:.4%} of the model's latency "
          "(bookkeeping outside the timed region included)")


if __name__ == "__main__":
    main()
