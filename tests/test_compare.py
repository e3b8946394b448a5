"""``python -m bench.compare``: stand-in rows whose raw per-call times differ by a known factor."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench import compare
from bench.compare import FASTER, NO_RAW, NOISE, SLOWER, RatioTest, ratio_test, verdict
from bench.store import ResultStore
from tests.conftest import ROOT
from tests.test_report import make_row

CALLS = 60


def times(seed: int, factor: float = 1.0, n: int = CALLS) -> list[float]:
    """``n`` per-call times (ms), lognormal around 10 ms, scaled by ``factor``."""
    return list(np.random.default_rng(seed).lognormal(math.log(10.0), 0.1, n) * factor)


def timed(model: str, raw: list[float] | None, **extra):
    """An ok profile row of ``model`` whose raw times are ``raw`` (None: an older row without them)."""
    median = float(np.median(raw)) if raw else 10.0
    return make_row(model, latency_ms_median=median, latency_times_ms=raw or [], **extra)


def write(root, rows) -> None:
    store = ResultStore(root)
    for row in rows:
        store.write(row)


@pytest.fixture()
def two_dirs(tmp_path):
    """OLD and NEW over the same grid: one configuration 1.5x slower (under load, more memory, and
    its training step slower too), one 0.7x (more accurate), one redrawn from the same
    distribution, one only in OLD, one only in NEW, one NEW row without raw times."""
    old, new = tmp_path / "old", tmp_path / "new"
    write(old, [timed("slowed", times(1), train_latency_ms_median=50.0, train_latency_times_ms=times(11, 5)),
                timed("sped", times(2), miou=0.40), timed("same", times(3)), timed("gone", times(4)),
                timed("untimed", times(5))])
    write(new, [timed("slowed", times(101, 1.5), contention_busy=True, peak_memory_mib=120.0,
                      train_latency_ms_median=75.0, train_latency_times_ms=times(111, 7.5)),
                timed("sped", times(102, 0.7), miou=0.43), timed("same", times(103)), timed("added", times(104)),
                timed("untimed", None)])
    (old / "rows" / "broken").mkdir()
    (old / "rows" / "broken" / "truncated.json").write_text('{"job_key": "x", "stat')
    return old, new


def test_known_factors_are_slower_faster_and_within_noise(two_dirs, capsys):
    old, new = two_dirs
    assert compare.main([str(old), str(new)]) == 0
    out, err = capsys.readouterr()
    frame = pd.read_csv(new / "compare" / "compare.csv")
    assert list(frame["model"]) == ["slowed", "sped", "same", "untimed"]  # regressions first
    assert list(frame["verdict"]) == [SLOWER, FASTER, NOISE, NO_RAW]
    slowed, sped, same, untimed = (frame.iloc[i] for i in range(4))
    assert 1.35 < slowed["ratio_low"] < 1.5 < slowed["ratio_high"] < 1.65 and slowed["p_value"] < 1e-6
    assert 0.63 < sped["ratio_low"] < 0.7 < sped["ratio_high"] < 0.77
    assert same["ratio_low"] < 1 < same["ratio_high"] and same["p_value"] > 0.05
    assert math.isnan(untimed["ratio_low"]) and untimed["new_calls"] == 0
    assert slowed["train_verdict"] == SLOWER and 1.35 < slowed["train_ratio"] < 1.65
    assert slowed["load"] == "new under load" and pd.isna(same["load"])  # an empty cell
    assert slowed["peak_memory_change_mib"] == pytest.approx(20.0)
    assert slowed["peak_memory_ratio"] == pytest.approx(1.2)
    assert sped["miou_change_points"] == pytest.approx(3.0) and math.isnan(same["miou_change_points"])
    # The printed table: the same order, the counts of unmatched configurations, the skipped file.
    printed = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert [word for word in printed if word in set(frame["model"])] == list(frame["model"])
    assert "only in OLD: 1, only in NEW: 1" in out
    assert "only in OLD: gone (pretrained_backbone=False) synthetic cpu 96x128" in out
    assert "only in NEW: added" in out and NO_RAW in out and "new under load" in out
    assert "truncated.json" in err and err.startswith("warning: skipped unreadable row file")
    markdown = (new / "compare" / "compare.md").read_text()
    assert markdown.index("| slowed |") < markdown.index("| sped |") < markdown.index("| untimed |")


def test_ratio_test_and_verdict_alone():
    base = times(7)
    test = ratio_test(base, [t * 1.5 for t in base])
    assert test.ratio == pytest.approx(1.5) and test.low < 1.5 < test.high and test.n_old == test.n_new == CALLS
    assert ratio_test(base, [t * 1.5 for t in base]) == test  # a fixed seed: the same interval every time
    assert ratio_test(base[:4], base) is None
    assert verdict(None, raw_times=False) == NO_RAW
    assert verdict(RatioTest(1.05, 1.01, 1.09, 0.001, 60, 60), tolerance=0.02) == NOISE  # reaches inside 1.02
    assert verdict(RatioTest(1.05, 1.01, 1.09, 0.001, 60, 60), tolerance=0.005) == SLOWER
    assert verdict(RatioTest(1.05, 1.03, 1.07, 0.001, 60, 60)) == NOISE  # the default band: run-to-run drift
    assert verdict(RatioTest(1.25, 1.15, 1.35, 0.2, 60, 60)) == NOISE    # not significant
    assert verdict(RatioTest(1.25, 1.15, 1.35, 0.01, 60, 60)) == SLOWER
    assert verdict(RatioTest(0.8, 0.75, 0.87, 0.01, 60, 60)) == FASTER


def test_pairing_ignores_job_key_and_keeps_the_newest_ok_row():
    old = compare.configurations([timed("a", times(1), job_key="k-old"), timed("b", times(2)),
                                  make_row("b", status="oom")])
    older = timed("a", times(3), job_key="k-new")
    newer = timed("a", times(4), job_key="k-new")
    new = compare.configurations([newer, older, timed("c", times(5))])  # by finished_at, not list order
    pairing = compare.pair(old, new)
    assert [(o.model, n.run_id) for o, n in pairing.pairs] == [("a", newer.run_id)]
    assert [r.model for r in pairing.only_old] == ["b"] and [r.model for r in pairing.only_new] == ["c"]


def test_two_filters_on_one_directory(tmp_path, capsys):
    write(tmp_path, [timed(m, times(i), torch_version="2.14.1+cu130") for i, m in enumerate(["fcn8s", "segnet"])])
    write(tmp_path, [timed(m, times(10 + i, f), torch_version="2.15.0") for i, (m, f) in enumerate([("fcn8s", 1.5),
                                                                                                ("segnet", 2.0)])])
    write(tmp_path, [timed("segnet", times(20, 3.0), torch_version="2.15.0", host="other")])  # newer, filtered out
    rc = compare.main([str(tmp_path), "--old-filter", "torch_version=2.14.1", "--new-filter", "torch_version=2.15.0",
                       "--new-filter", "host=alpha"])
    out = capsys.readouterr().out
    frame = pd.read_csv(tmp_path / "compare" / "compare.csv")
    assert rc == 0 and list(frame["model"]) == ["segnet", "fcn8s"]  # the larger regression first
    assert set(frame["verdict"]) == {SLOWER} and frame["ratio"].between([1.8, 1.35], [2.2, 1.65]).all()
    assert "only in OLD: 0, only in NEW: 0" in out and "torch_version=2.14.1" in out
    with pytest.raises(SystemExit) as exit_info:
        compare.main([str(tmp_path), "--old-filter", "no_such_column=1", "--new-filter", "host=alpha"])
    assert exit_info.value.code == 2 and "no row column" in capsys.readouterr().err


def test_fail_on_regression_sets_the_exit_code(tmp_path):
    old, slow, steady = tmp_path / "old", tmp_path / "slow", tmp_path / "steady"
    write(old, [timed("fcn8s", times(1))])
    write(slow, [timed("fcn8s", times(2, 1.5))])
    write(steady, [timed("fcn8s", times(3))])

    failed = subprocess.run([sys.executable, "-m", "bench.compare", str(old), str(slow), "--fail-on-regression"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 1 and "slower" in failed.stdout     # main's return value is the exit code
    # The other two cases call main in-process: its return value is what the command line exits with.
    assert compare.main([str(old), str(slow)]) == 0
    assert compare.main([str(old), str(steady), "--fail-on-regression"]) == 0


def test_user_strings_are_escaped_in_markdown_and_neutralised_in_csv(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root, seed in ((old, 1), (new, 2)):
        write(root, [timed("<b>x</b>|y", times(seed), job_key="markup"),
                     timed("=HYPERLINK(1)", times(seed + 10), job_key="formula")])
    assert compare.main([str(old), str(new)]) == 0
    markdown = (new / "compare" / "compare.md").read_text()
    assert "| &lt;b&gt;x&lt;/b&gt;\\|y |" in markdown and "<b>" not in markdown
    csv_text = (new / "compare" / "compare.csv").read_text()
    assert "\"'=HYPERLINK(1)\"" in csv_text and "\"=HYPERLINK" not in csv_text


def test_the_machines_own_ceilings_are_set_beside_the_verdicts():
    old = [timed("a", times(1), peak_flops_per_s=100e9, memory_bandwidth_bytes_per_s=50e9),
           timed("b", times(2), peak_flops_per_s=100e9, memory_bandwidth_bytes_per_s=50e9)]
    new = [timed("a", times(3), peak_flops_per_s=110e9, memory_bandwidth_bytes_per_s=65e9),
           timed("b", times(4), peak_flops_per_s=110e9, memory_bandwidth_bytes_per_s=65e9)]
    line = compare.machine_line(list(zip(old, new)))
    assert line.startswith("the machine itself, NEW/OLD: matmul peak 1.10, memory bandwidth 1.30")
    assert compare.machine_line([(timed("a", times(1)), timed("a", times(2)))]) == ""
