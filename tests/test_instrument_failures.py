"""An optional instrument that cannot run for a model (the training step of a net whose BatchNorm
meets one value per channel at batch 1) leaves its columns empty and says why; the row keeps every
other figure and stays ok. Out of memory is the job's, never one instrument's."""
import pytest
from torch import nn

from bench.instruments import builtin
from bench.jobspec import JobSpec
from bench.profile import profile_model
from bench.report.frame import rows_to_frame
from bench.report.tables import failures_table
from bench.schema import ResultRow
from tests.test_adversarial_profile import CPU, FAST, NO_ENERGY
from tests.test_train import CLASSES, IGNORE, job_config, one_thread  # noqa: F401 (autouse)


class PooledNorm(nn.Module):
    """Normalises a globally pooled feature: fine in eval mode, but in training BatchNorm sees one
    value per channel at batch 1 and raises (as FC-DenseNet56 does at 32x32)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, CLASSES, 3, padding=1)
        self.norm = nn.BatchNorm2d(CLASSES)

    def forward(self, x):
        logits = self.conv(x)
        return logits + self.norm(logits.mean(dim=(2, 3), keepdim=True))


def _profile(tmp_path):
    cfg = job_config("model=unet", "resolution=16x16", "train=default")
    return profile_model(PooledNorm(), JobSpec.from_config(cfg), CLASSES, 3, CPU, FAST, 1, train_cfg=cfg.train,
                         ignore_index=IGNORE, cache_dir=tmp_path, peak_flops=False, windows=NO_ENERGY)


def test_a_failed_training_step_keeps_the_other_figures(tmp_path):
    fields = _profile(tmp_path)
    assert fields.get("status", "ok") == "ok"
    assert fields["instrument_errors"]["train_step"].startswith("ValueError: Expected more than 1 value per channel")
    assert fields["latency_ms_median"] > 0 and fields["peak_memory_mib"] > 0 and fields["params_total"] > 0
    assert "train_latency_ms_median" not in fields and "train_step_covers" not in fields

    row = ResultRow(job_key="k", run_id="r", status="ok", finished_at="t", model="pooled", **fields)
    table = failures_table(rows_to_frame([row]))
    assert table["status"].tolist() == ["ok, partly"]
    assert table["cause"].iloc[0].startswith("train_step not measured: ValueError")


def test_out_of_memory_in_an_instrument_is_the_jobs(tmp_path, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room for the gradients")

    monkeypatch.setattr(builtin, "measure_training_step", out_of_memory)
    with pytest.raises(MemoryError):     # the job's oom_policy (halve the batch) decides, not the row
        _profile(tmp_path)


def test_an_ok_row_without_instrument_errors_is_no_failure():
    row = ResultRow(job_key="k", run_id="r", status="ok", finished_at="t", model="fine")
    assert failures_table(rows_to_frame([row])).empty
