"""``backend=openvino``: the ONNX export of ``backend=onnxruntime`` (the same cached file, by the
same ``export_key``) read by OpenVINO and compiled for its CPU plugin, with torch's thread count
and fp32 inference precision. At precision=int8, the graph OpenVINO reads from that export is
first quantized by NNCF (OpenVINO's own post-training quantization), calibrated on the training
images the job draws for every int8 backend, and cached beside the export as OpenVINO IR.

The precision is asked for explicitly: on a CPU with bf16 units (AVX512-BF16, AMX) OpenVINO's CPU
plugin runs an fp32 graph in bf16 unless told otherwise, which would change the logits, and the
latency, without the row saying so. An int8 graph is compiled with the same f32 precision: its
quantized operations still run in int8 (the quantization nodes in the graph decide that), and the
operations NNCF left unquantized run in f32, not bf16.

OpenVINO and NNCF are imported when a job prepares this backend, not when segbench is imported.
"""
from __future__ import annotations

import os
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from bench.atomic import PARTIAL_SUFFIX, atomic_write
from bench.backends import (ONNX_EXPORTER, Backend, Deployment, cached_onnx_export, cached_quantization,
                            register_backend)
from bench.measure.memory import resident_peak_rise, tensor_bytes
from bench.measure.size import MIB

#: The OpenVINO device segbench compiles for (its GPU plugin is for Intel GPUs, not CUDA ones).
OPENVINO_DEVICE = "CPU"
OPENVINO_MEMORY_COUNTER = ("process peak resident set (VmHWM after /proc/self/clear_refs) during the "
                           "compiled model's first inference, when OpenVINO's CPU plugin allocates its "
                           "intermediate buffers: it exposes no memory statistics")


def compile_properties(threads: int) -> dict[str, Any]:
    """What the CPU plugin is told: set explicitly, so that neither a CPU's bf16 units nor a later
    OpenVINO's defaults change what a row runs."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    return {props.inference_num_threads(): threads,       # the eager rows' threads: equal cores
            hints.inference_precision(): ov.Type.f32,     # int8 graphs: the unquantized ops in f32
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


def save_ir(model: Any, xml_path: Path) -> None:
    """``model`` as OpenVINO IR: the graph's ``.xml`` and, beside it, its weights' ``.bin``, each
    written atomically and the ``.xml`` last, so that an ``.xml`` in the cache has its whole
    ``.bin``. Weights stay as NNCF left them (``save_model`` would otherwise turn f32 ones to f16)."""
    import openvino as ov

    # save_model takes only a name ending in .xml and puts the .bin beside it: both are saved in a
    # scratch folder and each moved into its partial file.
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.name}.",
                                     suffix=PARTIAL_SUFFIX) as scratch:
        saved = Path(scratch) / "model.xml"
        ov.save_model(model, str(saved), compress_to_fp16=False)
        atomic_write(xml_path.with_suffix(".bin"), lambda partial: os.replace(saved.with_suffix(".bin"), partial))
        atomic_write(xml_path, lambda partial: os.replace(saved, partial))


#: NNCF's preset for CNNs, named rather than left to a later NNCF's default.
NNCF_PRESET = "performance"


def quantizer(batches: int) -> str:
    """How an int8 row's graph was quantized and is run, for its ``backend_exporter``."""
    return (f"nncf {version('nncf')} quantize: preset {NNCF_PRESET} (symmetric int8: weights per channel, "
            f"MinMax; activations per tensor, mean of each batch's min and max), subset_size {batches} (every "
            "calibration batch), fast bias correction; compiled by OpenVINO for its CPU plugin with the row's "
            "threads, the ops left unquantized in f32")


def quantize_openvino(fp32_path: Path, int8_path: Path, calibration: list[torch.Tensor]) -> float:
    """NNCF's post-training int8 quantization of the exported graph as OpenVINO reads it, its
    ranges from ``calibration`` (batches of real images, the exported shape: each batch one of
    NNCF's samples); saved as OpenVINO IR; returns the seconds taken."""
    import nncf
    import openvino as ov
    from openvino_telemetry import Telemetry

    # NNCF reports every quantize call to Intel unless the user opted out, from a thread that forks a
    # process per event (each alive up to 3 s, into the timed window that follows): a benchmark
    # sends nothing. Telemetry() is the process's one instance, which NNCF's reports go through.
    Telemetry().consent = False
    started = time.perf_counter()
    quantized = nncf.quantize(ov.Core().read_model(str(fp32_path)),
                              nncf.Dataset([batch.detach().cpu().numpy() for batch in calibration]),
                              preset=nncf.QuantizationPreset(NNCF_PRESET), subset_size=len(calibration))
    save_ir(quantized, int8_path)
    return time.perf_counter() - started


def openvino_deployment(model: nn.Module, inputs: torch.Tensor, export_path: Path) -> Deployment:
    """Reads the exported (or quantized) file, compiles it for OpenVINO's CPU plugin and runs it once."""
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
        "backend_runtime": f"openvino {version('openvino')}",
        "backend_provider": OPENVINO_DEVICE,
        "backend_provider_options": compiled_options(compiled, asked),
        "export_file": str(export_path),
        "backend_load_seconds": load_seconds,
    })


class OpenVino(Backend):
    """The exported fp32 graph, or its NNCF int8 quantization, compiled by OpenVINO for the CPU, the
    export shared with onnxruntime."""
    name = "openvino"

    def problems(self, precision: str, channels_last: bool) -> list[str]:
        if precision not in ("fp32", "int8") or channels_last:
            return ["backend=openvino runs the exported fp32 graph, or its int8 quantization by NNCF, in "
                    "OpenVINO's own layout: use precision=fp32 or int8, channels_last=false, with it"]
        return []

    def prepare(self, model, inputs, spec, device, cache_dir, calibration=None) -> Deployment:
        if device.type != "cpu":
            raise RuntimeError(f"backend=openvino runs on the CPU here (OpenVINO's CPU plugin), not "
                               f"device={device.type}; use device=cpu with it")
        export_path, export_seconds = cached_onnx_export(model, inputs, spec, cache_dir)
        fields = {"backend_exporter": f"{ONNX_EXPORTER}, torch {torch.__version__}", "export_seconds": export_seconds}
        if calibration is not None:
            how = quantizer(len(calibration))
            export_path, fields["quantize_seconds"] = cached_quantization(
                export_path, calibration, ".xml", f"{how}; openvino {version('openvino')}", quantize_openvino)
            fields["backend_exporter"] += f"; {how}"
        deployment = openvino_deployment(model, inputs, export_path)
        deployment.fields.update(fields)
        return deployment


register_backend(OpenVino())
