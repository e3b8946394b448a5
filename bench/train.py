"""The training loop: stages, budgets, learning curve, resumable state.

``train_model`` runs pixel-wise cross-entropy (``ignore_index`` pixels excluded, optionally with
median-frequency class weights and U-Net's border weight map) with the update of ``bench.updates`` (Luc et al.'s alternating one
for a model with an adversary), under the budget and schedule of ``bench.schedule``. The train
config is a *recipe* (conf/train/: segbench's default, or a paper's protocol): its optimizer,
schedule, augmentation, batch size, stopping rule and an optional second ``finetune`` stage, whose
keys override the first stage's, are all applied here.

Resumable: with ``state_path``, the full training state (weights, optimizers and gradient
scalers, step, stage, position in the epoch, learning curve, random generators) is written there
every ``train.checkpoint_every_steps`` steps and/or ``checkpoint_every_seconds`` seconds, and a run
that finds one continues from it. With ``num_workers=0`` (the default) a resumed run is the same
computation as an uninterrupted one: the data order is a function of (seed, epoch) and the random
generators are restored; with worker processes, the rest of an interrupted epoch gets fresh
augmentation draws.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from bench.border_loss import BorderWeight, BorderWeightedCrossEntropy
from bench.checkpoint import (CHECKPOINT_NAME, cpu_state, load_state, restore_rng_states, rng_states,
                              save_checkpoint, save_state)
from bench.curve import CurveRecorder, EvalSchedule, curve_fields
from bench.data import build_dataset, dataset_info
from bench.data.transforms import Augmentation
from bench.metrics import median_frequency_weights
from bench.progress import tick
from bench.schedule import Budget, EarlyStopping, lr_factor
from bench.store import describe_os_error
from bench.updates import Precision, make_update

TEST_WEIGHTS = ("final", "best")   # which weights a training run ends with and is scored with


@dataclass
class TrainResult:
    steps: int
    epochs: float                 # steps / batches per epoch, summed over the stages
    seconds: float                # training time over all stages and resumptions
    final_loss: float
    loss_history: list[float]     # per step; the segmentor's total loss for adversarial training
    checkpoint_path: str | None
    adversary_loss_history: list[float] = field(default_factory=list)   # adversarial training only
    curve: dict[str, Any] = field(default_factory=dict)   # ResultRow fields (bench.curve.curve_fields)
    optimizer: str = ""           # the first stage's optimizer class
    stop_reason: str = ""         # the last stage's: max_steps | max_epochs | max_seconds | early_stopping
    finetune_steps: int | None = None   # steps of the second stage (None: the recipe has none)
    resumed_from_step: int | None = None  # the step this execution resumed from (None: from scratch)
    resumptions: int = 0          # how many times the run was resumed from a saved state
    checkpoint_error: str = ""    # why the final weights could not be written (they are still in memory)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so a step budget gives the same run again."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def training_criterion(stage_cfg: Mapping[str, Any], weights: torch.Tensor | None, ignore_index: int,
                       device: torch.device) -> nn.Module:
    """Pixel-wise cross-entropy with the class ``weights``; with ``train.border_weight``, U-Net's
    weight map (bench/border_loss.py), whose w_c are these class weights."""
    border = BorderWeight.from_config(stage_cfg)
    if border is not None:
        return BorderWeightedCrossEntropy(border, ignore_index, weights)
    return nn.CrossEntropyLoss(weight=None if weights is None else weights.to(device), ignore_index=ignore_index)


# ---- data order that can resume mid-epoch --------------------------------------------------

class EpochShuffle(Sampler[int]):
    """A fresh permutation per epoch, a function of (seed, epoch) alone, starting at ``skip``:
    a resumed run draws the same order and leaves out the samples already seen."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.skip = size, seed, 0, 0

    def start(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(self.size, generator=generator)[self.skip:].tolist()

    def __len__(self) -> int:
        return self.size - self.skip


def _train_loader(dataset: Dataset, train_cfg: Mapping[str, Any], device: torch.device,
                  sampler: EpochShuffle) -> DataLoader:
    num_workers = int(train_cfg.get("num_workers") or 0)
    return DataLoader(dataset, batch_size=int(train_cfg.batch_size), sampler=sampler,
                      num_workers=num_workers, persistent_workers=num_workers > 0,
                      pin_memory=device.type == "cuda", generator=torch.Generator())


# ---- stages and their state ----------------------------------------------------------------

def training_stages(train_cfg: DictConfig) -> list[DictConfig]:
    """The recipe's stages: the train config itself, then (with ``finetune``) the train config
    with the finetune keys applied."""
    first = OmegaConf.masked_copy(train_cfg, [k for k in train_cfg if k != "finetune"])
    finetune = train_cfg.get("finetune")
    return [first] if finetune is None else [first, OmegaConf.merge(first, finetune)]


@dataclass
class Progress:
    """Where a run is: everything besides tensors that a resumed run needs to continue."""

    stage: int = 0
    step: int = 0                 # over all stages; the learning curve's x axis
    stage_steps: int = 0
    epoch: int = 0                # completed epochs in this stage
    batch_in_epoch: int = 0
    epochs_before_stage: float = 0.0
    seconds_before_stage: float = 0.0
    stage_seconds: float = 0.0
    eval_seconds: float = 0.0
    eval_last_step: int = 0
    eval_last_seconds: float = 0.0
    best_in_stage: float = -math.inf
    since_best: int = 0
    resumptions: int = 0
    stage_step_counts: list[int] = field(default_factory=list)


class _Clock:
    """Training seconds of the current stage: what earlier executions trained, plus this one's
    time since ``start`` without its validation passes."""

    def __init__(self, before: float):
        self.before, self.started, self.paused = before, time.perf_counter(), 0.0

    def seconds(self) -> float:
        return self.before + time.perf_counter() - self.started - self.paused


def _save_training_state(path: Path, model: nn.Module, update, progress: Progress,
                         history: dict[str, list[float]], recorder: CurveRecorder) -> None:
    save_state({"model": cpu_state(model), "update": [o.state_dict() for o in update.optimizers],
                "progress": asdict(progress), "history": history,
                "curve": {"points": recorder.points, "losses": recorder.pending_losses,
                          "best_state": recorder.best_state},
                "rng": rng_states()}, path)


# ---- the loop ------------------------------------------------------------------------------

def train_model(model: nn.Module, dataset_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                resolution: tuple[int, int], device: torch.device | str, run_dir: str | Path | None,
                progress: bool = True,
                validate: Callable[[nn.Module], Mapping[str, Any]] | None = None,
                precision: Precision | None = None, channels_last: bool = False,
                state_path: str | Path | None = None) -> TrainResult:
    """Train ``model`` on the train split of ``dataset_cfg`` (images resized to ``resolution``,
    then the recipe's augmentation) within each stage's budget; saves ``run_dir/checkpoint.pt``
    unless ``run_dir`` is None or ``train_cfg.save_checkpoint`` is false.

    With ``validate`` (model -> metrics with ``miou`` and ``pixel_accuracy``), a learning curve is
    recorded: a point every ``eval_every_steps`` / ``eval_every_epochs`` / ``eval_every_seconds``
    and one at the end of each stage, with the validation time kept off the training clock and
    out of the time budget; ``early_stopping_patience`` counts these points. With
    ``test_weights=best`` each stage ends with (and the checkpoint holds) the weights of the best
    point so far. ``precision`` sets autocast (and fp16 gradient scaling); ``state_path`` makes
    the run resumable (module docstring)."""
    train_cfg = OmegaConf.create(train_cfg)   # plain dicts too; attribute access below
    device = torch.device(device)
    precision = precision or Precision(device.type)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    seed = int(train_cfg.get("seed") or 0)
    seed_everything(seed)
    info = dataset_info(dataset_cfg)
    stages = training_stages(train_cfg)
    test_weights = train_cfg.get("test_weights") or "final"
    if test_weights not in TEST_WEIGHTS:
        raise ValueError(f"train.test_weights must be one of {TEST_WEIGHTS}, got {test_weights!r}")
    needs_curve = test_weights == "best" or any(s.get("early_stopping_patience") is not None for s in stages)
    if needs_curve and validate is None:
        raise ValueError("train.test_weights=best and train.early_stopping_patience need validation "
                         "passes during training")
    for stage_cfg in stages:   # every stage's settings are checked before the first step
        lr_factor(stage_cfg.get("schedule", "constant"), 0.0, 0, stage_cfg.get("lr_decay"))
        Augmentation.from_config(stage_cfg)
        BorderWeight.from_config(stage_cfg)
        EarlyStopping.from_config(stage_cfg)
    weights = class_weights(dataset_cfg, train_cfg, resolution)
    model.to(device=device, memory_format=memory_format).train()

    run = Progress()
    history: dict[str, list[float]] = {"loss": [], "adversary_loss": []}
    recorder = CurveRecorder(keep_best=test_weights == "best")
    saved = load_state(state_path) if state_path is not None else None
    resumed_from = None
    if saved is not None:
        model.load_state_dict(saved["model"])
        run = Progress(**saved["progress"])
        run.resumptions += 1
        resumed_from = run.step
        history = saved["history"]
        recorder.points, recorder.pending_losses = saved["curve"]["points"], saved["curve"]["losses"]
        recorder.best_state = saved["curve"]["best_state"]
    every_steps = train_cfg.get("checkpoint_every_steps")
    every_seconds = train_cfg.get("checkpoint_every_seconds")
    last_saved_at = time.perf_counter()
    stop_reason, optimizer_name = "", ""

    for stage_index in range(run.stage, len(stages)):
        stage_cfg = stages[stage_index]
        dataset = build_dataset(dataset_cfg, "train", resolution, train=True,
                                augmentation=Augmentation.from_config(stage_cfg))
        if len(dataset) == 0:
            raise ValueError(f"the train split of {dataset_cfg.get('name')} is empty")
        sampler = EpochShuffle(len(dataset), seed + 7919 * stage_index)
        loader = _train_loader(dataset, stage_cfg, device, sampler)
        steps_per_epoch = math.ceil(len(dataset) / int(stage_cfg.batch_size))
        budget = Budget.from_config(stage_cfg, steps_per_epoch)
        schedule, decay = stage_cfg.get("schedule", "constant"), stage_cfg.get("lr_decay")
        eval_schedule = EvalSchedule.from_config(stage_cfg, steps_per_epoch)
        early = EarlyStopping.from_config(stage_cfg)
        criterion = training_criterion(stage_cfg, weights, info.ignore_index, device)   # a stage may change it
        update = make_update(model, stage_cfg, criterion, info.num_classes, info.ignore_index, precision)
        optimizer_name = optimizer_name or type(update.optimizers[0].optimizer).__name__
        if saved is not None and saved["progress"]["stage"] == stage_index:
            for optimized, state in zip(update.optimizers, saved["update"]):
                optimized.load_state_dict(state)
            restore_rng_states(saved["rng"])
        else:
            run.stage, run.stage_steps, run.epoch, run.batch_in_epoch, run.stage_seconds = stage_index, 0, 0, 0, 0.0
            run.eval_last_step, run.eval_last_seconds = run.step, run.seconds_before_stage
            run.best_in_stage, run.since_best = -math.inf, 0
        eval_schedule.restart(run.eval_last_step, run.eval_last_seconds)
        early.best, early.since_best = run.best_in_stage, run.since_best
        clock = _Clock(run.stage_seconds)
        stop_reason = ""
        bar = tqdm(total=budget.step_limit, initial=run.stage_steps, unit="step", disable=not progress,
                   desc=f"train {type(model).__name__}" + (f" (stage {stage_index + 1})" if len(stages) > 1 else ""))
        with bar:
            while not stop_reason:
                sampler.start(run.epoch, run.batch_in_epoch * int(stage_cfg.batch_size))
                loader.generator.manual_seed(seed + run.epoch)   # worker seeds, per epoch
                for image, mask in loader:
                    factor = lr_factor(schedule, budget.progress(run.stage_steps, clock.seconds()), run.epoch, decay)
                    for optimized in update.optimizers:
                        optimized.set_lr(factor)
                    run.step += 1
                    run.stage_steps += 1
                    run.batch_in_epoch += 1
                    image = image.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                    losses = update(image, mask.to(device, non_blocking=True), run.step)
                    for name, value in losses.items():
                        history[name].append(value)
                    recorder.add_loss(losses["loss"])
                    bar.update()
                    tick()
                    bar.set_postfix(loss=f"{losses['loss']:.4f}")
                    stop_reason = budget.reached(run.stage_steps, clock.seconds()) or ""
                    total = run.seconds_before_stage + clock.seconds()
                    if validate is not None and (eval_schedule.due(run.step, total) or stop_reason):
                        eval_started = time.perf_counter()
                        metrics = validate(model)
                        recorder.add_point(run.step, total, metrics, model, lr=factor * float(stage_cfg.lr))
                        if early.update(float(metrics["miou"])) and not stop_reason:
                            stop_reason = "early_stopping"
                        run.eval_seconds += time.perf_counter() - eval_started
                        clock.paused += time.perf_counter() - eval_started
                    if stop_reason:
                        break
                    if state_path is not None and (
                            (every_steps is not None and run.step % int(every_steps) == 0)
                            or (every_seconds is not None and time.perf_counter() - last_saved_at >= float(every_seconds))):
                        run.stage_seconds = clock.seconds()
                        run.eval_last_step, run.eval_last_seconds = eval_schedule.last
                        run.best_in_stage, run.since_best = early.best, early.since_best
                        _save_training_state(Path(state_path), model, update, run, history, recorder)
                        last_saved_at = time.perf_counter()
                else:
                    run.epoch += 1
                    run.batch_in_epoch = 0
        run.stage_step_counts.append(run.stage_steps)
        run.epochs_before_stage += run.stage_steps / steps_per_epoch
        run.seconds_before_stage += clock.seconds()
        if recorder.best_state is not None:
            model.load_state_dict(recorder.best_state)   # the next stage, or the test, starts from the best
        saved = None

    checkpoint, checkpoint_error = None, ""
    if run_dir is not None and train_cfg.get("save_checkpoint", True):
        try:
            checkpoint = str(save_checkpoint(model, Path(run_dir) / CHECKPOINT_NAME, steps=run.step, seed=seed,
                                             dataset=info.name, num_classes=info.num_classes))
        except OSError as exc:  # a full disk must not throw away a finished training: score it from memory
            checkpoint_error = describe_os_error(exc)
    return TrainResult(steps=run.step, epochs=run.epochs_before_stage, seconds=run.seconds_before_stage,
                       final_loss=history["loss"][-1], loss_history=history["loss"],
                       checkpoint_path=checkpoint, adversary_loss_history=history["adversary_loss"],
                       curve=curve_fields(recorder, run.eval_seconds, train_cfg.get("target_miou"), test_weights),
                       optimizer=optimizer_name, stop_reason=stop_reason,
                       finetune_steps=run.stage_step_counts[1] if len(stages) > 1 else None,
                       resumed_from_step=resumed_from, resumptions=run.resumptions,
                       checkpoint_error=checkpoint_error)
