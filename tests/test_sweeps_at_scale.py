"""Many workers on one results directory, unwritable and full disks, Ctrl-C, and validation
before any work: each case as a user meets it, through the CLI where the CLI is what they see
(exit codes, the last line printed, launchers, signals, several workers), else in-process."""
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from bench import atomic, lease
from bench.jobspec import job_key
from bench.schema import FAILED_STATUSES, ResultRow
from tests.conftest import FAST_TIMING, ROOT, Bench, InProcess

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]
#: Six accuracy jobs that each train a little while (two 0.2 s steps), so workers overlap.
SIX_TRAINING_JOBS = ["model=custom", "model.name=slow_trainer", "plugins=[tests.plugin_models]",
                     "+model.delay=0.2", "mode=accuracy", "train.max_steps=2", "train.batch_size=1",
                     "dataset.sizes.train=2", "dataset.sizes.val=2", "measure.train_step=false",
                     "seed=0,1,2", "resolution=16x16,16x24"]


def _start(bench: Bench, *overrides: str, multirun: bool = True) -> subprocess.Popen:
    command = [sys.executable, "-m", "bench", *(["-m"] if multirun else []), f"results_dir={bench.results}",
               *FAST_TIMING, *overrides]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"})


@pytest.mark.parametrize("workers", [3])
def test_workers_started_together_run_each_job_once(bench: Bench, workers: int):
    processes = [_start(bench, *SIX_TRAINING_JOBS) for _ in range(workers)]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, out + err
    loaded = bench.rows()
    assert loaded.unreadable == []
    per_key = Counter(row.job_key for row in loaded.rows)
    assert len(per_key) == 6 and set(per_key.values()) == {1}
    assert {row.status for row in loaded.rows} == {"ok"}
    checkpoints = sorted(bench.results.rglob("checkpoint.pt"))
    assert len(checkpoints) == 6
    assert sorted(row.checkpoint for row in loaded.rows) == [str(path) for path in checkpoints]
    # Every worker had a sweep directory of its own, and every job was accounted for once.
    assert len(list(bench.results.glob("multirun/*/*"))) == workers
    statuses = Counter(json.loads(p.read_text())["status"] for p in bench.results.rglob("outcome.json"))
    assert statuses["ok"] == 6 and statuses["ok"] + statuses["skipped"] + statuses["claimed"] == 6 * workers
    assert not list(bench.results.glob("leases/*")) and not list(bench.results.rglob("*.partial"))


def test_a_lease_whose_owner_was_killed_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bench.lease import claim; "
         f"held = claim({str(tmp_path)!r}, 'job', 600, 30); print(type(held).__name__, flush=True); time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "Lease"
    busy = lease.claim(tmp_path, "job", 600, 30)
    assert isinstance(busy, lease.Owner) and busy.pid == holder.pid
    holder.kill()
    holder.wait()
    taken = lease.claim(tmp_path, "job", 600, 30)
    assert isinstance(taken, lease.Lease) and taken.owner.pid == os.getpid()
    taken.release()
    assert not list(tmp_path.glob("leases/*"))


def test_a_lease_from_another_host_is_stale_only_once_its_heartbeat_stops(tmp_path):
    path = tmp_path / lease.LEASES_DIR / "job.lease"
    path.parent.mkdir()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started_at": "", "token": "t"}))
    assert isinstance(lease.claim(tmp_path, "job", 600, 30), lease.Owner)  # fresh: left alone
    old = time.time() - 601
    os.utime(path, (old, old))
    held = lease.claim(tmp_path, "job", 600, 30)
    assert isinstance(held, lease.Lease)
    held.release()


def test_a_held_lease_keeps_its_heartbeat(tmp_path):
    held = lease.claim(tmp_path, "job", 600, 0.05)
    old = time.time() - 100
    os.utime(held.path, (old, old))
    deadline = time.monotonic() + 10
    while held.path.stat().st_mtime < old + 50 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held.path.stat().st_mtime > old + 50
    held.release()


def test_a_job_another_worker_holds_is_left_to_it(in_process: InProcess, caplog):
    caplog.set_level(logging.INFO)
    held = lease.claim(in_process.results, job_key(in_process.config(*TINY, "resolution=16x16")), 600, 30)
    outcome = in_process(*TINY, "resolution=16x16")
    held.release()
    assert outcome.status == "claimed" and outcome.status not in FAILED_STATUSES   # the CLI exits 0
    assert "[claimed]" in caplog.text and f"pid {os.getpid()}" in caplog.text      # who holds it, on the console
    assert in_process.rows().rows == []


def test_an_unwritable_results_directory_stops_before_any_job(bench: Bench, tmp_path):
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    result = bench(*TINY, "resolution=16x16,16x24", f"results_dir={not_a_directory / 'results'}",
                   multirun=True)
    assert result.returncode == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [f"error: cannot write results under {not_a_directory / 'results'}: [Errno 20] "
                     f"Not a directory: '{not_a_directory / 'results' / 'rows'}'"]


def test_a_full_disk_at_the_row_keeps_the_measurement_in_an_error_line(in_process: InProcess, tmp_path, monkeypatch,
                                                                        caplog):
    """A stand-in for a disk that fills up during the job: the row file gets 100 bytes, then ENOSPC."""
    def full_disk(partial):
        partial.write_text("x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    real_write = atomic.atomic_write
    monkeypatch.setattr(atomic, "atomic_write", lambda path, write: real_write(
        path, full_disk if path.suffix == ".json" else write))
    outcome = in_process(*TINY, "resolution=16x16")
    assert outcome.status == "unsaved" and "No space left on device" in outcome.error
    [record] = [r for r in caplog.records if r.getMessage().startswith("[unsaved]")]
    assert record.levelno == logging.ERROR                # stderr, and the job's log file where it can
    lines = record.getMessage().splitlines()
    [note] = [i for i, line in enumerate(lines) if line.startswith("[unsaved]")]
    assert f"save it as {outcome.row_file}" in lines[note]
    row = ResultRow.from_dict(json.loads(lines[note + 1]))
    assert row.status == "ok" and row.latency_ms_median > 0 and row.flops_per_image > 0
    assert not list(tmp_path.rglob("*.partial")) and not list(tmp_path.rglob("rows/*/*.json"))


def test_torch_reporting_a_full_disk_as_a_zip_error_is_named_disk_full(tmp_path, monkeypatch):
    def zip_writer_failure(partial):
        partial.write_bytes(b"\0" * 1024)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")

    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 4096})())
    target = tmp_path / "checkpoint.pt"
    with pytest.raises(OSError, match=f"could not write {target}: No space left on device") as raised:
        atomic.atomic_write(target, zip_writer_failure)
    assert raised.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


def test_ctrl_c_records_the_running_job_prints_the_summary_and_exits_130(bench: Bench):
    sweep = ["model=custom", "model.name=slow_trainer", "plugins=[tests.plugin_models]", "+model.delay=0.5",
             "mode=accuracy", "train.max_steps=60", "train.batch_size=1", "dataset.sizes.train=2",
             "dataset.sizes.val=2", "resolution=16x16,16x24,16x32"]
    process = _start(bench, *sweep)
    deadline = time.monotonic() + 120
    while not list(bench.results.glob("leases/*.lease")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # inside the first job's training
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    [row] = bench.rows().rows
    assert row.status == "interrupted" and row.width == 16 and "Ctrl-C" in row.error
    assert "sweep finished: 1 jobs: 1 interrupted" in out
    assert "interrupted by Ctrl-C" in err.splitlines()[-1]
    assert not list(bench.results.glob("leases/*"))


def test_cpu_allocation_failure_is_oom_and_halving_the_batch_applies(bench: Bench, in_process: InProcess):
    """Also the CLI's exit code and last line for a failed single job (the other jobs run in-process)."""
    injector = ["model=custom", "model.name=fault_injector", "plugins=[tests.plugin_models]",
                "+model.oom_above_batch=1", "+model.real_cpu_oom=true", "batch_size=4", "resolution=16x16"]
    failed = bench(*injector)
    assert failed.returncode == 1
    [row] = bench.rows().rows
    assert row.status == "oom" and "DefaultCPUAllocator: can't allocate memory" in row.error
    assert failed.stderr.splitlines()[-1].startswith("[oom] RuntimeError")  # the last line says why

    assert in_process.results == bench.results                                 # the same directory
    halved = in_process(*injector, "oom_policy=halve")
    assert halved.status == "ok", halved.error
    ok = [r for r in in_process.rows().rows if r.status == "ok"]
    assert len(ok) == 1 and ok[0].batch_size == 4 and ok[0].batch_size_used == 1


def test_every_invalid_value_is_reported_at_once_before_any_work(in_process: InProcess):
    outcome = in_process(*TINY, "resolution=16x16", "threads=0", "train.lr=nan", "mode=accuracy")
    assert outcome.status == "invalid" and outcome.status in FAILED_STATUSES   # the CLI exits 1
    assert "2 invalid values" in outcome.error
    assert "threads must be at least 1, got 0" in outcome.error
    assert "train.lr must be a number, got nan" in outcome.error
    assert in_process.rows().rows == []


def test_an_unknown_eval_split_is_refused_before_training(bench: Bench):
    """The CLI's exit code and last line for an invalid single job, with no traceback."""
    result = bench(*TINY, "resolution=16x16", "mode=accuracy", "eval_split=bogus")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ("[invalid] unknown eval_split 'bogus'; choose one of "
                                              "train, val, test")
    assert "Traceback" not in result.stderr
    assert not list(bench.results.rglob("checkpoint.pt")) and bench.rows().rows == []


def test_a_missing_validation_split_fails_before_training(in_process: InProcess, tmp_path):
    from tests.test_data import make_camvid
    root = make_camvid(tmp_path / "CamVid")
    (root / "val" / "0001TP_000001.png").unlink()
    outcome = in_process(*TINY, "resolution=16x16", "mode=accuracy", "dataset=camvid", f"dataset.root={root}",
                         "train.max_steps=1000", "train.batch_size=1")
    assert outcome.status == "error"
    [row] = in_process.rows().rows
    assert row.status == "error" and "1 file(s) of the val split are missing" in row.error
    assert row.train_steps is None
    assert not list(in_process.results.rglob("checkpoint.pt"))


def test_default_threads_are_explicit_so_launchers_agree(bench: Bench, in_process: InProcess):
    """joblib's workers start torch with one thread; ``threads=null`` must not follow that."""
    parallel = bench(*TINY, "resolution=16x16", "hydra/launcher=local_parallel", multirun=True)
    assert parallel.returncode == 0, parallel.stdout + parallel.stderr
    [row] = bench.rows().rows
    assert row.threads == len(os.sched_getaffinity(0)) and row.config["threads"] is None
    assert in_process.results == bench.results
    assert in_process(*TINY, "resolution=16x16").status == "skipped"  # the same grid point, run without a launcher
