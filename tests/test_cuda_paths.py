"""The CUDA code paths' logic, checked on a machine without a GPU by standing in for torch.cuda.

What a GPU alone can show (real kernels, real allocator numbers) is measured by the harness on
one; here: events recorded around every call, one synchronisation before they are read, the
allocator's peak reset before the forward pass and read after it.
"""
import pytest
import torch
from torch import nn

import bench.measure.latency as latency
import bench.measure.memory as memory
from bench.measure.size import MIB

CUDA = torch.device("cuda", 0)


class FakeCuda:
    """A clock that advances 2 ms per call of the timed function, and a log of CUDA calls."""

    def __init__(self):
        self.now_ms = 0.0
        self.log: list[str] = []

    def tick(self):
        self.now_ms += 2.0
        self.log.append("call")

    def event_class(self):
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.at = None

            def record(self):
                self.at = fake.now_ms

            def elapsed_time(self, end):
                assert "synchronize" in fake.log, "events read before the device was synchronised"
                return end.at - self.at

        return Event


@pytest.fixture
def fake_cuda(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(torch.cuda, "Event", fake.event_class())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: fake.log.append("synchronize"))
    return fake


def test_cuda_latency_uses_events_and_synchronises_once_after_the_loop(fake_cuda):
    stats = latency.measure_latency(fake_cuda.tick, CUDA,
                                    latency.TimingConfig(warmup_iters=2, min_run_time=0.0, min_iters=6, max_iters=6))
    assert stats.median_ms == 2.0 and stats.iters == 6 and stats.timer == latency.CUDA_TIMER
    # warm-up, a synchronisation, the timed calls with no synchronisation between them, one more.
    assert fake_cuda.log == ["call"] * 2 + ["synchronize"] + ["call"] * 6 + ["synchronize"]


def test_cuda_peak_memory_resets_the_allocator_peak_before_the_forward_pass(fake_cuda, monkeypatch):
    allocator = {"allocated": 100 * MIB, "peak": 0}

    def reset_peak(device=None):
        fake_cuda.log.append("reset")
        allocator["peak"] = allocator["allocated"]

    class Recorder(nn.Module):
        def forward(self, x):
            fake_cuda.log.append("forward")
            allocator["peak"] = allocator["allocated"] + 50 * MIB
            return x

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocator["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocator["peak"])
    reading = memory.forward_peak_memory(Recorder(), torch.zeros(1), CUDA)
    assert reading.peak_mib == 150 and reading.activation_mib == 50
    assert reading.counter == memory.CUDA_COUNTER
    assert fake_cuda.log == ["synchronize", "reset", "forward", "synchronize"]


def test_cuda_pass_peak_reads_the_allocator_around_the_pass_alone(fake_cuda, monkeypatch):
    # The caching allocator sees every free, so the CPU path's profiled lead-in is not run.
    allocator = {"allocated": 10 * MIB, "peak": 0}
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: fake_cuda.log.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocator["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocator["peak"])

    def step():
        fake_cuda.log.append("step")
        allocator["peak"] = allocator["allocated"] + 7 * MIB

    reading = memory.pass_peak(step, CUDA, lead_in=lambda: fake_cuda.log.append("lead-in"))
    assert reading.peak_bytes == 7 * MIB and reading.counter == memory.CUDA_COUNTER
    assert fake_cuda.log == ["synchronize", "reset", "step", "synchronize"]


def test_cuda_training_step_reads_the_allocator_after_gradients_and_state_exist(fake_cuda, monkeypatch):
    from omegaconf import OmegaConf

    from bench.measure.training import measure_training_step
    allocator = {"allocated": 0, "peak": 0}

    def reset_peak(device=None):
        fake_cuda.log.append("reset")
        allocator["peak"] = allocator["allocated"]

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset_peak)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocator["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocator["peak"])

    class Net(nn.Conv2d):
        def forward(self, x):
            fake_cuda.tick()
            # Gradients and Adam's state exist from the second step on: the measured step rises 3 MiB.
            allocator["peak"] = allocator["allocated"] + 3 * MIB
            return super().forward(x)

    net = Net(3, 2, 1)
    image, mask = torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    cfg = OmegaConf.load("conf/train/default.yaml")
    fields = measure_training_step(net, cfg, (image, mask), 2, 255, CUDA,
                                   latency.TimingConfig(warmup_iters=4, min_run_time=0.0, min_iters=3, max_iters=3))
    # One step, then the measured one between the allocator's reset and read, then 4 - 2 more
    # warm-up steps, a synchronisation, 3 timed steps (one event pair each) and the last one;
    # then the forward pass whose saved tensors are counted.
    assert fake_cuda.log[:5] == ["call", "synchronize", "reset", "call", "synchronize"]
    assert fake_cuda.log[5:] == ["call"] * 2 + ["synchronize"] + ["call"] * 3 + ["synchronize", "call"]
    assert fields.activation_peak_mib == 3 and fields.memory_counter == memory.CUDA_COUNTER
    assert fields.gradients_mib * MIB == (3 * 2 + 2) * 4 and fields.latency.warmup_iters == 4
