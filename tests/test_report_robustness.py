"""Odd row files cost a warning, not the report or a job's resume check; user strings stay inert
in the Markdown and CSV files the report writes."""
from __future__ import annotations

import csv
import json
import logging

import orjson
import pandas as pd
import pytest

from bench.report import write_report
from bench.report.__main__ import main as report_main
from bench.schema import SCHEMA_VERSION, ResultRow, RowFormatError
from bench.store import ResultStore
from tests.test_report import make_row

#: Valid JSON, but no row: each file's content (from a good row) and the reason its warning gives.
ODD = {
    "list.json": (lambda good: [], "not a JSON object: []"),
    "height.json": (lambda good: {**good, "height": "abc"}, 'height is "abc", not an integer or null'),
    "finished.json": (lambda good: {**good, "finished_at": None}, "finished_at is null, not a string"),
}


def _with_odd_files(root, model: str = "fcn8s") -> tuple[ResultStore, str, dict]:
    """A store with one ok row and the ODD files beside it, in its job's folder."""
    store = ResultStore(root)
    good = store.write(make_row(model))
    for name, (content, _) in ODD.items():
        (good.parent / name).write_text(json.dumps(content(json.loads(good.read_text()))))
    return store, good.parent.name, {good.parent / name: reason for name, (_, reason) in ODD.items()}


def _warnings(caplog) -> list[str]:
    """The warning lines logged since the last call (on stderr for a user: bench/logs.py)."""
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return [line for line in lines if line.startswith("warning:")]


def test_the_report_warns_about_each_odd_row_file_and_builds_the_page(tmp_path, caplog):
    _, _, odd = _with_odd_files(tmp_path)
    ResultStore(tmp_path).write(make_row("segnet_basic"))
    for _ in range(2):  # the second report reads the consolidated table: the odd files are still named
        report_main(["--results-dir", str(tmp_path)])
        warnings = _warnings(caplog)
        assert len(warnings) == len(odd)
        for path, reason in odd.items():
            [line] = [w for w in warnings if str(path) in w]
            assert f"RowFormatError: {reason}" in line
    page = (tmp_path / "report" / "index.html").read_text()
    assert "3 incomplete or corrupt row files were skipped" in page and "segnet_basic" in page


def test_the_resume_check_skips_odd_row_files_with_a_warning(tmp_path, caplog):
    store, key, odd = _with_odd_files(tmp_path)
    assert store.has_ok_row(key) and store.has_ok_row(key)  # a job looks twice: before and after its claim
    warnings = _warnings(caplog)
    assert len(warnings) == len(odd) and all(any(str(p) in w for w in warnings) for p in odd)
    loaded = store.load(key)
    assert len(loaded.rows) == 1 and {p: r.split(": ", 1)[1] for p, r in loaded.problems.items()} == odd


#: The two ways a stored row is read: from parsed JSON, and from a file's bytes (msgspec's check of
#: the declared types first, ``from_dict`` for any file it rejects). They must agree.
READERS = {"from_dict": ResultRow.from_dict, "from_json": lambda data: ResultRow.from_json(json.dumps(data).encode())}


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
@pytest.mark.parametrize("change, reason", [
    ({"job_key": None}, "job_key is null, not a string"),
    ({"run_id": 7}, "run_id is 7, not a string"),
    ({"channels_last": 1}, "channels_last is 1, not true or false"),
    ({"batch_size": True}, "batch_size is true, not an integer or null"),
    ({"latency_ms_median": "1.5"}, 'latency_ms_median is "1.5", not a number or null'),
    ({"per_class_iou": []}, "per_class_iou is [], not an object"),
    ({"schema_version": 99}, f"schema_version 99: this segbench reads 1 to {SCHEMA_VERSION}"),
])
def test_a_field_of_another_type_or_an_unknown_schema_is_no_row(read, change, reason):
    good = make_row("fcn8s").to_dict()
    with pytest.raises(RowFormatError, match=f"^{reason}$".replace("[", r"\[").replace("]", r"\]")):
        read({**good, **change})
    missing = {k: v for k, v in good.items() if k != "status"}
    with pytest.raises(RowFormatError, match="^status missing$"):
        read(missing)
    # What JSON gives for a stored number is fine: 2 for 2.0, null where the field allows it; a key
    # that is no column (a plug-in instrument's) is kept.
    row = read({**good, "latency_ms_median": 2, "miou": None, "checkpoint": None, "extra": 1})
    assert row.latency_ms_median == 2 and row.checkpoint is None and row.extra == {"extra": 1}


def test_both_readers_give_the_same_row(monkeypatch):
    """A row as segbench writes it (nested lists and objects, nulls), from its file's bytes and from
    its parsed JSON: the same values, the same types (a float column read as a float either way
    where the file holds a float), the same columns in the same order."""
    stored = json.loads(json.dumps(make_row("fcn8s").to_dict()))
    stored |= {"latency_times_ms": [1.5, 2.0, 2.5], "learning_curve": [{"step": 1, "miou": 0.1}],
               "growth_params": [10, 20], "per_class_iou": {"road": 0.5}, "miou": None}
    from_dict = READERS["from_dict"](stored)
    with monkeypatch.context() as patch:   # the file is read by msgspec's check alone
        patch.setattr(ResultRow, "from_dict", None)
        from_json = READERS["from_json"](stored)
    assert list(from_json.__dict__.items()) == list(from_dict.__dict__.items())
    assert [type(v) for v in from_json.__dict__.values()] == [type(v) for v in from_dict.__dict__.values()]


def test_an_integer_wider_than_64_bits_is_no_row_to_either_reader():
    """orjson reads a wider integer as a float, which an integer column refuses: both readers skip
    such a file with the same reason (the frame's integer columns could not hold it either)."""
    text = json.dumps({**make_row("fcn8s").to_dict(), "batch_size": 2**64}).encode()
    for read in (lambda data: ResultRow.from_dict(orjson.loads(data)), ResultRow.from_json):
        with pytest.raises(RowFormatError, match=r"^batch_size is 1\.8446744073709552e\+19, not an integer"):
            read(text)


@pytest.mark.parametrize("read", READERS.values(), ids=READERS)
def test_a_row_written_before_the_instruments_reads_with_their_new_columns_empty(read):
    """Schema 7 added columns the instruments' records hold; a schema 6 file lacks them."""
    added = ["train_timer", "contention_window_seconds", "contention_cpus"]
    old = {k: v for k, v in make_row("fcn8s").to_dict().items() if k not in added}
    row = read({**old, "schema_version": 6})
    assert row.schema_version == 6 and row.extra == {}
    assert row.train_timer == "" and row.contention_window_seconds is None and row.contention_cpus is None
    assert row.latency_ms_median == old["latency_ms_median"]


MODEL, CLASS = "<b>x</b>|y", "=cmd|' /C calc'!A0"


def test_user_strings_are_inert_in_markdown_and_csv_and_numbers_stay_numbers(tmp_path):
    store = ResultStore(tmp_path)
    store.write(make_row(MODEL, miou=0.5, job_key="odd-names", dataset=CLASS, per_class_iou={CLASS: 0.5},
                         final_loss=-2.5))
    failed = make_row(MODEL, status="oom")  # make_row leaves a failed row's extras out
    failed.job_key, failed.dataset = "odd-names-oom", CLASS
    store.write(failed)
    write_report(tmp_path)
    report = tmp_path / "report"
    for name in ("headline.md", "accuracy.md", "failures.md"):
        text = (report / name).read_text()
        assert "&lt;b&gt;x&lt;/b&gt;\\|y" in text and "<b>" not in text, name
        # The data set's cell (the headline: its caption, where a column every line shares goes), pipe escaped.
        assert ("dataset =cmd\\|' /C calc'!A0" if name == "headline.md" else "| =cmd\\|' /C calc'!A0 |") in text, name

    for name in ("summary.csv", "history.csv"):
        with open(tmp_path / name, newline="") as f:
            cells = [cell for line in csv.reader(f) for cell in line]
        assert not [c for c in cells if c[:1] in ("=", "@", "+", "\t", "\r")], name
        frame = pd.read_csv(tmp_path / name)
        assert set(frame["model"]) == {MODEL}                       # not a formula: unchanged
        assert set(frame["dataset"]) == {"'" + CLASS}
        assert f"iou.{CLASS}" in frame.columns                      # a class's column name starts with iou.
        assert frame["final_loss"].dtype == float and frame["final_loss"].min() == -2.5  # negative, a number
        assert frame["latency_ms_median"].dtype == float
