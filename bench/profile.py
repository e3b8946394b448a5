"""The profile stage: size, FLOPs, decoder storage, peak memory and latency of one model at one
input shape on one deployment backend, for inference and (eager only) for one training step;
what else used the machine while it was timed; energy where a counter exists; the cold start."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from bench.backends import eager_run, get_backend, job_autocast
from bench.environment import device_name
from bench.jobspec import JobSpec
from bench.measure.decoder import recording_kept, storage_fields
from bench.measure.flops import forward_flops
from bench.measure.contention import ContentionWatch, gpu_contention, wait_for_idle
from bench.measure.energy import energy_counter, measure_energy
from bench.measure.latency import TimingConfig, measure_latency, synchronize, synchronized
from bench.measure.memory import forward_peak_memory
from bench.measure.oom import is_out_of_memory
from bench.measure.parity import parity
from bench.measure.peak import BEATS_PEAK, achieved_flops_per_s, cached_peak, peak_fraction
from bench.measure.receptive_field import growth
from bench.measure.size import model_size
from bench.measure.training import measure_training_step, training_batch
from bench.schema import LOGITS_SHAPE_ERROR
from bench.updates import is_adversarial


@dataclass(frozen=True)
class WindowOptions:
    """What the profile stage does around its timed windows (``measure.*`` beside the loop's own)."""
    require_idle: bool = False       # wait (up to idle_max_wait seconds) for an idle machine first
    idle_max_wait: float = 60.0
    energy: bool = True              # read an energy counter around a window of forward passes
    energy_min_seconds: float = 10.0
    energy_idle_seconds: float = 2.0

    @classmethod
    def from_config(cls, measure: Mapping[str, Any]) -> "WindowOptions":
        return cls(**{f.name: measure[f.name] for f in dataclass_fields(cls) if f.name in measure})


def _memory_format(spec: JobSpec) -> torch.memory_format:
    return torch.channels_last if spec.channels_last else torch.contiguous_format


def inference_part(model: nn.Module) -> nn.Module:
    """The module inference runs: an adversarial model's (models/adversarial.py) ``segmentor``, whose
    ``adversary`` only judges label maps during training; any other model whole. Size, FLOPs,
    decoder storage, forward memory, latency, backends and energy measure this part; the
    training step trains the whole model."""
    if hasattr(model, "segmentor") and hasattr(model, "adversary"):
        return model.segmentor
    return model


def adversary_fields(model: nn.Module) -> dict[str, Any]:
    """Size of an adversarial model's adversary, recorded beside the segmentor's; {} for others."""
    if inference_part(model) is model:
        return {}
    size = model_size(model.adversary)
    return {"adversary_params_total": size.params_total, "adversary_size_mib": size.size_mib}


def training_step_covers(model: nn.Module, train_cfg: Mapping[str, Any]) -> str:
    """What the training-step figures (``measure_training_step``) cover, in words."""
    if not is_adversarial(model, train_cfg):
        return ("the whole model: forward, pixel-wise cross-entropy, backward, optimizer step; "
                "saved for backward: its forward pass and loss")
    adversarial = train_cfg["adversarial"]
    steps = int(adversarial.get("adversary_steps", 1))
    return (f"Luc et al.'s alternating step (bench/updates.py AdversarialStep): the segmentor's forward, "
            f"{steps} adversary update{'s' if steps != 1 else ''} (binary cross-entropy on ground truth "
            f"and prediction), then the segmentor's update (cross-entropy + "
            f"{float(adversarial['lambda_adv']):g} x the adversary's binary cross-entropy); weights, "
            "gradients and optimizer state of segmentor and adversary; saved for backward: the "
            "segmentor's forward pass and cross-entropy only")


def _prepared(model: nn.Module, spec: JobSpec, batch_size: int, in_channels: int,
              device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """The model in eval mode on ``device`` and a random input batch, both in the job's layout."""
    model = model.eval().to(device=device, memory_format=_memory_format(spec))
    inputs = torch.randn(batch_size, in_channels, spec.height, spec.width, device=device)
    return model, inputs.contiguous(memory_format=_memory_format(spec))


def first_call_ms(model: nn.Module, spec: JobSpec, in_channels: int, device: torch.device) -> float:
    """The cold start's second half: the first forward pass of a freshly built model on the
    job's device (weights moved there, kernels chosen, caches cold), timed on its own."""
    started = time.perf_counter()
    eager_run(*_prepared(inference_part(model), spec, spec.batch_size, in_channels, device), spec, device)()
    synchronize(device)
    return (time.perf_counter() - started) * 1e3


def images_per_s(model: nn.Module, spec: JobSpec, batch_size: int, in_channels: int, device: torch.device,
                 timing: TimingConfig) -> float:
    """Eager inference throughput at ``batch_size`` by the latency loop: a step of the
    throughput scenario's batch search (bench/scenarios.py)."""
    forward = eager_run(*_prepared(inference_part(model), spec, batch_size, in_channels, device), spec, device)
    return batch_size / (measure_latency(forward, device, timing).median_ms / 1e3)


def _gpu_fields(device: torch.device) -> dict[str, Any]:
    if device.type != "cuda":
        return {}
    index = device.index if device.index is not None else torch.cuda.current_device()
    return gpu_contention(index, str(torch.cuda.get_device_properties(index).uuid))


def efficiency_fields(flops_per_image: float, batch_size: int, latency_ms: float, peak: dict) -> dict:
    """Achieved FLOP/s of the timed forward pass, its fraction of the measured peak (flagged with
    the reason above 1), and the machine's memory bandwidth beside it."""
    achieved = achieved_flops_per_s(flops_per_image, batch_size, latency_ms)
    fraction = peak_fraction(achieved, peak["flops_per_s"])
    return {"achieved_flops_per_s": achieved, "peak_flops_per_s": peak["flops_per_s"],
            "peak_fraction": fraction, "peak_method": peak["method"],
            "peak_exceeded": fraction > 1, "peak_note": BEATS_PEAK if fraction > 1 else "",
            "memory_bandwidth_bytes_per_s": peak.get("bytes_per_s"), "bandwidth_method": peak.get("bandwidth_method", "")}


def efficiency(flops_per_image: float, batch_size: int, latency_ms: float, device: torch.device,
               dtype: torch.dtype, cache_dir: Path) -> dict:
    """``efficiency_fields`` against the cached peak; a model that beats it has the peak measured
    again first (the cached one may have been taken while the machine was busy)."""
    peak = cached_peak(cache_dir / "peak", device, device_name(device), dtype)
    if achieved_flops_per_s(flops_per_image, batch_size, latency_ms) > peak["flops_per_s"]:
        peak = cached_peak(cache_dir / "peak", device, device_name(device), dtype, remeasure=True)
    return efficiency_fields(flops_per_image, batch_size, latency_ms, peak)


#: The instruments a row can do without: one that raises (other than out of memory, which the
#: job's ``oom_policy`` handles) leaves its columns empty and says why in ``instrument_errors``;
#: the row keeps every other figure. Size, FLOPs, the output check and inference latency are the
#: row itself: their failure fails the job.
OPTIONAL_INSTRUMENTS = ("growth", "forward_memory", "train_step", "energy", "efficiency")


def _optional(errors: dict[str, str], instrument: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()``'s fields, or {} with why in ``errors[instrument]`` when it raises."""
    assert instrument in OPTIONAL_INSTRUMENTS, instrument
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001  (recorded in the row; out of memory is the job's)
        if is_out_of_memory(exc):
            raise
        errors[instrument] = f"{type(exc).__name__}: {exc}"
        return {}


def _growth_fields(model: nn.Module) -> dict[str, Any]:
    found = growth(model)
    return found.to_row() if found is not None else {}


def _forward_memory_fields(model: nn.Module, inputs: torch.Tensor, spec: JobSpec, device: torch.device) -> dict:
    memory = forward_peak_memory(model, inputs, device, spec.autocast_dtype)
    return {"peak_memory_mib": memory.peak_mib, "activation_peak_mib": memory.activation_mib,
            "tensor_activation_peak_mib": memory.tensor_activation_mib, "memory_counter": memory.counter}


def _training_step_fields(whole: nn.Module, spec: JobSpec, train_cfg: Mapping[str, Any], batch_size: int,
                          in_channels: int, num_classes: int, ignore_index: int, device: torch.device,
                          timing: TimingConfig, progress: bool) -> dict[str, Any]:
    """``measure_training_step`` of the whole model (an adversary trains too) on a random batch in
    the job's layout; the model is left in eval mode without gradients even when the step fails
    (e.g. BatchNorm meeting one value per channel), so the instruments after it still run."""
    memory_format = _memory_format(spec)
    image, mask = training_batch(batch_size, in_channels, spec.height, spec.width, num_classes, ignore_index,
                                 device)
    whole.to(device=device, memory_format=memory_format)
    try:
        fields = measure_training_step(whole, train_cfg, (image.contiguous(memory_format=memory_format), mask),
                                       num_classes, ignore_index, device, timing,
                                       precision=spec.training_precision(device), progress=progress)
    finally:
        whole.eval()
        whole.zero_grad(set_to_none=True)
    return {**fields, "train_step_covers": training_step_covers(whole, train_cfg)}


def profile_model(model: nn.Module, spec: JobSpec, num_classes: int, in_channels: int,
                  device: torch.device, timing: TimingConfig, batch_size: int,
                  train_cfg: Mapping[str, Any] | None = None, ignore_index: int = 255,
                  progress: bool = False, cache_dir: Path = Path("results/cache"),
                  min_agreement: float = 0.999, peak_flops: bool = True,
                  windows: WindowOptions = WindowOptions()) -> dict[str, Any]:
    """Measure ``model`` on random inputs of the job's shape; returns ResultRow fields.

    A non-eager backend's logits are first compared with eager's on the same input; below
    ``min_agreement`` (argmax agreement over the pixels) the fields say ``status=mismatch`` and
    nothing is timed. With ``peak_flops``, the achieved FLOP/s is set against the machine's
    matmul peak, measured once per environment. With ``train_cfg``, one training step (with its optimizer) is measured
    too, in eager rows, at the job's precision (``JobSpec.training_precision``) and memory layout.
    Other processes' use of the machine is recorded over the timed windows (``contention_*``), and
    ``windows`` decides whether to wait for an idle machine first and to measure energy.

    Every inference figure is of ``inference_part(model)`` (an adversarial model's segmentor,
    its adversary on the CPU meanwhile, so no device memory reading holds it); the adversary's
    size is recorded apart (``adversary_fields``) and the training step trains the whole model.

    An optional instrument (``OPTIONAL_INSTRUMENTS``) that fails is recorded in the returned
    ``instrument_errors`` and the other figures are kept.
    """
    whole = model
    if inference_part(whole) is not whole:
        whole.cpu()   # the parts inference never runs stay off the device until the training step
    model, inputs = _prepared(inference_part(whole), spec, batch_size, in_channels, device)

    with job_autocast(spec, device), recording_kept(model) as kept:
        flops, logits = forward_flops(model, inputs)
    decoder = storage_fields(model, kept)
    expected = (batch_size, num_classes, spec.height, spec.width)
    if tuple(logits.shape) != expected:
        raise RuntimeError(f"{spec.model} {LOGITS_SHAPE_ERROR} {tuple(logits.shape)}, "
                           f"expected {expected} (N x classes x input H x input W)")
    size = model_size(model)
    fields: dict[str, Any] = {
        "params_total": size.params_total,
        "params_trainable": size.params_trainable,
        "model_size_mib": size.size_mib,
        "flops_per_image": flops / batch_size,
        "batch_size_used": batch_size,
        **decoder,
        **adversary_fields(whole),
    }

    errors: dict[str, str] = {}
    fields.update(_optional(errors, "growth", lambda: _growth_fields(model)))
    backend = get_backend(spec.backend)
    deployment = backend.prepare(model, inputs, spec, device, cache_dir)
    if backend.reference:
        del logits
        fields.update(_optional(errors, "forward_memory", lambda: _forward_memory_fields(model, inputs, spec, device)))
    else:
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

    if windows.require_idle:
        idle = wait_for_idle(windows.idle_max_wait)
        fields.update({"contention_idle_at_start": idle.idle, "contention_waited_seconds": idle.waited_seconds})
    with ContentionWatch() as watch:
        latency = measure_latency(forward, device, timing, progress=progress)
        if train_cfg is not None and backend.reference:
            fields.update(_optional(errors, "train_step", lambda: _training_step_fields(
                whole, spec, train_cfg, batch_size, in_channels, num_classes, ignore_index, device, timing,
                progress)))
    fields.update({**latency.fields(), "throughput_ips": batch_size / (latency.median_ms / 1e3),
                   "timer": latency.timer, **watch.record.to_row(), **_gpu_fields(device)})
    if windows.energy:
        fields.update(_optional(errors, "energy", lambda: measure_energy(
            synchronized(forward, device), energy_counter(device), windows.energy_min_seconds,
            windows.energy_idle_seconds, batch_size).to_row()))
    if peak_flops:
        fields.update(_optional(errors, "efficiency", lambda: efficiency(
            flops / batch_size, batch_size, latency.median_ms, device, spec.autocast_dtype or torch.float32,
            cache_dir)))
    return {**fields, "instrument_errors": errors}
