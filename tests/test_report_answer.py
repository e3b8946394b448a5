"""The report's first section (which model, under which budget) and the headline's layout."""
from __future__ import annotations


import pandas as pd
import pytest

from bench.report.answer import answers, front_table
from bench.report.config import ReportConfig, parse_overrides
from bench.report.frame import rows_to_frame
from bench.report.published import evaluate_claims, load_published
from bench.report.tables import accuracy_table, headline
from bench.store import ResultStore
from tests.test_report import make_row

PUBLISHED = load_published()
# Published CamVid test mIoU (conf/published.yaml): fcdensenet103 66.9, fcdensenet56 58.9,
# fcn8s 57.0, segnet_basic 47.7, fcn_basic 47.3; unet has none.


def timed(model: str, median: float, low: float, high: float, **extra):
    return make_row(model, latency_ms_median=median, latency_ms_ci_low=low, latency_ms_ci_high=high, **extra)


def frame(rows) -> pd.DataFrame:
    return rows_to_frame(rows)


def by_model(answer):
    return {c.model: c for c in answer.candidates}


def test_picks_under_a_latency_budget_with_ties_inside_the_intervals():
    current = frame([timed("fcn_basic", 5, 4.5, 5.5), timed("segnet_basic", 5.2, 4.8, 5.6),
                     timed("fcdensenet56", 20, 19, 21), timed("fcdensenet103", 60, 58, 62),
                     timed("unet", 4, 3.9, 4.1)])
    [answer] = answers(current, PUBLISHED, ReportConfig(latency_budget_ms=25))
    # fcdensenet103's interval ends above 25 ms; unet has no published accuracy: neither is picked.
    assert [c.model for c in answer.picks] == ["fcdensenet56"]
    assert "4 of 5 models fit" in answer.pick_text and "58.9" in answer.pick_text
    # Under 6 ms: fcn_basic (47.3) and segnet_basic (47.7) fit; published figures have no
    # interval, so segnet_basic is the pick, and fcn_basic (tied on latency, less accurate) is
    # off the front.
    [answer] = answers(current, PUBLISHED, ReportConfig(latency_budget_ms=6))
    assert [c.model for c in answer.picks] == ["segnet_basic"]
    assert list(front_table(answer)["pick"]) == ["segnet_basic", "fcdensenet56", "fcdensenet103"]
    # Two models tied on latency and on accuracy are both the pick.
    tied = frame([timed("fcdensenet67", 20, 19, 21), timed("dilated8", 20.5, 19.5, 21.5, miou=None)])
    published = {**PUBLISHED, "models": {**PUBLISHED["models"], "dilated8": {"miou": [
        {"dataset": "camvid", "split": "test", "value": 65.8, "source": "stand-in"}]}}}
    [answer] = answers(tied, published, ReportConfig(latency_budget_ms=25))
    assert sorted(c.model for c in answer.picks) == ["dilated8", "fcdensenet67"] and "tie" in answer.pick_text
    assert set(front_table(answer)["pick"]) == {"fcdensenet67 (tie on latency with dilated8)",
                                               "dilated8 (tie on latency with fcdensenet67)"}


def test_front_keeps_only_undominated_models_and_marks_latency_ties():
    current = frame([timed("fcn_basic", 5, 4.5, 5.5), timed("segnet_basic", 5.2, 4.8, 5.6),
                     timed("fcn8s", 30, 29, 31), timed("fcdensenet56", 20, 19, 21),
                     timed("fcdensenet103", 60, 58, 62)])
    [answer] = answers(current, PUBLISHED)
    # fcn8s (57.0) is slower than fcdensenet56 (58.9) and less accurate: dominated. fcn_basic
    # (47.3) ties segnet_basic (47.7) on latency and is less accurate: dominated too.
    assert [c.model for c in answer.front] == ["segnet_basic", "fcdensenet56", "fcdensenet103"]
    table = front_table(answer)
    assert list(table["latency budget per batch"]) == ["≥ 5.6 ms", "≥ 21 ms", "≥ 62 ms"]
    assert answer.picks == []          # no budget set: the front answers every budget


def test_measured_accuracy_ranks_only_above_the_evidence_bar():
    curve = [{"step": s, "train_seconds": s, "miou": 0.5} for s in (50, 100, 150, 200)]

    def trained(model, miou, seeds, steps):
        return [timed(model, 10 if model == "unet" else 12, 9, 13, miou=miou + 0.01 * seed, seed=seed,
                      train_steps=steps, learning_curve=curve, run=f"{model}{seed}") for seed in seeds]

    thin = frame(trained("unet", 0.30, [0], 5) + trained("fcn_basic", 0.20, [0], 5))
    [answer] = answers(thin, PUBLISHED)
    assert by_model(answer)["unet"].accuracy is None
    assert "1 seed (needs 3)" in by_model(answer)["unet"].caveat
    assert "5 training steps (needs 100)" in by_model(answer)["unet"].caveat
    assert "published" in answer.basis        # the fall-back basis, labelled as such
    caveat_cells = accuracy_table(thin)["evidence"]
    assert caveat_cells.str.startswith("⚠ not decision-grade").all()

    solid = frame(trained("unet", 0.30, [0, 1, 2], 200) + trained("fcn_basic", 0.20, [0, 1, 2], 200))
    [answer] = answers(solid, PUBLISHED)
    assert answer.basis.startswith("measured")
    assert by_model(answer)["unet"].caveat == "" and by_model(answer)["unet"].accuracy.miou.value == pytest.approx(31)
    assert answer.thin_evidence == []
    assert (accuracy_table(solid)["evidence"] == "meets the bar").all()
    # unet is faster and clearly more accurate: fcn_basic is dominated.
    assert [c.model for c in answer.front] == ["unet"]


def test_headline_moves_constant_columns_to_the_caption_and_groups_by_resolution():
    rows = [timed("unet", 30, 29, 31), timed("fcn_basic", 5, 4.5, 5.5),
            timed("unet", 120, 118, 122, height=192, width=256)]
    table = headline(frame(rows))
    assert "dataset synthetic" in table.caption and "batch 1" in table.caption and "backend eager" in table.caption
    assert [title for title, _ in table.groups] == ["cpu, 192x256", "cpu, 96x128"]
    lines = table.groups[1][1]
    assert list(lines["model"]) == ["fcn_basic", "unet"]               # by latency, not by name
    assert not {"dataset", "device", "batch", "backend", "resolution"} & set(lines.columns)
    assert "peak MiB (allocator)" in lines.columns


def test_headline_names_the_memory_method_of_each_value_when_they_differ():
    ort = "process peak resident set (VmHWM after /proc/self/clear_refs) during the session's first run"
    rows = [timed("unet", 30, 29, 31, memory_counter="torch.profiler CPU allocator events"),
            timed("fcn_basic", 5, 4.5, 5.5, backend="onnxruntime", memory_counter=ort)]
    [(_, lines)] = headline(frame(rows)).groups
    cells = dict(zip(lines["model"], lines["peak MiB (method)"]))
    assert cells["unet"].endswith("(allocator)") and cells["fcn_basic"].endswith("(resident-set growth)")


def test_report_page_opens_with_the_answer(tmp_path):
    from bench.report import write_report
    store = ResultStore(tmp_path)
    for row in [timed("fcn_basic", 5, 4.5, 5.5), timed("fcdensenet56", 20, 19, 21),
                timed("<b>odd</b>", 7, 6, 8, job_key="odd-name")]:
        store.write(row)
    page = write_report(tmp_path, ReportConfig(latency_budget_ms=10)).read_text()
    body = page[page.index("<body>"):]
    assert body.index("Which model?") < body.index("Headline")
    assert "Under 10 ms per batch, 2 of 3 models fit" in body
    assert "<b>odd</b>" not in body and "&lt;b&gt;odd&lt;/b&gt;" in body
    # Every static table sits in a box that scrolls sideways, so no table widens the page.
    assert body.count('<table class="dataframe">') == body.count('<div class="wide"><table') > 0
    assert (tmp_path / "report" / "answer.md").read_text().startswith("# Which model?")


def test_report_config_from_overrides():
    assert parse_overrides(["report.latency_budget_ms=50"]) == ReportConfig(latency_budget_ms=50.0)
    for bad, words in [("report.latency_budget_ms=fast", "latency_budget_ms"), ("report.budget=1", "budget"),
                       ("latency=5", "expected report.<key>=<value>"), ("report.memory_budget_mib=0", "above 0")]:
        with pytest.raises(ValueError, match=words):
            parse_overrides([bad])


# --- the review's conclusion, read against the front ------------------------------------------

def conclusion(current: pd.DataFrame):
    fronts = answers(current, PUBLISHED)
    [claim] = [c for c in evaluate_claims(current, PUBLISHED, fronts)
               if c.claim["id"] == "dilatednet_for_deployment"]
    return claim


def test_dilatednet_conclusion_reads_its_place_on_the_front_and_stays_inconclusive_on_published_accuracy():
    # Published CamVid: dilated8 65.3, fcdensenet103 66.9, fcn8s 57.0. dilated8 is faster than
    # fcdensenet103 and more accurate than fcn8s, which it also outruns: on the front.
    current = frame([timed("dilated8", 30, 29, 31), timed("fcdensenet103", 60, 58, 62),
                     timed("fcn8s", 40, 39, 41)])
    claim = conclusion(current)
    [test] = claim.tests
    assert test.verdict == "inconclusive" and claim.verdict == "inconclusive"
    assert test.short.startswith("on the front in 1 of 1 settings by published accuracy")
    assert any("dilated8 on the front" in line and "Dilation Table 5" in line for line in test.evidence)
    # Slower than fcdensenet103, which is also more accurate: dominated, and by whom.
    slow = frame([timed("dilated8", 90, 88, 92), timed("fcdensenet103", 60, 58, 62)])
    [test] = conclusion(slow).tests
    assert test.short.startswith("on the front in 0 of 1 settings")
    assert any("dilated8 dominated by fcdensenet103" in line for line in test.evidence)


def test_dilatednet_conclusion_decides_on_measured_accuracy_and_is_not_tested_without_its_rows():
    curve = [{"step": s, "train_seconds": s, "miou": 0.5} for s in (50, 100, 150, 200)]

    def trained(model, latency, miou):
        return [timed(model, latency, latency - 1, latency + 1, miou=miou + 0.01 * seed, seed=seed,
                      train_steps=200, learning_curve=curve, run=f"{model}{seed}") for seed in (0, 1, 2)]

    # Measured: dilated_frontend faster and more accurate than unet: holds.
    [test] = conclusion(frame(trained("dilated_frontend", 10, 0.40) + trained("unet", 20, 0.30))).tests
    assert test.verdict == "holds" and test.short == "on the front in 1 of 1 settings"
    # Measured: slower and less accurate: does not hold.
    [test] = conclusion(frame(trained("dilated_frontend", 30, 0.20) + trained("unet", 20, 0.30))).tests
    assert test.verdict == "does not hold"
    [test] = conclusion(frame([timed("fcn_basic", 5, 4.5, 5.5), timed("unet", 4, 3.9, 4.1)])).tests
    assert test.verdict == "not tested yet" and "dilated_frontend and dilated8" in test.short
