"""The training protocol: it learns, it stops on budget, it fails loudly, its checkpoints load safely."""
import math
import pickle
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from bench.data import build_dataset, dataset_info
from bench.evaluate import evaluate, run_accuracy
from bench.metrics import confusion_matrix, segmentation_metrics
from bench.checkpoint import CheckpointError, load_checkpoint
from bench.schedule import lr_factor
from bench.train import train_model
from bench.updates import NonFiniteLossError
from models import create_model
from models.adversarial import Adversary, AdversarialSegmentor

CLASSES, IGNORE = 11, 11    # the synthetic data set: CamVid's classes, void ignored
TINY = (16, 16)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU more threads only contend (and are 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def job_config(*overrides: str):
    """The job config exactly as the CLI composes it (so the YAML files are exercised too)."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", ["dataset=synthetic", *overrides])


@pytest.fixture(scope="module")
def configs():
    """(dataset, train) configs: a small synthetic data set, the default training protocol."""
    cfg = job_config("dataset.sizes.train=8", "dataset.sizes.val=4")
    return cfg.dataset, cfg.train


def with_keys(cfg, **keys):
    return OmegaConf.merge(cfg, keys)


class TinySegmenter(nn.Module):
    def __init__(self, num_classes: int = CLASSES, width: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, num_classes, 1))

    def forward(self, x):
        return self.body(x)


class NaNSegmenter(TinySegmenter):
    def forward(self, x):
        return super().forward(x) * math.nan


def train_tiny(dataset_cfg, train_cfg, run_dir=None, model=None, **keys):
    model = model or TinySegmenter()
    return model, train_model(model, dataset_cfg, with_keys(train_cfg, **keys), TINY, "cpu", run_dir,
                              progress=False)


# ---- it learns -------------------------------------------------------------------------------

def majority_baseline_miou(dataset_cfg, resolution) -> float:
    """mIoU of predicting the most frequent train class everywhere on the val split."""
    train = build_dataset(dataset_cfg, "train", resolution, train=False)
    labels = torch.cat([train[i][1].flatten() for i in range(len(train))])
    majority = int(torch.bincount(labels[labels != IGNORE], minlength=CLASSES).argmax())
    val = build_dataset(dataset_cfg, "val", resolution, train=False)
    confmat = sum(confusion_matrix(torch.full_like(mask, majority), mask, CLASSES, IGNORE)
                  for _, mask in (val[i] for i in range(len(val))))
    return segmentation_metrics(confmat)["miou"]


def test_unet_learns_the_synthetic_scenes(tmp_path):
    cfg = job_config("dataset.sizes.train=32", "dataset.sizes.val=8", "train.max_steps=60", "train.lr=0.003")
    resolution = (48, 48)
    torch.manual_seed(0)
    model = create_model("unet", num_classes=CLASSES, base_channels=8, padding="same")
    result = train_model(model, cfg.dataset, cfg.train, resolution, "cpu", tmp_path, progress=False)
    scores = evaluate(model, cfg.dataset, "val", resolution, "cpu", progress=False)
    baseline = majority_baseline_miou(cfg.dataset, resolution)
    print(f"unet: {result.steps} steps in {result.seconds:.1f} s, loss {result.loss_history[0]:.3f} -> "
          f"{result.final_loss:.3f}, val mIoU {scores['miou']:.3f} vs majority baseline {baseline:.3f}")

    assert result.steps == 60 and result.epochs == pytest.approx(60 / 8)
    first, last = result.loss_history[:5], result.loss_history[-10:]
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first)
    assert scores["split"] == "val"
    assert scores["miou"] > 2 * baseline and scores["miou"] > baseline + 0.05


# ---- the budget ------------------------------------------------------------------------------

def test_step_budget_is_exact(configs):
    _, result = train_tiny(*configs, max_steps=3)
    assert result.steps == 3 and len(result.loss_history) == 3
    assert result.epochs == pytest.approx(3 / 2)    # 8 images, batches of 4
    assert all(math.isfinite(loss) for loss in result.loss_history)


def test_epoch_budget_rounds_up_to_whole_steps(configs):
    _, result = train_tiny(*configs, max_steps=None, max_epochs=1.5)
    assert result.steps == 3 and result.epochs == pytest.approx(1.5)


def test_first_limit_reached_wins(configs):
    _, result = train_tiny(*configs, max_steps=100, max_epochs=1)
    assert result.steps == 2


def test_seconds_budget_stops_training(configs):
    _, result = train_tiny(*configs, max_steps=None, max_seconds=0.5)
    assert result.steps >= 1
    assert result.seconds < 30    # loose: it stopped, not how precisely


def test_schedules_follow_the_budget_fraction():
    assert [lr_factor("constant", p) for p in (0, 0.5, 1)] == [1, 1, 1]
    assert [lr_factor("poly", p) for p in (0, 1)] == [1, 0]
    assert lr_factor("poly", 0.5) == pytest.approx(0.5 ** 0.9)
    assert [lr_factor("cosine", p) for p in (0, 0.5, 1)] == pytest.approx([1, 0.5, 0])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("step", 0.5)


def test_unbounded_budget_is_rejected(configs):
    with pytest.raises(ValueError, match="at least one of train.max_steps"):
        train_tiny(*configs, max_steps=None, max_epochs=None, max_seconds=None)


def test_same_seed_same_run(configs):
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        runs.append(train_tiny(*configs, max_steps=3, optimizer="sgd", schedule="cosine")[1].loss_history)
    assert runs[0] == runs[1]


def test_median_frequency_weighting_trains(configs):
    _, result = train_tiny(*configs, max_steps=2, class_weighting="median_frequency")
    assert math.isfinite(result.final_loss)


# ---- non-finite losses -----------------------------------------------------------------------

def test_nan_output_raises_with_the_step(configs):
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 1"):
        train_tiny(*configs, model=NaNSegmenter(), max_steps=5)


def test_infinite_learning_rate_raises_at_the_next_step(configs):
    with pytest.raises(NonFiniteLossError, match=r"at step 2\b"):
        train_tiny(*configs, lr=math.inf, max_steps=5)


# ---- checkpoints -----------------------------------------------------------------------------

def test_checkpoint_round_trip_is_weights_only(configs, tmp_path):
    model, result = train_tiny(*configs, run_dir=tmp_path, max_steps=2)
    assert result.checkpoint_path == str(tmp_path / "checkpoint.pt")
    payload = torch.load(result.checkpoint_path, weights_only=True)
    assert set(payload["state_dict"]) == set(model.state_dict())
    assert all(isinstance(v, (str, int, float)) for v in payload["metadata"].values())

    fresh = TinySegmenter()
    metadata = load_checkpoint(fresh, result.checkpoint_path)
    assert metadata["steps"] == 2
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor)


def test_run_accuracy_trains_then_scores_the_same_weights_from_the_checkpoint(configs, tmp_path):
    dataset_cfg, train_cfg = configs
    train_cfg = with_keys(train_cfg, max_steps=2)
    trained = run_accuracy(TinySegmenter(), dataset_cfg, train_cfg, "val", TINY, "cpu", tmp_path, progress=False)
    assert trained["train_steps"] == 2 and trained["checkpoint"] == str(tmp_path / "checkpoint.pt")
    assert set(trained["per_class_iou"]) == set(dataset_info(dataset_cfg).class_names)
    reloaded = run_accuracy(TinySegmenter(), dataset_cfg, train_cfg, "val", TINY, "cpu", tmp_path,
                            checkpoint=trained["checkpoint"], progress=False)
    assert reloaded["train_steps"] is None
    assert reloaded["miou"] == trained["miou"] and reloaded["pixel_accuracy"] == trained["pixel_accuracy"]


class NotWeights:
    """An arbitrary pickled object: weights_only loading must refuse it."""


@pytest.mark.parametrize("content, reason", [
    (lambda good: good[: len(good) // 2], "truncated"),
    (lambda good: b"not a checkpoint at all", "garbage"),
    (lambda good: pickle.dumps(NotWeights(), protocol=2), "a pickled object"),
])
def test_unreadable_checkpoints_raise_checkpoint_error(configs, tmp_path, content, reason):
    _, result = train_tiny(*configs, run_dir=tmp_path, max_steps=1)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content((tmp_path / "checkpoint.pt").read_bytes()))
    with pytest.raises(CheckpointError, match=str(bad)) as error:
        load_checkpoint(TinySegmenter(), bad)
    assert "re-run the training" in str(error.value), reason


def test_torch_saved_object_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"state_dict": NotWeights()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(TinySegmenter(), path)


def test_missing_and_mismatched_checkpoints_raise_checkpoint_error(configs, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(TinySegmenter(), tmp_path / "nowhere.pt")
    _, result = train_tiny(*configs, run_dir=tmp_path, max_steps=1)
    with pytest.raises(CheckpointError, match="does not match") as error:
        load_checkpoint(TinySegmenter(num_classes=5), result.checkpoint_path)
    assert result.checkpoint_path in str(error.value)
    assert isinstance(error.value, ValueError)


# ---- adversarial training --------------------------------------------------------------------

def tiny_adversarial(encoding: str = "product") -> AdversarialSegmentor:
    return AdversarialSegmentor(TinySegmenter(), Adversary(CLASSES, encoding, field_of_view="small"))


@pytest.mark.parametrize("encoding", ["product", "scaling"])
def test_adversarial_training_updates_both_networks(encoding):
    cfg = job_config("train=adversarial", "dataset.sizes.train=8", "train.max_steps=3",
                     f"train.adversarial.encoding={encoding}")
    model = tiny_adversarial(encoding)
    adversary_before = [p.detach().clone() for p in model.adversary.parameters()]
    segmentor_before = [p.detach().clone() for p in model.segmentor.parameters()]
    result = train_model(model, cfg.dataset, cfg.train, TINY, "cpu", None, progress=False)

    assert result.steps == 3 and len(result.adversary_loss_history) == 3
    assert all(math.isfinite(v) for v in result.loss_history + result.adversary_loss_history)
    assert any(not torch.equal(a, p) for a, p in zip(adversary_before, model.adversary.parameters()))
    assert any(not torch.equal(a, p) for a, p in zip(segmentor_before, model.segmentor.parameters()))


def test_adversarial_model_and_config_must_come_together(configs):
    dataset_cfg, train_cfg = configs
    with pytest.raises(ValueError, match="train=adversarial"):
        train_model(tiny_adversarial(), dataset_cfg, train_cfg, TINY, "cpu", None, progress=False)
    adversarial_cfg = job_config("train=adversarial").train
    with pytest.raises(ValueError, match="model=adversarial"):
        train_model(TinySegmenter(), dataset_cfg, adversarial_cfg, TINY, "cpu", None, progress=False)
    with pytest.raises(ValueError, match="encoding"):
        train_model(tiny_adversarial("basic"), dataset_cfg, adversarial_cfg, TINY, "cpu", None, progress=False)
