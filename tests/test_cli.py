"""`python -m bench` end to end, as a user runs it: rows written, messages clear, exit codes."""
import json

import pytest
import torch

from bench.measure.latency import CUDA_TIMER
from bench.measure.memory import CUDA_COUNTER
from tests.conftest import Bench

TINY = ["model=custom", "model.name=tiny_segmenter", "plugins=[tests.plugin_models]"]


def test_single_run_prints_and_stores_its_row(bench: Bench):
    result = bench(*TINY, "resolution=40x56", "batch_size=2", "threads=1")
    assert result.returncode == 0, result.stderr
    loaded = bench.rows()
    [row] = loaded.rows
    assert row.status == "ok" and (row.height, row.width, row.batch_size) == (40, 56, 2)
    assert f"row written to {bench.results}" in result.stdout
    assert f"latency_ms_median: {row.latency_ms_median:.6g}" in result.stdout
    # Two 3x3 then 1x1 convs: 8*27 + 11*8 multiply-adds per pixel, 2 FLOP each.
    assert row.flops_per_image == 2 * 40 * 56 * (8 * 27 + 11 * 8)
    assert row.params_total == (8 * 27 + 8) + (11 * 8 + 11)
    assert row.threads == 1 and row.torch_version and row.git_commit is not None
    assert row.config["resolution"] == "40x56"
    # The training step of the same batch, with the default train config's optimizer (Adam).
    assert row.train_optimizer == "Adam" and row.train_latency_ms_median > 0
    weights = row.params_total * 4
    assert row.train_weights_mib * 2**20 == weights == row.train_gradients_mib * 2**20
    assert row.train_peak_memory_mib > row.train_weights_mib + row.train_gradients_mib + row.train_optimizer_state_mib
    assert row.saved_for_backward_mib > 0
    for name in ("train_latency_ms_median", "train_peak_memory_mib", "saved_for_backward_mib"):
        assert f"{name}: {getattr(row, name):.6g}" in result.stdout
    # Logging (bench/logs.py): the summary line plain on the console, time-stamped in the job's log.
    [summary] = [line for line in result.stdout.splitlines() if line.startswith("[ok] tiny_segmenter")]
    [log_file] = bench.results.glob("runs/*/*/*.log")
    assert any(line.endswith(f"[bench.runner][INFO] - {summary}") for line in log_file.read_text().splitlines())


def test_training_step_can_be_left_out(bench: Bench):
    result = bench(*TINY, "resolution=32x32", "measure.train_step=false")
    assert result.returncode == 0, result.stderr
    [row] = bench.rows().rows
    assert row.latency_ms_median > 0 and row.train_latency_ms_median is None and row.saved_for_backward_mib is None


def test_unet_profile_at_128(bench: Bench):
    result = bench("model=unet", "device=cpu", "resolution=128x128")
    assert result.returncode == 0, result.stderr
    [row] = bench.rows().rows
    assert row.status == "ok" and row.model == "unet" and row.params_total > 30e6


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_single_run_on_cuda_is_timed_by_events_and_measured_by_the_allocator(bench: Bench, precision):
    result = bench(*TINY, "device=cuda", f"precision={precision}", "resolution=40x56", "batch_size=2")
    assert result.returncode == 0, result.stderr
    [row] = bench.rows().rows
    assert row.status == "ok" and row.device == "cuda" and row.device_name == torch.cuda.get_device_name(0)
    assert row.timer == CUDA_TIMER and row.memory_counter == row.train_memory_counter == CUDA_COUNTER
    assert row.flops_per_image == 2 * 40 * 56 * (8 * 27 + 11 * 8)  # autocast changes no operation count
    assert row.train_precision == precision and row.train_latency_ms_median > 0
    # The allocator's peak holds the weights and the input batch, at least.
    assert row.peak_memory_mib * 2**20 >= row.params_total * 4 + 2 * 3 * 40 * 56 * 4
    assert row.train_peak_memory_mib > row.train_weights_mib + row.train_gradients_mib + row.train_optimizer_state_mib


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is here: the cuda-marked tests run device=cuda")
def test_cuda_without_a_gpu_records_an_unavailable_row(bench: Bench):
    result = bench("device=cuda", *TINY)
    assert "CUDA is not available" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    [row] = bench.rows().rows
    assert row.status == "unavailable" and row.device == "cuda"
    assert result.returncode == 0  # a missing device is recorded, not a failure of the harness


def test_unknown_model_lists_the_known_ones(bench: Bench):
    result = bench("model=nonexistent_net")
    assert result.returncode != 0
    assert "Available options in 'model'" in result.stderr
    for name in ("unet", "fcn8s", "segnet", "fcdensenet103"):
        assert name in result.stderr
    assert bench.rows().rows == []


def test_unknown_registered_name_lists_the_known_ones(bench: Bench):
    result = bench("model=custom", "model.name=unett")
    assert result.returncode == 1
    [row] = bench.rows().rows
    assert row.status == "error" and "Did you mean unet" in row.error and "fcn8s" in row.error


def test_invalid_values_are_named_with_what_is_accepted(bench: Bench):
    result = bench(*TINY, "precision=fp8")
    assert result.returncode == 1
    assert "unknown precision 'fp8'; choose one of fp32, fp16, bf16" in result.stderr
    result = bench(*TINY, "resolution=big")
    assert "resolution must look like HEIGHTxWIDTH" in result.stderr
    assert bench.rows().rows == []


def test_outcome_marker_written_for_every_job(bench: Bench):
    bench(*TINY, "resolution=32x32", "hydra.run.dir=" + str(bench.results / "run"))
    outcome = json.loads((bench.results / "run" / "outcome.json").read_text())
    assert outcome["status"] == "ok" and outcome["job_key"].startswith("tiny_segmenter_synthetic_cpu_32x32")
