"""What a profile job's latency figures stand for, named as MLPerf Inference names its scenarios.

``scenario=latency`` (single stream): one batch of the job's ``batch_size`` after another; the row
holds the median and p90 per batch with their intervals. ``scenario=throughput`` (offline): the
batch that gives the most images per second. The batch is doubled from ``batch_size`` until
images/s stops improving by more than ``measure.throughput_min_gain``, memory runs out, or
``measure.throughput_max_batch`` is passed; the row is profiled at the best batch and lists
every batch tried.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

SCENARIOS = ("latency", "throughput")


@dataclass
class ThroughputSearch:
    best_batch: int
    best_images_per_s: float
    steps: list[dict[str, Any]] = field(default_factory=list)  # {"batch", "images_per_s"} or {"batch", "status"}


def throughput_search(images_per_s: Callable[[int], float], start: int, max_batch: int, min_gain: float,
                      is_out_of_memory: Callable[[BaseException], bool]) -> ThroughputSearch:
    """Double the batch from ``start`` while each step gains more than ``min_gain`` (a fraction)
    of images/s over the best so far; an out-of-memory batch ends the search (the best before it
    stands), any other error is raised. The first batch must fit."""
    steps: list[dict[str, Any]] = []
    best_batch, best = start, images_per_s(start)
    steps.append({"batch": start, "images_per_s": best})
    batch = start * 2
    while batch <= max_batch:
        try:
            rate = images_per_s(batch)
        except Exception as exc:  # noqa: BLE001  (only running out of memory ends a search quietly)
            if not is_out_of_memory(exc):
                raise
            steps.append({"batch": batch, "status": "oom"})
            break
        steps.append({"batch": batch, "images_per_s": rate})
        gained = rate > best * (1 + min_gain)
        if rate > best:
            best_batch, best = batch, rate
        if not gained:
            break
        batch *= 2
    return ThroughputSearch(best_batch, best, steps)
