"""The accuracy gate (bench/measure/accuracy_gate.py, instrument ``accuracy_gate``): a deployment
other than fp32 eager, with trained weights, keeps parity.min_accuracy_ratio of fp32 eager's mIoU
on validation images or its row is a mismatch with both figures; random weights are not gated."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from bench.measure.accuracy_gate import GateRecord, miou_ratio, mious, verdict
from bench.runner import run_job
from bench.store import ResultStore
from tests.conftest import FAST_TIMING, ROOT

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models,tests.plugin_damaged_backend]",
        "resolution=16x16", "threads=1", "measure.train_step=false", "measure.energy=false", "dataset.sizes.val=4",
        "parity.accuracy_images=4", *FAST_TIMING]
TRAINED = ["mode=accuracy", "train.max_steps=3", "train.batch_size=2", "dataset.sizes.train=4",
           "train.eval_every_steps=null", "train.save_checkpoint=false"]


def _run(tmp_path, *overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", [*TINY, f"results_dir={tmp_path / 'results'}", *overrides])
    outcome = run_job(cfg, tmp_path / "run")
    return outcome, ResultStore(tmp_path / "results").read(outcome.row_file)


def test_mious_score_both_predictors_on_the_same_label_maps():
    masks = [torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 0], [1, 255]])]
    logits = torch.stack([torch.nn.functional.one_hot(m.clamp(max=1), 2).permute(2, 0, 1).float() for m in masks])
    images = torch.zeros(2, 3, 2, 2)
    exact, wrong = (lambda x: logits), (lambda x: -logits)
    reference, deployment = mious((exact, wrong), [(images, masks)], num_classes=2, ignore_index=255)
    assert reference == 1.0 and deployment == 0.0
    assert miou_ratio(0.5, 0.495) == pytest.approx(0.99) and miou_ratio(0.0, 0.3) is None


def test_the_verdict_fails_only_a_gated_row_below_the_threshold():
    below = GateRecord("trained", gated=True, note="", images=4, split="val", miou_reference=0.5,
                       miou_deployment=0.4, ratio=0.8, threshold=0.99)
    assert "keeps 80.00% of fp32 eager's mIoU on 4 val images (0.4000 against 0.5000)" in verdict(below)
    assert verdict(GateRecord("trained", gated=True, note="", ratio=0.995, threshold=0.99)) == ""
    assert verdict(GateRecord("random initialisation", gated=False, note="")) == ""


def test_a_damaged_deployment_of_trained_weights_is_a_mismatch_with_both_mious(tmp_path):
    outcome, row = _run(tmp_path, *TRAINED, "backend=negated_on_data")
    assert outcome.status == "mismatch" and row.status == "mismatch"
    assert row.parity_argmax_agreement == 1.0            # the random input could not tell
    assert row.gate_gated and row.gate_weights == "trained by this job" and row.gate_images == 4
    assert row.gate_miou_reference > row.gate_miou_deployment and row.gate_ratio < 0.99
    assert "below parity.min_accuracy_ratio=99.00%" in row.error and row.latency_ms_median is None


def test_an_eager_bf16_row_of_trained_weights_is_gated_and_a_random_one_says_why_not(tmp_path):
    outcome, row = _run(tmp_path / "trained", *TRAINED, "precision=bf16")
    assert outcome.status == "ok", outcome.error
    assert row.gate_gated and row.gate_ratio >= 0.99 and row.latency_ms_median > 0
    outcome, row = _run(tmp_path / "random", "precision=bf16")
    assert outcome.status == "ok" and row.gate_gated is False and "random weights" in row.gate_note
    outcome, row = _run(tmp_path / "fp32", *TRAINED)   # fp32 eager is the reference: nothing to gate
    assert outcome.status == "ok" and row.gate_gated is None


def test_the_best_deployment_table_shows_the_accuracy_each_deployment_kept():
    from bench.report.deployment import best_deployment_table
    from bench.report.frame import rows_to_frame
    from bench.schema import ResultRow

    def row(backend, latency, **gate):
        return ResultRow(job_key=backend, run_id=backend, status="ok", model="fcn_basic", device="cpu", threads=2,
                         height=192, width=256, batch_size=1, precision="fp32", backend=backend,
                         latency_ms_median=latency, finished_at=backend, **gate)

    rows = [row("eager", 10.0), row("onnxruntime", 4.0, gate_gated=True, gate_ratio=0.998, gate_images=16)]
    assert best_deployment_table(rows_to_frame(rows)).iloc[0]["accuracy kept (gate)"] == \
        "99.80% of fp32 eager's mIoU (16 val images)"
    rows[1] = row("onnxruntime", 4.0, gate_gated=False, gate_weights="random initialisation")
    assert best_deployment_table(rows_to_frame(rows)).iloc[0]["accuracy kept (gate)"] == "not gated: random weights"
