"""backend=openvino (bench/openvino_backend.py): parity with eager, the ONNX export shared with
backend=onnxruntime, its int8 graph (NNCF's, cached), the settings it refuses, and what its rows
record; fcn_basic at 16x16 on one thread. The int8 job path and its accuracy gate: tests/test_int8.py."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import bench.backends as backends
import bench.openvino_backend as openvino_backend
from bench.atomic import PARTIAL_SUFFIX
from bench.backends import export_key, get_backend, weights_digest
from bench.jobspec import ConfigError, JobSpec, config_problems, job_key
from bench.measure.latency import TimingConfig
from bench.profile import profile_model
from models import create_model
from tests.conftest import ROOT
from tests.test_train import one_thread  # noqa: F401 (autouse)

CPU = torch.device("cpu")
FAST = TimingConfig(warmup_iters=1, min_run_time=0.0, min_iters=2, max_iters=2)
CLASSES = 11
SHAPE = (1, 3, 16, 16)


def job_config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", ["model=fcn_basic", "resolution=16x16", "threads=1",
                                  "backend=openvino", *overrides])


def seeded_fcn(seed: int = 0):
    """fcn_basic with the weights of ``seed``: the same export key on every call."""
    torch.manual_seed(seed)
    return create_model("fcn_basic", num_classes=CLASSES, in_channels=3).eval()


def prepare(backend: str, model, inputs, cache_dir):
    spec = JobSpec.from_config(job_config(f"backend={backend}"))
    return get_backend(backend).prepare(model, inputs, spec, CPU, cache_dir)


def test_openvino_matches_eager_and_its_row_says_how_it_ran(tmp_path):
    spec = JobSpec.from_config(job_config())
    row = profile_model(seeded_fcn(), spec, CLASSES, 3, CPU, FAST, 1, cache_dir=tmp_path,
                        peak_flops=False, train_cfg=job_config().train)
    assert "status" not in row, row.get("error")        # ok
    assert row["parity_argmax_agreement"] >= 0.999 and row["parity_max_abs_diff"] < 1e-4
    assert row["backend_runtime"].startswith("openvino ") and row["backend_provider"] == "CPU"
    # Read back from the compiled model: fp32 asked for (not the bf16 a CPU with AMX defaults to).
    assert row["backend_provider_options"] == {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32",
                                               "PERFORMANCE_HINT": "LATENCY"}
    assert row["backend_exporter"].startswith("torch.onnx.export(dynamo=True)")
    assert row["export_seconds"] > 0 and row["backend_load_seconds"] > 0 and row["backend_first_call_ms"] > 0
    assert row["memory_counter"] == openvino_backend.OPENVINO_MEMORY_COUNTER and row["activation_peak_mib"] >= 0
    assert row["latency_ms_median"] > 0 and "train_latency_ms_median" not in row


def test_the_onnxruntime_export_is_reused_not_exported_again(tmp_path, monkeypatch):
    model, inputs = seeded_fcn(), torch.randn(SHAPE)
    exported = prepare("onnxruntime", model, inputs, tmp_path).fields
    key = export_key("fcn_basic", {}, SHAPE, weights_digest(model))
    assert exported["export_file"] == str(tmp_path / "onnx" / f"{key}.onnx") and exported["export_seconds"] > 0

    def no_export(*args):
        raise AssertionError("exported again")
    monkeypatch.setattr(backends, "export_onnx", no_export)
    for _ in range(2):
        fields = prepare("openvino", seeded_fcn(), inputs, tmp_path).fields
        assert fields["export_seconds"] is None and fields["export_file"] == exported["export_file"]
    assert len(list((tmp_path / "onnx").iterdir())) == 1


def test_predict_gives_eagers_logits_for_another_batch(tmp_path):
    model, inputs, other = seeded_fcn(), torch.randn(SHAPE), torch.randn(SHAPE)
    deployment = prepare("openvino", model, inputs, tmp_path)
    with torch.inference_mode():
        expected, expected_other = model(inputs), model(other)
    assert torch.allclose(deployment.predict(other), expected_other, atol=1e-4)
    assert torch.allclose(deployment.run(), expected, atol=1e-4)   # predict left run's input in place


def test_int8_runs_nncfs_quantized_convolutions_in_int8_and_a_second_job_reuses_its_ir(tmp_path, monkeypatch):
    """The f32 precision hint leaves the quantized convolutions in int8 (it only keeps the rest
    out of bf16); the IR pair is cached beside the export and read again, not re-quantized."""
    import openvino as ov

    spec = JobSpec.from_config(job_config("precision=int8"))
    calibration = [torch.randn(SHAPE) for _ in range(2)]
    fields = get_backend("openvino").prepare(seeded_fcn(), torch.randn(SHAPE), spec, CPU, tmp_path,
                                             calibration=calibration).fields
    ir = Path(fields["export_file"])
    assert re.search(r"\.int8-c2-[0-9a-f]{10}\.xml$", ir.name) and ir.with_suffix(".bin").exists() and fields["quantize_seconds"] > 0
    assert not [p for p in (tmp_path / "onnx").iterdir() if p.name.endswith(PARTIAL_SUFFIX)]   # no scratch left
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(ir)), "CPU", openvino_backend.compile_properties(1))
    layers = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    convolutions = [info["runtimePrecision"].astype(str) for info in layers
                    if info["layerType"].astype(str) in ("Convolution", "Deconvolution")]
    assert convolutions and set(convolutions) <= {"i8", "u8"}, convolutions

    def no_quantize(*args):
        raise AssertionError("quantized again")
    monkeypatch.setattr(openvino_backend, "quantize_openvino", no_quantize)
    again = get_backend("openvino").prepare(seeded_fcn(), torch.randn(SHAPE), spec, CPU, tmp_path,
                                            calibration=calibration).fields
    assert again["quantize_seconds"] is None and again["export_file"] == str(ir) and again["export_seconds"] is None


def test_int8_is_offered():
    assert config_problems(job_config("precision=int8")) == []


@pytest.mark.parametrize("setting", ["precision=bf16", "channels_last=true"])
def test_refused_settings_are_config_problems_before_any_work(setting):
    cfg = job_config(setting)
    assert any("backend=openvino runs the exported fp32 graph, or its int8 quantization by NNCF" in p
               for p in config_problems(cfg))
    with pytest.raises(ConfigError, match="use precision=fp32 or int8, channels_last=false"):
        job_key(cfg)


def test_a_device_other_than_the_cpu_is_refused_before_the_export(tmp_path):
    spec = JobSpec.from_config(job_config())
    with pytest.raises(RuntimeError, match="runs on the CPU here"):
        get_backend("openvino").prepare(seeded_fcn(), torch.randn(SHAPE), spec, torch.device("cuda"), tmp_path)
    assert not (tmp_path / "onnx").exists()


def test_importing_segbench_does_not_import_openvino_or_nncf():
    check = ("import sys, bench.backends, bench.jobspec; "
             "assert not {'openvino', 'nncf'} & set(sys.modules), 'imported'")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
