"""The accuracy/latency Pareto front with intervals: lower latency and higher mIoU are both better,
and a difference counts only where the two intervals do not overlap.

One rule for the page's picks (``bench.report.answer``) and its accuracy-against-latency figure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Interval:
    """A figure with its 95% interval; ``low == high == value`` where there is none (a published
    figure, a deterministic count), which makes every difference a clear one."""
    value: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> "Interval":
        return cls(value, value, value)

    def clearly_below(self, other: "Interval") -> bool:
        return self.high < other.low


def overlap(a: Interval, b: Interval) -> bool:
    """Neither clearly below the other: a tie."""
    return not (a.clearly_below(b) or b.clearly_below(a))


def dominates(a: tuple[Interval, Interval], b: tuple[Interval, Interval]) -> bool:
    """(latency, accuracy) ``a`` beats ``b``: clearly faster and not clearly less accurate, or
    clearly more accurate and not clearly slower."""
    (a_latency, a_accuracy), (b_latency, b_accuracy) = a, b
    faster, slower = a_latency.clearly_below(b_latency), b_latency.clearly_below(a_latency)
    better, worse = b_accuracy.clearly_below(a_accuracy), a_accuracy.clearly_below(b_accuracy)
    return (faster and not worse) or (better and not slower)


def front(points: Sequence[tuple[Interval, Interval]]) -> list[int]:
    """The indices of the (latency, accuracy) points no other point dominates, fastest first.
    Ties (overlapping intervals) stay on the front together."""
    kept = [i for i, point in enumerate(points)
            if not any(dominates(other, point) for j, other in enumerate(points) if j != i)]
    return sorted(kept, key=lambda i: (points[i][0].value, -points[i][1].value))
