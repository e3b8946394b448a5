"""`python -m bench` end to end, as a user runs it: rows written, messages clear, exit codes.
What a single job does (its row, its error) is checked in-process; the CLI where the CLI is the point."""
import json

import pytest
import torch

from bench.measure.latency import CUDA_TIMER
from bench.measure.memory import CUDA_COUNTER
from bench.schema import FAILED_STATUSES
from tests.conftest import Bench, InProcess

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


def test_training_step_can_be_left_out(in_process: InProcess):
    outcome = in_process(*TINY, "resolution=32x32", "measure.train_step=false")
    assert outcome.status == "ok", outcome.error
    [row] = in_process.rows().rows
    assert row.latency_ms_median > 0 and row.train_latency_ms_median is None and row.saved_for_backward_mib is None


@pytest.mark.slow   # U-Net's layers and training are covered faster in test_models_dense_unet and test_train
def test_unet_profiles_end_to_end(in_process: InProcess):
    # 32x32, not 128x128: the same 31 M-parameter net through every stage (its four poolings need 16x16);
    # what remains is mostly the training step's backward pass and Adam update, whatever the size.
    outcome = in_process("model=unet", "device=cpu", "resolution=32x32")
    assert outcome.status == "ok", outcome.error
    [row] = in_process.rows().rows
    assert row.status == "ok" and row.model == "unet" and row.params_total > 30e6
    assert row.train_latency_ms_median > 0    # its training step too, as in make bench


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_single_run_on_cuda_is_timed_by_events_and_measured_by_the_allocator(in_process: InProcess, precision):
    outcome = in_process(*TINY, "device=cuda", f"precision={precision}", "resolution=40x56", "batch_size=2")
    assert outcome.status == "ok", outcome.error
    [row] = in_process.rows().rows
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


def test_unknown_registered_name_lists_the_known_ones(in_process: InProcess):
    outcome = in_process("model=custom", "model.name=unett")
    assert outcome.status == "error" and outcome.status in FAILED_STATUSES   # the CLI exits 1
    [row] = in_process.rows().rows
    assert row.status == "error" and "Did you mean unet" in row.error and "fcn8s" in row.error


def test_invalid_values_are_named_with_what_is_accepted(in_process: InProcess, caplog):
    # The CLI prints run_job's "[invalid] ..." log line as the last one and exits 1
    # (test_sweeps_at_scale.py::test_an_unknown_eval_split_is_refused_before_training runs it).
    outcome = in_process(*TINY, "precision=fp8")
    assert outcome.status == "invalid" and outcome.status in FAILED_STATUSES
    assert "unknown precision 'fp8'; choose one of fp32, fp16, bf16" in outcome.error
    assert "unknown precision 'fp8'" in caplog.text
    outcome = in_process(*TINY, "resolution=big")
    assert outcome.status == "invalid" and "resolution must look like HEIGHTxWIDTH" in outcome.error
    assert in_process.rows().rows == []


def test_outcome_marker_written_for_every_job(in_process: InProcess):
    in_process(*TINY, "resolution=32x32")
    [marker] = in_process.results.glob("runs/*/outcome.json")      # in the job's run directory
    outcome = json.loads(marker.read_text())
    assert outcome["status"] == "ok" and outcome["job_key"].startswith("tiny_segmenter_synthetic_cpu_32x32")
