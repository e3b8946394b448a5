"""The accuracy/latency Pareto front: lower latency and higher mIoU are both better."""
from __future__ import annotations

from typing import Iterable, Sequence


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


def interval_pareto_front(points: Sequence[tuple[float, float, float]]) -> list[int]:
    """The indices of the non-dominated (latency_low, latency_high, miou) points, by increasing
    latency interval; (low, high) is a point's latency interval (low = high = its latency when it
    has none).

    A point is dominated only when another is at least as accurate and *surely* faster: that
    one's whole latency interval lies below this one's (its high < this low). Overlapping
    intervals are a tie, not a win, so both can stay on the front.
    """
    return sorted((i for i, (low, high, miou) in enumerate(points)
                   if not any(other_miou >= miou and other_high < low
                              for other_low, other_high, other_miou in points)),
                  key=lambda i: (points[i][0], points[i][1], -points[i][2]))
