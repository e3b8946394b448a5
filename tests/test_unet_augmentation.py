"""U-Net's training workflow (Ronneberger et al., MICCAI 2015) in ``train=unet``: the elastic
deformation of sec. 3.1 (bench/data/transforms.py) and the border weight map of sec. 3, eq. 2
(bench/border_loss.py), each checked on a case computed by hand, then both in one small job."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

import bench.border_loss
import bench.data.transforms
from bench.border_loss import BorderWeight, BorderWeightedCrossEntropy, border_term, weight_map
from bench.data.transforms import (Augmentation, ElasticDeformation, SegmentationTransform, deform,
                                   displacement_field)
from bench.jobspec import config_problems, job_key
from bench.runner import run_job
from tests.conftest import FAST_TIMING, ROOT
from tests.test_train import job_config, one_thread  # noqa: F401 (one_thread: autouse)

IGNORE = 255




def two_squares() -> np.ndarray:
    """6 x 7: two 2x2 squares of class 1 (rows 2-3, columns 1-2 and 4-5), a one-pixel gap of
    class 0 between them (column 3), class 0 all around: three objects (the class-0 region is
    one, 8-connected)."""
    labels = np.zeros((6, 7), dtype=np.int64)
    labels[2:4, 1:3] = 1
    labels[2:4, 4:6] = 1
    return labels


# ---- elastic deformation (sec. 3.1) ---------------------------------------------------------

def test_a_zero_sigma_deformation_is_the_identity_for_image_and_mask():
    image, mask = torch.randn(3, 9, 11), torch.randint(0, 4, (9, 11))
    warped_image, warped_mask = ElasticDeformation(grid=3, sigma_px=0)(image, mask, IGNORE)
    torch.testing.assert_close(warped_image, image, atol=1e-5, rtol=0)
    assert torch.equal(warped_mask, mask)


def test_a_constant_displacement_shifts_image_and_mask_by_exactly_that_many_pixels():
    image = torch.arange(3 * 6 * 7, dtype=torch.float32).reshape(3, 6, 7)
    mask = torch.from_numpy(two_squares())
    coarse = torch.stack((torch.full((3, 3), 2.0), torch.full((3, 3), 1.0)))   # dx = 2, dy = 1
    warped_image, warped_mask = deform(image, mask, coarse, IGNORE)
    # Output pixel (y, x) reads the input at (y + 1, x + 2).
    torch.testing.assert_close(warped_image[:, :-1, :-2], image[:, 1:, 2:], atol=1e-4, rtol=1e-6)
    assert torch.equal(warped_mask[:-1, :-2], mask[1:, 2:])
    # Read from outside the image: no label there, and the image reads 0 (the normalised mean colour).
    assert (warped_mask[-1, :] == IGNORE).all() and (warped_mask[:, -2:] == IGNORE).all()
    assert warped_image[:, -1, :].abs().max() < 1e-5 and warped_image[:, :, -2:].abs().max() < 1e-5


def test_the_field_is_the_coarse_grid_interpolated_bicubically_corner_to_corner():
    coarse = torch.randn(2, 3, 3)
    field = displacement_field(coarse, 9, 13)
    assert field.shape == (2, 9, 13)
    # align_corners: the coarse points sit on the corner pixels and (odd sizes) on the centre pixel.
    for (y, x), (gy, gx) in {(0, 0): (0, 0), (0, 12): (0, 2), (8, 0): (2, 0), (8, 12): (2, 2),
                             (4, 6): (1, 1)}.items():
        torch.testing.assert_close(field[:, y, x], coarse[:, gy, gx], atol=1e-5, rtol=0)


def test_the_coarse_displacements_are_gaussian_with_sigma_px_and_follow_the_seed():
    elastic = ElasticDeformation(grid=3, sigma_px=10)
    torch.manual_seed(0)
    draws = torch.stack([elastic.sample_grid() for _ in range(2000)])
    assert draws.shape == (2000, 2, 3, 3)
    assert abs(draws.mean().item()) < 0.3 and abs(draws.std().item() - 10) < 0.3
    torch.manual_seed(0)
    assert torch.equal(elastic.sample_grid(), draws[0])


def test_a_random_deformation_keeps_labels_labels_and_moves_image_and_mask_together():
    labels = torch.zeros(32, 32, dtype=torch.int64)
    labels[:, 16:] = 2
    labels[8:24, 4:12] = 5
    image = labels.float().expand(3, -1, -1).clone()   # the image shows its own labels
    torch.manual_seed(3)
    warped_image, warped_mask = ElasticDeformation(grid=3, sigma_px=4)(image, labels, IGNORE)
    assert warped_mask.dtype == torch.int64 and warped_mask.shape == labels.shape
    assert set(warped_mask.unique().tolist()) <= {0, 2, 5, IGNORE}
    assert not torch.equal(warped_mask, labels)   # it did move
    # The same field: away from the label edges the bilinear image equals the nearest label.
    inside = warped_mask != IGNORE
    agree = (warped_image[0][inside] - warped_mask[inside].float()).abs() < 1e-3
    assert agree.float().mean() > 0.8


def test_only_training_deforms_and_a_seed_reproduces_it():
    image, mask = torch.randint(0, 256, (3, 20, 20), dtype=torch.uint8), torch.randint(0, 3, (20, 20))
    augmentation = Augmentation(scale_range=None, hflip=False, elastic=ElasticDeformation(3, 10))
    train = SegmentationTransform((20, 20), train=True, ignore_index=IGNORE, augmentation=augmentation)
    plain = SegmentationTransform((20, 20), train=False, ignore_index=IGNORE, augmentation=augmentation)
    torch.manual_seed(1)
    first = train(image, mask)
    torch.manual_seed(1)
    again = train(image, mask)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], mask)
    assert torch.equal(plain(image, mask)[1], mask)


def test_the_elastic_block_is_read_from_the_train_config():
    assert Augmentation.from_config({"elastic": None}).elastic is None
    assert Augmentation.from_config({"elastic": {"grid": 3, "sigma_px": 10}}).elastic == ElasticDeformation(3, 10.0)
    for block, match in [({"grid": 1, "sigma_px": 10}, "grid must be a whole number of at least 2"),
                         ({"grid": 3, "sigma_px": -1}, "sigma_px must be at least 0"),
                         ({"grid": 3}, "must be null or"), (True, "must be null or")]:
        with pytest.raises(ValueError, match=match):
            Augmentation.from_config({"elastic": block})


# ---- the weight map (sec. 3, eq. 2) ---------------------------------------------------------

def test_the_border_term_by_hand_on_two_squares():
    term = border_term(two_squares(), IGNORE, BorderWeight(w0=10, sigma_px=5))

    def by_hand(d1, d2):
        return 10 * math.exp(-(d1 + d2) ** 2 / (2 * 5 ** 2))

    # In the gap (2, 3): each square is one pixel away.
    assert term[2, 3] == pytest.approx(by_hand(1, 1), abs=1e-6)
    # Far, in the corner (0, 6): the right square's nearest pixel (2, 5) is sqrt(5) away, the
    # left one's (2, 2) sqrt(20).
    assert term[0, 6] == pytest.approx(by_hand(math.sqrt(5), math.sqrt(20)), abs=1e-6)
    # Inside the left square (2, 1): its own square does not count; the class-0 region is one
    # pixel away, the right square three.
    assert term[2, 1] == pytest.approx(by_hand(1, 3), abs=1e-6)
    assert term[2, 3] > term[0, 6]          # the gap between the objects weighs most


def test_with_fewer_than_two_other_objects_there_is_no_border_term():
    assert not border_term(np.zeros((5, 5), dtype=np.int64), IGNORE, BorderWeight()).any()
    halves = np.zeros((5, 6), dtype=np.int64)
    halves[:, 3:] = 1          # two objects: each pixel has one other
    assert not border_term(halves, IGNORE, BorderWeight()).any()


def test_objects_are_8_connected():
    diagonal = np.zeros((5, 5), dtype=np.int64)
    diagonal[np.arange(5), np.arange(5)] = 1
    # 8-connected: the diagonal is one object, and the class-0 pixels on either side of it touch
    # at corners, so they are one too. (4-connected: five single pixels and two halves.)
    assert bench.border_loss.label_objects(diagonal, IGNORE)[1] == 2


def test_the_weight_map_adds_class_weights_and_leaves_ignored_pixels_out():
    labels = two_squares()
    labels[5, 0] = IGNORE
    border = BorderWeight(w0=10, sigma_px=5)
    class_weights = np.array([0.5, 2.0])
    weights = weight_map(labels, IGNORE, border, class_weights)
    term = border_term(labels, IGNORE, border)
    assert weights[5, 0] == 0
    assert weights[2, 3] == pytest.approx(0.5 + term[2, 3], abs=1e-12)     # class 0
    assert weights[2, 1] == pytest.approx(2.0 + term[2, 1], abs=1e-12)     # class 1
    assert np.array_equal(weight_map(labels, IGNORE, BorderWeight(w0=0)), (labels != IGNORE).astype(float))


def test_with_w0_zero_the_loss_is_segbenchs_cross_entropy():
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 3, 6, 7, requires_grad=True), torch.randint(0, 3, (2, 6, 7))
    mask[0, 0, :4] = IGNORE
    plain = BorderWeightedCrossEntropy(BorderWeight(w0=0), IGNORE)(logits, mask)
    torch.testing.assert_close(plain, F.cross_entropy(logits, mask, ignore_index=IGNORE), atol=1e-6, rtol=0)
    class_weights = torch.tensor([0.5, 1.0, 3.0])
    weighted = BorderWeightedCrossEntropy(BorderWeight(w0=0), IGNORE, class_weights)(logits, mask)
    expected = nn.CrossEntropyLoss(weight=class_weights, ignore_index=IGNORE)(logits, mask)
    torch.testing.assert_close(weighted, expected, atol=1e-6, rtol=0)


def test_the_loss_is_the_weighted_mean_and_weighs_the_gap_most():
    mask = torch.from_numpy(two_squares())[None]
    criterion = BorderWeightedCrossEntropy(BorderWeight(w0=10, sigma_px=5), IGNORE)
    uniform = torch.zeros(1, 2, 6, 7)               # every pixel's cross-entropy is log 2
    assert criterion(uniform, mask).item() == pytest.approx(math.log(2), abs=1e-6)
    # One wrong pixel: it costs more in the gap than in the far corner.
    def one_wrong(y, x):
        logits = F.one_hot(mask, 2).permute(0, 3, 1, 2).float() * 5
        logits[0, :, y, x] = logits[0, :, y, x].flip(0)
        return criterion(logits, mask).item()
    assert one_wrong(2, 3) > one_wrong(0, 6)
    all_ignored = torch.full((1, 6, 7), IGNORE)
    assert criterion(uniform, all_ignored).item() == 0.0     # no weight at all: 0, not 0 / 0


def test_the_border_block_is_read_from_the_train_config():
    assert BorderWeight.from_config({"border_weight": None}) is None
    assert BorderWeight.from_config({"border_weight": {"w0": 10, "sigma_px": 5}}) == BorderWeight(10.0, 5.0)
    for block, match in [({"w0": -1, "sigma_px": 5}, "w0 must be at least 0"),
                         ({"w0": 10, "sigma_px": 0}, "sigma_px must be above 0"),
                         ({"w0": 10, "sigma": 5}, "must be null or")]:
        with pytest.raises(ValueError, match=match):
            BorderWeight.from_config({"border_weight": block})


# ---- the recipe and its checks ---------------------------------------------------------------

def test_the_unet_recipe_turns_both_on_and_the_default_leaves_them_off():
    unet, default = job_config("train=unet").train, job_config().train
    assert OmegaConf.to_container(unet.elastic) == {"grid": 3, "sigma_px": 10}
    assert OmegaConf.to_container(unet.border_weight) == {"w0": 10, "sigma_px": 5}
    assert default.elastic is None and default.border_weight is None
    assert config_problems(job_config("train=unet", "mode=accuracy")) == []


def test_bad_values_are_refused_before_any_work_all_at_once():
    problems = config_problems(job_config("train=unet", "mode=accuracy", "train.elastic.grid=1",
                                       "train.elastic.sigma_px=-1", "train.border_weight.w0=-1",
                                       "train.border_weight.sigma_px=0"))
    assert problems == ["train.elastic.grid must be at least 2, got 1",
                        "train.elastic.sigma_px must be at least 0, got -1",
                        "train.border_weight.w0 must be at least 0, got -1",
                        "train.border_weight.sigma_px must be above 0, got 0"]
    assert config_problems(job_config("train=unet", "train.elastic.grid=2.5")) == \
        ["train.elastic.grid must be a whole number, got 2.5"]


def test_a_block_with_a_missing_or_unknown_key_or_no_block_at_all_is_refused():
    assert config_problems(job_config("train=unet", "~train.elastic.grid")) == ["train.elastic.grid must be set"]
    assert config_problems(job_config("train=unet", "+train.border_weight.sigma=5")) == \
        ["train.border_weight must be null or {w0: ..., sigma_px: ...}; unknown key sigma"]
    assert config_problems(job_config("train.elastic=3")) == \
        ["train.elastic must be null or {grid: ..., sigma_px: ...}, got 3"]


def test_a_tiny_unet_style_job_trains_with_both_and_finishes_ok(tmp_path, monkeypatch):
    calls = {"elastic": 0, "border": 0}
    deform_before, forward_before = ElasticDeformation.__call__, BorderWeightedCrossEntropy.forward

    def counting_deform(self, *args):
        calls["elastic"] += 1
        return deform_before(self, *args)

    def counting_forward(self, *args):
        calls["border"] += 1
        return forward_before(self, *args)

    monkeypatch.setattr(bench.data.transforms.ElasticDeformation, "__call__", counting_deform)
    monkeypatch.setattr(bench.border_loss.BorderWeightedCrossEntropy, "forward", counting_forward)
    cfg = job_config("train=unet", "mode=accuracy", "model=custom", "model.name=tiny_segmenter",
                  "plugins=[tests.plugin_models]", "resolution=16x16", "threads=1",
                  "train.max_steps=2", "train.eval_every_steps=null", "dataset.sizes.train=2",
                  "dataset.sizes.val=2", "dataset.sizes.test=2", "measure.train_step=false",
                  "measure.energy=false", *FAST_TIMING, f"results_dir={tmp_path / 'results'}")
    outcome = run_job(cfg, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    assert calls == {"elastic": 2, "border": 2}     # batch size 1: one image and one loss per step


def test_the_new_train_keys_at_their_default_leave_accuracy_jobs_keyed_as_before():
    # Computed by the key function before train.elastic and train.border_weight existed (d8d0b8d):
    # a resumed sweep keeps those rows as its jobs' instead of training again.
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        plain = compose("config", ["model=fcn_basic", "resolution=32x32", "mode=accuracy"])
        deformed = compose("config", ["model=fcn_basic", "resolution=32x32", "mode=accuracy",
                                      "train.elastic={grid: 3, sigma_px: 10}"])
    assert job_key(plain) == "fcn_basic_synthetic_cpu_32x32_b1_fp32_accuracy_s0_d079e2ca3c"
    assert job_key(deformed) != job_key(plain)   # trained otherwise: another job
