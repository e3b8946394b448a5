"""Metrics against numbers worked out by hand, and accumulation over batches."""
import math
from fractions import Fraction

import pytest
import torch

from bench.metrics import (boundary_band, boundary_band_px, boundary_counts, boundary_miou, confusion_matrix,
                           median_frequency_weights, segmentation_metrics)

IGNORE = 255
NAMES = ["road", "car", "sky", "boat"]   # "boat" appears in neither prediction nor ground truth

# Nine labelled pixels plus two ignored ones; an ignored pixel is predicted "boat" (class 3),
# which must not reach the matrix.
TARGET = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, IGNORE, IGNORE])
PRED = torch.tensor([0, 0, 1, 2, 1, 1, 0, 2, 1, 0, 3])

# Rows: ground truth, columns: prediction, counted by hand from the pixels above.
EXPECTED_CONFMAT = [[2, 1, 1, 0],
                    [1, 2, 0, 0],
                    [0, 1, 1, 0],
                    [0, 0, 0, 0]]


def test_confusion_matrix_by_hand_excludes_ignored_pixels():
    confmat = confusion_matrix(PRED, TARGET, num_classes=4, ignore_index=IGNORE)
    assert confmat.dtype == torch.int64
    assert confmat.tolist() == EXPECTED_CONFMAT


def test_confusion_matrix_excludes_out_of_range_targets_and_rejects_bad_predictions():
    confmat = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 7, -1]), num_classes=2, ignore_index=IGNORE)
    assert confmat.tolist() == [[1, 0], [0, 0]]
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(torch.tensor([5]), torch.tensor([0]), num_classes=2, ignore_index=IGNORE)


def test_metrics_by_hand():
    metrics = segmentation_metrics(torch.tensor(EXPECTED_CONFMAT), NAMES)
    # Ground-truth totals t = (4, 3, 2, 0), predicted totals p = (3, 4, 2, 0), diagonal (2, 2, 1, 0).
    iou = {"road": Fraction(2, 4 + 3 - 2), "car": Fraction(2, 3 + 4 - 2), "sky": Fraction(1, 2 + 2 - 1)}
    assert set(metrics["per_class_iou"]) == set(NAMES)
    for name, value in iou.items():
        assert metrics["per_class_iou"][name] == pytest.approx(float(value))
    assert math.isnan(metrics["per_class_iou"]["boat"])
    # "boat" is left out of the mean: three classes, not four.
    assert metrics["miou"] == pytest.approx(float(Fraction(2, 5) + Fraction(2, 5) + Fraction(1, 3)) / 3)
    assert metrics["miou"] == pytest.approx(17 / 45)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 9)
    assert metrics["mean_accuracy"] == pytest.approx(float(Fraction(2, 4) + Fraction(2, 3) + Fraction(1, 2)) / 3)
    fw = (4 * Fraction(2, 5) + 3 * Fraction(2, 5) + 2 * Fraction(1, 3)) / 9
    assert metrics["fw_iou"] == pytest.approx(float(fw))
    assert metrics["fw_iou"] == pytest.approx(52 / 135)
    assert all(isinstance(metrics[key], float) for key in ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou"))


def test_class_predicted_but_absent_from_ground_truth_counts_as_zero():
    # Ground truth all class 0; one pixel wrongly predicted class 1: IoU_1 = 0 / (0 + 1 - 0).
    confmat = confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.zeros(4, dtype=torch.long), 2, IGNORE)
    metrics = segmentation_metrics(confmat)
    assert metrics["per_class_iou"] == {"0": pytest.approx(3 / 4), "1": 0.0}
    assert metrics["miou"] == pytest.approx(3 / 8)
    assert metrics["mean_accuracy"] == pytest.approx(3 / 4)   # accuracy is per ground-truth class


def test_empty_matrix_gives_nan_not_an_error():
    metrics = segmentation_metrics(torch.zeros(3, 3, dtype=torch.long))
    assert all(math.isnan(metrics[key]) for key in ("miou", "pixel_accuracy", "mean_accuracy", "fw_iou"))


def test_accumulating_batches_equals_one_big_matrix():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 6, (5, 2, 8, 8), generator=generator)   # 5 = ignore
    pred = torch.randint(0, 5, (5, 2, 8, 8), generator=generator)
    summed = sum(confusion_matrix(p, t, 5, ignore_index=5) for p, t in zip(pred, target))
    whole = confusion_matrix(pred, target, 5, ignore_index=5)
    assert torch.equal(summed, whole)
    assert whole.sum() == (target != 5).sum()


def test_median_frequency_weights_by_hand():
    # Frequencies 0.1, 0.2, 0.4, 0.3 (class 4 never occurs); median of the four = (0.2 + 0.3) / 2.
    weights = median_frequency_weights(torch.tensor([10, 20, 40, 30, 0]))
    assert weights.tolist() == pytest.approx([2.5, 1.25, 0.625, 0.25 / 0.3, 0.0])


def test_median_frequency_weights_use_pixels_of_images_containing_the_class():
    # f = 10/100, 30/100, 60/200 -> 0.1, 0.3, 0.3; median 0.3.
    weights = median_frequency_weights(torch.tensor([10, 30, 60]), torch.tensor([100, 100, 200]))
    assert weights.tolist() == pytest.approx([3.0, 1.0, 1.0])


def test_boundary_iou_by_hand():
    # 6x6: ground truth class 0 in columns 0-2, class 1 in 3-5; the prediction's edge one column right.
    target = torch.zeros(6, 6, dtype=torch.long)
    target[:, 3:] = 1
    pred = torch.zeros(6, 6, dtype=torch.long)
    pred[:, 4:] = 1
    # The band of width 1 of class 0's ground truth: all of columns 0-2 but (rows 1-4, column 1).
    band = boundary_band((target == 0).unsqueeze(0), 1)[0]
    assert band.sum() == 14 and not band[1:5, 1].any() and band[:, 2].all()
    counts = boundary_counts(pred, target, 2, 255, band=1)
    # Class 0: truth band 14, prediction band 16 (columns 0-3 but rows 1-4 x columns 1-2), shared 10.
    # Class 1: truth band 14, prediction band 12 (columns 4-5, all at the edge), shared 8.
    assert counts.tolist() == [[10, 8], [20, 18]]
    assert boundary_miou(counts) == pytest.approx((10 / 20 + 8 / 18) / 2)
    # The plain mIoU of the same maps is higher: the outline is what the shift spoils.
    assert segmentation_metrics(confusion_matrix(pred, target, 2, 255))["miou"] == pytest.approx((18 / 24 + 12 / 18) / 2)


def test_boundary_iou_leaves_ignored_pixels_out_and_a_perfect_outline_scores_one():
    target = torch.zeros(20, 30, dtype=torch.long)
    target[5:15, 10:20] = 1
    assert boundary_miou(boundary_counts(target.clone(), target, 2, 255, band=2)) == 1.0
    ignored = target.clone()
    ignored[:, :5] = 255
    pred = target.clone()
    pred[:, :5] = 1                       # wrong only where the ground truth is ignored
    assert boundary_miou(boundary_counts(pred, ignored, 2, 255, band=2)) == 1.0
    assert boundary_band_px(360, 480) == 12 and boundary_band_px(16, 16) == 1   # 2% of the diagonal
