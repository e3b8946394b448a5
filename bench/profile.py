"""The profile stage: size, FLOPs, decoder storage, peak memory and latency of one model at one
input shape, for inference and for one training step."""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
from torch import nn

from bench.jobspec import JobSpec
from bench.measure.decoder import recording_kept, storage_fields
from bench.measure.flops import forward_flops
from bench.measure.latency import TimingConfig, measure_latency
from bench.measure.memory import forward_peak_memory
from bench.measure.size import model_size
from bench.measure.training import measure_training_step, training_batch


def profile_model(model: nn.Module, spec: JobSpec, num_classes: int, in_channels: int,
                  device: torch.device, timing: TimingConfig, batch_size: int,
                  train_cfg: Mapping[str, Any] | None = None, ignore_index: int = 255,
                  progress: bool = False) -> dict[str, Any]:
    """Measure ``model`` on random inputs of the job's shape; returns ResultRow fields.

    With ``train_cfg``, one training step (with its optimizer) is measured too, at the job's
    precision (``JobSpec.training_precision``) and memory layout.
    """
    memory_format = torch.channels_last if spec.channels_last else torch.contiguous_format
    model = model.eval().to(device=device, memory_format=memory_format)
    inputs = torch.randn(batch_size, in_channels, spec.height, spec.width, device=device)
    inputs = inputs.contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=spec.autocast_dtype,
                              enabled=spec.autocast_dtype is not None)

    with autocast, recording_kept(model) as kept:
        flops, logits = forward_flops(model, inputs)
    decoder = storage_fields(model, kept)
    expected = (batch_size, num_classes, spec.height, spec.width)
    if tuple(logits.shape) != expected:
        raise RuntimeError(f"{spec.model} returned logits of shape {tuple(logits.shape)}, "
                           f"expected {expected} (N x classes x input H x input W)")
    del logits

    size = model_size(model)
    memory = forward_peak_memory(model, inputs, device, spec.autocast_dtype)

    runner = model
    compile_seconds = None
    if spec.compile:
        runner = torch.compile(model)
        started = time.perf_counter()
        with torch.inference_mode(), autocast:
            runner(inputs)  # the first call compiles; kept out of the timed loop
        compile_seconds = time.perf_counter() - started

    def forward() -> None:
        with torch.inference_mode(), autocast:
            runner(inputs)

    latency = measure_latency(forward, device, timing, progress=progress)
    training = {}
    if train_cfg is not None:
        batch = training_batch(batch_size, in_channels, spec.height, spec.width, num_classes,
                               ignore_index, device)
        batch = (batch[0].contiguous(memory_format=memory_format), batch[1])
        training = measure_training_step(model, train_cfg, batch, num_classes, ignore_index, device,
                                         timing, precision=spec.training_precision(device), progress=progress)
    return {
        "params_total": size.params_total,
        "params_trainable": size.params_trainable,
        "model_size_mib": size.size_mib,
        "flops_per_image": flops / batch_size,
        "peak_memory_mib": memory.peak_mib,
        "activation_peak_mib": memory.activation_mib,
        "tensor_activation_peak_mib": memory.tensor_activation_mib,
        "memory_counter": memory.counter,
        "latency_ms_median": latency.median_ms,
        "latency_ms_iqr": latency.iqr_ms,
        "latency_ms_p90": latency.p90_ms,
        "latency_ms_mean": latency.mean_ms,
        "latency_iters": latency.iters,
        "warmup_iters": latency.warmup_iters,
        "compile_seconds": compile_seconds,
        "throughput_ips": batch_size / (latency.median_ms / 1e3),
        "timer": latency.timer,
        "batch_size_used": batch_size,
        **decoder,
        **training,
    }
