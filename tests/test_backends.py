"""Deployment backends: parity against eager, the ONNX export cache, efficiency arithmetic, and
the best-deployment view, checked on fcn_basic at 32x32."""
from pathlib import Path

import onnx
import pytest
import torch
from hydra import compose, initialize_config_dir

import bench.measure.peak as peak_module
from bench.backends import export_key, ort_providers, weights_digest
from bench.jobspec import ConfigError, JobSpec, job_key
from bench.measure.latency import TimingConfig
from bench.measure.parity import parity
from bench.measure.peak import achieved_flops_per_s, cached_peak, efficiency, matmul_flops, peak_fraction
from bench.profile import profile_model
from bench.records import flatten
from bench.report.deployment import best_deployment_table
from bench.report.frame import rows_to_frame
from bench.schema import ResultRow
from models import create_model
from bench.schema import FAILED_STATUSES
from tests.conftest import InProcess

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
FAST = TimingConfig(warmup_iters=1, min_run_time=0.0, min_iters=2, max_iters=2)
CLASSES = 11


def job_config(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", ["model=fcn_basic", "resolution=32x32", *overrides])


def seeded_fcn(seed: int = 0):
    """fcn_basic as the runner builds it for ``seed`` (same weights, so the same export key)."""
    torch.manual_seed(seed)
    return create_model("fcn_basic", num_classes=CLASSES, in_channels=3)


def negate_outputs(path: Path) -> None:
    """Alter an exported graph: its logits negated, so every pixel's argmax becomes its argmin."""
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    name = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f"{name}_raw" if out == name else out for out in node.output]
    graph.node.append(onnx.helper.make_node("Neg", [f"{name}_raw"], [name]))
    onnx.save(graph_model, str(path))


def test_parity_counts_the_pixels_whose_class_changes():
    reference = torch.randn(2, 4, 3, 5)
    reference[:, 0] += 10                      # class 0 wins at every pixel
    candidate = reference + 1e-6               # noise that changes no prediction
    candidate[0, 1, 0, :3] += 100              # 3 of the 30 pixels now predict class 1
    check = parity(reference, candidate)
    assert check.argmax_agreement == pytest.approx(27 / 30)
    assert check.max_abs_diff == pytest.approx(100, rel=1e-4)
    assert parity(reference, reference.clone()).argmax_agreement == 1.0
    with pytest.raises(ValueError, match="cannot be compared"):
        parity(reference, reference[:, :, :2])


def test_achieved_flops_and_fraction_of_peak():
    # 1 GFLOP per image, batch 4, 20 ms: 4 GFLOP / 0.02 s = 200 GFLOP/s; half of a 400 GFLOP/s peak.
    assert achieved_flops_per_s(1e9, 4, 20.0) == pytest.approx(2e11)
    assert peak_fraction(2e11, 4e11) == pytest.approx(0.5)
    ceilings = {"flops_per_s": 4e11, "method": "m", "bytes_per_s": 1e10, "bandwidth_method": "b"}
    fields = flatten(efficiency(1e9, 4, 20.0, ceilings))
    assert fields == {"achieved_flops_per_s": pytest.approx(2e11), "peak_flops_per_s": 4e11,
                      "peak_fraction": pytest.approx(0.5), "peak_method": "m", "peak_exceeded": False,
                      "peak_note": "", "memory_bandwidth_bytes_per_s": 1e10, "bandwidth_method": "b"}
    beaten = efficiency(1e9, 4, 5.0, ceilings)  # 800 GFLOP/s against a 400 GFLOP/s matmul
    assert beaten.peak_exceeded and "Winograd" in beaten.peak_note
    assert matmul_flops(2048) == 2 * 2048 ** 3
    with pytest.raises(ValueError):
        achieved_flops_per_s(1e9, 1, 0.0)


def test_the_ceilings_are_the_best_block_of_torch_utils_benchmark(monkeypatch):
    class FakeTimer:
        def __init__(self, stmt, globals, num_threads):
            assert num_threads == torch.get_num_threads()  # Timer's default is one thread

        def blocked_autorange(self, min_run_time):
            return type("Measurement", (), {"times": [0.030, 0.010, 0.020]})()

    import torch.utils.benchmark
    monkeypatch.setattr(torch.utils.benchmark, "Timer", FakeTimer)
    peak = peak_module.measure_peak(CPU, torch.float32, size=256)
    assert peak["flops_per_s"] == pytest.approx(matmul_flops(256) / 0.010)  # the best block, not the median
    assert "best of 3 blocks" in peak["method"]
    bandwidth = peak_module.measure_bandwidth(CPU, elements=1000)
    assert bandwidth["bytes_per_s"] == pytest.approx(3 * 1000 * 4 / 0.010)


def test_the_real_ceilings_are_positive_and_say_how_they_were_measured():
    peak = peak_module.measure_peak(CPU, torch.float32, size=128, min_run_time=0.05)
    bandwidth = peak_module.measure_bandwidth(CPU, elements=1 << 16, min_run_time=0.05)
    assert peak["flops_per_s"] > 0 and peak["method"].startswith("128x128 float32 matmul, best of")
    assert bandwidth["bytes_per_s"] > 0 and bandwidth["method"].startswith("triad a = b + 2c")


def test_peak_is_measured_once_per_environment_cached_and_never_lowered(tmp_path, monkeypatch):
    measured = iter([5e10, 4e10, 9e10])
    monkeypatch.setattr(peak_module, "measure_peak", lambda *a: {"flops_per_s": next(measured), "method": "m"})
    monkeypatch.setattr(peak_module, "measure_bandwidth", lambda *a: {"bytes_per_s": 1e10, "method": "b"})
    first = cached_peak(tmp_path, CPU, "test cpu", torch.float32, size=256)
    assert first["flops_per_s"] == 5e10 and cached_peak(tmp_path, CPU, "test cpu", torch.float32, size=256) == first
    # A model beat it: measured again; a slower (busier) second measurement does not lower it ...
    assert cached_peak(tmp_path, CPU, "test cpu", torch.float32, size=256, remeasure=True)["flops_per_s"] == 5e10
    # ... a faster one raises it, and another precision is another peak.
    assert cached_peak(tmp_path, CPU, "test cpu", torch.float32, size=256, remeasure=True)["flops_per_s"] == 9e10
    with pytest.raises(StopIteration):
        cached_peak(tmp_path, CPU, "test cpu", torch.bfloat16, size=256)


def test_backend_is_part_of_the_job_key_and_compile_true_means_backend_compile():
    keys = {b: job_key(job_config(f"backend={b}")) for b in ("eager", "compile", "onnxruntime")}
    assert len(set(keys.values())) == 3 and "_onnxruntime_" in keys["onnxruntime"]
    assert job_key(job_config("compile=true")) == keys["compile"]
    assert JobSpec.from_config(job_config("compile=true")).backend == "compile"
    with pytest.raises(ConfigError, match="backend=compile"):
        JobSpec.from_config(job_config("compile=true", "backend=onnxruntime"))
    with pytest.raises(ConfigError, match="eager, compile, onnxruntime"):
        JobSpec.from_config(job_config("backend=tensorrt"))
    with pytest.raises(ConfigError, match="precision=fp32"):
        JobSpec.from_config(job_config("backend=onnxruntime", "precision=bf16"))


def test_execution_providers_prefer_tensorrt_then_cuda_and_say_what_to_install():
    assert ort_providers(CPU, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    gpu = torch.device("cuda")
    offered = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert ort_providers(gpu, offered) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        ort_providers(gpu, ["CPUExecutionProvider"])


def test_export_key_follows_the_weights():
    model = seeded_fcn()
    shape = (1, 3, 32, 32)
    key = export_key("fcn_basic", {}, shape, weights_digest(model))
    assert key == export_key("fcn_basic", {}, shape, weights_digest(seeded_fcn()))
    with torch.no_grad():
        next(model.parameters())[0].add_(1.0)
    assert key != export_key("fcn_basic", {}, shape, weights_digest(model))
    assert key != export_key("fcn_basic", {}, (2, 3, 32, 32), weights_digest(seeded_fcn()))


def test_onnxruntime_matches_eager_reuses_its_export_and_an_altered_export_is_a_mismatch(tmp_path):
    spec = JobSpec.from_config(job_config("backend=onnxruntime"))

    def profile():
        return profile_model(seeded_fcn(), spec, CLASSES, 3, CPU, FAST, 1, cache_dir=tmp_path,
                             peak_flops=False, train_cfg=job_config().train)

    first = profile()
    assert "status" not in first                          # ok
    assert first["parity_argmax_agreement"] == 1.0 and first["parity_max_abs_diff"] < 1e-4
    assert first["backend_provider"] == "CPUExecutionProvider"
    assert first["backend_runtime"].startswith("onnxruntime ") and first["export_seconds"] > 0
    assert first["latency_ms_median"] > 0 and first["activation_peak_mib"] >= 0
    assert "train_latency_ms_median" not in first         # the training step is eager's only
    export = Path(first["export_file"])
    assert export.parent == tmp_path / "onnx" and export.exists()
    assert list(export.parent.iterdir()) == [export]      # no temporary file left behind

    second = profile()
    assert second["export_seconds"] is None and second["export_file"] == str(export)

    negate_outputs(export)
    altered = profile()
    assert altered["status"] == "mismatch" and "not timed" in altered["error"]
    assert altered["parity_argmax_agreement"] < 0.5
    assert "latency_ms_median" not in altered and altered["flops_per_image"] == first["flops_per_image"]


def _row(backend: str, status: str, latency: float | None, **extra) -> ResultRow:
    return ResultRow(job_key=f"fcn_basic_{backend}", run_id=backend, status=status, model="fcn_basic",
                     device="cpu", threads=2, height=192, width=256, batch_size=1, precision="fp32",
                     backend=backend, latency_ms_median=latency, finished_at=backend, **extra)


def test_best_deployment_is_the_fastest_backend_that_passed_parity():
    rows = [_row("eager", "ok", 10.0),
            _row("onnxruntime", "ok", 4.0, parity_argmax_agreement=1.0, parity_max_abs_diff=1e-6,
                 achieved_flops_per_s=5e10, peak_fraction=0.25),
            _row("compile", "mismatch", None, parity_argmax_agreement=0.5)]
    table = best_deployment_table(rows_to_frame(rows))
    assert len(table) == 1
    line = table.iloc[0]
    assert line["fastest faithful deployment"] == "onnxruntime fp32"
    assert line["speed-up over eager fp32 [95% CI]"] == "2.50x (no interval: under 5 raw times a side)"
    assert line["GFLOP/s (of peak)"] == "50 (25%)"
    assert "compile fp32: mismatch" in line["all variants"]


def test_the_speed_up_has_an_interval_from_both_rows_raw_calls():
    eager_calls = [10.0 + 0.1 * (i % 5) for i in range(30)]        # median 10.2
    onnx_calls = [call / 2.5 for call in eager_calls]              # every call 2.5 times faster
    rows = [_row("eager", "ok", 10.2, latency_times_ms=eager_calls),
            _row("onnxruntime", "ok", 4.08, latency_times_ms=onnx_calls, parity_argmax_agreement=1.0)]
    [speed_up] = best_deployment_table(rows_to_frame(rows))["speed-up over eager fp32 [95% CI]"]
    ratio, interval = speed_up.split(" ", 1)
    low, high = (float(x) for x in interval.strip("[]").split(", "))
    assert ratio == "2.50x" and low <= 2.5 <= high and high - low < 0.1


def test_a_mismatch_is_recorded_with_its_figures_and_does_not_fail_the_sweep(in_process: InProcess):
    # The export the job will look for, altered before the job runs.
    model = seeded_fcn()
    key = export_key("fcn_basic", {}, (1, 3, 32, 32), weights_digest(model))
    path = in_process.results / "cache" / "onnx" / f"{key}.onnx"
    path.parent.mkdir(parents=True)
    torch.onnx.export(model.eval(), (torch.randn(1, 3, 32, 32),), dynamo=True).save(str(path))
    negate_outputs(path)

    # The two jobs of a backend=eager,onnxruntime sweep; a status outside FAILED_STATUSES fails no sweep.
    outcomes = [in_process("model=fcn_basic", "resolution=32x32", f"backend={backend}", "measure.train_step=false")
                for backend in ("eager", "onnxruntime")]
    assert [o.status for o in outcomes] == ["ok", "mismatch"] and "mismatch" not in FAILED_STATUSES
    rows = {row.backend: row for row in in_process.rows().rows}
    assert rows["eager"].status == "ok" and rows["eager"].parity_argmax_agreement is None
    mismatch = rows["onnxruntime"]
    assert mismatch.status == "mismatch" and mismatch.parity_threshold == 0.999
    assert mismatch.parity_argmax_agreement < 0.5 and mismatch.latency_ms_median is None
    assert "parity.min_argmax_agreement" in mismatch.error


def test_make_bench_backend_rows_pair_with_its_eager_rows():
    """sweep=backends' rows are compared with sweep=resolutions' eager rows of the same setting."""
    def grid(name: str):
        with initialize_config_dir(str(ROOT / "conf"), version_base=None):
            cfg = compose("config", [f"sweep={name}"], return_hydra_config=True)
        return cfg, {key: str(value).split(",") for key, value in cfg.hydra.sweeper.params.items()}

    backends, backend_grid = grid("backends")
    eager, eager_grid = grid("resolutions")
    assert backend_grid["backend"] == ["onnxruntime"] and eager.backend == "eager"
    assert set(backend_grid["model"]) <= set(eager_grid["model"])
    assert (backends.mode, backends.threads, backends.batch_size) == (eager.mode, eager.threads, eager.batch_size)
    assert eager_grid["resolution"] == [backends.resolution]
    assert backends.measure == eager.measure


@pytest.mark.slow
def test_compile_backend_matches_eager_and_times_its_compile_apart(tmp_path):
    # slow: with a cold Inductor cache it compiles for tens of seconds on a 2-core CPU, even at 32x32.
    spec = JobSpec.from_config(job_config("backend=compile"))
    fields = profile_model(seeded_fcn(), spec, CLASSES, 3, CPU, FAST, 1, cache_dir=tmp_path,
                           peak_flops=False, train_cfg=job_config().train)
    assert "status" not in fields and fields["parity_argmax_agreement"] == 1.0
    assert fields["compile_seconds"] > 0 and fields["backend_exporter"].startswith("torch.compile")
    assert fields["latency_ms_median"] > 0 and fields["peak_memory_mib"] > 0
    assert "train_latency_ms_median" not in fields
