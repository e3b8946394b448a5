"""Contention: other processes' CPU time from a stand-in /proc tree, the idle wait, a stand-in NVML,
and one reading of this machine's real /proc."""
from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path

import pytest

from bench.records import flatten
from bench.measure.contention import (BUSY_THRESHOLD, ContentionWatch, gpu_contention,
                                      parse_proc_stat, parse_self_stat, wait_for_idle)

TICKS = 100  # per second, as most kernels count


class FakeMachine:
    """A stand-in /proc tree (stat, self/stat, loadavg) and a clock, advanced together."""

    def __init__(self, root: Path):
        self.root = root
        self.now = 100.0
        # user nice system idle iowait irq softirq steal guest guest_nice
        self.cpu = {"user": 1000, "nice": 20, "system": 200, "idle": 5000, "iowait": 10, "irq": 5,
                    "softirq": 5, "steal": 0, "guest": 0, "guest_nice": 0}
        self.utime, self.stime = 50, 10
        self.load = 0.5
        (root / "self").mkdir(parents=True)
        self.write()

    def clock(self) -> float:
        return self.now

    def write(self) -> None:
        (self.root / "stat").write_text(
            "cpu  " + " ".join(str(v) for v in self.cpu.values()) + "\n"
            "cpu0 1 2 3 4 5 6 7 8 9 10\nintr 12345\n")
        # A command name with spaces and parentheses, as /proc allows.
        fields = ["S"] + ["0"] * 10 + [str(self.utime), str(self.stime)] + ["0"] * 30
        (self.root / "self" / "stat").write_text(f"4242 (py (th) x) {' '.join(fields)}\n")
        (self.root / "loadavg").write_text(f"{self.load:.2f} 0.40 0.30 1/123 4242\n")

    def advance(self, seconds: float, *, user: int = 0, system: int = 0, steal: int = 0,
                guest: int = 0, own_user: int = 0, own_system: int = 0, idle: int = 0,
                load: float | None = None) -> None:
        self.now += seconds
        for name, ticks in (("user", user), ("system", system), ("steal", steal),
                            ("guest", guest), ("idle", idle)):
            self.cpu[name] += ticks
        self.utime += own_user
        self.stime += own_system
        self.load = self.load if load is None else load
        self.write()


@pytest.fixture
def machine(tmp_path):
    return FakeMachine(tmp_path / "proc")


def watch(machine: FakeMachine, **kwargs) -> ContentionWatch:
    return ContentionWatch(proc_root=machine.root, clock=machine.clock, cpus=2,
                           ticks_per_second=TICKS, **kwargs)


def test_busy_window_hand_computed(machine):
    with watch(machine) as w:
        # 1 s on 2 CPUs: the machine ran 150 + 30 + 10 (steal) = 190 ticks, of which this process
        # 80 + 15 = 95; guest time is already inside user and must not be added again.
        machine.advance(1.0, user=150, system=30, steal=10, guest=40, idle=10,
                        own_user=80, own_system=15, load=2.5)
    record = w.record
    assert record.window_seconds == pytest.approx(1.0)
    assert record.other_cpu_seconds == pytest.approx(0.95)       # (190 - 95) / 100
    assert record.other_cpu_fraction == pytest.approx(0.475)     # 0.95 / (1.0 s x 2 CPUs)
    assert record.steal_seconds == pytest.approx(0.10)
    assert (record.load_before, record.load_after) == (0.5, 2.5)
    assert record.busy is True
    assert "48%" in record.reason and "above" in record.reason
    row = flatten(record, "contention_")
    assert set(row) == {"contention_window_seconds", "contention_other_cpu_fraction", "contention_other_cpu_seconds",
                        "contention_steal_seconds", "contention_load_before", "contention_load_after",
                        "contention_cpus", "contention_busy", "contention_note"}
    assert row["contention_busy"] is True
    assert row["contention_other_cpu_fraction"] == pytest.approx(0.475)


def test_idle_window_is_not_busy(machine):
    with watch(machine) as w:
        # 2 s on 2 CPUs; others took 10 ticks = 0.1 s = 2.5% of 4 CPU-seconds.
        machine.advance(2.0, user=100, system=10, idle=290, own_user=95, own_system=5)
    record = w.record
    assert record.other_cpu_seconds == pytest.approx(0.10)
    assert record.other_cpu_fraction == pytest.approx(0.025)
    assert record.steal_seconds == 0
    assert record.busy is False
    assert "within" in record.reason


def test_threshold_decides(machine):
    with watch(machine, threshold=0.02) as w:
        machine.advance(2.0, user=100, system=10, own_user=95, own_system=5)
    assert w.record.busy is True
    assert BUSY_THRESHOLD == 0.10


def test_own_time_rounded_above_the_machine_reads_as_zero(machine):
    with watch(machine) as w:
        machine.advance(0.5, user=40, own_user=41)  # a tick of rounding between the two counters
    assert w.record.other_cpu_seconds == 0.0
    assert w.record.busy is False


def test_missing_proc_is_unknown_with_reason(tmp_path):
    with ContentionWatch(proc_root=tmp_path / "absent", cpus=2) as w:
        pass
    record = w.record
    assert record.busy is None and record.other_cpu_fraction is None
    assert record.reason.startswith("contention unknown: cannot read")
    row = flatten(record, "contention_")
    assert row["contention_busy"] is None
    assert row["contention_note"].startswith("contention unknown")


def test_unparsable_proc_is_unknown(machine):
    (machine.root / "stat").write_text("intr 1 2 3\n")
    with watch(machine) as w:
        machine.advance(1.0)
    assert w.record.busy is None
    assert "no aggregate 'cpu' line" in w.record.reason


def test_record_before_the_window_ends(machine):
    with watch(machine) as w:
        with pytest.raises(RuntimeError):
            w.record


def test_parsers():
    assert parse_proc_stat("cpu  1 2 3 100 7 4 5 6 9 9\n") == (1 + 2 + 3 + 4 + 5 + 6, 6)
    assert parse_proc_stat("cpu 1 2 3 100\n") == (6, 0)  # an old kernel's four columns
    assert parse_self_stat("7 (a) b) R " + " ".join(str(i) for i in range(4, 40))) == 14 + 15


def sampling_sleep(machine: FakeMachine, others_ticks: list[int]):
    """A stand-in for time.sleep: each sample, other processes take the next figure's ticks."""
    samples = iter(others_ticks)

    def sleep(seconds: float) -> None:
        machine.advance(seconds, user=next(samples), idle=10, own_user=1)

    return sleep


def wait(machine: FakeMachine, sleep, max_wait: float) -> tuple:
    return wait_for_idle(max_wait, sample_seconds=1.0, proc_root=machine.root,
                         clock=machine.clock, sleep=sleep, cpus=2, ticks_per_second=TICKS)


def test_wait_for_idle_returns_as_soon_as_idle(machine):
    # Busy (150 of 200 ticks: 75%) twice, then 5 ticks: 2.5%.
    idle, waited, fraction = wait(machine, sampling_sleep(machine, [151, 151, 6]), max_wait=10)
    assert idle is True
    assert waited == pytest.approx(3.0)
    assert fraction == pytest.approx(0.025)


def test_wait_for_idle_gives_up_after_max_wait(machine):
    result = wait(machine, sampling_sleep(machine, [151] * 10), max_wait=3)
    assert result.idle is False
    assert result.waited_seconds == pytest.approx(3.0)
    assert result.last_fraction == pytest.approx(0.75)


def test_wait_for_idle_unknown_without_proc(tmp_path):
    result = wait_for_idle(5, proc_root=tmp_path / "absent", clock=lambda: 0.0,
                           sleep=lambda s: None, cpus=2)
    assert result.idle is None and result.last_fraction is None


class FakeNVMLError(Exception):
    pass


def fake_pynvml(pids: list[int], reasons: int, newer_name: bool = True,
                init_error: bool = False) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.NVMLError = FakeNVMLError
    module.calls = []

    def init():
        if init_error:
            raise FakeNVMLError("Driver Not Loaded")
        module.calls.append("init")

    module.nvmlInit = init
    module.nvmlShutdown = lambda: module.calls.append("shutdown")
    module.nvmlDeviceGetHandleByIndex = lambda index: ("index", index)
    module.nvmlDeviceGetHandleByUUID = lambda uuid: ("uuid", uuid)
    module.nvmlDeviceGetComputeRunningProcesses = lambda handle: [
        types.SimpleNamespace(pid=pid, usedGpuMemory=1 << 20) for pid in pids]
    name = ("nvmlDeviceGetCurrentClocksEventReasons" if newer_name
            else "nvmlDeviceGetCurrentClocksThrottleReasons")
    setattr(module, name, lambda handle: reasons)
    return module


def test_gpu_other_process_and_throttle_reason(monkeypatch):
    nvml = fake_pynvml([os.getpid(), 4242], reasons=0x4 | 0x40)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    row = gpu_contention(0)
    assert row["contention_gpu_other_processes"] == 1
    assert row["contention_gpu_other_pids"] == "4242"
    assert row["contention_gpu_throttle_reasons"] == "sw_power_cap,hw_thermal_slowdown"
    assert row["contention_gpu_busy"] is True
    assert nvml.calls == ["init", "shutdown"]


def test_gpu_alone_with_the_older_nvml_name(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml",
                        fake_pynvml([os.getpid()], reasons=0, newer_name=False))
    row = gpu_contention(0, uuid="abc")
    assert row["contention_gpu_other_processes"] == 0
    assert row["contention_gpu_throttle_reasons"] == ""
    assert row["contention_gpu_busy"] is False


def test_gpu_in_another_pid_namespace(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([111], reasons=0x1 | 0x1000))
    alone = gpu_contention(0)
    assert alone["contention_gpu_busy"] is False
    assert alone["contention_gpu_throttle_reasons"] == "gpu_idle,0x1000"
    assert "PID namespace" in alone["contention_gpu_note"]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([111, 222], reasons=0))
    shared = gpu_contention(0)
    assert shared["contention_gpu_busy"] is True
    assert shared["contention_gpu_other_processes"] == 1


def test_gpu_unknown_without_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import then raises ImportError
    row = gpu_contention(0)
    assert row["contention_gpu_busy"] is None
    assert "nvidia-ml-py is not installed" in row["contention_gpu_note"]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], 0, init_error=True))
    assert "Driver Not Loaded" in gpu_contention(0)["contention_gpu_note"]


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc")
def test_real_proc_does_not_count_own_time_as_other():
    """This process busy-loops for 0.2 s of CPU time under a real watch. The machine's busy time
    and this process's CPU time are read independently around it: the watch's other-process time
    must be their difference, not their sum; counting own time as other would be off by 0.2 s.
    (Other sessions may load the machine meanwhile, so the other time itself is not bounded.)"""
    ticks = os.sysconf("SC_CLK_TCK")
    cpus = os.cpu_count()
    machine_before = parse_proc_stat(Path("/proc/stat").read_text())[0]
    own_before = time.process_time()
    with ContentionWatch() as w:
        start = time.process_time()
        while time.process_time() - start < 0.2:
            pass
    own = time.process_time() - own_before
    machine_busy = (parse_proc_stat(Path("/proc/stat").read_text())[0] - machine_before) / ticks
    record = w.record
    assert record.window_seconds >= 0.2
    assert 0.0 <= record.other_cpu_fraction <= 1.0
    # Each per-CPU counter rounds to a tick at each read, and so does this process's.
    assert record.other_cpu_seconds == pytest.approx(max(0.0, machine_busy - own),
                                                     abs=(2 * cpus + 2) / ticks)
