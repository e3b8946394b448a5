"""The accuracy/latency Pareto front: lower latency and higher mIoU are both better."""
from __future__ import annotations

from typing import Iterable


def pareto_front(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (latency, miou) points, by increasing latency.

    A point is dominated when another is at least as fast and at least as accurate, and
    strictly better in one of the two. Duplicate points are returned once.
    """
    # Fastest first, and at equal latency the most accurate first, so a single sweep keeps a
    # point exactly when it is more accurate than every faster (or equally fast) point.
    front: list[tuple[float, float]] = []
    for latency, miou in sorted(set(points), key=lambda p: (p[0], -p[1])):
        if not front or miou > front[-1][1]:
            front.append((latency, miou))
    return front
