"""One training protocol for every model, so accuracy differences come from the architectures.

``train_model`` runs pixel-wise cross-entropy (``ignore_index`` pixels excluded, optionally with
median-frequency class weights) under one budget of steps, epochs and/or wall-clock seconds,
whichever is reached first: equal-time comparisons set only ``max_seconds``. Models with an
adversary (``models.adversarial``) get Luc et al. 2016's alternating updates instead.

The learning-rate schedule follows the fraction of the budget used (the furthest along of
steps, epochs and seconds), so ``poly`` and ``cosine`` also decay under a time budget.

Checkpoints hold tensors and plain metadata only, so ``torch.load(path, weights_only=True)``
reads them and loading one never runs code from the file.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bench.curve import CurveRecorder, EvalSchedule, curve_fields
from bench.data import build_dataset, dataset_info
from bench.metrics import median_frequency_weights

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
SCHEDULES = ("constant", "poly", "cosine")
TEST_WEIGHTS = ("final", "best")   # which weights a training run ends with and is scored with
POLY_POWER = 0.9   # DeepLab's "poly" policy: lr * (1 - progress) ** 0.9


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message gives the step and the value."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, not a weights file, or does not fit the model."""


@dataclass
class TrainResult:
    steps: int
    epochs: float                 # steps / batches per epoch
    seconds: float
    final_loss: float
    loss_history: list[float]     # per step; the segmentor's total loss for adversarial training
    checkpoint_path: str | None
    adversary_loss_history: list[float] = field(default_factory=list)   # adversarial training only
    curve: dict[str, Any] = field(default_factory=dict)   # ResultRow fields (bench.curve.curve_fields)


# ---- budget and schedule -------------------------------------------------------------------

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


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rate at ``progress`` (0 to 1) through the budget."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "poly":
        return (1.0 - progress) ** POLY_POWER
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {schedule!r}")


# ---- building blocks -----------------------------------------------------------------------

def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a step budget gives the same run again."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(parameters, train_cfg: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    name = train_cfg.get("optimizer", "adam")
    weight_decay = float(train_cfg.get("weight_decay") or 0.0)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=float(train_cfg.get("momentum") or 0.0),
                               weight_decay=weight_decay)
    raise ValueError(f"train.optimizer must be adam or sgd, got {name!r}")


def _label_counts(dataset: Dataset, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per class: its pixel count, and the pixel count of the images it appears in."""
    class_pixels = torch.zeros(num_classes, dtype=torch.float64)
    image_pixels = torch.zeros(num_classes, dtype=torch.float64)
    for index in range(len(dataset)):
        mask = dataset[index][1]
        labelled = mask[(mask != ignore_index) & (mask >= 0) & (mask < num_classes)]
        counts = torch.bincount(labelled, minlength=num_classes).double()
        class_pixels += counts
        image_pixels += (counts > 0).double() * labelled.numel()
    return class_pixels, image_pixels


def class_weights(dataset_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                  resolution: tuple[int, int]) -> torch.Tensor | None:
    """Cross-entropy class weights for ``train.class_weighting`` (none | median_frequency).

    median_frequency uses the data set's published weights when it has them, else computes them
    from the un-augmented train split at ``resolution``.
    """
    weighting = train_cfg.get("class_weighting") or "none"
    if weighting == "none":
        return None
    if weighting != "median_frequency":
        raise ValueError(f"train.class_weighting must be none or median_frequency, got {weighting!r}")
    info = dataset_info(dataset_cfg)
    if info.class_weights is not None:
        return torch.tensor(info.class_weights, dtype=torch.float32)
    plain_train = build_dataset(dataset_cfg, "train", resolution, train=False)
    return median_frequency_weights(*_label_counts(plain_train, info.num_classes, info.ignore_index))


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> float:
    """The loss as a float; NonFiniteLossError when it is NaN or infinite."""
    value = float(loss.detach())
    if not math.isfinite(value):
        raise NonFiniteLossError(f"{what} became {value} at step {step}; lower train.lr or check "
                                 f"the model and data for NaN/inf values")
    return value


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's batches, epoch after epoch (each epoch reshuffled by its generator)."""
    while True:
        yield from loader


@dataclass
class _Optimized:
    """An optimizer and the base learning rate the schedule scales."""

    optimizer: torch.optim.Optimizer
    base_lr: float

    def set_lr(self, factor: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * factor


# ---- the two kinds of update ---------------------------------------------------------------

class SupervisedStep:
    """One cross-entropy update of the whole model."""

    def __init__(self, model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module):
        self.model, self.criterion = model, criterion
        lr = float(train_cfg.lr)
        self.optimizers = [_Optimized(make_optimizer(model.parameters(), train_cfg, lr), lr)]

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, step: int) -> dict[str, float]:
        optimizer = self.optimizers[0].optimizer
        loss = self.criterion(self.model(image), mask)
        value = check_finite(loss, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": value}


class _Frozen:
    """Within the block, ``module``'s parameters get no gradients (the segmentor's update does
    not need the adversary's)."""

    def __init__(self, module: nn.Module):
        self.parameters = [p for p in module.parameters() if p.requires_grad]

    def __enter__(self):
        for parameter in self.parameters:
            parameter.requires_grad_(False)

    def __exit__(self, *exc):
        for parameter in self.parameters:
            parameter.requires_grad_(True)


class AdversarialStep:
    """Luc et al. 2016: ``adversary_steps`` adversary updates, then one segmentor update.

    Adversary: BCE(a(x, onehot(y)), 1) + BCE(a(x, s(x)), 0), with s(x) detached.
    Segmentor: CE(s(x), y) + lambda_adv * BCE(a(x, s(x)), 1) -- the "flipped" target, which gives
    stronger gradients than minimising -BCE(a(x, s(x)), 0) while the adversary is winning.

    Ignored pixels are zeroed in both the one-hot ground truth and the probabilities: the ground
    truth is unknown there, so neither map may carry information the adversary could use to tell
    them apart (an all-zero pixel never occurs elsewhere in a one-hot map, but it occurs in both).
    One segmentor forward pass serves both updates, as in pix2pix; the adversary is re-run after
    its own update for the segmentor's term.
    """

    def __init__(self, model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module,
                 num_classes: int, ignore_index: int):
        adversarial = train_cfg.adversarial
        self.segmentor, self.adversary, self.criterion = model.segmentor, model.adversary, criterion
        self.num_classes, self.ignore_index = num_classes, ignore_index
        encoding = adversarial.get("encoding")
        if encoding is not None and getattr(self.adversary, "encoding", encoding) != encoding:
            raise ValueError(f"train.adversarial.encoding={encoding!r} but the model's adversary uses "
                             f"{self.adversary.encoding!r}: set model.encoding to match (or the reverse)")
        self.lambda_adv = float(adversarial.lambda_adv)
        self.adversary_steps = int(adversarial.get("adversary_steps", 1))
        lr = float(train_cfg.lr)
        adversary_lr = float(adversarial.get("adversary_lr") or lr)
        self.optimizers = [_Optimized(make_optimizer(self.segmentor.parameters(), train_cfg, lr), lr),
                           _Optimized(make_optimizer(self.adversary.parameters(), train_cfg, adversary_lr),
                                      adversary_lr)]

    def _labelled(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(one-hot N x C x H x W with ignored pixels zeroed, N x 1 x H x W labelled-pixel mask)."""
        valid = (mask != self.ignore_index) & (mask >= 0) & (mask < self.num_classes)
        onehot = F.one_hot(torch.where(valid, mask, 0), self.num_classes).permute(0, 3, 1, 2)
        valid = valid.unsqueeze(1)
        return onehot.float() * valid, valid

    def _bce(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        logits = logits.reshape(-1)   # adversaries give (N,) or (N, 1)
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, step: int) -> dict[str, float]:
        segmentor_opt, adversary_opt = (o.optimizer for o in self.optimizers)
        onehot, valid = self._labelled(mask)
        logits = self.segmentor(image)
        probs = F.softmax(logits, dim=1) * valid
        fake = probs.detach()

        for _ in range(self.adversary_steps):
            # segmentor_probs: the "scaling" encoding softens the ground truth with them.
            adversary_loss = (self._bce(self.adversary(image, onehot, segmentor_probs=fake), 1.0)
                              + self._bce(self.adversary(image, fake), 0.0))
            adversary_value = check_finite(adversary_loss, step, "adversary loss")
            adversary_opt.zero_grad(set_to_none=True)
            adversary_loss.backward()
            adversary_opt.step()

        with _Frozen(self.adversary):
            loss = self.criterion(logits, mask) + self.lambda_adv * self._bce(self.adversary(image, probs), 1.0)
            value = check_finite(loss, step)
            segmentor_opt.zero_grad(set_to_none=True)
            loss.backward()
        segmentor_opt.step()
        return {"loss": value, "adversary_loss": adversary_value}


def is_adversarial(model: nn.Module, train_cfg: Mapping[str, Any]) -> bool:
    """True for a model with ``.segmentor`` and ``.adversary`` under a config with ``adversarial``;
    one without the other is a configuration mistake."""
    model_has = hasattr(model, "segmentor") and hasattr(model, "adversary")
    config_has = train_cfg.get("adversarial") is not None
    if model_has and not config_has:
        raise ValueError(f"{type(model).__name__} has an adversary: train it with train=adversarial "
                         f"(the train config needs an `adversarial` section; a profile job trains one "
                         f"step too, which measure.train_step=false leaves out)")
    if config_has and not model_has:
        raise ValueError(f"train=adversarial needs a model with .segmentor and .adversary "
                         f"(model=adversarial), got {type(model).__name__}")
    return model_has


def make_update(model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module, num_classes: int,
                ignore_index: int) -> SupervisedStep | AdversarialStep:
    """The update ``model`` trains with: Luc et al.'s alternating one when it has an adversary."""
    if is_adversarial(model, train_cfg):
        return AdversarialStep(model, train_cfg, criterion, num_classes, ignore_index)
    return SupervisedStep(model, train_cfg, criterion)


# ---- checkpoints ---------------------------------------------------------------------------

def save_checkpoint(model: nn.Module, path: str | Path, **metadata: str | int | float) -> Path:
    """Write ``{"state_dict", "metadata"}`` atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model_class": type(model).__name__,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "metadata": dict(metadata)}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def load_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model``; returns its metadata.

    Raises CheckpointError (naming the file and what to do) when the file is missing, corrupt,
    not a weights-only file, or holds weights of another model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the {CHECKPOINT_NAME} "
                              f"written by a mode=accuracy run (in its run directory)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (truncated zip, pickle refused by weights_only, ...)
        raise CheckpointError(f"checkpoint {path} cannot be read as a weights-only file "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                              f"it is corrupt or not a segbench checkpoint: re-run the training "
                              f"(mode=accuracy) to write a new one") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} holds no state_dict; it was not written by "
                              f"segbench: re-run the training (mode=accuracy) to write one")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} (a {payload.get('model_class', 'model')}) does not "
                              f"match this {type(model).__name__}: use the model, model options and "
                              f"num_classes it was trained with. {exc}") from exc
    return dict(payload.get("metadata", {}))


# ---- the loop ------------------------------------------------------------------------------

def _train_loader(dataset_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], resolution: tuple[int, int],
                  device: torch.device, seed: int) -> DataLoader:
    """Shuffled, augmented train batches; the seeded generator fixes the order and the workers' seeds."""
    dataset = build_dataset(dataset_cfg, "train", resolution, train=True)
    if len(dataset) == 0:
        raise ValueError(f"the train split of {dataset_cfg.get('name')} is empty")
    num_workers = int(train_cfg.get("num_workers") or 0)
    return DataLoader(dataset, batch_size=int(train_cfg.batch_size), shuffle=True,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def train_model(model: nn.Module, dataset_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                resolution: tuple[int, int], device: torch.device | str, run_dir: str | Path | None,
                progress: bool = True,
                validate: Callable[[nn.Module], Mapping[str, Any]] | None = None) -> TrainResult:
    """Train ``model`` on the train split of ``dataset_cfg`` at ``resolution`` within the budget
    of ``train_cfg``; saves ``run_dir/checkpoint.pt`` unless ``run_dir`` is None or
    ``train_cfg.save_checkpoint`` is false.

    With ``validate`` (model -> metrics with ``miou`` and ``pixel_accuracy``), a learning curve is
    recorded: a point at every ``train.eval_every_steps`` / ``eval_every_seconds`` and one at the
    end, with the validation time kept off the training clock and out of the time budget. With
    ``train.test_weights=best`` the model ends with (and the checkpoint holds) the weights of the
    best point instead of the final ones."""
    train_cfg = OmegaConf.create(train_cfg)   # plain dicts too; attribute access below
    device = torch.device(device)
    seed = int(train_cfg.get("seed") or 0)
    seed_everything(seed)
    info = dataset_info(dataset_cfg)
    loader = _train_loader(dataset_cfg, train_cfg, resolution, device, seed)
    budget = Budget.from_config(train_cfg, len(loader))
    schedule = train_cfg.get("schedule", "constant")
    lr_factor(schedule, 0.0)   # validates the name before any work

    weights = class_weights(dataset_cfg, train_cfg, resolution)
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device),
                                    ignore_index=info.ignore_index)
    model.to(device).train()
    update = make_update(model, train_cfg, criterion, info.num_classes, info.ignore_index)

    test_weights = train_cfg.get("test_weights") or "final"
    if test_weights not in TEST_WEIGHTS:
        raise ValueError(f"train.test_weights must be one of {TEST_WEIGHTS}, got {test_weights!r}")
    if test_weights == "best" and validate is None:
        raise ValueError("train.test_weights=best needs validation passes during training")
    eval_schedule = EvalSchedule.from_config(train_cfg)
    recorder = CurveRecorder(keep_best=test_weights == "best")
    history: dict[str, list[float]] = {"loss": [], "adversary_loss": []}
    bar = tqdm(total=budget.step_limit, desc=f"train {type(model).__name__}", disable=not progress,
               unit="step")
    # The clock covers the loop (data loading included), not the one-off setup above; each step
    # reads its loss back (check_finite), which also synchronises the GPU before the time check.
    started = time.perf_counter()
    eval_seconds = 0.0

    def trained_seconds() -> float:
        return time.perf_counter() - started - eval_seconds

    step = 0
    with bar:
        for image, mask in _batches(loader):
            factor = lr_factor(schedule, budget.progress(step, trained_seconds()))
            for optimized in update.optimizers:
                optimized.set_lr(factor)
            step += 1
            losses = update(image.to(device, non_blocking=True), mask.to(device, non_blocking=True), step)
            for name, value in losses.items():
                history[name].append(value)
            recorder.add_loss(losses["loss"])
            bar.update()
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
            done = budget.progress(step, trained_seconds()) >= 1.0
            if validate is not None and (eval_schedule.due(step, trained_seconds()) or done):
                at, eval_started = trained_seconds(), time.perf_counter()
                recorder.add_point(step, at, validate(model), model)
                eval_seconds += time.perf_counter() - eval_started
            if done:
                break
    seconds = trained_seconds()
    if recorder.best_state is not None:
        model.load_state_dict(recorder.best_state)

    checkpoint = None
    if run_dir is not None and train_cfg.get("save_checkpoint", True):
        checkpoint = str(save_checkpoint(model, Path(run_dir) / CHECKPOINT_NAME, steps=step, seed=seed,
                                         dataset=info.name, num_classes=info.num_classes))
    return TrainResult(steps=step, epochs=step / len(loader), seconds=seconds,
                       final_loss=history["loss"][-1], loss_history=history["loss"],
                       checkpoint_path=checkpoint, adversary_loss_history=history["adversary_loss"],
                       curve=curve_fields(recorder, eval_seconds, train_cfg.get("target_miou"), test_weights))
