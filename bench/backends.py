"""Deployment backends: how the model is run for the latency and memory passes, registered by
name (``register_backend``), one ``Backend`` subclass each. A new backend is one module with its
class and registration; the config check, the job key, the profile stage and the report all go
by the registry (a plugin module, ``plugins=[...]``, may register one).

* ``eager``: the ``nn.Module`` as written (the reference every other backend is checked against).
* ``compile``: ``torch.compile`` (Inductor); the first, compiling call is timed on its own.
* ``onnxruntime``: the model exported once with ``torch.onnx.export(..., dynamo=True)`` and run by
  an ONNX Runtime ``InferenceSession``: the CPU execution provider on CPU; on CUDA, TensorRT's and
  then CUDA's where the installed onnxruntime offers them (the CPU one stays as the fallback ORT
  assigns unsupported nodes to). The session's inputs and outputs go through host memory.

An exported file is cached under ``<results_dir>/cache/onnx/<key>.onnx``; the key covers the model,
its options, the input shape, the weights and the exporter's version, so a retrained or re-seeded
model is exported again, and a re-run reuses the file. A backend's int8 model is cached beside it
(``cached_quantization``).

The training step (``measure.train_step``) is measured in ``backend=eager`` rows only.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from bench.atomic import atomic_write
from bench.measure.memory import forward_peak_memory, resident_peak_rise, tensor_bytes
from bench.measure.size import MIB
from bench.paths import safe_name

if TYPE_CHECKING:
    from bench.jobspec import JobSpec

ONNX_EXPORTER = "torch.onnx.export(dynamo=True)"
#: ORT's execution providers in the order segbench prefers them on a CUDA device.
CUDA_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ORT_MEMORY_COUNTER = ("process peak resident set (VmHWM after /proc/self/clear_refs) during the "
                      "session's first run, when ONNX Runtime's CPU arena grows: its allocator "
                      "exposes no statistics")


@dataclass
class Deployment:
    """A model made ready on one backend: ``run()`` does one forward pass on the prepared inputs
    and returns the logits as a torch tensor (what the latency loop times); ``fields`` are the
    ResultRow columns that describe how it was made and its inference memory; ``predict(batch)``
    gives the logits of another batch of the prepared shape (what the accuracy gate scores; None
    where the backend cannot take other inputs)."""
    run: Callable[[], torch.Tensor]
    fields: dict[str, Any] = field(default_factory=dict)
    predict: Callable[[torch.Tensor], torch.Tensor] | None = None


def tensors_digest(named) -> str:
    """SHA-1 of (name, tensor) pairs: names, sizes, dtypes and values, in the order given."""
    digest = hashlib.sha1()
    for name, tensor in named:
        tensor = tensor.detach().cpu().contiguous().reshape(-1)  # 1-d: view() below needs it for scalars
        digest.update(f"{name}:{tensor.numel()}:{tensor.dtype}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """SHA-1 of every parameter and buffer, in state_dict order."""
    return tensors_digest(model.state_dict().items())


def export_key(model_name: str, model_kwargs: dict[str, Any], shape: tuple[int, ...],
               weights: str) -> str:
    """The cache file's name: readable model and shape, then a digest of everything that shapes
    the exported graph and its weights."""
    keyed = {"model": model_name, "kwargs": model_kwargs, "shape": list(shape), "weights": weights,
             "exporter": ONNX_EXPORTER, "torch": torch.__version__}
    digest = hashlib.sha1(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{safe_name(model_name)}_{'x'.join(map(str, shape))}_{digest}"


def export_onnx(model: nn.Module, inputs: torch.Tensor, path: Path) -> float:
    """Export ``model`` at ``inputs``' shape to ``path`` atomically; returns the seconds taken.

    The file is written beside ``path`` and renamed into place, so a killed export leaves no
    partial file that a later run would take for a finished one.
    """
    # The exporter's optimisation passes log every step at INFO, which Hydra's logging shows.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
    started = time.perf_counter()
    program = torch.onnx.export(model, (inputs,), dynamo=True, verbose=False)
    # Inline weights: one self-contained file (every zoo model is far below protobuf's 2 GB).
    atomic_write(path, lambda partial: program.save(str(partial), external_data=False))
    return time.perf_counter() - started


def cached_onnx_export(model: nn.Module, inputs: torch.Tensor, spec: "JobSpec",
                       cache_dir: Path) -> tuple[Path, float | None]:
    """The ONNX file of this model, options, input shape and weights under ``cache_dir/onnx/``,
    exported now only if no run has cached it yet (backend=onnxruntime and backend=openvino share
    it): its path, and the seconds the export took (None: reused)."""
    key = export_key(spec.model, spec.model_kwargs, tuple(inputs.shape), weights_digest(model))
    path = cache_dir / "onnx" / f"{key}.onnx"
    if path.exists():
        return path, None
    return path, export_onnx(model, inputs, path)


def cached_quantization(export_path: Path, calibration: list[torch.Tensor], suffix: str, quantizer: str,
                        quantize: Callable[[Path, Path, list[torch.Tensor]], float]) -> tuple[Path, float | None]:
    """The int8 model that ``quantize(fp32_path, int8_path, calibration)`` makes of the export,
    cached beside it as ``<export>.int8-c<images>-<digest><suffix>`` and quantized now only if no
    run has cached it yet: its path, and the seconds quantizing took (None: reused). The digest
    covers the calibration images' values and ``quantizer`` (the tool and its version), so other
    data at the same weights, or another quantizer release, makes a file of its own; the suffix
    tells one backend's quantized format from another's."""
    digest = tensors_digest([(quantizer, torch.empty(0)), *((str(i), batch) for i, batch in enumerate(calibration))])
    images = sum(len(batch) for batch in calibration)
    path = export_path.with_name(f"{export_path.stem}.int8-c{images}-{digest[:10]}{suffix}")
    if path.exists():
        return path, None
    return path, quantize(export_path, path, calibration)


QUANTIZER = ("onnxruntime.quantization.quantize_static: QDQ, int8 weights per channel, uint8 activations, "
             "MinMax calibration")


def quantize_onnx(fp32_path: Path, int8_path: Path, calibration: list[torch.Tensor]) -> float:
    """ONNX Runtime's static int8 quantization of the exported graph, its activation ranges
    calibrated on ``calibration`` (batches of real images, the exported shape); written atomically;
    returns the seconds taken. ORT's shape inference and graph optimisation run first, as its
    documentation asks."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{name: batch.detach().cpu().numpy()} for batch in calibration])

        def get_next(self):
            return next(self.feeds, None)

    started = time.perf_counter()

    def quantize(partial: Path) -> None:
        prepared = partial.with_name(partial.name + ".pre.onnx")
        try:
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(str(prepared), str(partial), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            prepared.unlink(missing_ok=True)

    atomic_write(int8_path, quantize)
    return time.perf_counter() - started


def ort_providers(device: torch.device, available: list[str]) -> list[str]:
    """The execution providers to ask for, best first, among those onnxruntime offers."""
    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda":
        preferred = [p for p in CUDA_PROVIDERS if p in available]
        if preferred:
            return [*preferred, "CPUExecutionProvider"]
        raise RuntimeError(f"this onnxruntime offers no CUDA execution provider (it has {available}); "
                           "install onnxruntime-gpu for backend=onnxruntime device=cuda")
    raise RuntimeError(f"backend=onnxruntime supports device=cpu and device=cuda, not {device.type}")


def onnxruntime_deployment(model: nn.Module, inputs: torch.Tensor, device: torch.device, export_path: Path,
                           export_seconds: float | None, calibration: list[torch.Tensor] | None = None) -> Deployment:
    """An ORT session on the exported graph with the torch thread count; with ``calibration``, on
    the int8 graph quantized from that export (cached beside it)."""
    import onnxruntime as ort

    quantized = {}
    if calibration is not None:
        export_path, quantized["quantize_seconds"] = cached_quantization(
            export_path, calibration, ".onnx", f"{QUANTIZER}; onnxruntime {ort.__version__}", quantize_onnx)
    options = ort.SessionOptions()
    # The same number of threads as the eager rows, so the backends compete on equal cores.
    options.intra_op_num_threads = torch.get_num_threads()
    started = time.perf_counter()
    session = ort.InferenceSession(str(export_path), options,
                                   providers=ort_providers(device, ort.get_available_providers()))
    session_seconds = time.perf_counter() - started
    name = session.get_inputs()[0].name
    feed = {name: inputs.detach().cpu().numpy()}   # host memory once: the timed call only runs
    used = session.get_providers()

    def run() -> torch.Tensor:
        return torch.from_numpy(session.run(None, feed)[0])

    def predict(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: batch.detach().cpu().numpy()})[0])

    # Later runs reuse the arena the first one grew, so the first run is the one to measure.
    resident = tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    activation, counter = None, f"not measured: ONNX Runtime's {used[0]} memory is not read on {device.type}"
    started = time.perf_counter()  # the cold call: the session's first run
    if device.type == "cpu":
        try:
            activation, counter = resident_peak_rise(run), ORT_MEMORY_COUNTER
        except OSError as exc:  # no /proc/self (not Linux): the row says so, the job goes on
            counter = f"not measured: {exc}"
            run()
    else:
        run()
    first_call_ms = (time.perf_counter() - started) * 1e3
    return Deployment(run, predict=predict, fields={
        "peak_memory_mib": None if activation is None else (resident + activation) / MIB,
        "activation_peak_mib": None if activation is None else activation / MIB,
        "memory_counter": counter,
        "backend_exporter": f"{ONNX_EXPORTER}, torch {torch.__version__}"
                            + (f"; {QUANTIZER}" if calibration is not None else ""),
        "backend_runtime": f"onnxruntime {ort.__version__}",
        "backend_provider": used[0],
        "backend_provider_options": {
            "providers": used, **session.get_provider_options(),
            "intra_op_num_threads": options.intra_op_num_threads},
        "export_seconds": export_seconds,
        "export_file": str(export_path),
        "backend_load_seconds": session_seconds,
        "backend_first_call_ms": first_call_ms,
        **quantized,
    })


def compile_deployment(model: nn.Module, inputs: torch.Tensor, device: torch.device,
                       autocast_dtype: torch.dtype | None) -> Deployment:
    """``torch.compile(model)``; its first call compiles and is timed as ``compile_seconds``;
    memory is read from torch's allocator as for eager, over a compiled pass."""
    compiled = torch.compile(model)
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return compiled(batch)

    def run() -> torch.Tensor:
        return predict(inputs)

    started = time.perf_counter()
    run()
    compile_seconds = time.perf_counter() - started
    memory = forward_peak_memory(compiled, inputs, device, autocast_dtype)
    return Deployment(run, predict=predict, fields={
        "backend_exporter": f"torch.compile (backend inductor), torch {torch.__version__}",
        "backend_runtime": f"torch {torch.__version__}",
        "compile_seconds": compile_seconds,
        "backend_first_call_ms": compile_seconds * 1e3,
        "peak_memory_mib": memory.peak_mib,
        "activation_peak_mib": memory.activation_mib,
        "tensor_activation_peak_mib": memory.tensor_activation_mib,
        "memory_counter": memory.counter,
    })


class UnknownBackendError(ValueError):
    """A backend name no registration gave; the message lists the registered ones."""


class Backend:
    """One way to deploy a model for the inference passes. A subclass sets ``name``, writes
    ``prepare`` (and ``problems``, for the job settings it cannot run), and is registered with
    ``register_backend``."""
    name: str = ""
    #: The backend the others are checked against (eager): its rows carry the forward-memory
    #: and training-step figures; every other backend's rows carry their parity with it.
    reference: bool = False

    def problems(self, precision: str, channels_last: bool) -> list[str]:
        """Why this backend cannot run a job at ``precision`` in this memory layout ([]: it can).
        By default every precision but int8, which is a quantized deployment only some offer."""
        if precision == "int8":
            return [f"precision=int8 is a quantized deployment that backend={self.name} does not offer: "
                    "use backend=onnxruntime or backend=openvino (static quantization, calibrated on "
                    "training images)"]
        return []

    def prepare(self, model: nn.Module, inputs: torch.Tensor, spec: "JobSpec", device: torch.device,
                cache_dir: Path) -> Deployment:
        """``model`` (in eval mode, on ``device``, in the job's layout) made ready to run on
        ``inputs``: ``Deployment.run`` returns the logits, ``Deployment.fields`` describe it.
        A backend that offers precision=int8 also takes ``calibration=`` (batches of training
        images of the inputs' shape) at that precision."""
        raise NotImplementedError


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Adds ``backend`` under its name; a second backend of another class under one name is an error."""
    known = _REGISTRY.get(backend.name)
    if known is not None and type(known) is not type(backend):
        raise ValueError(f"backend {backend.name!r} is registered already ({type(known).__name__})")
    _REGISTRY[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def job_autocast(spec: "JobSpec", device: torch.device) -> torch.autocast:
    """Autocast at the job's precision (off for fp32)."""
    return torch.autocast(device.type, dtype=spec.autocast_dtype, enabled=spec.autocast_dtype is not None)


def eager_predict(model: nn.Module, spec: "JobSpec", device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """Eager inference of a batch at the job's precision, without autograd."""
    autocast = job_autocast(spec, device)  # made once: the timed call only enters it

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return model(batch)
    return predict


def eager_run(model: nn.Module, inputs: torch.Tensor, spec: "JobSpec", device: torch.device) -> Callable[[], torch.Tensor]:
    """One eager inference call on ``inputs`` at the job's precision, without autograd: what every
    eager figure times."""
    return functools.partial(eager_predict(model, spec, device), inputs)


class Eager(Backend):
    """The ``nn.Module`` as written, at the job's precision (autocast), without autograd."""
    name, reference = "eager", True

    def prepare(self, model, inputs, spec, device, cache_dir) -> Deployment:
        return Deployment(eager_run(model, inputs, spec, device), predict=eager_predict(model, spec, device))


class Compile(Backend):
    """``torch.compile`` (Inductor); the first, compiling call is timed on its own."""
    name = "compile"

    def prepare(self, model, inputs, spec, device, cache_dir) -> Deployment:
        return compile_deployment(model, inputs, device, spec.autocast_dtype)


class OnnxRuntime(Backend):
    """The exported fp32 graph in an ONNX Runtime session, the export cached by ``export_key``."""
    name = "onnxruntime"

    def problems(self, precision: str, channels_last: bool) -> list[str]:
        if precision not in ("fp32", "int8") or channels_last:
            return ["backend=onnxruntime runs the exported fp32 graph, or its int8 quantization, in ONNX "
                    "Runtime's own layout: use precision=fp32 or int8, channels_last=false, with it"]
        return []

    def prepare(self, model, inputs, spec, device, cache_dir, calibration=None) -> Deployment:
        return onnxruntime_deployment(model, inputs, device, *cached_onnx_export(model, inputs, spec, cache_dir),
                                      calibration)


for _backend in (Eager(), Compile(), OnnxRuntime()):
    register_backend(_backend)

from bench import openvino_backend  # noqa: E402,F401 (registers backend=openvino; last: it imports this module)
