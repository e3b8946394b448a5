"""The cost of one training step: forward, pixel-wise cross-entropy, backward, optimizer step.

The step is the training loop's own update (``bench.updates.SupervisedStep``, or
``AdversarialStep`` for a model with an adversary) with the train config's optimizer, so what is
measured is what ``mode=accuracy`` trains. It runs on a random batch whose label map has a band
of ignored pixels (``ignore_index``), as real label maps do.

The learning rate is set to 0: every timed step then computes the same function on the same
weights (no drift, no divergence on random labels), and a step costs the same at any rate.

Three readings, in this order:

* peak memory of a step, from the allocator (``bench.measure.memory.pass_peak``), after one step
  has made the gradients and the optimizer state (on CPU that step is the profiled lead-in, so
  the frees of its gradients are seen), above what exists between steps: weights, the previous step's gradients, the
  optimizer state and the batch; those are reported on their own and the peak is their sum plus
  that rise;
* latency: ``measure_latency``'s loop (synchronisation, median/IQR/p90); the steps of the memory
  pass count towards its warm-up (they create the optimizer state and warm the caches);
* the bytes autograd saves for backward in one forward pass plus the loss
  (``torch.autograd.graph.saved_tensors_hooks``), each storage once, the model's parameters and
  buffers left out (they exist whether or not autograd keeps them).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import torch
from omegaconf import OmegaConf
from torch import nn

from bench.measure.latency import LatencyStats, TimingConfig, measure_latency
from bench.measure.memory import pass_peak, tensor_bytes
from bench.measure.size import MIB
from bench.records import column
from bench.updates import AdversarialStep, Precision, SupervisedStep, make_update

#: Fraction of the label map's rows marked ``ignore_index`` (a band at the bottom).
IGNORED_ROWS = 0.1


def training_batch(batch_size: int, in_channels: int, height: int, width: int, num_classes: int,
                   ignore_index: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random image batch and a random label map whose bottom rows are ignored."""
    image = torch.randn(batch_size, in_channels, height, width, device=device)
    mask = torch.randint(0, num_classes, (batch_size, height, width), device=device)
    mask[:, height - int(height * IGNORED_ROWS):] = ignore_index
    return image, mask


def saved_for_backward_bytes(forward: Callable[[], torch.Tensor], exclude: list[torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves while ``forward()`` runs, each storage counted once;
    storages of ``exclude`` (weights) are not counted."""
    excluded = {t.untyped_storage()._cdata for t in exclude}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage._cdata not in excluded:
            saved.setdefault(storage._cdata, storage.nbytes())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward()
    del output  # frees the graph and what it saved
    return sum(saved.values())


@dataclass(frozen=True)
class TrainingStep:
    """One training step's figures; row columns ``train_*`` (bench/records.py)."""
    optimizer: str
    precision: str                 # fp32 | bf16 (autocast) | fp16 (autocast + gradient scaling)
    latency: LatencyStats          # per step of one batch; its warm-up counts the memory pass's steps
    throughput_ips: float          # images per second = batch size / median step
    peak_memory_mib: float         # weights + gradients + optimizer state + batch + activations
    weights_mib: float
    gradients_mib: float
    optimizer_state_mib: float
    activation_peak_mib: float     # peak above weights, gradients and optimizer state
    memory_counter: str
    saved_for_backward_mib: float = column("saved_for_backward_mib", prefixed=False)  # each storage once
    # What the figures cover, in words (the caller knows: a supervised step or Luc et al.'s pair)
    step_covers: str = ""


def training_update(model: nn.Module, train_cfg: Mapping[str, Any], criterion: nn.Module, num_classes: int,
                    ignore_index: int, precision: Precision = Precision()) -> SupervisedStep | AdversarialStep:
    """The training loop's update at learning rate 0 (see the module docstring)."""
    zero = {"lr": 0.0}
    if train_cfg.get("adversarial") is not None:
        zero["adversarial"] = {"adversary_lr": 0.0}
    return make_update(model, OmegaConf.merge(train_cfg, zero), criterion, num_classes, ignore_index, precision)


def _state_bytes(optimizers: list[torch.optim.Optimizer]) -> int:
    return tensor_bytes(value for optimizer in optimizers for state in optimizer.state.values()
                        for value in state.values() if isinstance(value, torch.Tensor))


def measure_training_step(model: nn.Module, train_cfg: Mapping[str, Any], batch: tuple[torch.Tensor, torch.Tensor],
                          num_classes: int, ignore_index: int, device: torch.device,
                          timing: TimingConfig, precision: Precision = Precision(),
                          progress: bool = False) -> TrainingStep:
    """Latency, peak memory and saved-for-backward bytes of one training step under ``precision``
    (autocast, and gradient scaling for fp16, as ``mode=accuracy`` trains).

    ``model`` is left in eval mode with its gradients cleared.
    """
    image, mask = batch
    criterion = nn.CrossEntropyLoss(ignore_index=ignore_index)
    model.train()
    update = training_update(model, train_cfg, criterion, num_classes, ignore_index, precision)
    optimizers = [optimized.optimizer for optimized in update.optimizers]

    def step() -> None:
        update(image, mask, 0)

    if device.type != "cpu":
        step()   # gradients and optimizer state exist before the measured step (on CPU: the lead-in)
    memory = pass_peak(step, device, lead_in=step)
    passed = 2   # the memory pass's steps count towards the timing loop's warm-up
    parameters = list(model.parameters())
    weights = tensor_bytes([*parameters, *model.buffers()])
    gradients = tensor_bytes(p.grad for p in parameters if p.grad is not None)
    optimizer_state = _state_bytes(optimizers)
    inputs = tensor_bytes([image, mask])
    latency = measure_latency(step, device, replace(timing, warmup_iters=max(0, timing.warmup_iters - passed)),
                              progress=progress)
    def forward_and_loss() -> torch.Tensor:
        with precision.autocast():
            return criterion(model(image), mask)

    saved = saved_for_backward_bytes(forward_and_loss, exclude=[*parameters, *model.buffers()])
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    batch_size = image.shape[0]
    return TrainingStep(
        optimizer=type(optimizers[0]).__name__,
        precision=precision.name,
        latency=replace(latency, warmup_iters=latency.warmup_iters + passed),
        throughput_ips=batch_size / (latency.median_ms / 1e3),
        peak_memory_mib=(weights + gradients + optimizer_state + inputs + memory.peak_bytes) / MIB,
        weights_mib=weights / MIB,
        gradients_mib=gradients / MIB,
        optimizer_state_mib=optimizer_state / MIB,
        activation_peak_mib=memory.peak_bytes / MIB,
        memory_counter=memory.counter,
        saved_for_backward_mib=saved / MIB,
    )
