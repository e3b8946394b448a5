"""Learning curves: when points are taken, what is read from them, and the training loop's clock."""
import time

import pytest
import torch
from torch import nn

from bench.curve import EvalSchedule, best_point, last_quarter_gain, time_to_target
from bench.train import train_model
from tests.test_train import TINY, TinySegmenter, configs, one_thread, with_keys  # noqa: F401  (fixtures)


def point(step, seconds, miou):
    return {"step": step, "train_seconds": seconds, "miou": miou, "pixel_accuracy": 0.5, "loss": 1.0}


def test_schedule_is_due_at_whichever_interval_comes_first():
    schedule = EvalSchedule(every_steps=10, every_seconds=5.0)
    due = [step for step, seconds in [(5, 1.0), (10, 2.0), (12, 7.5), (15, 8.0), (22, 9.0)]
           if schedule.due(step, seconds)]
    assert due == [10, 12, 22]   # 10 steps; 5.5 s since step 10; 10 steps since step 12
    assert not any(EvalSchedule().due(step, float(step)) for step in range(1, 100))
    with pytest.raises(ValueError, match="eval_every_seconds must be positive"):
        EvalSchedule.from_config({"eval_every_seconds": 0})


def test_best_time_to_target_and_last_quarter_gain():
    curve = [point(25, 2.0, 0.10), point(50, 4.0, 0.30), point(75, 6.0, 0.28), point(100, 8.0, 0.34)]
    assert best_point(curve)["step"] == 100
    assert time_to_target(curve, 0.25) == 4.0 and time_to_target(curve, 0.5) is None
    # The last point at or before 75% of 8 s is the one at 6 s: 0.34 - 0.28.
    assert last_quarter_gain(curve) == pytest.approx(0.06)
    assert last_quarter_gain(curve[:1]) is None


def test_validation_is_off_the_training_clock_and_best_weights_are_kept(configs):
    dataset_cfg, train_cfg = configs
    scores = iter([0.2, 0.5, 0.3])   # the middle point is the best
    weights_at = []

    def validate(model: nn.Module):
        weights_at.append(model.body[0].weight.detach().clone())
        time.sleep(0.3)   # a slow validation pass must not count as training time
        return {"miou": next(scores), "pixel_accuracy": 0.5}

    model = TinySegmenter()
    cfg = with_keys(train_cfg, max_steps=6, eval_every_steps=2, test_weights="best", lr=0.01)
    started = time.perf_counter()
    result = train_model(model, dataset_cfg, cfg, TINY, "cpu", None, progress=False, validate=validate)
    wall = time.perf_counter() - started
    curve = result.curve["learning_curve"]
    assert [p["step"] for p in curve] == [2, 4, 6]
    assert result.curve["curve_eval_seconds"] >= 0.9 and result.seconds <= wall - 0.9
    assert curve[-1]["train_seconds"] == pytest.approx(result.seconds, abs=0.05)
    assert result.curve["best_val_miou"] == 0.5 and result.curve["best_val_step"] == 4
    assert result.curve["test_weights"] == "best"
    assert torch.equal(model.body[0].weight, weights_at[1])   # the model ends with the best weights
