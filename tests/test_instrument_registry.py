"""Instruments are a registry (bench/instruments/): the built-in ones fill the row's columns by
one flattening (bench/records.py), a misspelt column fails at registration, and a plug-in
instrument runs end to end without touching any other module: config check, job key, row, report."""
from dataclasses import dataclass

import pytest
from hydra import compose, initialize_config_dir

from bench.instruments import Instrument, InstrumentError, instruments, register_instrument
from bench.jobspec import config_problems, job_key
from bench.measure.latency import summarize
from bench.records import column_names, flatten
from bench.report.frame import rows_to_frame
from bench.report.tables import jobs_table
from bench.runner import run_job
from bench.schema import ResultRow, UnknownColumnError, columns
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models,tests.plugin_instrument]",
        "resolution=16x16", "threads=1", "measure.train_step=false", "measure.energy=false", *FAST_TIMING]


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", [*TINY, f"results_dir={tmp_path / 'results'}", *overrides])


def test_records_flatten_by_prefix_and_declared_column_names():
    stats = summarize([3.0, 1.0, 2.0, 4.0, 5.0, 6.0], 2, "a timer")
    flat = flatten(stats, "train_")
    assert flat["train_latency_ms_median"] == 3.5 and flat["train_warmup_iters"] == 2
    assert flat["train_timer"] == "a timer" and flat["train_latency_times_ms"] == [3.0, 1.0, 2.0, 4.0, 5.0, 6.0]
    assert list(flat) == column_names(type(stats), "train_")   # known before anything is measured


def test_every_built_in_instrument_fills_row_columns_only():
    known = set(columns())
    built_in = [i for i in instruments() if not type(i).__module__.startswith("tests.")]
    assert [i.name for i in built_in][:3] == ["size", "flops", "decoder_storage"]
    for instrument in built_in:
        assert set(instrument.columns()) <= known, instrument.name


def test_a_misspelt_record_field_fails_at_registration():
    @dataclass(frozen=True)
    class Misspelt:
        latency_ms_median: float
        latency_ms_iqrr: float      # no such column

    class Bad(Instrument):
        name, record = "misspelt", Misspelt

    with pytest.raises(InstrumentError, match="latency_ms_iqrr, which the row .* has no field for"):
        register_instrument(Bad())
    assert "misspelt" not in [i.name for i in instruments()]


def test_an_instrument_cannot_fill_another_ones_columns():
    @dataclass(frozen=True)
    class Median:
        latency_ms_median: float

    class Shadow(Instrument):
        name, record = "shadow", Median

    with pytest.raises(InstrumentError, match="latency_ms_median already filled by instrument latency"):
        register_instrument(Shadow())


def test_a_misspelt_column_handed_to_the_row_is_an_error():
    row = ResultRow(job_key="k", run_id="r", status="ok")
    with pytest.raises(UnknownColumnError, match="'latency_ms_medain' \\(did you mean 'latency_ms_median'\\?\\)"):
        row.update({"latency_ms_medain": 1.0})
    row.update({"latency_ms_median": 1.0, "toy_x": 2}, extra_columns=frozenset({"toy_x"}))
    assert row.latency_ms_median == 1.0 and row.to_dict()["toy_x"] == 2 and "extra" not in row.to_dict()


def test_a_plugin_instrument_runs_end_to_end(tmp_path):
    cfg = _config(tmp_path, "measure.instruments=[output_range]")
    plain = _config(tmp_path)
    assert job_key(cfg) != job_key(plain)   # its columns make it another job
    outcome = run_job(cfg, tmp_path / "run")
    assert outcome.status == "ok", outcome.error
    row = ResultStore(tmp_path / "results").read(outcome.row_file)
    low, high = row.extra["toy_logit_low"], row.extra["toy_logit_high"]
    assert low < high and row.latency_ms_median > 0   # its figures beside every built-in one
    table = jobs_table(rows_to_frame([row]))
    assert table.loc[0, "toy_logit_low"] == low and table.loc[0, "toy_logit_high"] == high
    assert "toy_logit_low" not in ResultStore(tmp_path / "results").read(run_job(plain, tmp_path / "p").row_file).extra


def test_an_unknown_instrument_name_is_refused_with_the_registered_ones(tmp_path):
    problems = config_problems(_config(tmp_path, "measure.instruments=[output_rnage]"))
    assert any("unknown instrument 'output_rnage'; registered: size, flops" in p and "output_range" in p
               for p in problems), problems
