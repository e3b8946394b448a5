"""When training stops and how its learning rate moves: the budget, the schedule, early stopping.

The budget is steps, epochs and/or wall-clock seconds, whichever is reached first: equal-time
comparisons set only ``max_seconds``. ``poly`` and ``cosine`` follow the fraction of the budget
used (the furthest along of steps, epochs and seconds), so they also decay under a time budget;
``exponential`` follows completed epochs, as the FC-DenseNet recipe states it (0.995 per epoch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

SCHEDULES = ("constant", "poly", "cosine", "exponential")
POLY_POWER = 0.9   # DeepLab's "poly" policy: lr * (1 - progress) ** 0.9


@dataclass(frozen=True)
class Budget:
    """Stop at ``max_steps``, ``max_epochs`` or ``max_seconds``, whichever comes first."""

    max_steps: int | None
    max_epochs: float | None
    max_seconds: float | None
    steps_per_epoch: int

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any], steps_per_epoch: int) -> "Budget":
        limits = {key: train_cfg.get(key) for key in ("max_steps", "max_epochs", "max_seconds")}
        if all(value is None for value in limits.values()):
            raise ValueError("the training budget is unbounded: set at least one of train.max_steps, "
                             "train.max_epochs or train.max_seconds")
        for key, value in limits.items():
            if value is not None and not value > 0:
                raise ValueError(f"train.{key} must be positive or null, got {value}")
        steps, epochs, seconds = limits.values()
        return cls(None if steps is None else int(steps), None if epochs is None else float(epochs),
                   None if seconds is None else float(seconds), steps_per_epoch)

    @property
    def step_limit(self) -> int | None:
        """The step at which the step or epoch limit is reached (None for a time-only budget)."""
        limits = [self.max_steps] if self.max_steps is not None else []
        if self.max_epochs is not None:
            limits.append(math.ceil(self.max_epochs * self.steps_per_epoch))
        return min(limits) if limits else None

    def progress(self, steps: int, seconds: float) -> float:
        """Fraction of the budget used: 1.0 or more means stop."""
        fractions = [steps / self.step_limit] if self.step_limit is not None else []
        if self.max_seconds is not None:
            fractions.append(seconds / self.max_seconds)
        return max(fractions)

    def reached(self, steps: int, seconds: float) -> str | None:
        """Which limit stops the training at this point (``max_steps``, ``max_epochs``,
        ``max_seconds``), or None while none is reached."""
        if self.max_steps is not None and steps >= self.max_steps:
            return "max_steps"
        if self.max_epochs is not None and steps >= math.ceil(self.max_epochs * self.steps_per_epoch):
            return "max_epochs"
        if self.max_seconds is not None and seconds >= self.max_seconds:
            return "max_seconds"
        return None


def lr_factor(schedule: str, progress: float, epochs: int = 0, decay: float | None = None) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 to 1) through the budget, after
    ``epochs`` completed epochs (``exponential``: ``decay ** epochs``)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "poly":
        return (1.0 - progress) ** POLY_POWER
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "exponential":
        if decay is None or not 0 < decay <= 1:
            raise ValueError(f"train.schedule=exponential needs train.lr_decay in (0, 1], got {decay!r}")
        return decay ** epochs
    raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")


@dataclass
class EarlyStopping:
    """Stop when the validation mIoU has not improved for ``patience`` points (None: never)."""

    patience: int | None
    best: float = -math.inf
    since_best: int = 0

    @classmethod
    def from_config(cls, train_cfg: Mapping[str, Any]) -> "EarlyStopping":
        patience = train_cfg.get("early_stopping_patience")
        if patience is not None and not int(patience) >= 1:
            raise ValueError(f"train.early_stopping_patience must be at least 1 or null, got {patience}")
        return cls(None if patience is None else int(patience))

    def update(self, miou: float) -> bool:
        """Record a validation point; True when training should stop."""
        if miou > self.best:
            self.best, self.since_best = miou, 0
        else:
            self.since_best += 1
        return self.patience is not None and self.since_best >= self.patience
