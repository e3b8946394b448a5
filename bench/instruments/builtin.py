"""The built-in instruments, registered in the order the profile stage runs them within a phase.

Each wires one measurement of ``bench/measure/`` onto the prepared model (``Probe``); what it
measures, and how, is documented where the measurement is.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from bench.backends import eager_predict
from bench.data import dataset_info, first_batches
from bench.environment import device_name
from bench.instruments import Instrument, Probe, register_instrument
from bench.measure.accuracy_gate import GateRecord, miou_ratio, mious, verdict
from bench.measure.decoder import DecoderStorage, storage_record
from bench.measure.energy import EnergyRecord, energy_counter, measure_energy
from bench.measure.latency import LatencyStats, measure_latency, synchronized
from bench.measure.memory import MemoryReading, forward_peak_memory
from bench.measure.parity import Parity, parity
from bench.measure.peak import Efficiency, achieved_flops_per_s, cached_peak, efficiency
from bench.measure.receptive_field import Growth, growth
from bench.measure.size import ModelSize, model_size
from bench.measure.training import TrainingStep, measure_training_step, training_batch
from bench.records import column
from bench.schema import FLOP_COUNTER, FLOP_UNIT
from bench.updates import is_adversarial


def _memory_format(probe: Probe) -> torch.memory_format:
    return torch.channels_last if probe.spec.channels_last else torch.contiguous_format


class BuiltIn(Instrument):
    """A built-in instrument runs for every job unless ``selected`` says otherwise (a plug-in
    only where ``measure.instruments`` names it)."""

    def selected(self, probe: Probe) -> bool:
        return True


class Size(BuiltIn):
    name, record, phase, optional = "size", ModelSize, "setup", False
    help = "parameters and their bytes (buffers too) of the module inference runs"

    def measure(self, probe: Probe) -> ModelSize:
        return model_size(probe.model)


@dataclass(frozen=True)
class Flops:
    flops_per_image: float
    counter: str = column("flop_counter", default=FLOP_COUNTER)
    unit: str = column("flop_unit", default=FLOP_UNIT)


class ForwardFlops(BuiltIn):
    name, record, phase, optional = "flops", Flops, "setup", False
    help = "FLOPs of one forward pass per image, by torch.utils.flop_counter over the reference pass"

    def measure(self, probe: Probe) -> Flops:
        return Flops(probe.flops / probe.batch_size)


class DecoderKept(BuiltIn):
    name, record, prefix, phase, optional = "decoder_storage", DecoderStorage, "decoder_storage_", "setup", False
    help = "what the decoder keeps from the encoder per image (SegNet Table 1), in two accountings"

    def measure(self, probe: Probe) -> DecoderStorage:
        return storage_record(probe.model, probe.kept)


@dataclass(frozen=True)
class AdversarySize:
    """An adversarial model's adversary (models/adversarial.py), which only training runs."""
    params_total: int
    size_mib: float   # parameters + buffers, 2**20 bytes


class Adversary(BuiltIn):
    name, record, prefix, phase, optional = "adversary", AdversarySize, "adversary_", "setup", False
    help = "size of an adversarial model's adversary, apart from the segmentor's"

    def selected(self, probe: Probe) -> bool:
        return probe.whole is not probe.model

    def measure(self, probe: Probe) -> AdversarySize:
        size = model_size(probe.whole.adversary)
        return AdversarySize(size.params_total, size.size_mib)


class ReceptiveFieldGrowth(BuiltIn):
    name, record, prefix, phase = "growth", Growth, "growth_", "setup"
    help = "receptive field and cumulative parameters after each layer of a declared stack (Dilation Table 1)"

    def measure(self, probe: Probe) -> Growth | None:
        return growth(probe.model)


class ParityCheck(BuiltIn):
    name, record, prefix, phase, optional = "parity", Parity, "parity_", "setup", False
    help = "a deployment backend's logits against eager's on the same input"

    def selected(self, probe: Probe) -> bool:
        return not probe.backend.reference

    def measure(self, probe: Probe) -> Parity:
        """Enforced at every precision but int8: a quantized graph's argmax differs from fp32 eager's
        at near-ties, which a random input has everywhere; the accuracy gate judges int8 on data."""
        check = parity(probe.logits, probe.deployment.run())
        return dataclasses.replace(check, threshold=None if probe.spec.precision == "int8" else probe.min_agreement)

    def stops(self, record: Parity) -> str:
        if record.threshold is None or record.argmax_agreement >= record.threshold:
            return ""
        return (f"predicts {record.argmax_agreement:.4%} of pixels as eager does, below "
                f"parity.min_argmax_agreement={record.threshold:.4%} (max abs logit difference "
                f"{record.max_abs_diff:.3g}); not timed")


def _gate_batches(probe: Probe, count: int) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    """The first ``count`` val images in whole batches of the job's size, in the job's layout and
    on its device (label maps on the CPU, each at its own size)."""
    batches = first_batches(probe.dataset, "val", (probe.spec.height, probe.spec.width), probe.batch_size, count)
    return [(images.to(probe.device).contiguous(memory_format=_memory_format(probe)), masks)
            for images, masks in batches]


class AccuracyGate(BuiltIn):
    name, record, prefix, phase = "accuracy_gate", GateRecord, "gate_", "setup"
    help = ("a deployment other than fp32 eager scored against it on validation images (its mIoU's share "
            "of fp32 eager's, at least parity.min_accuracy_ratio)")

    def selected(self, probe: Probe) -> bool:
        differs = not probe.backend.reference or probe.spec.precision != "fp32" or probe.spec.channels_last
        return differs and probe.gate_images > 0

    def measure(self, probe: Probe) -> GateRecord:
        if probe.weights is None:
            return GateRecord("random initialisation", gated=False,
                              note="not scored: random weights predict next to nothing; the gate decides "
                                   "rows of mode=accuracy or mode=eval (trained or loaded weights)")
        if probe.deployment.predict is None:
            return GateRecord(probe.weights, gated=False,
                              note=f"not scored: backend={probe.spec.backend} cannot run other inputs")
        batches = _gate_batches(probe, probe.gate_images)
        if not batches:
            return GateRecord(probe.weights, gated=False, note="not scored: the validation split has fewer "
                              f"images than one batch of {probe.batch_size}")
        fp32_eager = eager_predict(probe.model, dataclasses.replace(probe.spec, precision="fp32"), probe.device)
        info = dataset_info(probe.dataset)
        reference, deployment = mious((fp32_eager, probe.deployment.predict), batches, info.num_classes,
                                      info.ignore_index)
        images = sum(len(masks) for _, masks in batches)
        return GateRecord(probe.weights, gated=True, note=f"the first {images} images of the val split, "
                          f"batch {probe.batch_size}, the job's resolution", images=images, split="val",
                          miou_reference=reference, miou_deployment=deployment,
                          ratio=miou_ratio(reference, deployment), threshold=probe.min_accuracy_ratio)

    def stops(self, record: GateRecord | None) -> str:
        return verdict(record) if record is not None else ""


class ForwardMemory(BuiltIn):
    name, record, phase = "forward_memory", MemoryReading, "setup"
    help = "peak memory of one inference forward pass (the allocator's count; CPU: live tensors too)"

    def selected(self, probe: Probe) -> bool:
        return probe.backend.reference

    def measure(self, probe: Probe) -> MemoryReading:
        probe.logits = None   # the reference pass's output must not sit in the memory being read
        return forward_peak_memory(probe.model, probe.inputs, probe.device, probe.spec.autocast_dtype)


@dataclass(frozen=True)
class Latency:
    stats: LatencyStats
    throughput_ips: float   # images per second = batch size / median latency


class InferenceLatency(BuiltIn):
    name, record, phase, optional = "latency", Latency, "timed", False
    help = "latency of the deployed forward pass, timed until its median is known to measure.rel_ci"

    def measure(self, probe: Probe) -> Latency:
        stats = measure_latency(probe.deployment.run, probe.device, probe.timing, progress=probe.progress)
        return Latency(stats, probe.batch_size / (stats.median_ms / 1e3))


def training_step_covers(model: torch.nn.Module, train_cfg: Mapping[str, Any]) -> str:
    """What the training-step figures cover, in words."""
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


class TrainStep(BuiltIn):
    name, record, prefix, phase = "train_step", TrainingStep, "train_", "timed"
    help = "one training step of the whole model (the recipe's optimizer): latency and memory"

    def selected(self, probe: Probe) -> bool:
        return probe.train_cfg is not None and probe.backend.reference

    def measure(self, probe: Probe) -> TrainingStep:
        """On a random batch in the job's layout; the model is left in eval mode without gradients
        even when the step fails (e.g. BatchNorm meeting one value per channel), so the
        instruments after it still run."""
        whole, spec, memory_format = probe.whole, probe.spec, _memory_format(probe)
        image, mask = training_batch(probe.batch_size, probe.in_channels, spec.height, spec.width,
                                     probe.num_classes, probe.ignore_index, probe.device)
        whole.to(device=probe.device, memory_format=memory_format)
        try:
            step = measure_training_step(whole, probe.train_cfg, (image.contiguous(memory_format=memory_format), mask),
                                         probe.num_classes, probe.ignore_index, probe.device, probe.timing,
                                         precision=spec.training_precision(probe.device), progress=probe.progress)
        finally:
            whole.eval()
            whole.zero_grad(set_to_none=True)
        return dataclasses.replace(step, step_covers=training_step_covers(whole, probe.train_cfg))


class Energy(BuiltIn):
    name, record, prefix, phase = "energy", EnergyRecord, "energy_", "after"
    help = "energy per image over a window of forward passes (RAPL or NVML), idle power beside it"

    def selected(self, probe: Probe) -> bool:
        return probe.windows.energy

    def measure(self, probe: Probe) -> EnergyRecord:
        return measure_energy(synchronized(probe.deployment.run, probe.device), energy_counter(probe.device),
                              probe.windows.energy_min_seconds, probe.windows.energy_idle_seconds, probe.batch_size)


class FlopsAgainstPeak(BuiltIn):
    name, record, phase = "efficiency", Efficiency, "after"
    help = "achieved FLOP/s against the machine's measured matmul peak, memory bandwidth beside it"

    def selected(self, probe: Probe) -> bool:
        return probe.peak_flops

    def measure(self, probe: Probe) -> Efficiency:
        """Against the cached peak; a model that beats it has the peak measured again first (the
        cached one may have been taken while the machine was busy)."""
        flops, median_ms = probe.records["flops"].flops_per_image, probe.records["latency"].stats.median_ms
        device, dtype = probe.device, probe.spec.autocast_dtype or torch.float32
        peak = cached_peak(probe.cache_dir / "peak", device, device_name(device), dtype)
        if achieved_flops_per_s(flops, probe.batch_size, median_ms) > peak["flops_per_s"]:
            peak = cached_peak(probe.cache_dir / "peak", device, device_name(device), dtype, remeasure=True)
        return efficiency(flops, probe.batch_size, median_ms, peak)


for _instrument in (Size(), ForwardFlops(), DecoderKept(), Adversary(), ReceptiveFieldGrowth(), ParityCheck(),
                    AccuracyGate(), ForwardMemory(), InferenceLatency(), TrainStep(), Energy(), FlopsAgainstPeak()):
    register_instrument(_instrument)
