"""The throughput scenario's batch search, and a profile row's scenario, precision and load fields."""
import pytest
from hydra import compose, initialize_config_dir

from bench.jobspec import ConfigError, JobSpec, job_key
from bench.runner import run_job
from bench.scenarios import throughput_search
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]


class OutOfMemory(RuntimeError):
    pass


def _rates(table):
    def images_per_s(batch):
        if table[batch] == "oom":
            raise OutOfMemory(f"batch {batch}")
        return table[batch]
    return images_per_s


def test_the_search_doubles_the_batch_until_images_per_s_stop_improving():
    search = throughput_search(_rates({1: 100.0, 2: 180.0, 4: 300.0, 8: 310.0, 16: 900.0}), 1, 64, 0.05,
                               lambda exc: isinstance(exc, OutOfMemory))
    assert search.best_batch == 8 and search.best_images_per_s == 310.0  # the best seen, though its gain was small
    assert [step["batch"] for step in search.steps] == [1, 2, 4, 8]       # 8 gained under 5%: the plateau


def test_the_search_stops_at_an_out_of_memory_batch_and_keeps_the_best_before_it():
    search = throughput_search(_rates({2: 50.0, 4: 90.0, 8: "oom"}), 2, 64, 0.05,
                               lambda exc: isinstance(exc, OutOfMemory))
    assert search.best_batch == 4 and search.steps[-1] == {"batch": 8, "status": "oom"}


def test_the_search_stops_at_the_largest_batch_allowed_and_raises_other_errors():
    assert throughput_search(_rates({1: 1.0, 2: 2.0, 4: 4.0}), 1, 4, 0.05, lambda exc: False).best_batch == 4
    with pytest.raises(OutOfMemory):
        throughput_search(_rates({1: 1.0, 2: "oom"}), 1, 4, 0.05, lambda exc: False)


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", [*TINY, *FAST_TIMING, "resolution=16x16", "measure.energy_min_seconds=0.1",
                                  "measure.energy_idle_seconds=0.05", f"results_dir={tmp_path / 'results'}",
                                  *overrides])


def test_the_scenario_is_keyed_apart_and_the_latency_scenario_keeps_old_keys(tmp_path):
    latency = job_key(_config(tmp_path))
    assert job_key(_config(tmp_path, "scenario=latency")) == latency
    throughput = job_key(_config(tmp_path, "scenario=throughput"))
    assert throughput != latency and "_throughput_" in throughput
    with pytest.raises(ConfigError, match="scenario=throughput searches the batch size on the eager model"):
        JobSpec.from_config(_config(tmp_path, "scenario=throughput", "backend=onnxruntime"))


def test_a_throughput_row_records_its_search_and_is_profiled_at_the_best_batch(tmp_path):
    cfg = _config(tmp_path, "scenario=throughput", "measure.throughput_max_batch=4", "measure.train_step=false")
    row = ResultStore(tmp_path / "results").read(run_job(cfg, tmp_path / "run").row_file)
    assert row.status == "ok" and row.scenario == "throughput"
    tried = [step["batch"] for step in row.throughput_search]
    assert tried[0] == 1 and set(tried) <= {1, 2, 4}
    best = max(row.throughput_search, key=lambda step: step["images_per_s"])
    assert row.batch_size_used == best["batch"] and row.batch_size == 1


def test_a_profile_row_states_its_precision_its_load_its_cold_start_and_why_energy_is_missing(tmp_path):
    row = ResultStore(tmp_path / "results").read(run_job(_config(tmp_path), tmp_path / "run").row_file)
    assert row.latency_ms_ci_low <= row.latency_ms_median <= row.latency_ms_ci_high
    assert row.latency_precision_reached in (True, False) and row.latency_stop_reason
    assert len(row.latency_times_ms) == row.latency_iters
    assert row.contention_busy in (True, False) and row.contention_note
    assert 0 <= row.contention_other_cpu_fraction <= 1
    assert row.build_seconds > 0 and row.first_call_ms > 0
    assert row.energy_available is not None
    if not row.energy_available:  # this machine has no RAPL
        assert row.energy_unavailable_reason and row.energy_joules_per_image is None
