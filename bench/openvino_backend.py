"""``backend=openvino``: the ONNX export of ``backend=onnxruntime`` (the same cached file, by the
same ``export_key``) read by OpenVINO and compiled for its CPU plugin, with torch's thread count
and fp32 inference precision.

The precision is asked for explicitly: on a CPU with bf16 units (AVX512-BF16, AMX) OpenVINO's CPU
plugin runs an fp32 graph in bf16 unless told otherwise, which would change the logits, and the
latency, without the row saying so.

OpenVINO is imported when a job prepares this backend, not when segbench is imported.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.backends import ONNX_EXPORTER, Backend, Deployment, cached_onnx_export, register_backend
from bench.measure.memory import resident_peak_rise, tensor_bytes
from bench.measure.size import MIB

#: The OpenVINO device segbench compiles for (its GPU plugin is for Intel GPUs, not CUDA ones).
OPENVINO_DEVICE = "CPU"
OPENVINO_MEMORY_COUNTER = ("process peak resident set (VmHWM after /proc/self/clear_refs) during the "
                           "compiled model's first inference, when OpenVINO's CPU plugin allocates its "
                           "intermediate buffers: it exposes no memory statistics")


def compile_properties(threads: int) -> dict[str, Any]:
    """What the CPU plugin is told: set explicitly, so that neither a CPU's bf16 units nor a later
    OpenVINO's defaults change what an fp32 row runs."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {props.inference_num_threads(): threads,       # the eager rows' threads: equal cores
            hints.inference_precision(): ov.Type.f32,     # fp32 rows only (see OpenVino.problems)
            hints.performance_mode(): hints.PerformanceMode.LATENCY}  # one call at a time is timed


def readable(value: Any) -> Any:
    """A property read back from OpenVINO as a plain JSON value (``ov.Type.f32``: ``"f32"``)."""
    import openvino as ov

    if isinstance(value, (bool, int, float, str)):
        return value
    return value.to_string() if isinstance(value, ov.Type) else str(value)


def compiled_options(compiled: Any, asked: dict[str, Any]) -> dict[str, Any]:
    """The properties the compiled model reports for those asked for: what it runs with, which
    is what the row should say, even where OpenVINO adjusted a request."""
    return {name: readable(compiled.get_property(name)) for name in asked}


def first_inference(run: Callable[[], torch.Tensor], model: nn.Module,
                    inputs: torch.Tensor) -> dict[str, Any]:
    """Runs the compiled model's first inference, the one that allocates its buffers (later ones
    reuse them), and returns the row's memory figures and its duration."""
    resident = tensor_bytes([*model.parameters(), *model.buffers(), inputs])
    started = time.perf_counter()
    try:
        activation, counter = resident_peak_rise(run), OPENVINO_MEMORY_COUNTER
    except OSError as exc:  # no /proc/self (not Linux): the row says so, the job goes on
        activation, counter = None, f"not measured: {exc}"
        run()
    first_call_ms = (time.perf_counter() - started) * 1e3
    return {"peak_memory_mib": None if activation is None else (resident + activation) / MIB,
            "activation_peak_mib": None if activation is None else activation / MIB,
            "memory_counter": counter,
            "backend_first_call_ms": first_call_ms}


def openvino_deployment(model: nn.Module, inputs: torch.Tensor, export_path: Path) -> Deployment:
    """Reads the exported file, compiles it for OpenVINO's CPU plugin and runs it once."""
    from importlib.metadata import version

    import openvino as ov

    asked = compile_properties(torch.get_num_threads())
    started = time.perf_counter()
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(export_path)), OPENVINO_DEVICE, asked)
    load_seconds = time.perf_counter() - started

    request = compiled.create_infer_request()
    # Copied once into the request's own input buffer (as the ORT backend prebuilds its feed): the
    # timed call only runs, and no array of ours has to outlive this function for OpenVINO's sake.
    request.get_input_tensor().data[...] = inputs.detach().cpu().numpy()

    def run() -> torch.Tensor:
        return torch.from_numpy(request.infer()[0])   # infer() copies the outputs out of its buffer

    def predict(batch: torch.Tensor) -> torch.Tensor:
        # The compiled model's own request, so that run()'s input tensor stays in place.
        return torch.from_numpy(compiled(batch.detach().cpu().contiguous().numpy())[0])

    return Deployment(run, predict=predict, fields={
        **first_inference(run, model, inputs),
        "backend_exporter": f"{ONNX_EXPORTER}, torch {torch.__version__}",
        "backend_runtime": f"openvino {version('openvino')}",
        "backend_provider": OPENVINO_DEVICE,
        "backend_provider_options": compiled_options(compiled, asked),
        "export_file": str(export_path),
        "backend_load_seconds": load_seconds,
    })


class OpenVino(Backend):
    """The exported fp32 graph compiled by OpenVINO for the CPU, the export shared with onnxruntime."""
    name = "openvino"

    def problems(self, precision: str, channels_last: bool) -> list[str]:
        if precision != "fp32" or channels_last:
            return ["backend=openvino runs the exported fp32 graph in OpenVINO's own layout (INT8, "
                    "through OpenVINO's quantization, comes later): use precision=fp32 "
                    "channels_last=false with it"]
        return []

    def prepare(self, model, inputs, spec, device, cache_dir) -> Deployment:
        if device.type != "cpu":
            raise RuntimeError(f"backend=openvino runs on the CPU here (OpenVINO's CPU plugin), not "
                               f"device={device.type}; use device=cpu with it")
        export_path, export_seconds = cached_onnx_export(model, inputs, spec, cache_dir)
        deployment = openvino_deployment(model, inputs, export_path)
        deployment.fields["export_seconds"] = export_seconds
        return deployment


register_backend(OpenVino())
