"""Scoring a model on a split, and the accuracy stage of a job (train or load, then score).

One confusion matrix is accumulated over the whole split and the metrics are computed from it
once (see :mod:`bench.metrics` for the conventions, e.g. classes absent from a split). Label maps
are scored at their own size: the model runs at the job's resolution and its logits are
upsampled (bilinear) to each label map's size where they differ.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bench.data import build_dataset, dataset_info
from bench.data.check import check_split_files
from bench.metrics import (BOUNDARY_BAND_FRACTION, BOUNDARY_METHOD, boundary_band_px, boundary_counts,
                           boundary_miou, confusion_matrix, segmentation_metrics)
from bench.progress import tick
from bench.checkpoint import load_checkpoint
from bench.train import train_model
from bench.updates import Precision

DEFAULT_EVAL_BATCH_SIZE = 4


def _images_and_masks(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Collate: images stacked (one size, the job's), masks kept apart (each its own size)."""
    return torch.stack([image for image, _ in batch]), [mask for _, mask in batch]


def predict_at(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class map at ``size`` from C x h x w logits: bilinear upsampling first when the sizes differ
    (a label map larger than the model's input is scored at its own size, as the papers score)."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0]
    return logits.argmax(dim=0)


def evaluate(model: nn.Module, dataset_cfg: Mapping[str, Any], split: str, resolution: tuple[int, int],
             device: torch.device | str, batch_size: int = DEFAULT_EVAL_BATCH_SIZE,
             progress: bool = True) -> dict[str, Any]:
    """Metrics of ``model`` (in eval mode) on ``split``, plus ``split`` and the evaluation size.

    The model runs at ``resolution``; each label map is scored at its own size (real data sets
    keep theirs, see ``build_dataset``), its logits upsampled to it. ``eval_height`` and
    ``eval_width`` are that size, or None when the split's label maps differ in size (VOC). The
    model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    info = dataset_info(dataset_cfg)
    loader = DataLoader(build_dataset(dataset_cfg, split, resolution, train=False), batch_size=batch_size,
                        collate_fn=_images_and_masks)
    confmat = torch.zeros(info.num_classes, info.num_classes, dtype=torch.int64, device=device)
    boundary = torch.zeros(2, info.num_classes, dtype=torch.int64, device=device)
    sizes: set[tuple[int, int]] = set()
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for images, masks in tqdm(loader, desc=f"eval {split}", disable=not progress, unit="batch"):
                tick()
                for logits, mask in zip(model(images.to(device)), masks):
                    sizes.add(tuple(mask.shape))
                    pred = predict_at(logits, tuple(mask.shape))
                    confmat += confusion_matrix(pred, mask.to(device), info.num_classes, info.ignore_index)
                    boundary += boundary_counts(pred, mask.to(device), info.num_classes, info.ignore_index,
                                                boundary_band_px(*mask.shape))
    finally:
        model.train(was_training)
    (height, width), = sizes if len(sizes) == 1 else [(None, None)]
    return {"split": split, "eval_height": height, "eval_width": width,
            **segmentation_metrics(confmat, info.class_names),
            "boundary_miou": boundary_miou(boundary),
            "boundary_band_px": boundary_band_px(height, width) if height is not None else None,
            "boundary_method": BOUNDARY_METHOD.format(band=f"{BOUNDARY_BAND_FRACTION:.0%}")}


def curve_split(train_cfg: Mapping[str, Any]) -> str:
    """The split the learning curve scores during training."""
    return train_cfg.get("curve_split") or "val"


def training_splits(train_cfg: Mapping[str, Any], eval_split: str) -> set[str]:
    """Every split a training job reads: training, its learning curve, and the scored split (what
    is checked before training, here and for a whole sweep in bench/preflight.py)."""
    return {"train", curve_split(train_cfg), eval_split}


def run_accuracy(model: nn.Module, dataset_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any],
                 eval_split: str, resolution: tuple[int, int], device: torch.device | str,
                 run_dir: str | Path | None, checkpoint: str | Path | None = None,
                 progress: bool = True, precision: Precision | None = None, channels_last: bool = False,
                 state_path: str | Path | None = None, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The accuracy fields of a result row: train (or load ``checkpoint``), then evaluate.

    With ``checkpoint`` nothing is trained and the training fields are None. Training records a
    learning curve on ``train.curve_split`` (bench/curve.py), runs under ``precision`` and
    ``channels_last``, and resumes from ``state_path`` when a killed run left a state there.
    Before training, every file of the splits it reads is checked (:mod:`bench.data.check`: bad
    data fails the job now, all of it in one error, not after the training it would score;
    ``cache_dir`` remembers the files found good).
    """
    batch_size = int(train_cfg.get("batch_size") or DEFAULT_EVAL_BATCH_SIZE)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
        trained = {"train_steps": None, "train_seconds": None, "epochs": None, "final_loss": None,
                   "checkpoint": str(checkpoint)}
        final = None
    else:
        curve = curve_split(train_cfg)
        check_split_files(dataset_cfg, training_splits(train_cfg, eval_split), resolution, cache_dir)
        scored: list[dict[str, Any]] = []

        def validate(trained_model: nn.Module) -> dict[str, Any]:
            scored.append(evaluate(trained_model, dataset_cfg, curve, resolution, device,
                                   batch_size=batch_size, progress=False))
            return scored[-1]

        result = train_model(model, dataset_cfg, train_cfg, resolution, device, run_dir, progress=progress,
                             validate=validate, precision=precision, channels_last=channels_last,
                             state_path=state_path)
        trained = {"train_steps": result.steps, "train_seconds": result.seconds, "epochs": result.epochs,
                   "final_loss": result.final_loss, "checkpoint": result.checkpoint_path,
                   "checkpoint_error": result.checkpoint_error,
                   "train_optimizer": result.optimizer, "stop_reason": result.stop_reason,
                   "finetune_steps": result.finetune_steps, "resumed_from_step": result.resumed_from_step,
                   "resumptions": result.resumptions, **result.curve}
        # The curve's last point scored the final weights on the same split: no second pass.
        final = scored[-1] if curve == eval_split and result.curve["test_weights"] == "final" else None
    metrics = final or evaluate(model, dataset_cfg, eval_split, resolution, device, batch_size=batch_size,
                                progress=progress)
    return {**metrics, **trained}
