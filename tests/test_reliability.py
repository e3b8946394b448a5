"""Issue 22's faults, each as a user meets it: names that are not file names, a sweep with one bad
value, a disk full at the final checkpoint, a hung worker, a timeout without isolation,
contradicting timing bounds, and workers sharing one host's CPUs."""
import errno
import json
import logging
import os
import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir

import bench.runner
import bench.train
from bench import lease, progress
from bench.jobspec import config_problems, job_key
from bench.paths import PathEscapeError, inside, safe_name
from bench.runner import run_job
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT, Bench

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]
TRAIN_TINY = [*TINY, "mode=accuracy", "train.max_steps=2", "train.batch_size=1", "dataset.sizes.train=2",
              "dataset.sizes.val=2", "measure.train_step=false"]


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", [*FAST_TIMING, "resolution=16x16", f"results_dir={tmp_path / 'results'}",
                                  *overrides])


def test_ordinary_names_are_their_own_file_names_and_others_are_made_safe_and_distinct():
    import models
    plugin_names = {"smp/unet", "../../escaped"}  # tests/plugin_models.py's, registered once imported
    assert all(safe_name(name) == name for name in set(models.list_models(include_aliases=True)) - plugin_names)
    unsafe = ["smp/unet", "smp-unet/", "../..", "..", ".hidden", "a\\b", "x" * 200]
    made = [safe_name(name) for name in unsafe]
    assert len(set(made)) == len(unsafe)
    assert all("/" not in name and "\\" not in name and not name.startswith(".") for name in made)
    with pytest.raises(PathEscapeError, match="outside"):
        inside("/tmp/results", "..", "elsewhere")


@pytest.mark.parametrize("name", ["smp/unet", "../../escaped"])
def test_a_model_whose_name_is_not_a_file_name_writes_one_row_under_results(tmp_path, name):
    cfg = _config(tmp_path, *TINY, f"model.name={name}")
    first = run_job(cfg, tmp_path / "results" / "run")
    assert first.status == "ok"
    written = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*.json"))
    assert all(path.parts[0] == "results" for path in written)
    [row_file] = (tmp_path / "results" / "rows").glob("*/*.json")  # where the report reads rows
    assert ResultStore(tmp_path / "results").read(row_file).model == name
    assert run_job(cfg, tmp_path / "results" / "run2").status == "skipped"


def test_every_job_of_a_sweep_is_checked_before_the_first_runs(bench: Bench):
    result = bench(*TINY, "resolution=16x16,abc", "threads=0,1", multirun=True)
    assert result.returncode == 1
    assert "problem(s) found before any job ran" in result.stderr
    assert "(resolution=abc threads=1): resolution must look like HEIGHTxWIDTH" in result.stderr
    assert "(resolution=16x16 threads=0): threads must be at least 1" in result.stderr
    assert not bench.results.joinpath("rows").exists() or not bench.rows().rows


def test_a_finished_training_whose_checkpoint_cannot_be_written_is_still_scored(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "checkpoint.pt"))

    monkeypatch.setattr(bench.train, "save_checkpoint", full_disk)
    outcome = run_job(_config(tmp_path, *TRAIN_TINY, "train.save_checkpoint=true"), tmp_path / "run")
    assert outcome.status == "unsaved" and "No space left on device" in outcome.error
    row = ResultStore(tmp_path / "results").read(outcome.row_file)
    assert row.status == "unsaved" and row.checkpoint is None and "No space left" in row.checkpoint_error
    assert row.miou is not None and row.train_steps == 2 and row.latency_ms_median > 0
    assert "[unsaved]" in caplog.text    # the job's summary line, on the console and in its log file


def _hang_then(tmp_path, monkeypatch, *, tick_while_waiting: bool):
    """A job that takes 1.5 s, ticking or silent, while another worker tries to claim it at 1.2 s."""
    cfg = _config(tmp_path, *TINY, "lease.stale_after_seconds=0.6", "lease.heartbeat_seconds=0.1")
    key, seen = job_key(cfg), {}

    def stages(*args):
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            if tick_while_waiting:
                progress.tick()
            if "other" not in seen and time.monotonic() > deadline - 0.3:
                seen["other"] = lease.claim(cfg.results_dir, key, 0.6, 0.1)
            time.sleep(0.05)

    monkeypatch.setattr(bench.runner, "_stages", stages)
    return run_job(cfg, tmp_path / "run"), seen["other"]


def test_a_hung_job_loses_its_claim_and_records_itself_abandoned(tmp_path, monkeypatch):
    outcome, other = _hang_then(tmp_path, monkeypatch, tick_while_waiting=False)
    assert isinstance(other, lease.Lease)  # the next worker took the silent job over
    assert outcome.status == "abandoned"
    [row] = ResultStore(tmp_path / "results").load().rows
    assert row.status == "abandoned" and "another worker took it over" in row.error
    assert other.held()  # the hung worker did not release the new owner's claim
    other.release()


def test_a_job_that_makes_progress_keeps_its_claim(tmp_path, monkeypatch):
    outcome, other = _hang_then(tmp_path, monkeypatch, tick_while_waiting=True)
    assert isinstance(other, lease.Owner) and other.pid == os.getpid()
    assert outcome.status == "ok"


def test_job_timeout_stops_a_job_without_isolate(tmp_path):
    # A 60 s training step against a 5 s limit: run in this process, the job would take over a minute.
    cfg = _config(tmp_path, "model=custom", "model.name=slow_trainer", "plugins=[tests.plugin_models]",
                  "+model.delay=60", *TRAIN_TINY[3:], "job_timeout=5")
    started = time.monotonic()
    outcome = run_job(cfg, tmp_path / "run")
    assert outcome.status == "timeout" and "job_timeout=5" in outcome.error
    assert time.monotonic() - started < 30


def test_timing_bounds_that_contradict_each_other_are_refused(tmp_path):
    problems = config_problems(_config(tmp_path, "measure.min_iters=50", "measure.max_iters=2"))
    assert problems == ["measure.min_iters=50 exceeds measure.max_iters=2; the latency loop stops at "
                        "max_iters: lower the first or raise the second"]
    assert config_problems(_config(tmp_path, "measure.min_iters=2", "measure.max_iters=2")) == []
    [problem] = config_problems(_config(tmp_path, "measure.min_iters=1", "measure.max_iters=1"))
    assert problem.startswith("measure.max_iters")           # one call has no spread: refused up front


def test_workers_sharing_a_host_are_warned_and_recorded(tmp_path, caplog):
    results = tmp_path / "results"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        (results / lease.LEASES_DIR).mkdir(parents=True)
        for pid, name in ((other.pid, "busy"), (int(dead.stdout), "dead")):
            owner = lease.Owner(lease.socket.gethostname(), pid, "2026-01-01T00:00:00+00:00", name)
            (results / lease.LEASES_DIR / f"{name}.lease").write_text(json.dumps(owner.__dict__))
        assert lease.other_workers_here(results) == 1  # the dead owner competes for nothing
        outcome = run_job(_config(tmp_path, *TINY, "threads=2"), tmp_path / "run")
    finally:
        other.kill()
    row = ResultStore(results).read(outcome.row_file)
    assert row.concurrent_workers == 1
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    if os.cpu_count() and len(os.sched_getaffinity(0)) < 4:  # 2 workers x 2 threads oversubscribe
        assert "1 other segbench worker(s) on this host" in warnings and "threads=" in warnings


def test_a_sweeps_bad_data_files_are_named_once_before_any_job(bench: Bench, tmp_path):
    from tests.test_data_check import SPLITS, break_four, make_folder
    root = make_folder(tmp_path / "data", count=4, splits=SPLITS)
    bad = break_four(root)
    result = bench(*TINY, "mode=accuracy", "dataset=folder", f"dataset.root={root}", "dataset.num_classes=3",
                   "eval_split=test", "resolution=16x16,16x24", multirun=True)
    assert result.returncode == 1 and "1 problem(s) found before any job ran" in result.stderr
    assert all(str(path) in result.stderr for path in bad), result.stderr
    assert result.stderr.count("4 image/mask pair(s)") == 1  # the same files at both resolutions: once
    assert not list(bench.results.glob("rows/*/*.json"))
