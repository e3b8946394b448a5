"""The training loop applies a recipe as written: optimizer, learning-rate decay, crop size,
batch size, stopping rule and the fine-tuning stage (each value read from the recipe's file)."""
import math

import pytest
import torch
from omegaconf import OmegaConf

import bench.train
from bench.evaluate import evaluate
from bench.train import train_model
from test_train import TinySegmenter, job_config

# The whole image the FC-DenseNet recipe crops its 224x224 training crops from and fine-tunes at:
# CamVid's 3:4 aspect at 240x320, not its 360x480 (the loop does the same at half the pixels).
FULL = (240, 320)


@pytest.fixture
def spied(monkeypatch):
    """Every update the loop builds (one per stage), and the shape of every training batch."""
    updates, batches = [], []
    build = bench.train.make_update

    def spy(*args, **kwargs):
        updates.append(build(*args, **kwargs))
        return updates[-1]

    monkeypatch.setattr(bench.train, "make_update", spy)
    model = TinySegmenter()
    model.register_forward_pre_hook(lambda module, args: batches.append(tuple(args[0].shape))
                                    if module.training else None)
    return model, updates, batches


def train(model, cfg, train_cfg):
    validate = lambda m: evaluate(m, cfg.dataset, "val", FULL, "cpu", batch_size=2, progress=False)  # noqa: E731
    return train_model(model, cfg.dataset, train_cfg, FULL, "cpu", None, progress=False, validate=validate)


def test_the_fc_densenet_recipe_is_what_the_loop_runs(spied):
    model, updates, batches = spied
    cfg = job_config("train=tiramisu", "dataset.sizes.train=6", "dataset.sizes.val=2")
    recipe = OmegaConf.create(OmegaConf.to_container(cfg.train))   # not in struct mode: budgets can be added
    epochs = 3   # only the budgets are shortened
    result = train(model, cfg, OmegaConf.merge(recipe, {"max_epochs": epochs, "finetune": {"max_epochs": 1}}))

    first, second = (u.optimizers[0].optimizer for u in updates)
    assert type(first).__name__.lower() == recipe.optimizer == "rmsprop"
    assert first.defaults["weight_decay"] == recipe.weight_decay
    assert first.defaults["alpha"] == (recipe.alpha if recipe.alpha is not None else 0.99)
    per_epoch = 6 // recipe.batch_size
    crop = tuple(int(side) for side in recipe.crop.split("x"))
    stage_one, stage_two = batches[:epochs * per_epoch], batches[epochs * per_epoch:]
    assert set(stage_one) == {(recipe.batch_size, 3, *crop)}
    # Exponential decay per completed epoch: one learning-curve point per epoch (eval_every_epochs).
    lrs = [p["lr"] for p in result.curve["learning_curve"]]
    assert lrs[:epochs] == pytest.approx([recipe.lr * recipe.lr_decay ** e for e in range(epochs)])
    # The fine-tuning stage: its own learning rate, on whole images.
    finetune = OmegaConf.merge(recipe, recipe.finetune)
    assert second.param_groups[0]["lr"] == pytest.approx(finetune.lr)
    size = FULL if finetune.crop is None else tuple(int(s) for s in finetune.crop.split("x"))
    assert {shape[1:] for shape in stage_two} == {(3, *size)}
    assert max(shape[0] for shape in stage_two) == finetune.batch_size
    assert result.finetune_steps == len(stage_two) == math.ceil(6 / finetune.batch_size)
    assert result.stop_reason == "max_epochs" and result.steps == len(batches)


def test_early_stopping_stops_after_patience_points_without_improvement(spied):
    model, updates, batches = spied
    cfg = job_config("dataset.sizes.train=4", "dataset.sizes.val=2", "train.batch_size=2")
    # lr 0: the weights never change, so no point after the first improves on it.
    train_cfg = OmegaConf.merge(cfg.train, {"lr": 0.0, "max_steps": 100, "eval_every_steps": None,
                                            "eval_every_epochs": 1, "early_stopping_patience": 2})
    result = train_model(model, cfg.dataset, train_cfg, (16, 16), "cpu", None, progress=False,
                         validate=lambda m: evaluate(m, cfg.dataset, "val", (16, 16), "cpu", progress=False))
    assert result.stop_reason == "early_stopping"
    assert len(result.curve["learning_curve"]) == 3 and result.steps == 3 * 2   # 1 point + 2 without improvement


def test_sgd_with_doubled_bias_learning_rate(spied):
    model, updates, _ = spied
    cfg = job_config("dataset.sizes.train=2", "dataset.sizes.val=2")
    train_cfg = OmegaConf.merge(cfg.train, {"optimizer": "sgd", "momentum": 0.99, "bias_lr_factor": 2.0,
                                            "schedule": "constant", "max_steps": 1, "lr": 1e-3})
    train_model(model, cfg.dataset, train_cfg, (16, 16), "cpu", None, progress=False)
    optimizer = updates[0].optimizers[0].optimizer
    weights, biases = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.99
    assert weights["lr"] == 1e-3 and biases["lr"] == 2e-3
    assert {id(p) for p in biases["params"]} == {id(m.bias) for m in model.modules() if getattr(m, "bias", None) is not None}
