"""The training-step instrument: hand-counted saved tensors and memory parts, and the step it times."""
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bench.measure.latency import TimingConfig
from bench.measure.size import MIB
from bench.measure.training import measure_training_step, saved_for_backward_bytes, training_batch
from bench.records import flatten

FLOAT32, INT64 = 4, 8
FAST = TimingConfig(warmup_iters=1, min_run_time=0.0, min_iters=2, max_iters=2)
CPU = torch.device("cpu")


def _small_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1))


def _train_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.load("conf/train/default.yaml"), overrides)


def test_saved_for_backward_matches_a_hand_count_with_each_storage_once():
    # conv1 saves the input (3 maps); the in-place ReLU saves its output, which is conv1's output
    # and conv2's saved input too (one storage of 4 maps); cross-entropy saves log-softmax
    # (2 maps), the int64 target and a float32 scalar (the total weight). Weights are left out.
    net = _small_net()
    x, target = torch.randn(1, 3, 8, 8), torch.randint(0, 2, (1, 8, 8))
    criterion = nn.CrossEntropyLoss(ignore_index=255)
    pixels = 8 * 8
    counted = saved_for_backward_bytes(lambda: criterion(net(x), target), exclude=list(net.parameters()))
    assert counted == (3 + 4 + 2) * pixels * FLOAT32 + pixels * INT64 + FLOAT32


def test_training_batch_ignores_a_band_of_rows():
    image, mask = training_batch(2, 3, 20, 8, num_classes=5, ignore_index=255, device=CPU)
    assert image.shape == (2, 3, 20, 8) and mask.shape == (2, 20, 8)
    assert (mask[:, 18:] == 255).all() and (mask[:, :18] < 5).all()


@pytest.mark.parametrize("optimizer,state_per_param", [("adam", 2), ("sgd", 1)])
def test_training_step_reports_weights_gradients_and_optimizer_state(optimizer, state_per_param):
    net = _small_net()
    batch = training_batch(1, 3, 16, 16, num_classes=2, ignore_index=255, device=CPU)
    before = [p.detach().clone() for p in net.parameters()]
    fields = flatten(measure_training_step(net, _train_cfg(optimizer=optimizer), batch, 2, 255, CPU, FAST), "train_")
    param_bytes = sum(p.numel() for p in net.parameters()) * FLOAT32
    assert fields["train_weights_mib"] * MIB == param_bytes
    assert fields["train_gradients_mib"] * MIB == param_bytes
    # Adam: exp_avg and exp_avg_sq per parameter, plus a scalar step count per parameter tensor;
    # SGD with momentum: one buffer per parameter.
    scalars = len(before) * FLOAT32 if optimizer == "adam" else 0
    assert fields["train_optimizer_state_mib"] * MIB == state_per_param * param_bytes + scalars
    inputs = batch[0].numel() * FLOAT32 + batch[1].numel() * INT64
    parts = param_bytes * 2 + fields["train_optimizer_state_mib"] * MIB + inputs
    assert fields["train_peak_memory_mib"] * MIB == pytest.approx(parts + fields["train_activation_peak_mib"] * MIB)
    assert fields["train_activation_peak_mib"] > 0
    assert fields["train_optimizer"] == ("Adam" if optimizer == "adam" else "SGD")
    # The memory pass runs two steps before the timed ones (the profiled lead-in that creates the
    # gradients and the optimizer state, and the measured step): more than the 1 warm-up step
    # asked for, so no more.
    assert fields["train_latency_iters"] == 2 and fields["train_warmup_iters"] == 2
    # The step runs at learning rate 0 (see bench.measure.training), leaving the weights as they were,
    # and the model comes back in eval mode without gradients.
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert not net.training and all(p.grad is None for p in net.parameters())
