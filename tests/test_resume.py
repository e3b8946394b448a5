"""Resumable training: a job killed part-way resumes from its last saved state and ends exactly
where an uninterrupted run ends; no partial file survives a failed save, a full disk included."""
import errno
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import bench.checkpoint as checkpoint
from bench.store import ResultStore
from conftest import FAST_TIMING, ROOT, InProcess

JOB = ["model=custom", "model.name=slow_trainer", "plugins=[tests.plugin_models]", "mode=accuracy",
       "resolution=16x16", "dataset.sizes.train=8", "dataset.sizes.val=4", "train.batch_size=2",
       "train.max_steps=24", "train.eval_every_steps=6", "train.checkpoint_every_steps=5",
       "measure.train_step=false", "threads=1"]


def ok_row(results):
    rows = [r for r in ResultStore(results).load().rows if r.status == "ok"]
    assert len(rows) == 1, [r.error for r in ResultStore(results).load().rows]
    return rows[0]


def kill_after_first_state(results) -> dict:
    """Start the job, SIGKILL it as soon as it has saved a training state; the state's progress."""
    command = [sys.executable, "-m", "bench", f"results_dir={results}", *FAST_TIMING, *JOB]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not list(results.glob(f"state/*/{checkpoint.STATE_NAME}")):
            assert process.poll() is None, "the job ended before it saved a training state"
            assert time.monotonic() < deadline, "no training state saved within 120 s"
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    state, = results.glob(f"state/*/{checkpoint.STATE_NAME}")
    return checkpoint.load_state(state)["progress"]


def test_a_killed_job_resumes_and_matches_an_uninterrupted_run(tmp_path):
    # Only the killed execution needs a process of its own; the other two run in this one.
    whole = InProcess(tmp_path / "whole")(*JOB)
    assert whole.status == "ok", whole.error
    expected = ok_row(tmp_path / "whole")
    assert expected.resumed_from_step is None and expected.resumptions == 0

    results = tmp_path / "killed"
    saved = kill_after_first_state(results)
    saved_step = saved["step"]
    assert 5 <= saved_step < 24 and saved_step % 5 == 0 and saved["stage_seconds"] > 0
    assert not ResultStore(results).load().rows   # killed: no row yet
    resumed = InProcess(results)(*JOB)
    assert resumed.status == "ok", resumed.error
    row = ok_row(results)

    assert row.resumed_from_step == saved_step and row.resumptions == 1
    assert row.train_steps == expected.train_steps == 24
    final = torch.load(row.checkpoint, weights_only=True)["state_dict"]
    uninterrupted = torch.load(expected.checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(final[name], uninterrupted[name]) for name in uninterrupted)
    assert row.miou == expected.miou and row.per_class_iou == expected.per_class_iou
    # Training time counts over both executions: each step sleeps 0.05 s, so 24 take at least 1.2 s.
    assert row.train_seconds >= 24 * 0.05
    drop_time = lambda curve: [{k: v for k, v in p.items() if k != "train_seconds"} for p in curve]  # noqa: E731
    assert drop_time(row.learning_curve) == drop_time(expected.learning_curve)
    # The state has served once the row holds the result; nothing partial anywhere.
    assert not (results / "state").exists() or not any((results / "state").iterdir())
    assert not list(results.rglob("*.partial"))


def test_a_failed_save_leaves_no_partial_file_and_names_the_file(tmp_path, monkeypatch):
    """A stand-in for a full disk: torch.save writes part of the file, then ENOSPC."""
    def full_disk(payload, path):
        with open(path, "wb") as handle:
            handle.write(b"\0" * 1024)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    target = tmp_path / "state" / checkpoint.STATE_NAME
    with pytest.raises(OSError, match=f"could not write {target}.*No space left") as raised:
        checkpoint.save_state({"progress": {}}, target)
    assert raised.value.errno == errno.ENOSPC
    assert not list(tmp_path.rglob("*.partial")) and not target.exists()


def test_a_corrupt_state_is_reported_with_what_to_do(tmp_path):
    state = tmp_path / checkpoint.STATE_NAME
    state.write_bytes(b"not a zip file")
    with pytest.raises(checkpoint.CheckpointError, match="delete it to start the training from step 0"):
        checkpoint.load_state(state)
    assert checkpoint.load_state(tmp_path / "absent.pt") is None


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path):
    torch.manual_seed(3)
    path = checkpoint.save_state({"rng": checkpoint.rng_states()}, tmp_path / checkpoint.STATE_NAME)
    expected = (torch.rand(3), np.random.rand(), random.random())
    checkpoint.restore_rng_states(checkpoint.load_state(path)["rng"])
    again = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]
