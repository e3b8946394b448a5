"""precision=int8 (#24 items 2 and 5): ONNX Runtime's static quantization of the exported graph, or
NNCF's of the graph OpenVINO reads from it, calibrated on the first training images; the calibration
set is recorded and keyed; other backends refuse it before any work; with trained weights the
accuracy gate judges it on data."""
import re
from importlib.metadata import version

import pytest
from hydra import compose, initialize_config_dir

from bench.jobspec import ConfigError, config_problems, job_key
from bench.runner import run_job
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT, Bench

TINY = ["model=fcn_basic", "resolution=32x32", "threads=1", "measure.train_step=false", "measure.energy=false",
        "dataset.sizes.train=4", "dataset.sizes.val=4", "parity.accuracy_images=4", *FAST_TIMING]


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", [*TINY, f"results_dir={tmp_path / 'results'}", *overrides])


def _row(tmp_path, *overrides):
    outcome = run_job(_config(tmp_path, *overrides), tmp_path / "run")
    return outcome, ResultStore(tmp_path / "results").read(outcome.row_file)


#: Each int8 backend: its quantized file's ending and what its row's exporter names.
INT8_BACKENDS = [("onnxruntime", r"\.int8-c3-[0-9a-f]{10}\.onnx", "quantize_static"),
                 ("openvino", r"\.int8-c3-[0-9a-f]{10}\.xml", f"nncf {version('nncf')} quantize: preset performance")]


@pytest.mark.parametrize("backend, cached, quantizer", INT8_BACKENDS, ids=[backend for backend, *_ in INT8_BACKENDS])
def test_int8_is_quantized_from_the_export_calibrated_on_training_images(tmp_path, backend, cached, quantizer):
    outcome, row = _row(tmp_path, f"backend={backend}", "precision=int8", "quantization.calibration_images=3")
    assert outcome.status == "ok", outcome.error
    assert quantizer in row.backend_exporter and row.quantize_seconds > 0
    assert (row.calibration_images, row.calibration_split) == (3, "train")   # 3 batches of 1
    assert re.search(cached + "$", row.export_file) and row.latency_ms_median > 0
    assert row.parity_threshold is None and 0 <= row.parity_argmax_agreement <= 1   # recorded, not enforced
    assert row.gate_gated is False and "random weights" in row.gate_note
    again = run_job(_config(tmp_path, f"backend={backend}", "precision=int8", "quantization.calibration_images=3",
                            "force=true"), tmp_path / "again")
    again_row = ResultStore(tmp_path / "results").read(again.row_file)
    assert again_row.quantize_seconds is None and again_row.export_file == row.export_file   # the cached file


def test_the_calibration_set_is_part_of_an_int8_jobs_key_only(tmp_path):
    int8 = ("backend=onnxruntime", "precision=int8")
    assert job_key(_config(tmp_path, *int8)) != job_key(_config(tmp_path, *int8, "quantization.calibration_images=8"))
    assert job_key(_config(tmp_path, "backend=onnxruntime")) == \
        job_key(_config(tmp_path, "backend=onnxruntime", "quantization.calibration_images=8"))


@pytest.mark.parametrize("backend", ["eager", "compile"])
def test_a_backend_without_int8_refuses_it_before_any_work(tmp_path, backend):
    problems = config_problems(_config(tmp_path, f"backend={backend}", "precision=int8"))
    assert any(f"backend={backend} does not offer: use backend=onnxruntime or backend=openvino" in p
               for p in problems), problems
    with pytest.raises(ConfigError, match="does not offer"):
        job_key(_config(tmp_path, f"backend={backend}", "precision=int8"))


def test_a_sweep_across_precisions_leaves_out_what_a_backend_does_not_offer_and_runs_the_rest(bench: Bench):
    """``backend=... precision=fp32,int8`` means the combinations that exist; alone, eager int8 is refused."""
    result = bench("model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]", "resolution=16x16",
                   "measure.train_step=false", "backend=eager", "precision=fp32,int8", multirun=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 combination(s) left out, as their backend does not offer them" in result.stdout
    assert "(precision=int8): precision=int8 is a quantized deployment that backend=eager does not offer" \
        in result.stdout
    assert "sweep finished: 2 jobs: 1 ok, 1 unoffered" in result.stdout
    [row] = bench.rows().rows
    assert row.precision == "fp32" and row.status == "ok"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_trained_int8_is_judged_by_the_accuracy_gate(tmp_path, backend):
    outcome, row = _row(tmp_path, f"backend={backend}", "precision=int8", "quantization.calibration_images=4",
                        "mode=accuracy", "train.max_steps=3", "train.batch_size=2", "train.save_checkpoint=false",
                        "train.eval_every_steps=null")
    assert row.gate_gated and row.gate_images == 4 and row.gate_miou_reference is not None
    assert outcome.status == ("ok" if row.gate_ratio >= 0.99 else "mismatch")
