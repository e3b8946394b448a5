"""Figures drawn in parallel, each PNG redrawn only when what it plots changes (bench.report.drawing)."""
from __future__ import annotations

import gc
import multiprocessing
import os

import pytest

from bench.report import drawing, tasks, write_report
from bench.store import ResultStore
from tests.test_report import make_row


def _pngs(results):
    return {p.name for p in (results / "cache" / "figure_pngs").glob("*.png")}


def _records(results):
    return {p.name for p in (results / "cache" / "figure_builds").glob("*.json")}


def test_a_new_row_that_changes_no_plotted_value_redraws_no_figure(tmp_path):
    store = ResultStore(tmp_path)
    for i in range(12):
        store.write(make_row(f"model{i % 3}", 96 + 32 * (i // 3), 128, miou=0.3 + 0.01 * i))
    write_report(tmp_path)
    first = _pngs(tmp_path)
    assert "latency_vs_memory.png" in {p.name for p in (tmp_path / "report").glob("*.png")}
    assert any(name.startswith("latency_vs_memory_") for name in first)

    records = _records(tmp_path)
    failed = make_row("model0", 96, 128, status="failed")  # no figure plots a failed row
    failed.job_key, failed.run_id = "failed-job", "failed-run"
    store.write(failed)
    write_report(tmp_path)
    assert _pngs(tmp_path) == first                      # every PNG reused: no figure drawn again
    assert _records(tmp_path) == records                 # nor built again: each build's rows are as they were

    store.write(make_row("newcomer", 96, 128, miou=0.9))  # a new model: its point is drawn
    write_report(tmp_path)
    assert any(name.startswith("latency_vs_memory_") for name in _pngs(tmp_path) - first)


def _figure(ys=(1.0, 2.0), title="latency", ticks=None):
    from matplotlib.figure import Figure
    figure = Figure()
    ax = figure.add_subplot()
    ax.plot([1.0, 2.0], list(ys), marker="o")
    ax.set_title(title)
    if ticks:
        ax.set_xticks([1.0, 2.0], ticks)
    return figure


def test_the_fingerprint_follows_what_a_figure_shows_and_nothing_else():
    same = drawing.fingerprint(_figure())
    assert drawing.fingerprint(_figure()) == same                    # a figure built twice
    assert drawing.fingerprint(_figure(ys=(1.0, 2.5))) != same        # a point moved
    assert drawing.fingerprint(_figure(title="memory")) != same       # a title
    labelled = drawing.fingerprint(_figure(ticks=["96x128", "192x256"]))
    assert labelled != same                                           # fixed tick labels
    assert drawing.fingerprint(_figure(ticks=["96x128", "360x480"])) != labelled


def _fails():
    raise ValueError("figure broke")


def _pid():
    return os.getpid()


def test_tasks_run_in_forked_workers_and_a_failure_surfaces():
    if tasks.workers_for([_pid, _pid]) < 2:
        pytest.skip("one CPU or no fork: the tasks run in this process")
    pids = tasks.run_tasks([_pid, _pid]).result()
    assert os.getpid() not in pids
    with pytest.raises(ValueError, match="figure broke"):
        tasks.run_tasks([_pid, _fails]).result()


def test_two_pools_at_once_each_run_their_own_tasks():
    """The report starts its table tasks before its figure tasks and collects both afterwards."""
    if tasks.workers_for([_pid, _pid]) < 2:
        pytest.skip("one CPU or no fork: the tasks run in this process")
    first = tasks.run_tasks([lambda: "first a", lambda: "first b"])
    second = tasks.run_tasks([lambda: "second a", _pid, lambda: "second c"])
    assert second.result()[::2] == ["second a", "second c"]
    assert first.result() == ["first a", "first b"]


def test_workers_inherit_the_callers_objects_frozen_and_the_caller_stays_unfrozen():
    """Frozen objects are skipped by a worker's garbage collections, which would copy their pages."""
    if tasks.workers_for([_pid, _pid]) < 2:
        pytest.skip("one CPU or no fork: the tasks run in this process")
    before = gc.get_freeze_count()
    counts = tasks.run_tasks([gc.get_freeze_count, gc.get_freeze_count]).result()
    assert all(count > before for count in counts)
    assert gc.get_freeze_count() == before


def test_without_fork_the_tasks_run_in_this_process_when_asked(monkeypatch):
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert tasks.workers_for([_pid, _pid, _pid]) == 0
    ran = []
    pending = tasks.run_tasks([lambda: ran.append(1) or os.getpid()])
    assert ran == []                                     # nothing until the results are asked for
    assert pending.result() == [os.getpid()] and ran == [1]
    with pytest.raises(ValueError, match="figure broke"):
        tasks.run_tasks([_fails]).result()
