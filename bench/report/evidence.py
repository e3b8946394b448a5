"""Accuracy claims, tested by a paired comparison over seeds and only on sufficient evidence.

A claim such as "A is more accurate than B" is decided in each setting (the test's ``same``
columns) from the seeds both models ran with: the per-seed differences A - B give a mean and a t
confidence interval. The verdict is **holds** (the interval lies above the threshold) or **does
not hold** (below it) only when every compared model met the evidence bar of
``conf/published.yaml``'s ``evidence`` section:

* at least ``min_seeds`` seeds, paired by seed;
* at least ``min_train_steps`` training steps in every run;
* a learning curve that has flattened: over the last quarter of training, validation mIoU rose by
  less than ``plateau_points`` (``bench.curve.last_quarter_gain``).

Anything short of that is **inconclusive**, with the reasons in words ("1 seed", "fcn8s still
improving: +6.0 points in the last quarter", "3 training steps"): a verdict from noise is worse
than none.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.curve import last_quarter_gain
from bench.report.frame import json_value
from bench.report.repeats import spread

INCONCLUSIVE = "inconclusive"
PERCENT = 100.0
#: The accuracy quantities compared over paired seeds, behind the evidence bar, and their names.
ACCURACY_QUANTITIES = {"miou": "mIoU", "boundary_miou": "Boundary IoU"}


@dataclass(frozen=True)
class EvidenceBar:
    min_seeds: int = 3
    min_train_steps: int = 100
    plateau_points: float = 1.0     # mIoU points gained in the last quarter, at most
    confidence: float = 0.95

    @classmethod
    def from_published(cls, published: dict) -> "EvidenceBar":
        return cls(**(published.get("evidence") or {}))


def _curve(value) -> list[dict]:
    """A row's learning curve, as stored in a frame (JSON text) or as a list."""
    if isinstance(value, str):
        return json_value(value, [])
    return list(value) if isinstance(value, list) else []


def seed_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows holding an mIoU, the newest per seed: one model's runs in one setting."""
    runs = rows[rows["miou"].notna()]
    return runs.sort_values("finished_at").drop_duplicates("seed", keep="last")


def evidence_gaps(runs: pd.DataFrame, bar: EvidenceBar) -> list[str]:
    """Why one model's runs (one per seed) fall short of the bar, in words; [] when they meet it."""
    gaps = []
    if len(runs) < bar.min_seeds:
        gaps.append(f"{len(runs)} seed{'s' if len(runs) != 1 else ''} (needs {bar.min_seeds})")
    steps = runs["train_steps"].dropna()
    if steps.empty or steps.min() < bar.min_train_steps:
        fewest = "no recorded" if steps.empty else f"{steps.min():.0f}"
        gaps.append(f"{fewest} training steps (needs {bar.min_train_steps})")
    gains = [last_quarter_gain(_curve(c)) for c in runs["learning_curve"]]
    if any(g is None for g in gains):
        gaps.append("no learning curve to show it has flattened")
    elif max(gains) * PERCENT >= bar.plateau_points:
        gaps.append(f"still improving: {max(gains) * PERCENT:+.1f} points in the last quarter "
                    f"(needs under {bar.plateau_points:g})")
    return gaps


def shortfalls(model: str, runs: pd.DataFrame, bar: EvidenceBar) -> list[str]:
    """``evidence_gaps`` of ``model``'s paired runs in one setting, each naming the model."""
    return [f"{model}: {gap}" for gap in evidence_gaps(runs, bar)]


@dataclass(frozen=True)
class SettingVerdict:
    verdict: str
    text: str


def compare_setting(rows: pd.DataFrame, subject: str, other: str, threshold: float,
                    bar: EvidenceBar, quantity: str = "miou") -> SettingVerdict:
    """Paired comparison of ``subject`` - ``other`` accuracy (``quantity``, one of
    ``ACCURACY_QUANTITIES``) over the seeds of one setting.

    ``rows`` holds both models' ok rows of the setting with ``model_key``, ``seed``, ``quantity``,
    ``train_steps`` and ``learning_curve``; a seed run twice counts once (its newest row).
    """
    rows = rows.dropna(subset=["seed"])   # rows from before seeds were recorded cannot be paired
    runs = {m: rows[rows["model_key"] == m].drop_duplicates("seed", keep="last").set_index("seed")
            for m in (subject, other)}
    seeds = runs[subject].index.intersection(runs[other].index)
    paired = {m: runs[m].loc[seeds] for m in runs}
    differences = (paired[subject][quantity] - paired[other][quantity]).tolist()
    if not differences:
        return SettingVerdict(INCONCLUSIVE, f"{INCONCLUSIVE}: no recorded seed was run for both models")
    diff = spread(differences, bar.confidence)
    means = {m: paired[m][quantity].mean() * PERCENT for m in paired}
    measured = (f"{subject} {means[subject]:.1f} vs {other} {means[other]:.1f} {ACCURACY_QUANTITIES[quantity]} over "
                f"{len(seeds)} paired seed{'s' if len(seeds) != 1 else ''}: difference "
                f"{diff.text(PERCENT)} points")
    reasons = shortfalls(subject, paired[subject], bar) + shortfalls(other, paired[other], bar)
    if reasons:
        return SettingVerdict(INCONCLUSIVE, f"{INCONCLUSIVE} ({'; '.join(reasons)}): {measured}")
    if diff.low * PERCENT > threshold:
        return SettingVerdict("holds", f"holds: {measured}")
    if diff.high * PERCENT < threshold:
        return SettingVerdict("does not hold", f"does not hold: {measured}")
    return SettingVerdict(INCONCLUSIVE, f"{INCONCLUSIVE} (the interval of the difference includes "
                                        f"{threshold:g}): {measured}")


def combine(verdicts: list[str], holds: str, not_hold: str, partly: str, mixed: str) -> str:
    """One test's verdict over its settings: inconclusive settings decide nothing."""
    conclusive = [v for v in verdicts if v != INCONCLUSIVE]
    if not conclusive:
        return INCONCLUSIVE
    if all(v == holds for v in conclusive):
        return holds if len(conclusive) == len(verdicts) else partly
    return not_hold if all(v == not_hold for v in conclusive) else mixed
