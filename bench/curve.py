"""Learning curves: when to score the validation split during training, and what the curve says.

A curve is a list of points, one per validation pass, in training order::

    {"step": 120, "train_seconds": 7.5, "miou": 0.31, "pixel_accuracy": 0.74, "loss": 1.02, "lr": 0.001}

``train_seconds`` is training time only (the validation passes are off the clock), ``miou`` and
``pixel_accuracy`` are fractions, ``loss`` is the mean training loss over the steps since the
previous point, ``lr`` the base learning rate of the step before the point (after the schedule). The functions below read a curve and nothing else, so the report can apply them
to stored rows.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # the report reads curves without importing torch (seconds at start-up)
    import torch
    from torch import nn


@dataclass
class EvalSchedule:
    """Score every ``every_steps`` steps and/or every ``every_seconds`` training seconds (whichever
    comes first); with neither, only the final point (which the training loop always adds).
    ``eval_every_epochs`` in a train config becomes steps."""

    every_steps: int | None = None
    every_seconds: float | None = None
    _last_step: int = 0
    _last_seconds: float = 0.0

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any], steps_per_epoch: int = 1) -> "EvalSchedule":
        steps, seconds = train_cfg.get("eval_every_steps"), train_cfg.get("eval_every_seconds")
        epochs = train_cfg.get("eval_every_epochs")
        for name, value in (("eval_every_steps", steps), ("eval_every_seconds", seconds),
                            ("eval_every_epochs", epochs)):
            if value is not None and not value > 0:
                raise ValueError(f"train.{name} must be positive or null, got {value}")
        intervals = [int(steps)] if steps is not None else []
        if epochs is not None:
            intervals.append(max(1, round(float(epochs) * steps_per_epoch)))
        return cls(min(intervals, default=None), None if seconds is None else float(seconds))

    def restart(self, step: int, seconds: float) -> None:
        """Count the next interval from ``step`` / ``seconds`` (a new stage, or a resumed run)."""
        self._last_step, self._last_seconds = step, seconds

    @property
    def last(self) -> tuple[int, float]:
        return self._last_step, self._last_seconds

    def due(self, step: int, seconds: float) -> bool:
        """True (and the interval restarts) when a point is due at ``step`` / ``seconds``."""
        if ((self.every_steps is not None and step - self._last_step >= self.every_steps)
                or (self.every_seconds is not None and seconds - self._last_seconds >= self.every_seconds)):
            self._last_step, self._last_seconds = step, seconds
            return True
        return False


@dataclass
class CurveRecorder:
    """Collects the points and, with ``keep_best``, a CPU copy of the best weights so far."""

    keep_best: bool = False
    points: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    pending_losses: list[float] = field(default_factory=list)   # since the last point

    def add_loss(self, loss: float) -> None:
        self.pending_losses.append(loss)

    def add_point(self, step: int, seconds: float, metrics: Mapping[str, Any], model: nn.Module,
                  lr: float | None = None) -> None:
        losses = self.pending_losses
        loss = sum(losses) / len(losses) if losses else float("nan")
        self.pending_losses = []
        previous_best = best_point(self.points)
        improved = previous_best is None or metrics["miou"] > previous_best["miou"]
        self.points.append({"step": step, "train_seconds": seconds, "miou": float(metrics["miou"]),
                            "pixel_accuracy": float(metrics["pixel_accuracy"]), "loss": loss, "lr": lr})
        if self.keep_best and improved:
            from bench.checkpoint import cpu_state
            self.best_state = cpu_state(model)


def best_point(curve: list[dict[str, float]]) -> dict[str, float] | None:
    """The point with the highest validation mIoU (the earliest on a tie); None for no points."""
    scored = [p for p in curve if p.get("miou") is not None and p["miou"] == p["miou"]]  # not NaN
    return max(scored, key=lambda p: p["miou"], default=None)


def time_to_target(curve: list[dict[str, float]], target: float | None) -> float | None:
    """Training seconds at the first point whose mIoU reaches ``target``; None if none does."""
    if target is None:
        return None
    return next((p["train_seconds"] for p in curve if p["miou"] is not None and p["miou"] >= target), None)


def last_quarter_gain(curve: list[dict[str, float]]) -> float | None:
    """mIoU gained over the last quarter of training: the final point's mIoU minus that of the
    last point at or before 75% of the training time (steps when times are missing).

    None when the curve cannot say (fewer than two points, or none in the first three quarters).
    """
    if len(curve) < 2:
        return None
    axis = "train_seconds" if all(p.get("train_seconds") is not None for p in curve) else "step"
    final = curve[-1]
    earlier = [p for p in curve[:-1] if p[axis] <= 0.75 * final[axis]]
    return final["miou"] - earlier[-1]["miou"] if earlier else None


def curve_fields(recorder: CurveRecorder, eval_seconds: float, target: float | None,
                 test_weights: str) -> dict[str, Any]:
    """The ResultRow fields a training run's curve gives."""
    best = best_point(recorder.points)
    return {
        "learning_curve": copy.deepcopy(recorder.points),
        "curve_eval_seconds": eval_seconds,
        "best_val_miou": None if best is None else best["miou"],
        "best_val_step": None if best is None else best["step"],
        "best_val_seconds": None if best is None else best["train_seconds"],
        "target_miou": target,
        "time_to_target_seconds": time_to_target(recorder.points, target),
        "test_weights": test_weights,
    }
