"""Scoring at the labels' own resolution: logits upsampled to each label map, never labels shrunk."""
import numpy as np
import torch
from PIL import Image
from torch import nn

from bench.data import build_dataset
from bench.evaluate import evaluate, predict_at
from bench.metrics import confusion_matrix
from tests.test_data import SYNTHETIC, make_camvid, save_png


class Constant(nn.Module):
    """Logits that favour one class everywhere, at the input's size."""

    def __init__(self, num_classes: int, favoured: int):
        super().__init__()
        self.num_classes, self.favoured = num_classes, favoured
        self.unused = nn.Parameter(torch.zeros(1))   # a model has parameters

    def forward(self, x):
        logits = torch.zeros(x.shape[0], self.num_classes, *x.shape[-2:])
        logits[:, self.favoured] = 1.0
        return logits


def test_logits_are_upsampled_bilinearly_to_the_label_size_before_argmax():
    # Class 1 minus class 0 is -1 in the left column and +1 in the right one. Bilinear upsampling
    # to 4 columns (align_corners=False) samples the 2 source columns at x = -0.25, 0.25, 0.75,
    # 1.25, clamped to 0, 0.25, 0.75, 1: -1, -0.5, +0.5, +1. So two columns of each class.
    logits = torch.tensor([[[1.0, 0.0], [1.0, 0.0]],    # class 0
                           [[0.0, 1.0], [0.0, 1.0]]])   # class 1
    pred = predict_at(logits, (4, 4))
    assert pred.tolist() == [[0, 0, 1, 1]] * 4
    label = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
    # One class-1 pixel predicted 0 (row 2) and one class-0 pixel predicted 1 (row 3).
    assert confusion_matrix(pred, label, 2, 255).tolist() == [[7, 1], [1, 7]]
    assert predict_at(logits, (2, 2)).tolist() == [[0, 1], [0, 1]]   # same size: no resampling


def test_camvid_is_scored_at_its_label_size_not_the_model_input(tmp_path):
    root = make_camvid(tmp_path / "CamVid", {"train": 1, "val": 2})   # 48x64 files
    cfg = {"name": "camvid", "root": str(root)}
    image, mask = build_dataset(cfg, "val", (24, 32))[0]
    assert image.shape == (3, 24, 32) and mask.shape == (48, 64)
    metrics = evaluate(Constant(11, favoured=3), cfg, "val", (24, 32), "cpu", progress=False)
    assert (metrics["eval_height"], metrics["eval_width"]) == (48, 64)
    labels = np.concatenate([np.asarray(Image.open(root / "valannot" / f"0001TP_{i:06d}.png")).ravel()
                             for i in range(2)])
    labelled = labels[labels != 11]   # 11 is void
    assert metrics["pixel_accuracy"] == (labelled == 3).sum() / labelled.size


def test_label_maps_of_different_sizes_are_each_scored_at_their_own(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in (("a", (48, 64)), ("b", (40, 56))):
        save_png(tmp_path / "val" / "images" / f"{name}.png", rng.integers(0, 256, (*shape, 3)))
        save_png(tmp_path / "val" / "masks" / f"{name}.png", rng.integers(0, 2, shape))
    cfg = {"name": "folder", "root": str(tmp_path), "num_classes": 2, "ignore_index": 255}
    metrics = evaluate(Constant(2, favoured=1), cfg, "val", (24, 32), "cpu", batch_size=2, progress=False)
    assert metrics["eval_height"] is None and metrics["eval_width"] is None
    masks = [np.asarray(Image.open(tmp_path / "val" / "masks" / f"{n}.png")) for n in "ab"]
    assert metrics["pixel_accuracy"] == sum((m == 1).sum() for m in masks) / sum(m.size for m in masks)


def test_generated_labels_are_scored_at_the_configured_size():
    metrics = evaluate(Constant(11, favoured=0), SYNTHETIC, "val", (24, 32), "cpu", progress=False)
    assert (metrics["eval_height"], metrics["eval_width"]) == (24, 32)
