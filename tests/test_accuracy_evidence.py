"""Accuracy verdicts: repeats folded into intervals, paired over seeds, and only on enough evidence."""
import math

import pytest

from bench.report.build import write_report
from bench.report.evidence import INCONCLUSIVE, EvidenceBar
from bench.report.frame import load_frame
from bench.report.published import evaluate_claims, load_published
from bench.report.repeats import spread
from bench.store import ResultStore
from tests.test_report import make_row

CLAIM = "frontend_beats_fcn8s"   # dilated_frontend more accurate than fcn8s (conf/published.yaml)


def curve(final: float, last_quarter_gain: float, seconds: float = 60.0):
    """A curve ending at ``final`` that gained ``last_quarter_gain`` after 75% of the time."""
    return [{"step": s, "train_seconds": seconds * s / 400, "miou": m, "pixel_accuracy": 0.8, "loss": 0.5}
            for s, m in [(100, final - 0.1), (300, final - last_quarter_gain), (400, final)]]


def accuracy_row(model, seed, miou, steps=400, gain=0.002, **extra):
    return make_row(model, miou=miou, seed=seed, train_steps=steps, learning_curve=curve(miou, gain),
                    job_key=f"{model}-s{seed}", repeat_key=f"{model}-repeats",
                    config={"train": {"max_seconds": 60}}, **extra)


def claim_result(tmp_path, rows):
    store = ResultStore(tmp_path)
    for row in rows:
        store.write(row)
    _, current, _ = load_frame(tmp_path)
    [result] = [c for c in evaluate_claims(current, load_published()) if c.claim["id"] == CLAIM]
    return result.tests[0]


def test_spread_is_the_t_interval_of_the_mean():
    # mean 0.42, sample sd 0.02, t(0.975, df=2) = 4.303: half-width 4.303 x 0.02 / sqrt(3) = 0.0497.
    summary = spread([0.40, 0.42, 0.44])
    assert (summary.mean, summary.n) == (pytest.approx(0.42), 3)
    assert summary.std == pytest.approx(0.02)
    assert summary.high - summary.mean == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-4)
    assert spread([0.5]).text(100) == "50.0 (one run)"


def test_a_margin_far_outside_the_noise_holds(tmp_path):
    # dilated_frontend beats fcn8s by 10 points on each of 3 seeds, with seed-to-seed noise of
    # 0.5 points: the interval of the difference is about 10 +- 1 points, far from 0.
    rows = [accuracy_row("dilated_frontend", s, 0.50 + d) for s, d in enumerate([0.0, 0.005, -0.005])]
    rows += [accuracy_row("fcn8s", s, 0.40 + d) for s, d in enumerate([0.003, -0.002, 0.0])]
    test = claim_result(tmp_path, rows)
    assert test.verdict == "holds", test.text
    assert "dilated_frontend 50.0 vs fcn8s 40.0 mIoU over 3 paired seeds" in test.text


def test_worse_by_a_clear_margin_does_not_hold(tmp_path):
    rows = [accuracy_row("dilated_frontend", s, 0.30 + d) for s, d in enumerate([0.0, 0.004, -0.004])]
    rows += [accuracy_row("fcn8s", s, 0.40 + d) for s, d in enumerate([0.002, -0.002, 0.0])]
    assert claim_result(tmp_path, rows).verdict == "does not hold"


def test_one_seed_is_inconclusive_with_the_reason(tmp_path):
    test = claim_result(tmp_path, [accuracy_row("dilated_frontend", 0, 0.50), accuracy_row("fcn8s", 0, 0.40)])
    assert test.verdict == INCONCLUSIVE
    assert "dilated_frontend: 1 seed (needs 3)" in test.text and "fcn8s: 1 seed (needs 3)" in test.text


def test_a_still_rising_curve_or_few_steps_is_inconclusive_with_the_reason(tmp_path):
    rows = [accuracy_row("dilated_frontend", s, 0.50, gain=0.06) for s in range(3)]
    rows += [accuracy_row("fcn8s", s, 0.40, steps=3) for s in range(3)]
    test = claim_result(tmp_path, rows)
    assert test.verdict == INCONCLUSIVE
    assert "dilated_frontend: still improving: +6.0 points in the last quarter" in test.text
    assert "fcn8s: 3 training steps (needs 100)" in test.text


def test_an_interval_that_includes_zero_is_inconclusive(tmp_path):
    rows = [accuracy_row("dilated_frontend", s, m) for s, m in enumerate([0.45, 0.38, 0.42])]
    rows += [accuracy_row("fcn8s", s, m) for s, m in enumerate([0.40, 0.43, 0.41])]
    test = claim_result(tmp_path, rows)
    assert test.verdict == INCONCLUSIVE and "interval of the difference includes 0" in test.text


def test_the_report_shows_each_configuration_over_its_seeds(tmp_path):
    store = ResultStore(tmp_path)
    for seed, miou in enumerate([0.40, 0.42, 0.44]):
        store.write(accuracy_row("fcn8s", seed, miou))
    page = write_report(tmp_path).read_text()
    assert "Accuracy after 60 seconds of CPU training" in page
    assert "42.0 ± 2.0 (95% CI 37.0 to 47.0, n=3)" in page


def test_evidence_bar_reads_the_published_settings():
    bar = EvidenceBar.from_published(load_published())
    assert bar.min_seeds == 3 and bar.plateau_points > 0


def test_seeds_are_separate_jobs_and_fold_into_one_line(in_process):
    from tests.test_cli import TINY as TINY_MODEL
    for seed in range(3):   # the jobs of a seed=0,1,2 sweep, each run as the sweep runs it
        outcome = in_process(*TINY_MODEL, "mode=accuracy", f"seed={seed}", "resolution=16x16",
                             "dataset.sizes.train=4", "dataset.sizes.val=2", "train.max_steps=2",
                             "train.eval_every_steps=1", "train.save_checkpoint=false", "measure.train_step=false")
        assert outcome.status == "ok", outcome.error
    rows = in_process.rows().rows
    assert sorted(r.seed for r in rows) == [0, 1, 2] and len({r.job_key for r in rows}) == 3
    assert len({r.repeat_key for r in rows}) == 1
    assert all(len(r.learning_curve) == 2 and r.learning_curve[-1]["step"] == 2 for r in rows)
    page = write_report(in_process.results).read_text()
    assert "n=3" in page and "95% CI" in page
    assert "Validation mIoU against training time" in page   # the learning-curve figure
