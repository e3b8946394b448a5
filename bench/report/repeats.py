"""Repeated runs: rows that differ only in their seed, folded into a mean with a confidence interval.

Rows share a ``repeat_key`` (the job key without the seed, ``bench.jobspec.repeat_key``) when they
are repeats of one configuration; rows written before that column existed fall back to their own
``job_key`` (a group of one). The interval is Student's t interval of the mean, the usual choice
for a handful of seeds; one value gives no interval.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable

import pandas as pd

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float        # sample standard deviation (n - 1); NaN for one value
    n: int
    low: float        # the confidence interval of the mean; NaN for one value
    high: float

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        """E.g. "41.3 ± 1.2 (95% CI 38.4 to 44.2, n=3)" or "41.3 (one run)"."""
        mean = f"{self.mean * scale:.{digits}f}"
        if self.n < 2:
            return f"{mean} (one run)"
        return (f"{mean} ± {self.std * scale:.{digits}f} ({CONFIDENCE:.0%} CI {self.low * scale:.{digits}f} "
                f"to {self.high * scale:.{digits}f}, n={self.n})")


def spread(values: Iterable[float], confidence: float = CONFIDENCE) -> Spread:
    """Mean, standard deviation, count and the t confidence interval of the mean of ``values``."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Spread(mean, math.nan, 1, math.nan, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    # scipy.special's t quantile (the same as scipy.stats.t.ppf), imported here: scipy.stats takes
    # a second to import, which the report pays only when something repeats.
    from scipy.special import stdtrit
    half = float(stdtrit(n - 1, (1 + confidence) / 2)) * std / math.sqrt(n)
    return Spread(mean, std, n, mean - half, mean + half)


def spread_text(values: Iterable[float], scale: float = 100.0) -> str:
    """``spread(values).text(scale)``, or '' when there is no value (e.g. a failed run)."""
    values = [v for v in values if v is not None and not math.isnan(float(v))]
    return spread(values).text(scale) if values else ""


def repeat_groups(rows: pd.DataFrame) -> pd.Series:
    """The repeat group of each row: its ``repeat_key``, or its ``job_key`` where that is empty."""
    return rows["repeat_key"].where(rows["repeat_key"].fillna("") != "", rows["job_key"])


#: The training budget's limits (conf/train/default.yaml) and their units.
LIMIT_UNITS = {"max_seconds": "s", "max_steps": "steps", "max_epochs": "epochs"}


def train_limits(config: str | dict) -> tuple[tuple[str, float], ...]:
    """The training limits a row's config (JSON text or its dict) set, e.g. (("max_seconds", 15),);
    () without training."""
    train = (json.loads(config) if isinstance(config, str) else config).get("train", {}) if config else {}
    return tuple((key, train[key]) for key in LIMIT_UNITS if isinstance(train.get(key), (int, float)))


def training_budget(config: str | dict) -> str:
    """The training budget a row's config set, e.g. "15 s" or "200 steps"; '' without training."""
    return " or ".join(f"{value:g} {LIMIT_UNITS[key]}" for key, value in train_limits(config))
