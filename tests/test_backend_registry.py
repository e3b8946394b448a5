"""Backends are a registry (bench/backends.py): eager, compile and ONNX Runtime are three
registrations, and a fourth, here a toy in a plugin module, runs end to end without touching any
other module: config check, job key, profile (parity first), row and report."""
import pytest
from hydra import compose, initialize_config_dir

from bench.backends import UnknownBackendError, backend_names, get_backend
from bench.jobspec import ConfigError, job_key
from bench.report.frame import rows_to_frame
from bench.report.tables import jobs_table
from bench.runner import run_job
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT

PLUGINS = "plugins=[tests.plugin_models,tests.plugin_backend]"
TINY = ["model=custom", "model.name=tiny_segmenter", PLUGINS, "resolution=16x16", "threads=1",
        "measure.train_step=false", "measure.energy=false", *FAST_TIMING]


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", [*TINY, f"results_dir={tmp_path / 'results'}", *overrides])


def test_the_built_in_backends_are_registrations():
    assert {"eager", "compile", "onnxruntime"} <= set(backend_names())
    assert get_backend("eager").reference and not get_backend("onnxruntime").reference
    with pytest.raises(UnknownBackendError, match="choose one of eager, compile, onnxruntime"):
        get_backend("tensorrt")


def test_a_plugin_backend_runs_end_to_end(tmp_path):
    cfg = _config(tmp_path, "backend=counting")
    key = job_key(cfg)
    assert key.split("_b1_")[1].startswith("fp32_counting")      # its own job, named in the key
    outcome = run_job(cfg, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    row = ResultStore(tmp_path / "results").read(outcome.row_file)
    assert row.backend == "counting" and row.backend_runtime.startswith("counting")
    assert row.parity_argmax_agreement == 1.0 and row.latency_ms_median > 0
    from tests import plugin_backend
    assert len(plugin_backend.CALLS) >= row.latency_iters     # the timed calls went through it
    table = jobs_table(rows_to_frame([row]))
    assert table.loc[0, "backend"] == "counting" and table.loc[0, "status"] == "ok"


def test_a_plugin_backends_own_limits_and_name_are_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="backend=counting runs fp32 only"):
        job_key(_config(tmp_path, "backend=counting", "precision=bf16"))
    with pytest.raises(ConfigError, match="unknown backend 'countin'; choose one of .*counting"):
        job_key(_config(tmp_path, "backend=countin"))
