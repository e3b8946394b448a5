"""The measuring instruments, checked against quantities worked out by hand."""
import statistics

import pytest
import torch
from torch import nn

import bench.measure.latency as latency
from bench.measure.flops import forward_flops
from bench.measure.latency import TimingConfig, measure_latency, summarize
from bench.measure.memory import (
    TensorMemoryTracker, cpu_allocator_peak, forward_peak_memory, running_peak)
from bench.measure.size import MIB, model_size

FLOAT32 = 4


def test_memory_tracker_matches_hand_count_for_a_conv_chain():
    # 3 -> 16 -> 4 -> 8 channels at 32x32, no padding change. While conv k runs, its input
    # (conv k-1's output) and its output are alive; earlier outputs are freed. So the peak is
    # max(out1 + out2, out2 + out3) = (16 + 4) maps, not the sum of all (28) or the largest (16).
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 4, 3, padding=1),
                        nn.Conv2d(4, 8, 3, padding=1))
    x = torch.randn(1, 3, 32, 32)
    pixels = 32 * 32
    tracker = TensorMemoryTracker()
    with torch.inference_mode(), tracker:
        net(x)
    assert tracker.peak_bytes == (16 + 4) * pixels * FLOAT32


def test_memory_tracker_counts_a_storage_once_across_views():
    tracker = TensorMemoryTracker()
    with tracker:
        base = torch.zeros(1000)
        views = [base.view(10, 100), base[:500], base.reshape(100, 10)]
    assert tracker.peak_bytes == 1000 * FLOAT32
    del views


def test_forward_peak_memory_adds_weights_and_input_on_cpu():
    net = nn.Conv2d(3, 8, 1)
    x = torch.randn(2, 3, 16, 16)
    # oneDNN's kernels allocate scratch of their own (which the allocator count rightly includes);
    # PyTorch's native 1x1 convolution allocates nothing but its output.
    with torch.backends.mkldnn.flags(enabled=False):
        reading = forward_peak_memory(net, x, torch.device("cpu"))
    weights = (8 * 3 + 8) * FLOAT32
    activations = 2 * 8 * 16 * 16 * FLOAT32
    assert reading.activation_mib * MIB == activations
    assert reading.tensor_activation_mib * MIB == activations
    assert reading.peak_mib * MIB == weights + x.numel() * FLOAT32 + activations


def test_running_peak_is_the_highest_running_sum_from_zero():
    assert running_peak([100, 50, -100, 200, -250]) == 250
    assert running_peak([-10, 5]) == 0      # frees of earlier blocks never make a peak
    assert running_peak([]) == 0


def test_allocator_count_sees_the_im2col_workspace_the_tensor_count_misses():
    # Without oneDNN a 3x3 conv runs as im2col + matrix multiply: while conv 2 (16 -> 4) runs,
    # the allocator holds its input (16 maps), its output (4 maps) and its column buffer
    # (16 x 3 x 3 rows of 32x32) that it frees inside itself. Conv 1 (3 -> 16: 27 rows, 16 maps)
    # and conv 3 (4 -> 8: 36 rows, 4 + 8 maps) need less.
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 4, 3, padding=1),
                        nn.Conv2d(4, 8, 3, padding=1))
    x = torch.randn(1, 3, 32, 32)
    pixels = 32 * 32
    with torch.backends.mkldnn.flags(enabled=False):
        reading = forward_peak_memory(net, x, torch.device("cpu"))
    assert reading.activation_mib * MIB == (16 + 4 + 16 * 9) * pixels * FLOAT32
    assert reading.tensor_activation_mib * MIB == (16 + 4) * pixels * FLOAT32


def test_allocator_count_measures_only_the_window_after_the_lead_in():
    kept = []

    def lead_in():   # allocates what the measured pass frees
        kept.append(torch.empty(1000, dtype=torch.float32))

    def measured():
        kept.pop()                                  # frees 4000 bytes
        temporary = torch.empty(3000, dtype=torch.float32)   # 12000 bytes
        del temporary

    # The free is seen (it was allocated under the profiler), so the rise is 12000 - 4000.
    assert cpu_allocator_peak(measured, lead_in=lead_in) == 12000 - 4000


def test_flops_match_hand_count_including_transposed_convolution():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),   # 32x32 -> 16x16
        nn.ReLU(),
        nn.ConvTranspose2d(8, 4, 2, stride=2),     # 16x16 -> 32x32
        nn.Conv2d(4, 5, 1),                        # 32x32
    )
    x = torch.randn(2, 3, 32, 32)
    conv_macs = 16 * 16 * 8 * (3 * 3 * 3)          # output pixels x out channels x kernel volume
    # A transposed conv multiplies every input pixel by a Cin x Cout x k x k kernel.
    transposed_macs = 16 * 16 * 8 * 4 * (2 * 2)
    pointwise_macs = 32 * 32 * 5 * 4
    flops, output = forward_flops(net, x)
    assert flops == 2 * 2 * (conv_macs + transposed_macs + pointwise_macs)
    assert output.shape == (2, 5, 32, 32)


def test_model_size_separates_trainable_and_counts_buffers_in_bytes():
    net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    net[0].weight.requires_grad_(False)
    size = model_size(net)
    assert size.params_total == 12 + 8
    assert size.params_trainable == 8
    # Buffers: running mean and var (4 float32 each) and num_batches_tracked (one int64).
    assert size.size_mib * MIB == (12 + 8 + 4 + 4) * FLOAT32 + 1 * 8


def test_summarize_reports_median_with_its_interval_iqr_and_p90():
    times = [float(t) for t in range(11, 0, -1)]  # 11..1 ms, in the order they were timed
    stats = summarize(times, warmup_iters=3, timer="t", target_rel_ci=0.5)
    assert stats.median_ms == 6
    assert stats.iqr_ms == pytest.approx(8.5 - 3.5)
    assert stats.p90_ms == pytest.approx(10)
    assert stats.p99_ms is None  # 11 calls say nothing about the slowest 1%
    assert stats.mean_ms == statistics.fmean(times)
    assert stats.iters == 11 and stats.times_ms == tuple(times)
    # n=11: ranks 2 and 10 (P(Binomial(11, 1/2) <= 1) = 12/2048 <= 0.025 < P(<= 2) = 67/2048).
    assert (stats.ci_low_ms, stats.ci_high_ms) == (2, 10)
    assert stats.rel_ci == pytest.approx(4 / 6) and not stats.precision_reached


@pytest.mark.parametrize("n, ranks", [(5, None), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (100, (40, 61))])
def test_the_medians_interval_ranks_match_the_binomial_tables(n, ranks):
    assert latency.median_interval_ranks(n) == ranks


def test_the_normal_approximation_takes_over_within_a_rank_of_the_exact_one():
    exact = latency.median_interval_ranks(latency.EXACT_RANKS_UP_TO)
    approximate = latency.median_interval_ranks(latency.EXACT_RANKS_UP_TO + 1)
    assert abs(exact[0] - approximate[0]) <= 1 and abs(exact[1] - approximate[1]) <= 2


def test_the_interval_covers_the_median_about_95_percent_of_the_time():
    import random
    rng, n, trials = random.Random(0), 30, 4000
    true_median = 1.0  # of the lognormal below, a skewed, heavy-tailed stand-in for timings
    covered = 0
    for _ in range(trials):
        low, high = latency.median_interval(sorted(rng.lognormvariate(0, 0.5) for _ in range(n)))
        covered += low <= true_median <= high
    assert 0.94 <= covered / trials <= 0.99  # exact coverage at n=30 is 0.957


def _fake_loop(monkeypatch, times_ms, config):
    """``time_until_precise`` over calls whose times cycle through ``times_ms``; the clock
    advances by each call's time, so the run-time floor and cap are met as a real loop meets them."""
    clock = {"t": 0.0}
    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock["t"])
    served = []

    def block(calls):
        out = [times_ms[(len(served) + i) % len(times_ms)] for i in range(calls)]
        served.extend(out)
        clock["t"] += sum(out) / 1e3
        return out

    return latency.time_until_precise(block, config)


def test_the_loop_stops_once_the_median_is_known_to_the_stated_precision(monkeypatch):
    config = TimingConfig(min_run_time=0.0, min_iters=10, rel_ci=0.03)
    times, reason = _fake_loop(monkeypatch, [10.0, 10.1, 9.9, 10.2, 9.8], config)
    assert reason == latency.STOP_PRECISION and len(times) == 10  # the floor, then precise at once
    stats = summarize(times, 0, "t", config.rel_ci, reason)
    assert stats.precision_reached and stats.rel_ci <= 0.03


def test_a_noisy_loop_stops_at_the_cap_and_says_it_missed_the_precision(monkeypatch):
    config = TimingConfig(min_run_time=0.0, min_iters=10, rel_ci=0.03, max_run_time=2.0)
    times, reason = _fake_loop(monkeypatch, [10.0, 40.0, 5.0, 80.0, 20.0, 1.0], config)
    assert reason == latency.STOP_MAX_RUN_TIME
    stats = summarize(times, 0, "t", config.rel_ci, reason)
    assert not stats.precision_reached and stats.rel_ci > 0.03
    assert sum(times[:-1]) < 2000 <= sum(times)  # stopped by the first call past the cap


def test_the_loop_keeps_to_its_floors_before_it_may_stop(monkeypatch):
    config = TimingConfig(min_run_time=1.0, min_iters=3, rel_ci=0.5)
    times, reason = _fake_loop(monkeypatch, [10.0], config)
    assert reason == latency.STOP_PRECISION and len(times) == 100  # 1 s of 10 ms calls
    config = TimingConfig(min_run_time=0.0, min_iters=3, max_iters=4, rel_ci=0.001)
    assert _fake_loop(monkeypatch, [1.0, 2.0], config) == ([1.0, 2.0, 1.0, 2.0], latency.STOP_MAX_ITERS)


def test_measure_latency_warms_up_then_runs_at_least_min_iters():
    calls = []
    stats = measure_latency(lambda: calls.append(1), torch.device("cpu"),
                            TimingConfig(warmup_iters=4, min_run_time=0.0, min_iters=7, max_iters=7))
    assert len(calls) == 4 + 7
    assert stats.iters == 7 and stats.warmup_iters == 4 and stats.stop_reason == latency.STOP_MAX_ITERS


def test_measure_latency_keeps_going_until_min_run_time(monkeypatch):
    clock = {"t": 0.0}

    def fake_perf_counter():
        clock["t"] += 0.01
        return clock["t"]

    monkeypatch.setattr(latency.time, "perf_counter", fake_perf_counter)
    stats = measure_latency(lambda: None, torch.device("cpu"),
                            TimingConfig(warmup_iters=0, min_run_time=1.0, min_iters=2))
    # Each iteration advances the fake clock by 3 ticks (loop check, start, stop) of 10 ms.
    assert stats.iters >= 30
