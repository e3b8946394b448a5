"""The memory claims in the report: SegNet's decoder storage (both accountings) and Table 6, and
FC-DenseNet's memory-efficient mode, from rows built by hand (conf/published.yaml as shipped)."""
from __future__ import annotations

import itertools

import pytest
import torch
from hydra import compose, initialize_config_dir

import models  # noqa: F401  (registers the architectures)
from bench.measure.decoder import decoder_storage
from bench.records import flatten
from bench.report import write_report
from bench.report.frame import rows_to_frame
from bench.report.published import (
    densenet_memory_table, evaluate_claims, evaluate_test, int64_note, load_published, table6)
from bench.store import ResultStore
from models.registry import create_model
from tests.conftest import ROOT
from tests.test_report import make_row

PUBLISHED = load_published()
_keys = itertools.count()


def row(model: str, height: int, width: int, batch_size: int = 1, **fields):
    """An ok profile row with its own job key (rows differing only in batch size stay apart)."""
    return make_row(model, height, width, batch_size=batch_size, job_key=f"job{next(_keys)}", **fields)


def measured_storage(model: str) -> dict:
    """The real decoder-storage fields of ``model`` at 64x64, as a profile row would carry them."""
    torch.manual_seed(0)
    return flatten(decoder_storage(create_model(model, num_classes=11).eval(), torch.randn(1, 3, 64, 64)),
                   "decoder_storage_")


def segnet_claim(rows) -> list[str]:
    claim = next(c for c in evaluate_claims(rows_to_frame(rows), PUBLISHED)
                 if c.claim["id"] == "segnet_decoder_memory")
    return [t.text for t in claim.tests]


def test_decoder_storage_verdicts_in_both_accountings_from_measured_figures():
    rows = [row(m, 64, 64, **measured_storage(m)) for m in ("segnet_basic", "fcn_basic")]
    texts = segnet_claim(rows)
    # Per pixel: 11 reduced maps vs 64 x 2 bits / 4 pixels = 1 map; PyTorch's int64 indices: 32.
    assert texts[0] == "decoder storage multiplier, paper accounting (Table 1's unit): holds: 11.0x less"
    assert texts[1].startswith("decoder storage multiplier, as PyTorch stores it (int64 indices): "
                               "does not hold: 2.91x more (the claim needs")
    # Bytes at 64x64: FCN-Basic 11 x (32^2 + 16^2 + 8^2) x 32 bits; SegNet-Basic 64 x 1360 windows
    # x 2 bits (paper) or x 64 bits (PyTorch): 473088 / 174080 = 2.72; 5570560 / 473088 = 11.77.
    assert texts[2] == "decoder storage in bytes, paper accounting: holds: 2.72x less"
    assert texts[3].startswith("decoder storage in bytes, as PyTorch stores it (int64 indices): "
                               "does not hold: 11.77x more (the claim needs")


def test_int64_note_states_what_int64_indices_do_to_the_ratio():
    rows = [row(m, 64, 64, **measured_storage(m)) for m in ("segnet_basic", "fcn_basic")]
    note = int64_note(rows_to_frame(rows), PUBLISHED)
    assert "1.00 in the paper's accounting" in note and "32.00 as PyTorch stores it" in note
    assert "goes from 11.0x SegNet-Basic's to 0.34x" in note
    assert "2.72x what SegNet-Basic keeps in the paper's accounting" in note and "0.08x as stored" in note
    assert "needs decoder-storage rows for segnet_basic and fcn_basic" in int64_note(
        rows_to_frame(rows[:1]), PUBLISHED)


def table6_rows():
    """segnet vs fcn8s at 360x480: batch 1 inference peaks and batch 4 training peaks, plus rows that
    would turn both verdicts round if the test did not keep to its batch size and resolution."""
    return [
        row("segnet", 360, 480, 1, peak_memory_mib=500.0, train_peak_memory_mib=9000.0),
        row("fcn8s", 360, 480, 1, peak_memory_mib=900.0, train_peak_memory_mib=1000.0),
        row("segnet", 360, 480, 4, peak_memory_mib=5000.0, train_peak_memory_mib=3000.0),
        row("fcn8s", 360, 480, 4, peak_memory_mib=1000.0, train_peak_memory_mib=4500.0),
        row("segnet", 96, 128, 1, peak_memory_mib=9000.0),
        row("fcn8s", 96, 128, 1, peak_memory_mib=10.0),
    ]


def test_table6_verdicts_compare_each_quantity_at_its_own_batch_size():
    texts = segnet_claim(table6_rows())
    assert texts[4] == ("Table 6 inference memory (forward-pass peak: weights + input + activations), "
                        "360x480, batch 1: holds: 1.80x less")
    assert texts[5] == "Table 6 training memory (training-step peak), 360x480, batch 4: holds: 1.50x less"


def test_table6_without_rows_says_which_are_missing():
    texts = segnet_claim([row("segnet", 360, 480, 1, peak_memory_mib=500.0)])
    assert texts[4].startswith("Table 6 inference memory") and "not tested yet" in texts[4]
    assert "needs ok rows with train_peak_memory_mib for segnet and fcn8s" in texts[5]


def test_where_naming_an_unknown_column_says_what_to_use():
    test = {"quantity": "peak_memory_mib", "subject": "segnet", "other": "fcn8s", "compare": "ratio",
            "threshold": 1, "phrase": "less", "same": ["device"], "where": {"batch": 4}}
    with pytest.raises(ValueError, match="'batch', which is not a row column"):
        evaluate_test(rows_to_frame(table6_rows()), test, {})


def test_table6_puts_measured_beside_published():
    table = table6(rows_to_frame(table6_rows()), PUBLISHED).set_index("segbench model")
    assert table.loc["segnet", "published inference, b1"] == "1052 MB = 1003 MiB"   # MB = 10^6 bytes
    assert table.loc["segnet", "published training, b4"] == "6803 MB = 6488 MiB"
    assert table.loc["segnet", "measured inference peak, b1"] == "500 MiB (cpu, fp32)"
    assert table.loc["segnet", "measured training peak, b4"] == "3000 MiB (cpu, fp32)"
    assert table.loc["fcn8s", "measured training peak, b4"] == "4500 MiB (cpu, fp32)"
    assert table.loc[["deeplab_largefov", "deconvnet"], "measured inference peak, b1"].tolist() == ["no rows"] * 2


def densenet_row(efficient: bool, peak: float, saved: float, height: int = 224, width: int = 224,
                 batch_size: int = 3):
    return row("fcdensenet103", height, width, batch_size, model_kwargs={"memory_efficient": efficient},
               train_peak_memory_mib=peak, saved_for_backward_mib=saved, train_weights_mib=36.0,
               train_gradients_mib=36.0, train_optimizer_state_mib=72.0)


def test_densenet_memory_table_gives_the_ratio_and_why():
    rows = [densenet_row(False, 1200.0, 900.0), densenet_row(True, 500.0, 250.0),
            densenet_row(False, 800.0, 600.0, batch_size=1),      # not the paper's batch: left out
            densenet_row(True, 100.0, 50.0, batch_size=1)]
    table = densenet_memory_table(rows_to_frame(rows), PUBLISHED)
    assert len(table) == 1
    record = table.iloc[0]
    assert record["plain / memory-efficient"] == "2.40x" and record["verdict"] == "at least 2x lower"
    assert "saved-for-backward falls from 900 to 250 MiB (3.60x)" in record["why"]
    assert "144 MiB of the peak is weights, gradients and optimizer state" in record["why"]

    short = densenet_memory_table(rows_to_frame([densenet_row(False, 1200.0, 900.0),
                                                 densenet_row(True, 800.0, 300.0)]), PUBLISHED)
    assert short.iloc[0]["plain / memory-efficient"] == "1.50x"
    assert short.iloc[0]["verdict"] == "below the 2x target"


def test_densenet_memory_table_without_both_modes_names_the_command():
    for rows in ([densenet_row(False, 1200.0, 900.0)], [row("unet", 64, 64)]):
        table = densenet_memory_table(rows_to_frame(rows), PUBLISHED)
        assert "not measured yet" in table.iloc[0]["verdict"]
        assert "python -m bench sweep=densenet_memory" in table.iloc[0]["verdict"]


def test_report_shows_decoder_storage_and_densenet_tables(tmp_path):
    store = ResultStore(tmp_path)
    for r in [row(m, 64, 64, **measured_storage(m)) for m in ("segnet_basic", "fcn_basic")] + [
            densenet_row(False, 1200.0, 900.0), densenet_row(True, 500.0, 250.0)]:
        store.write(r)
    write_report(tmp_path)
    published = (tmp_path / "report" / "published.md").read_text()
    assert "## Decoder storage" in published and "goes from 11.0x SegNet-Basic's to 0.34x" in published
    assert "pool: 4 x indices (64, 64, 64, 64 channels, int64)" in published
    assert "## FC-DenseNet memory-efficient mode" in published and "2.40x" in published
    assert "Decoder storage per image" in (tmp_path / "report" / "index.html").read_text()


def sweep_grid(name: str) -> tuple:
    """(job config, sweeper params) of ``sweep=name`` as the CLI composes it."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", [f"sweep={name}"], return_hydra_config=True)
    return cfg, {key: str(value).split(",") for key, value in cfg.hydra.sweeper.params.items()}


def test_named_sweeps_produce_the_rows_the_memory_claims_select():
    cfg, grid = sweep_grid("segnet_table6")
    claim = next(c for c in PUBLISHED["claims"] if c["id"] == "segnet_decoder_memory")
    table6_tests = [t for t in claim["tests"] if "where" in t]
    assert cfg.mode == "profile" and sorted(grid["model"]) == sorted(e["model"] for e in PUBLISHED["segnet_table6"])
    assert {"segnet", "fcn8s"} <= set(grid["model"])  # the claim's two
    for test in table6_tests:
        assert test["where"]["resolution"] == cfg.resolution
        assert str(test["where"]["batch_size"]) in grid["batch_size"]

    cfg, grid = sweep_grid("densenet_memory")
    entry = PUBLISHED["fcdensenet_memory_efficient"]
    assert grid["model"] == [entry["model"]] and sorted(grid["model.memory_efficient"]) == ["false", "true"]
    assert (cfg.resolution, cfg.batch_size) == (entry["where"]["resolution"], entry["where"]["batch_size"])


def test_a_claim_whose_tests_disagree_is_mixed_not_the_worst_of_them():
    from bench.report.published import HOLDS, MIXED, NOT_HOLD, NOT_TESTED, PARTLY, _claim_verdict
    assert _claim_verdict([HOLDS, NOT_HOLD]) == MIXED
    assert _claim_verdict([NOT_HOLD, NOT_TESTED]) == NOT_HOLD
    assert _claim_verdict([HOLDS, NOT_TESTED]) == PARTLY
    assert _claim_verdict([NOT_TESTED, NOT_TESTED]) == NOT_TESTED
