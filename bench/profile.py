"""The profile stage: size, FLOPs, decoder storage, peak memory and latency of one model at one
input shape on one deployment backend, for inference and (eager only) for one training step;
what else used the machine while it was timed; energy where a counter exists; the cold start."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields as dataclass_fields
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from bench.backends import eager_run, get_backend, job_autocast
from bench.config_schema import MeasureConfig
from bench.instruments import Instrument, Probe, instruments
from bench.jobspec import JobSpec
from bench.measure.contention import ContentionWatch, gpu_contention, wait_for_idle
from bench.measure.decoder import recording_kept
from bench.measure.flops import forward_flops
from bench.measure.latency import TimingConfig, measure_latency, synchronize
from bench.measure.oom import is_out_of_memory
from bench.records import flatten
from bench.schema import LOGITS_SHAPE_ERROR


_MEASURE = MeasureConfig()   # the defaults, written once: in the config schema


@dataclass(frozen=True)
class WindowOptions:
    """What the profile stage does around its timed windows (``measure.*`` beside the loop's own;
    their help in bench/config_schema.py)."""
    require_idle: bool = _MEASURE.require_idle
    idle_max_wait: float = _MEASURE.idle_max_wait
    energy: bool = _MEASURE.energy
    energy_min_seconds: float = _MEASURE.energy_min_seconds
    energy_idle_seconds: float = _MEASURE.energy_idle_seconds

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


def _run(instrument: Instrument, probe: Probe, errors: dict[str, str]) -> dict[str, Any]:
    """``instrument``'s record, kept in ``probe.records`` and returned as row columns; for an
    optional one that raises, {} with why in ``errors`` (out of memory is the job's)."""
    try:
        record = instrument.measure(probe)
    except Exception as exc:  # noqa: BLE001  (recorded in the row; out of memory is the job's)
        if not instrument.optional or is_out_of_memory(exc):
            raise
        errors[instrument.name] = f"{type(exc).__name__}: {exc}"
        return {}
    probe.records[instrument.name] = record
    return flatten(record, instrument.prefix)


def _calibration(spec: JobSpec, dataset_cfg: Mapping[str, Any] | None, batch_size: int, count: int,
                 device: torch.device) -> list[torch.Tensor] | None:
    """precision=int8: the first ``count`` training images in whole batches of the job's shape,
    which the backend's quantizer calibrates on; None at any other precision."""
    if spec.precision != "int8":
        return None
    from bench.data import first_batches

    batches = first_batches(dataset_cfg or {}, "train", (spec.height, spec.width), batch_size, count)
    if not batches:
        raise ValueError(f"precision=int8 calibrates on training images: quantization.calibration_images={count} "
                         f"and the training split give less than one batch of {batch_size}")
    return [images.to(device) for images, _ in batches]


def _run_phase(phase: str, probe: Probe, fields: dict[str, Any], errors: dict[str, str]) -> str:
    """Run ``phase``'s selected instruments in order, adding their columns to ``fields``; why the
    row stops after one (its ``stops``: a parity mismatch), or "" when all ran."""
    for instrument in instruments(phase):
        if instrument.selected(probe):
            fields.update(_run(instrument, probe, errors))
            stopped = instrument.stops(probe.records.get(instrument.name))
            if stopped:
                return stopped
    return ""


def profile_model(model: nn.Module, spec: JobSpec, num_classes: int, in_channels: int,
                  device: torch.device, timing: TimingConfig, batch_size: int,
                  train_cfg: Mapping[str, Any] | None = None, ignore_index: int = 255,
                  progress: bool = False, cache_dir: Path = Path("results/cache"),
                  min_agreement: float = 0.999, peak_flops: bool = True,
                  windows: WindowOptions = WindowOptions(), instruments_requested: tuple[str, ...] = (),
                  dataset_cfg: Mapping[str, Any] | None = None, weights: str | None = None,
                  gate_images: int = 0, min_accuracy_ratio: float = 0.99,
                  calibration_images: int = 32) -> dict[str, Any]:
    """Measure ``model`` on random inputs of the job's shape; returns ResultRow fields.

    A non-eager backend's logits are first compared with eager's on the same input; below
    ``min_agreement`` (argmax agreement over the pixels) the fields say ``status=mismatch`` and
    nothing is timed. With trained or loaded ``weights`` (where they come from, in words; None:
    random), a deployment other than fp32 eager is scored against fp32 eager on ``gate_images``
    validation images of ``dataset_cfg`` and must keep ``min_accuracy_ratio`` of its mIoU, else
    ``status=mismatch``, untimed. With ``peak_flops``, the achieved FLOP/s is set against the machine's
    matmul peak, measured once per environment. With ``train_cfg``, one training step (with its optimizer) is measured
    too, in eager rows, at the job's precision (``JobSpec.training_precision``) and memory layout.
    Other processes' use of the machine is recorded over the timed windows (``contention_*``), and
    ``windows`` decides whether to wait for an idle machine first and to measure energy.

    Every inference figure is of ``inference_part(model)`` (an adversarial model's segmentor,
    its adversary on the CPU meanwhile, so no device memory reading holds it); the adversary's
    size is recorded apart (instrument ``adversary``) and the training step trains the whole model.

    The figures come from the instruments (bench/instruments/), run phase by phase in their order
    of registration; ``instruments_requested`` names the plug-in ones to run too. An optional
    instrument that fails is recorded in the returned ``instrument_errors`` and the other figures
    are kept.
    """
    whole = model
    if inference_part(whole) is not whole:
        whole.cpu()   # the parts inference never runs stay off the device until the training step
    model, inputs = _prepared(inference_part(whole), spec, batch_size, in_channels, device)

    # The reference pass: FLOPs counted and the decoder's kept tensors recorded in one forward.
    with job_autocast(spec, device), recording_kept(model) as kept:
        flops, logits = forward_flops(model, inputs)
    expected = (batch_size, num_classes, spec.height, spec.width)
    if tuple(logits.shape) != expected:
        raise RuntimeError(f"{spec.model} {LOGITS_SHAPE_ERROR} {tuple(logits.shape)}, "
                           f"expected {expected} (N x classes x input H x input W)")
    backend = get_backend(spec.backend)
    calibration = _calibration(spec, dataset_cfg, batch_size, calibration_images, device)
    probe = Probe(model=model, whole=whole, inputs=inputs, spec=spec, device=device, batch_size=batch_size,
                  num_classes=num_classes, in_channels=in_channels, ignore_index=ignore_index, timing=timing,
                  windows=windows, peak_flops=peak_flops, requested=tuple(instruments_requested),
                  train_cfg=train_cfg, min_agreement=min_agreement, dataset=dataset_cfg or {}, weights=weights,
                  gate_images=gate_images, min_accuracy_ratio=min_accuracy_ratio,
                  cache_dir=cache_dir, progress=progress, backend=backend,
                  deployment=backend.prepare(model, inputs, spec, device, cache_dir,
                                             **({} if calibration is None else {"calibration": calibration})),
                  flops=flops, kept=kept, logits=logits)
    del logits
    fields: dict[str, Any] = {"batch_size_used": batch_size, **probe.deployment.fields}
    if calibration is not None:
        fields.update({"calibration_images": sum(len(batch) for batch in calibration), "calibration_split": "train"})
    errors: dict[str, str] = {}
    stopped = _run_phase("setup", probe, fields, errors)
    probe.logits = None
    if not stopped:
        if windows.require_idle:
            idle = wait_for_idle(windows.idle_max_wait)
            fields.update({"contention_idle_at_start": idle.idle, "contention_waited_seconds": idle.waited_seconds})
        with ContentionWatch() as watch:
            stopped = _run_phase("timed", probe, fields, errors)
        fields.update({**flatten(watch.record, "contention_"), **_gpu_fields(device)})
    if not stopped:
        stopped = _run_phase("after", probe, fields, errors)
    if stopped:
        fields.update({"status": "mismatch", "error": f"backend={spec.backend} {stopped}"})
    return {**fields, "instrument_errors": errors}
