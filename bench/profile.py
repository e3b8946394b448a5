"""The profile stage: size, FLOPs, decoder storage, peak memory and latency of one model at one
input shape on one deployment backend, for inference and (eager only) for one training step."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from bench.backends import Deployment, compile_deployment, export_key, onnxruntime_deployment, weights_digest
from bench.environment import device_name
from bench.jobspec import JobSpec
from bench.measure.decoder import recording_kept, storage_fields
from bench.measure.flops import forward_flops
from bench.measure.latency import TimingConfig, measure_latency
from bench.measure.memory import forward_peak_memory
from bench.measure.parity import parity
from bench.measure.peak import achieved_flops_per_s, cached_peak, peak_fraction
from bench.measure.size import model_size
from bench.measure.training import measure_training_step, training_batch


def deploy(model: nn.Module, spec: JobSpec, inputs: torch.Tensor, device: torch.device,
           cache_dir: Path) -> Deployment:
    """``model`` made ready on ``spec.backend`` (not eager), exported ONNX files cached in ``cache_dir``."""
    if spec.backend == "compile":
        return compile_deployment(model, inputs, device, spec.autocast_dtype)
    key = export_key(spec.model, spec.model_kwargs, tuple(inputs.shape), weights_digest(model))
    return onnxruntime_deployment(model, inputs, device, cache_dir / "onnx" / f"{key}.onnx")


def efficiency_fields(flops_per_image: float, batch_size: int, latency_ms: float, peak: dict) -> dict:
    """Achieved FLOP/s of the timed forward pass and its fraction of the measured peak."""
    achieved = achieved_flops_per_s(flops_per_image, batch_size, latency_ms)
    return {"achieved_flops_per_s": achieved, "peak_flops_per_s": peak["flops_per_s"],
            "peak_fraction": peak_fraction(achieved, peak["flops_per_s"]), "peak_method": peak["method"]}


def profile_model(model: nn.Module, spec: JobSpec, num_classes: int, in_channels: int,
                  device: torch.device, timing: TimingConfig, batch_size: int,
                  train_cfg: Mapping[str, Any] | None = None, ignore_index: int = 255,
                  progress: bool = False, cache_dir: Path = Path("results/cache"),
                  min_agreement: float = 0.999, peak_flops: bool = True) -> dict[str, Any]:
    """Measure ``model`` on random inputs of the job's shape; returns ResultRow fields.

    A non-eager backend's logits are first compared with eager's on the same input; below
    ``min_agreement`` (argmax agreement over the pixels) the fields say ``status=mismatch`` and
    nothing is timed. With ``peak_flops``, the achieved FLOP/s is set against the machine's
    matmul peak, measured by the same loop once per environment. With ``train_cfg``, one training step (with its optimizer) is measured
    too, in eager rows, at the job's precision (``JobSpec.training_precision``) and memory layout.
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
    size = model_size(model)
    fields: dict[str, Any] = {
        "params_total": size.params_total,
        "params_trainable": size.params_trainable,
        "model_size_mib": size.size_mib,
        "flops_per_image": flops / batch_size,
        "batch_size_used": batch_size,
        **decoder,
    }

    if spec.backend == "eager":
        del logits
        memory = forward_peak_memory(model, inputs, device, spec.autocast_dtype)
        fields.update({
            "peak_memory_mib": memory.peak_mib,
            "activation_peak_mib": memory.activation_mib,
            "tensor_activation_peak_mib": memory.tensor_activation_mib,
            "memory_counter": memory.counter,
        })

        def forward() -> None:
            with torch.inference_mode(), autocast:
                model(inputs)
    else:
        deployment = deploy(model, spec, inputs, device, cache_dir)
        check = parity(logits, deployment.run())
        del logits
        fields.update({**deployment.fields, "parity_max_abs_diff": check.max_abs_diff,
                       "parity_argmax_agreement": check.argmax_agreement,
                       "parity_threshold": min_agreement})
        if check.argmax_agreement < min_agreement:
            return {**fields, "status": "mismatch",
                    "error": (f"backend={spec.backend} predicts {check.argmax_agreement:.4%} of pixels as "
                              f"eager does, below parity.min_argmax_agreement={min_agreement:.4%} "
                              f"(max abs logit difference {check.max_abs_diff:.3g}); not timed")}
        forward = deployment.run

    latency = measure_latency(forward, device, timing, progress=progress)
    fields.update({
        "latency_ms_median": latency.median_ms,
        "latency_ms_iqr": latency.iqr_ms,
        "latency_ms_p90": latency.p90_ms,
        "latency_ms_mean": latency.mean_ms,
        "latency_iters": latency.iters,
        "warmup_iters": latency.warmup_iters,
        "throughput_ips": batch_size / (latency.median_ms / 1e3),
        "timer": latency.timer,
    })
    if peak_flops:
        # The loop's default settings, not the sweep's: one method for the peak, whichever sweep
        # happens to measure it first.
        peak = cached_peak(cache_dir / "peak", device, device_name(device),
                           spec.autocast_dtype or torch.float32, TimingConfig())
        fields.update(efficiency_fields(flops / batch_size, batch_size, latency.median_ms, peak))
    if train_cfg is not None and spec.backend == "eager":
        batch = training_batch(batch_size, in_channels, spec.height, spec.width, num_classes,
                               ignore_index, device)
        batch = (batch[0].contiguous(memory_format=memory_format), batch[1])
        fields.update(measure_training_step(model, train_cfg, batch, num_classes, ignore_index,
                                            device, timing, precision=spec.training_precision(device),
                                            progress=progress))
    return fields
