"""The report at scale: a headline that folds repeats, every job in an offline interactive table,
the consolidated row table, the cached data-set sample, and warnings for unreadable row files.
(How long 10,000 rows take is measured by benchmarks/report_at_scale.py, not here.)"""
from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest

from bench.report import load_frame, plots, sample, write_report
from bench.report import frame
from bench.report.frame import consolidated_path, read_new_rows, rows_to_frame
from bench.report.tables import headline
from bench.store import ResultStore
from tests.conftest import ROOT
from tests.test_report import make_row


def _seeds(model: str, latencies: list[float], mious: list[float]) -> list:
    rows = []
    for seed, (latency, miou) in enumerate(zip(latencies, mious)):
        row = make_row(model, miou=miou, seed=seed, latency_ms_median=latency)
        row.job_key, row.repeat_key = f"{model}-s{seed}", model
        rows.append(row)
    return rows


def test_headline_folds_repeats_into_one_line_with_an_interval():
    rows = _seeds("fcn8s", [10.0, 12.0, 14.0], [0.40, 0.42, 0.44]) + [make_row("segnet", status="oom")]
    frame = rows_to_frame(rows)
    [(_, table)] = headline(frame).groups
    assert list(table["model"]) == ["fcn8s", "segnet"]
    fcn = table.iloc[0]
    assert fcn["jobs ok"] == "3 of 3"
    # mean 12 ± 2, t(0.975, 2) = 4.303: 12 ± 4.97 -> 7.03 to 16.97, three significant figures
    assert fcn["latency/batch ms, median [95% CI] n"] == "12 [7.03, 17] n=3"
    assert fcn["mIoU (%)"].startswith("42 [37, 47] n=3 ⚠ not decision-grade")
    assert table.iloc[1]["jobs ok"] == "0 of 1" and table.iloc[1]["failed"] == "1 oom"


@pytest.fixture()
def many(tmp_path):
    """120 row files: six models at two resolutions over ten seeds (the figures stay cheap to draw)."""
    store = ResultStore(tmp_path)
    for seed in range(10):
        for m in range(6):
            for height, width in [(96, 128), (192, 256)]:
                row = make_row(f"model{m}", height, width, miou=0.3 + 0.01 * m + 0.001 * seed, seed=seed)
                row.job_key, row.repeat_key = f"{row.job_key}-s{seed}", f"model{m}-{height}x{width}"
                store.write(row)
    return tmp_path


def test_forked_readers_give_the_frame_one_reader_gives(many, monkeypatch):
    store = ResultStore(many)
    paths = store.row_files()
    one, loaded_by_one = read_new_rows(store, paths)
    monkeypatch.setattr(frame, "FILES_PER_READER", 40)            # 120 files: up to three readers
    several, loaded_by_several = read_new_rows(store, paths)
    assert sorted(loaded_by_several.files) == sorted(paths) == sorted(loaded_by_one.files)
    pd.testing.assert_frame_equal(several.sort_values("row_file", ignore_index=True),
                                  one.sort_values("row_file", ignore_index=True))


def test_every_job_is_in_an_interactive_table_that_needs_no_network(many):
    page = write_report(many).read_text()
    assert "new ITable(" in page                                   # itables' DataTables at work
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?https?:""", page)  # all inline
    everything, current, _ = load_frame(many)
    assert all(key in page for key in current["job_key"])          # no row left out (maxBytes=0)
    assert page.count('id="all-jobs"') == 1


def test_the_consolidated_table_equals_the_json_rows_and_follows_new_and_deleted_files(many):
    first, _, loaded = load_frame(many)
    assert len(loaded.files) == 120 and consolidated_path(many).exists()
    from_json = rows_to_frame(ResultStore(many).load().rows)
    pd.testing.assert_frame_equal(first.drop(columns=["row_file", "is_current"]), from_json)

    again, _, loaded = load_frame(many)
    assert loaded.files == []                                      # all from the table this time
    pd.testing.assert_frame_equal(first, again)

    store = ResultStore(many)
    new = store.write(make_row("newcomer", miou=0.9))
    gone = store.row_files()[0]
    gone.unlink()
    after, _, loaded = load_frame(many)
    assert loaded.files == [new]
    assert len(after) == 120 and "newcomer" in set(after["model"])
    assert f"{gone.parent.name}/{gone.name}" not in set(after["row_file"])
    assert f"{new.parent.name}/{new.name}" in set(after["row_file"])
    pd.testing.assert_frame_equal(after, load_frame(many)[0])      # as the next report reads it


def test_the_data_set_sample_is_drawn_once(many, monkeypatch):
    store = ResultStore(many)
    row = store.read(store.row_files()[0])
    row.config = {"dataset": {"name": "synthetic", "num_classes": 11, "seed": 0}}
    row.job_key, row.run_id = "sampled", "sampled"
    store.write(row)
    write_report(many)
    [cached] = (many / "cache").glob("dataset_sample_*.png")
    stamp = cached.stat().st_mtime_ns

    def must_not_draw(*args, **kwargs):
        raise AssertionError("the cached sample should have been used")

    monkeypatch.setattr(sample, "sample_figure", must_not_draw)
    store.write(make_row("another", miou=0.5))  # new rows: the figures are drawn again, the sample is not
    write_report(many)
    assert cached.stat().st_mtime_ns == stamp
    assert (many / "report" / "dataset_sample.png").read_bytes() == cached.read_bytes()


def test_the_report_and_its_data_set_sample_import_no_torch(many):
    """torch's import takes seconds, a tenth of a report on 10,000 rows: the report never needs it."""
    code = ("import sys; from bench.report import sample; from bench.report.build import write_report; "
            f"write_report({str(many)!r}); sample.sample_figure(({{'name': 'synthetic', 'seed': 0}}, (32, 48))); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_an_unreadable_row_file_is_a_warning_on_the_console(many):
    broken = many / "rows" / "broken" / "cut.json"
    broken.parent.mkdir()
    broken.write_text('{"job_key": "x", "sta')
    result = subprocess.run([sys.executable, "-m", "bench.report", "--results-dir", str(many)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert str(broken) in warning and "JSONDecodeError" in warning


#: The functions that build the figures (``plots._figure_builds`` calls them by these names).
FIGURE_FUNCTIONS = ("latency_memory_figure", "params_flops_figure", "accuracy_latency_figure", "scaling_figure",
                    "backend_latency_figure", "learning_curve_figure", "iou_heatmap_figures")


def _forbid_building(monkeypatch, names=FIGURE_FUNCTIONS):
    def must_not_build(*args, **kwargs):
        raise AssertionError("unchanged rows: the cached figures should have been used")
    for name in names:
        monkeypatch.setattr(plots, name, must_not_build)


def test_figures_are_built_once_per_set_of_the_rows_they_plot(many, monkeypatch):
    write_report(many)
    first = {p.name: p.read_bytes() for p in (many / "report").glob("*.png")}
    assert "accuracy_vs_latency.png" in first

    _forbid_building(monkeypatch)
    write_report(many)
    assert {p.name: p.read_bytes() for p in (many / "report").glob("*.png")} == first

    ResultStore(many).write(make_row("newcomer", miou=0.9))
    with pytest.raises(AssertionError, match="unchanged rows"):
        write_report(many)                       # a new model (new colours): the figures are built again

    # The report that reads a new row builds the figures, and the next report on the same rows reuses
    # them, even when the new row leaves a column empty (its own frame types it differently).
    monkeypatch.undo()
    ResultStore(many).write(make_row("latecomer", miou=0.8, latency_ms_median=None))
    write_report(many)
    _forbid_building(monkeypatch)
    write_report(many)

    ResultStore(many).row_files()[0].unlink()
    with pytest.raises(AssertionError, match="unchanged rows"):
        write_report(many)                       # a row file deleted: built again without it


def test_a_new_row_builds_again_only_the_figures_that_plot_it(many, monkeypatch):
    """A profile row of a known model (no accuracy): the accuracy figures' rows are as they were, so
    they come from the cache; the figures that plot latency, memory and size are built again."""
    write_report(many)
    ResultStore(many).write(make_row(ResultStore(many).load().rows[0].model))
    called = []

    def recording(name):
        real = getattr(plots, name)
        return lambda *args, **kwargs: called.append((name, *args[2:3])) or real(*args, **kwargs)
    for name in FIGURE_FUNCTIONS:
        monkeypatch.setattr(plots, name, recording(name))
    from bench.report import tasks
    monkeypatch.setattr(tasks, "workers_for", lambda work: 0)   # in this process, where the calls are seen
    write_report(many)
    assert sorted(called) == [("backend_latency_figure",), ("latency_memory_figure",), ("params_flops_figure",),
                              ("scaling_figure", "latency_ms_median"), ("scaling_figure", "peak_memory_mib")]


def test_the_benchmark_calls_a_target_met_only_where_the_whole_interval_is_under_it():
    """benchmarks/report_at_scale.py's verdict on seven runs: the median's 95% interval (of seven
    sorted runs, the first and the last) under, over or around the target; too few runs, no verdict."""
    from benchmarks.report_at_scale import verdict
    runs = [4.1, 3.9, 4.0, 4.2, 4.6, 3.95, 4.05]
    assert verdict(runs, 5.0).endswith("[95% interval 3.90, 4.60] n=7; target under 5 s: met")
    assert verdict(runs, 3.5).endswith("target under 3.5 s: missed")
    assert verdict(runs, 4.5).endswith("target under 4.5 s: inconclusive: the interval straddles it")
    assert verdict(runs, None) == "median 4.05 s [95% interval 3.90, 4.60] n=7"
    assert verdict(runs[:5], 5.0) == "median 4.10 s (n=5: too few runs for an interval, no verdict)"
