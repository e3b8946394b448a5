"""Mixed precision in training: bf16 autocast, fp16 with gradient scaling, recorded in the row.

A CPU cannot show what fp16 buys on a GPU; what runs here is the logic: autocast reaches the
model's layers, the fp16 scaler skips a step whose gradients overflow and lowers its scale, and
the CUDA path picks CUDA's autocast and scaler (with CUDA stood in for).
"""
import pytest
import torch
from torch import nn

from bench.jobspec import JobSpec
from bench.updates import Precision, SupervisedStep
from test_train import TinySegmenter, job_config

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]", "resolution=16x16"]


def one_step(precision: Precision, image: torch.Tensor):
    torch.manual_seed(0)
    model = TinySegmenter(num_classes=3)
    dtypes = []
    model.body[0].register_forward_hook(lambda module, args, output: dtypes.append(output.dtype))
    update = SupervisedStep(model, job_config().train, nn.CrossEntropyLoss(), precision)
    before = [p.detach().clone() for p in model.parameters()]
    losses = update(image, torch.zeros(1, 8, 8, dtype=torch.long), step=1)
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    return dtypes[0], changed, update.optimizers[0].scaler, losses


def test_bf16_training_runs_under_autocast_without_a_scaler():
    dtype, changed, scaler, losses = one_step(Precision("cpu", torch.bfloat16), torch.randn(1, 3, 8, 8))
    assert dtype == torch.bfloat16 and changed and not scaler.is_enabled()
    assert losses["loss"] > 0


def test_fp16_scaler_skips_a_step_whose_gradients_overflow_and_lowers_its_scale():
    fp16 = Precision("cpu", torch.float16)
    dtype, changed, scaler, _ = one_step(fp16, torch.randn(1, 3, 8, 8))
    assert dtype == torch.float16 and scaler.is_enabled() and changed
    # An input of 6e4 (near fp16's limit, 65504) makes the scaled gradients overflow: the step is
    # skipped, and the scale backs off from its initial value.
    initial = torch.amp.GradScaler("cpu").get_scale()
    _, changed, scaler, _ = one_step(fp16, torch.full((1, 3, 8, 8), 6e4))
    assert not changed and scaler.get_scale() == initial * scaler.get_backoff_factor()


def test_the_cuda_path_uses_cuda_autocast_and_a_cuda_gradient_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = job_config("device=cuda", "precision=fp16")
    precision = JobSpec.from_config(cfg).training_precision(torch.device("cuda", 0))
    assert precision == Precision("cuda", torch.float16) and precision.name == "fp16"
    autocast, scaler = precision.autocast(), precision.scaler()
    assert autocast.device == "cuda" and autocast.fast_dtype == torch.float16 and autocast._enabled
    assert scaler.is_enabled() and scaler._device == "cuda"
    bf16 = JobSpec.from_config(job_config("device=cuda", "precision=bf16")).training_precision(torch.device("cuda"))
    assert not bf16.scaler().is_enabled()   # bf16 has fp32's range: nothing to scale


@pytest.mark.parametrize("mode", ["profile", "accuracy"])
def test_rows_record_the_training_precision(in_process, mode):
    outcome = in_process(*TINY, f"mode={mode}", "precision=bf16", "channels_last=true", "train.max_steps=2",
                         "dataset.sizes.train=4", "dataset.sizes.val=2")
    assert outcome.status == "ok", outcome.error
    row, = in_process.rows().rows
    assert row.status == "ok" and row.precision == "bf16" and row.train_precision == "bf16"
    assert row.train_latency_ms_median > 0   # the training step is measured at bf16 too
