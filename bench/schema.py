"""The result row: one dataclass defines every column, and all reading and writing goes through it.

A row is one execution of one grid point (a *job*). ``job_key`` names the grid point (the same
configuration always gets the same key, which is what resume and the report group by);
``run_id`` names the execution, so a forced re-run adds a row instead of replacing one.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import operator
import types
import sys
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import orjson

SCHEMA_VERSION = 7  # 3: latency intervals, raw times, contention, energy, cold start; 4: adversarial
                    # rows measure inference on the segmentor alone (adversary_*, train_step_covers);
                    # 5: an instrument that cannot run leaves the row ok (instrument_errors);
                    # accuracy rows hold Boundary IoU (boundary_miou, boundary_band_px, boundary_method);
                    # 6: a model's declared stack grows by a measured receptive field (growth_*)
                    # 7: every instrument's record stored whole: train_timer, contention_window_seconds,
                    # contention_cpus; plug-in instruments' columns (``extra``); the accuracy gate (gate_*)

#: Every status a row can carry. Only ``ok`` rows hold measurements.
#: ``mismatch``: a deployment backend whose predictions differ from eager's (a finding, recorded
#: with its parity figures and not timed; not a failure of the sweep).
#: ``interrupted``: stopped by Ctrl-C; the sweep stopped with it (exit code 130).
#: ``unsaved``: measured in full, but the trained weights could not be written (``checkpoint`` is
#: null and ``checkpoint_error`` says why); the figures come from the weights in memory.
#: ``abandoned``: the job went silent past ``lease.stale_after_seconds`` and another worker took
#: it over; its figures are kept for the record, never as the job's ok row.
STATUSES = ("ok", "error", "oom", "timeout", "unavailable", "mismatch", "interrupted", "unsaved", "abandoned")
#: Job outcomes that make a sweep exit non-zero ("invalid": a config that names no job;
#: "unsaved": measured, but the row or the weights could not be written).
FAILED_STATUSES = ("error", "oom", "timeout", "invalid", "unsaved", "interrupted", "abandoned")

#: The row schemas this code reads: every version so far only added columns.
READABLE_VERSIONS = range(1, SCHEMA_VERSION + 1)
#: What every stored row must hold: what resume and the report key, tell apart and order rows by.
IDENTITY = ("job_key", "run_id", "status", "finished_at")


class RowFormatError(ValueError):
    """Stored data that is no row this segbench reads; the message says why."""


class UnknownColumnError(KeyError):
    """A figure handed to the row under a name that is none of its columns (a misspelling)."""


def _close_to(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: How a profile row's error begins when the model's logits were not N x classes x input H x W
#: (bench/profile.py raises it; the report's input-size claim reads it).
LOGITS_SHAPE_ERROR = "returned logits of shape"

FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode"
FLOP_UNIT = "FLOP per image, forward pass (1 multiply-add = 2 FLOP)"


@dataclass
class ResultRow:
    # --- identity and outcome -------------------------------------------------------------
    job_key: str
    run_id: str
    status: str
    error: str = ""                    # "ExceptionType: message" when status != ok
    traceback_file: str = ""           # full traceback, written beside the row
    started_at: str = ""               # ISO 8601, UTC
    finished_at: str = ""
    wall_seconds: float | None = None
    # The profile's optional instruments (bench/instruments/: ``optional``) that could not run
    # for this job, each with why ("ExceptionType: message"); their columns stay empty and the row
    # keeps every other figure, its status ok.
    instrument_errors: dict[str, str] = field(default_factory=dict)
    host: str = ""
    schema_version: int = SCHEMA_VERSION

    # --- the grid point ---------------------------------------------------------------------
    mode: str = "profile"              # profile | accuracy | eval
    model: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = ""
    num_classes: int | None = None
    device: str = ""
    height: int | None = None
    width: int | None = None
    batch_size: int | None = None
    batch_size_used: int | None = None  # differs from batch_size only under oom_policy=halve
    precision: str = ""
    channels_last: bool = False
    backend: str = "eager"             # eager | compile | onnxruntime | openvino | a plugin's (bench/backends.py registry)
    threads: int | None = None
    # Other segbench workers holding a claim in the same results_dir on this host, at the job's start
    # or end (the larger): each takes CPU time from this job's timings when they share the CPUs.
    concurrent_workers: int | None = None
    seed: int | None = None            # weight initialisation (top-level ``seed``); part of the job key
    repeat_key: str = ""               # the job key without the seed: rows sharing it are repeats

    # --- size and compute -------------------------------------------------------------------
    # Size, FLOPs, decoder storage, memory, latency and energy are of the module inference runs
    # (bench/profile.py inference_part): an adversarial model's segmentor alone from version 4 on
    # (earlier adversarial rows counted the adversary in size and memory too).
    params_total: int | None = None
    params_trainable: int | None = None
    model_size_mib: float | None = None  # parameters + buffers, 2**20 bytes
    # An adversarial model's adversary (models/adversarial.py), which only training runs: counted
    # here, apart from the figures above; None for every other model.
    adversary_params_total: int | None = None
    adversary_size_mib: float | None = None  # parameters + buffers, 2**20 bytes
    flops_per_image: float | None = None
    flop_counter: str = FLOP_COUNTER
    flop_unit: str = FLOP_UNIT

    # --- latency (per batch) and throughput -------------------------------------------------
    latency_ms_median: float | None = None
    latency_ms_iqr: float | None = None
    latency_ms_p90: float | None = None
    latency_ms_p99: float | None = None   # from 100 calls on; None below
    latency_ms_mean: float | None = None
    latency_ms_ci_low: float | None = None   # the median's distribution-free 95% interval (6 calls on)
    latency_ms_ci_high: float | None = None
    latency_rel_ci: float | None = None      # how far that interval reaches from the median, as a fraction
    latency_target_rel_ci: float | None = None  # measure.rel_ci: the precision the loop aimed at
    latency_precision_reached: bool | None = None  # False: stopped at max_run_time/max_iters first
    latency_stop_reason: str = ""
    latency_iters: int | None = None
    warmup_iters: int | None = None
    latency_times_ms: list[float] = field(default_factory=list)  # every timed call, in order
    compile_seconds: float | None = None  # backend=compile: the first, compiling call
    throughput_ips: float | None = None  # images per second = batch_size / median latency
    timer: str = ""
    latency_ms_p90_ci_low: float | None = None   # p90's distribution-free 95% interval (from about 36 calls)
    latency_ms_p90_ci_high: float | None = None
    # --- scenario: latency (MLPerf's single stream: the job's batch, median and p90) or throughput
    # (MLPerf's offline: the batch doubled until images/s stops improving; the row is the best batch's)
    scenario: str = "latency"
    throughput_search: list[dict[str, Any]] = field(default_factory=list)  # {"batch", "images_per_s" | "status"}
    # --- cold start: measured apart from the steady state above
    build_seconds: float | None = None     # building the model and initialising (or loading) its weights
    first_call_ms: float | None = None     # the first forward pass after the build, on the job's device (eager)
    backend_first_call_ms: float | None = None  # a backend's first call (compile: the compiling one; ORT: the session's first run)
    backend_load_seconds: float | None = None   # onnxruntime: creating the session from the exported file
    # --- what else used the machine during the timed windows (bench/measure/contention.py)
    contention_window_seconds: float | None = None      # the timed window watched (latency and training step)
    contention_cpus: int | None = None                  # the machine's CPUs the fraction is of
    contention_other_cpu_fraction: float | None = None  # other processes' CPU time / (window x CPUs)
    contention_other_cpu_seconds: float | None = None
    contention_steal_seconds: float | None = None       # a virtual machine's CPU taken by its host
    contention_load_before: float | None = None         # 1-minute load average
    contention_load_after: float | None = None
    contention_busy: bool | None = None                 # True: measured under load (see the note); None: unknown
    contention_note: str = ""
    contention_waited_seconds: float | None = None      # measure.require_idle: how long it waited
    contention_idle_at_start: bool | None = None        # measure.require_idle: whether it found the machine idle
    contention_gpu_other_processes: int | None = None   # CUDA: other processes holding the GPU (NVML)
    contention_gpu_other_pids: str | None = None
    contention_gpu_throttle_reasons: str | None = None
    contention_gpu_busy: bool | None = None
    contention_gpu_note: str | None = None
    # --- energy of a window of forward passes, with the idle power just before (bench/measure/energy.py)
    energy_available: bool | None = None
    energy_unavailable_reason: str | None = None
    energy_method: str | None = None
    energy_window_seconds: float | None = None
    energy_calls: int | None = None
    energy_images: int | None = None
    energy_joules_total: float | None = None
    energy_joules_per_image: float | None = None
    energy_average_power_w: float | None = None
    energy_idle_seconds: float | None = None
    energy_idle_power_w: float | None = None
    energy_joules_per_image_above_idle: float | None = None

    # --- deployment backend (non-eager rows) ----------------------------------------------
    backend_exporter: str = ""          # how the deployed form was made, with its version
    backend_runtime: str = ""           # what runs it, with its version
    backend_provider: str = ""          # onnxruntime: the execution provider that runs the graph
    backend_provider_options: dict[str, Any] = field(default_factory=dict)  # providers used, their options, threads
    export_seconds: float | None = None  # onnxruntime: export time (None when the cached file was reused)
    export_file: str = ""               # onnxruntime: the cached .onnx file
    # precision=int8: the quantization and the training images it was calibrated on.
    quantize_seconds: float | None = None  # None when the cached quantized file was reused
    calibration_images: int | None = None
    calibration_split: str | None = None
    parity_max_abs_diff: float | None = None     # largest |logit - eager logit| on the same input
    parity_argmax_agreement: float | None = None  # fraction of pixels predicted as eager predicts them
    parity_threshold: float | None = None         # the agreement below which status is mismatch
    # The accuracy gate (bench/measure/accuracy_gate.py): a deployment other than fp32 eager scored
    # against fp32 eager on validation images with the same (trained or loaded) weights.
    gate_weights: str | None = None               # what was scored: trained by the job, a checkpoint, or random
    gate_gated: bool | None = None                # whether the ratio decided the status
    gate_note: str | None = None
    gate_images: int | None = None
    gate_split: str | None = None
    gate_miou_reference: float | None = None      # fp32 eager
    gate_miou_deployment: float | None = None
    gate_ratio: float | None = None               # deployment / reference
    gate_threshold: float | None = None           # parity.min_accuracy_ratio

    # --- efficiency: achieved FLOP/s against the machine's measured peak -------------------
    achieved_flops_per_s: float | None = None   # flops_per_image x batch / median latency
    peak_flops_per_s: float | None = None       # the machine's matmul peak in this precision
    peak_fraction: float | None = None          # achieved / peak
    peak_method: str = ""                       # how the peak was measured
    peak_exceeded: bool | None = None           # achieved above the peak: see peak_note
    peak_note: str = ""                         # why a model can beat the matmul ceiling
    memory_bandwidth_bytes_per_s: float | None = None  # the machine's memory ceiling (triad), beside the peak
    bandwidth_method: str = ""

    # --- memory (inference: one forward pass) ---------------------------------------------
    peak_memory_mib: float | None = None        # weights + input + peak of everything allocated
    activation_peak_mib: float | None = None    # peak above the pre-forward baseline (workspaces included)
    tensor_activation_peak_mib: float | None = None  # CPU: peak of live tensor storages only
    memory_counter: str = ""                    # the method behind peak_memory_mib

    # --- training step (forward, cross-entropy, backward, optimizer step) ------------------
    train_optimizer: str = ""
    train_precision: str = ""                      # fp32 | bf16 (autocast) | fp16 (autocast + gradient scaling)
    train_latency_ms_median: float | None = None   # per step of one batch
    train_latency_ms_iqr: float | None = None
    train_latency_ms_p90: float | None = None
    train_latency_ms_p90_ci_low: float | None = None
    train_latency_ms_p90_ci_high: float | None = None
    train_latency_ms_p99: float | None = None
    train_latency_ms_mean: float | None = None
    train_latency_ms_ci_low: float | None = None
    train_latency_ms_ci_high: float | None = None
    train_latency_rel_ci: float | None = None
    train_latency_target_rel_ci: float | None = None
    train_latency_precision_reached: bool | None = None
    train_latency_stop_reason: str = ""
    train_latency_iters: int | None = None
    train_latency_times_ms: list[float] = field(default_factory=list)
    train_warmup_iters: int | None = None
    train_timer: str = ""
    train_throughput_ips: float | None = None      # images per second = batch size / median step
    train_peak_memory_mib: float | None = None     # weights + gradients + optimizer state + batch + activations
    train_weights_mib: float | None = None
    train_gradients_mib: float | None = None
    train_optimizer_state_mib: float | None = None
    train_activation_peak_mib: float | None = None  # peak above weights, gradients and optimizer state
    train_memory_counter: str = ""
    saved_for_backward_mib: float | None = None    # autograd's saved tensors, each storage once
    # What the step's figures cover, in words: the whole model's supervised step, or for an
    # adversarial model both networks' alternating updates (saved_for_backward: the segmentor's only).
    train_step_covers: str = ""

    # --- decoder storage (encoder-decoder models; per image) -------------------------------
    decoder_storage_mib: float | None = None        # what the decoder keeps, as PyTorch stores it
    decoder_storage_paper_mib: float | None = None  # the same, as the SegNet paper counts it
    decoder_storage_multiplier: float | None = None  # SegNet Table 1's unit (see bench/measure/decoder.py)
    decoder_storage_multiplier_pytorch: float | None = None  # the same unit with PyTorch's bits (int64 indices)
    decoder_storage_note: str = ""                 # what is kept, e.g. "4 pooling-index maps"

    # --- growth of a declared stack, layer by layer (bench/measure/receptive_field.py) -------
    growth_module: str = ""                        # the stack's name, e.g. "context" (Dilation Table 1)
    growth_receptive_fields: list[int] = field(default_factory=list)  # px after each convolution (gradient probe)
    growth_params: list[int] = field(default_factory=list)            # cumulative parameters after each

    # --- accuracy ---------------------------------------------------------------------------
    split: str = ""
    miou: float | None = None
    per_class_iou: dict[str, float] = field(default_factory=dict)
    pixel_accuracy: float | None = None
    mean_accuracy: float | None = None
    fw_iou: float | None = None
    boundary_miou: float | None = None   # mean Boundary IoU (bench/metrics.py): the outlines, not the blobs
    boundary_band_px: int | None = None  # its band width at the scored size (None: label maps of several sizes)
    boundary_method: str = ""
    train_steps: int | None = None
    train_seconds: float | None = None
    epochs: float | None = None
    final_loss: float | None = None
    stop_reason: str = ""               # max_steps | max_epochs | max_seconds | early_stopping (last stage)
    finetune_steps: int | None = None   # steps of the recipe's second (fine-tuning) stage, if it has one
    resumed_from_step: int | None = None  # this execution continued a killed run's saved state from this step
    resumptions: int | None = None      # times the training was resumed from a saved state (0: never)
    checkpoint: str | None = ""         # null: training finished but its weights could not be written
    checkpoint_error: str = ""          # why not (e.g. the disk was full); the row is status unsaved
    eval_height: int | None = None      # resolution the confusion matrix was taken at
    eval_width: int | None = None
    test_weights: str = ""              # final | best (on validation): the weights scored above
    # Learning curve: one point per validation pass during training, each
    # {"step", "train_seconds", "miou", "pixel_accuracy", "loss", "lr"}; train_seconds excludes evaluation.
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    curve_eval_seconds: float | None = None   # time spent on those validation passes (not training)
    best_val_miou: float | None = None
    best_val_step: int | None = None
    best_val_seconds: float | None = None
    target_miou: float | None = None          # the mIoU that time-to-accuracy is measured to
    time_to_target_seconds: float | None = None  # training seconds to first reach target_miou

    # --- environment ------------------------------------------------------------------------
    torch_version: str = ""
    cuda_version: str = ""
    device_name: str = ""
    python_version: str = ""
    git_commit: str = ""
    segbench_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the resolved job config

    # --- plug-in instruments' columns (bench/instruments/), flat on disk beside the others ----
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The row as stored: flat, a plug-in instrument's columns beside the built-in ones."""
        data = dataclasses.asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}

    def update(self, fields: dict[str, Any], extra_columns: frozenset[str] = frozenset()) -> None:
        """Set ``fields`` (column: value); the names in ``extra_columns`` (plug-in instruments',
        bench/instruments/ ``plugin_columns``) go to ``extra``. Any other name is no column: an
        error naming it, never a value silently dropped."""
        known = _accepted_types()
        unknown = [name for name in fields if name not in known and name not in extra_columns]
        if unknown:
            raise UnknownColumnError(", ".join(f"{name!r}{_close_to(name, known)}" for name in unknown)
                                     + ": no column of the row (bench/schema.py ResultRow)")
        for name, value in fields.items():
            if name in known:
                setattr(self, name, value)
            else:
                self.extra[name] = value

    def to_text(self) -> str:
        """The measured fields, one per line (empty ones, the full config and the raw per-call
        times left out: the row file holds them)."""
        lines = []
        for name, value in self.to_dict().items():
            if name == "config" or name.endswith("_times_ms") or value in (None, "", {}, []):
                continue
            shown = f"{value:.6g}" if isinstance(value, float) else value
            lines.append(f"  {name}: {shown}")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: Any) -> "ResultRow":
        """Build a row from stored data (keys that are no column kept in ``extra``: a plug-in
        instrument's, or a newer segbench's), or raise RowFormatError saying
        why it is no row: one odd file must cost a warning, not the report or a job's resume check,
        so nothing later has to doubt a field's type."""
        if not isinstance(data, dict):
            raise RowFormatError(f"not a JSON object: {_excerpt(data)}")
        missing = [name for name in IDENTITY if name not in data]
        if missing:
            raise RowFormatError(f"{', '.join(missing)} missing")
        accepted = _accepted_types()
        known, extra = {}, {}
        for name, value in data.items():
            kinds = accepted.get(name)
            if kinds is None:
                extra[name] = value
                continue
            if type(value) not in kinds[0]:   # json.loads gives exact types: no subclass to allow for
                raise RowFormatError(f"{name} is {_excerpt(value)}, not {kinds[1]}")
            # Keyed by the field's own (interned) name: CPython matches keyword arguments by
            # identity first, so 170 keys fresh from json.loads would cost ~15,000 string compares.
            known[kinds[2]] = value
        version = known.get("schema_version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise RowFormatError(f"schema_version {version}: this segbench reads 1 to {SCHEMA_VERSION}")
        return cls(**known, extra=extra)

    @classmethod
    def from_json(cls, data: bytes) -> "ResultRow":
        """The row in a row file's bytes, as ``from_dict(orjson.loads(data))`` gives it, about
        twice as fast where the file holds only columns of their declared types (every file segbench
        writes): msgspec checks those in C (``_stored_row_decoder``), where ``from_dict`` loops over
        170 fields in Python, and a report reads 10,000 files. Any other file goes through
        ``from_dict``, which keeps a plug-in's columns or raises the error saying why it is no row
        (a ``RowFormatError``, or orjson's ``JSONDecodeError``)."""
        try:
            stored = _stored_row_decoder().decode(data)
        except msgspec.MsgspecError:
            stored = None
        if stored is None or stored.schema_version not in READABLE_VERSIONS:
            return cls.from_dict(orjson.loads(data))
        # Every field is in ``stored`` (defaults filled in): ``__init__`` would only set them again.
        row = cls.__new__(cls)
        row.__dict__.update(msgspec.structs.asdict(stored), extra={})
        return row


def columns() -> list[str]:
    return [f.name for f in dataclasses.fields(ResultRow)]


#: How each declared type reads in JSON, and what ``json.loads`` may give for it (a float field
#: also takes an integer: JSON does not tell 2.0 from 2).
_JSON_TYPES = {str: ("a string", (str,)), int: ("an integer", (int,)), float: ("a number", (float, int)),
               bool: ("true or false", (bool,)), dict: ("an object", (dict,)), list: ("a list", (list,)),
               type(None): ("null", (type(None),))}


@functools.cache
def _accepted_types() -> dict[str, tuple[frozenset[type], str, str]]:
    """Per field, from its annotation: the Python types its stored value may have (a set: one
    lookup per field, the report reads thousands of rows), and their description. Once, not per
    row read. The third item is the field's name as the dataclass holds it."""
    accepted = {}
    for name, hint in typing.get_type_hints(ResultRow).items():
        if name == "extra":   # not stored under its own name: its keys are columns of their own
            continue
        union = typing.get_origin(hint) is types.UnionType
        kinds = [typing.get_origin(kind) or kind for kind in (typing.get_args(hint) if union else [hint])]
        accepted[name] = (frozenset(t for kind in kinds for t in _JSON_TYPES[kind][1]),
                          " or ".join(_JSON_TYPES[kind][0] for kind in kinds), sys.intern(name))
    return accepted


#: An integer as orjson (``from_dict``'s parser) reads one: a wider one it reads as a float, which an
#: integer column refuses; msgspec would take it.
_INT64 = Annotated[int, msgspec.Meta(ge=-2**63, le=2**63 - 1)]


def _int64(hint):
    """``hint`` with every ``int`` in it (``int | None``, ``list[int]``) bounded to 64 bits."""
    if hint is int:
        return _INT64
    args = typing.get_args(hint)
    if not args:
        return hint
    if typing.get_origin(hint) is types.UnionType:
        return functools.reduce(operator.or_, map(_int64, args))
    return typing.get_origin(hint)[tuple(map(_int64, args))]


@functools.cache
def _stored_row_decoder() -> msgspec.json.Decoder:
    """A decoder of row files into a msgspec struct of ``ResultRow``'s stored columns, with their
    declared types (nested ones included) and defaults: it rejects a file lacking an ``IDENTITY``
    column, holding a key that is no column, or a value of another type. Built once, from the
    dataclass, so the two readers never disagree on what a column holds."""
    hints = typing.get_type_hints(ResultRow)
    fields = []
    for spec in dataclasses.fields(ResultRow):
        if spec.name == "extra":   # not stored under its own name: a plug-in's key goes to from_dict
            continue
        hint = _int64(hints[spec.name])
        if spec.name in IDENTITY:
            fields.append((spec.name, hint))
        elif spec.default is not dataclasses.MISSING:
            fields.append((spec.name, hint, spec.default))
        else:
            fields.append((spec.name, hint, msgspec.field(default_factory=spec.default_factory)))
    return msgspec.json.Decoder(msgspec.defstruct("StoredRow", fields, kw_only=True, forbid_unknown_fields=True))


def _excerpt(value: Any) -> str:
    return json.dumps(value, default=str)[:60]
