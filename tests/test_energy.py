"""Energy per image: the counters and the window, on a fake powercap tree, a stand-in NVML and a
fake clock, checked against figures worked out by hand."""
import sys
import types
from pathlib import Path

import pytest
import torch

from bench.records import flatten
from bench.measure.energy import (
    NVML_MISSING, EnergyRecord, NvmlCounter, RaplCounter, Unavailable, energy_counter,
    energy_record, measure_energy, nvml_counter, rapl_counter, rapl_package_zones, unwrapped_delta)

J = 1_000_000  # microjoules


class FakeMachine:
    """A powercap tree whose energy_uj files move as the fake clock does: each zone draws a set
    power, and its counter wraps to zero at max_energy_range_uj as the kernel's does."""

    def __init__(self, root: Path, zones: dict[str, dict]):
        self.root = root
        self.now = 100.0
        self.zones = zones
        self.energy_uj = {name: zone["start_uj"] for name, zone in zones.items()}
        for name, zone in zones.items():
            (root / name).mkdir(parents=True)
            (root / name / "name").write_text(zone["label"] + "\n")
            (root / name / "max_energy_range_uj").write_text(f"{zone['max_uj']}\n")
        self._write()

    def _write(self):
        for name, zone in self.zones.items():
            (self.root / name / "energy_uj").write_text(f"{self.energy_uj[name] % zone['max_uj']}\n")

    def run(self, seconds: float, busy: bool):
        self.now += seconds
        for name, zone in self.zones.items():
            self.energy_uj[name] += round((zone["busy_w"] if busy else zone["idle_w"]) * seconds * J)
        self._write()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float):
        self.run(seconds, busy=False)


@pytest.fixture
def machine(tmp_path):
    # package-0 wraps during the idle window (45 J + 20 J past a 60 J range), package-1 during the
    # timed window (10 J + 25 J past 30 J). The core sub-zone, the MMIO duplicate and the platform
    # zone draw 1 kW each, so counting any of them would show in every figure.
    stray = {"start_uj": 0, "max_uj": 10_000 * J, "idle_w": 1000, "busy_w": 1000}
    return FakeMachine(tmp_path / "powercap", {
        "intel-rapl:0": {"label": "package-0", "start_uj": 45 * J, "max_uj": 60 * J,
                         "idle_w": 10, "busy_w": 40},
        "intel-rapl:1": {"label": "package-1", "start_uj": 0, "max_uj": 30 * J,
                         "idle_w": 5, "busy_w": 20},
        "intel-rapl:0:0": {"label": "core", **stray},
        "intel-rapl:2": {"label": "psys", **stray},
        "intel-rapl-mmio:0": {"label": "package-0", **stray},
    })


def test_unwrapped_delta_undoes_one_wrap():
    assert unwrapped_delta(10, 25, max_range=30) == 15
    assert unwrapped_delta(25, 5, max_range=30) == 10   # 25 -> 30 (wrap) -> 5
    assert unwrapped_delta(7, 7, max_range=30) == 0


def test_only_package_zones_are_summed(machine):
    zones = rapl_package_zones(machine.root)
    assert [zone.name for zone in zones] == ["intel-rapl:0", "intel-rapl:1"]
    counter = rapl_counter(machine.root)
    assert isinstance(counter, RaplCounter)
    assert "intel-rapl:0, intel-rapl:1" in counter.method
    before = counter.read_joules()
    machine.run(2.0, busy=False)  # 10 W + 5 W for 2 s, with package-0 wrapping
    assert counter.read_joules() - before == pytest.approx(30.0)


def test_energy_per_image_on_a_fake_rapl_tree_matches_hand_figures(machine):
    calls = []

    def fn():
        calls.append(machine.now)
        machine.run(0.25, busy=True)

    record = measure_energy(fn, rapl_counter(machine.root), min_seconds=1.1, idle_seconds=2.0,
                            images_per_call=2, clock=machine.clock, sleep=machine.sleep)
    # Idle: (10 + 5) W x 2 s = 30 J. Timed: calls of 0.25 s until >= 1.1 s -> 5 calls, 1.25 s,
    # (40 + 20) W x 1.25 s = 75 J over 5 x 2 = 10 images; idle share 15 W x 1.25 s = 18.75 J.
    assert len(calls) == 5
    assert record == EnergyRecord(
        available=True, method=record.method, window_seconds=1.25, calls=5, images=10,
        joules_total=pytest.approx(75.0), joules_per_image=pytest.approx(7.5),
        average_power_w=pytest.approx(60.0), idle_seconds=2.0, idle_power_w=pytest.approx(15.0),
        joules_per_image_above_idle=pytest.approx((75.0 - 18.75) / 10))
    assert record.window_seconds >= 1.1
    assert record.method.startswith("RAPL")


@pytest.mark.parametrize("min_seconds", [0.0, 1.0])
def test_a_call_longer_than_min_seconds_runs_once_and_sets_the_window(machine, min_seconds):
    calls = []

    def fn():
        calls.append(1)
        machine.run(1.25, busy=True)  # less than one wrap of either package (50 J, 25 J)

    record = measure_energy(fn, rapl_counter(machine.root), min_seconds, idle_seconds=0.5,
                            images_per_call=1, clock=machine.clock, sleep=machine.sleep)
    assert (len(calls), record.window_seconds) == (1, 1.25)
    assert record.joules_per_image == pytest.approx(60.0 * 1.25)


def test_above_idle_is_stored_negative_when_idle_drew_more():
    # 40 J over a 2 s idle window = 20 W; 15 J over a 1 s timed window: 15 - 20 = -5 J, 3 images.
    record = energy_record("fake", idle_joules=40.0, idle_seconds=2.0, window_joules=15.0,
                           window_seconds=1.0, calls=3, images_per_call=1)
    assert record.joules_per_image_above_idle == pytest.approx(-5.0 / 3)
    assert record.average_power_w == pytest.approx(15.0)
    assert record.idle_power_w == pytest.approx(20.0)


def test_zero_length_window_is_refused():
    with pytest.raises(ValueError, match="positive length"):
        energy_record("fake", 1.0, 0.0, 1.0, 1.0, 1, 1)


def test_row_fields_are_prefixed():
    row = flatten(energy_record("fake", 10.0, 1.0, 30.0, 1.5, 3, 2), "energy_")
    assert list(row) == [
        "energy_available", "energy_unavailable_reason", "energy_method", "energy_window_seconds",
        "energy_calls", "energy_images", "energy_joules_total", "energy_joules_per_image",
        "energy_average_power_w", "energy_idle_seconds", "energy_idle_power_w",
        "energy_joules_per_image_above_idle"]
    assert row["energy_available"] is True and row["energy_unavailable_reason"] is None
    assert row["energy_joules_per_image"] == pytest.approx(5.0)


def test_no_powercap_tree_is_unavailable_and_fn_is_not_called(tmp_path):
    missing = tmp_path / "powercap"
    counter = rapl_counter(missing)
    assert isinstance(counter, Unavailable) and str(missing) in counter.reason

    def fn():
        raise AssertionError("fn must not run without a counter")

    row = flatten(measure_energy(fn, counter, 1.0, 1.0, 1, clock=fn, sleep=fn), "energy_")
    assert row["energy_available"] is False
    assert row["energy_unavailable_reason"] == counter.reason
    assert row["energy_joules_per_image"] is None


def test_a_tree_without_package_zones_is_unavailable(tmp_path):
    (tmp_path / "intel-rapl").mkdir()  # the control type directory alone, as with no zones
    counter = rapl_counter(tmp_path)
    assert isinstance(counter, Unavailable) and "no RAPL package zones" in counter.reason


def test_unreadable_energy_uj_is_unavailable_with_the_reason(machine, monkeypatch):
    # The tests may run as root, whom chmod does not stop; raise what a non-root open() raises
    # on a 0400 energy_uj (kernels since 5.10).
    read_text = Path.read_text

    def denied(path, *args, **kwargs):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    counter = rapl_counter(machine.root)
    assert isinstance(counter, Unavailable)
    assert "intel-rapl:0/energy_uj" in counter.reason and "permission denied" in counter.reason


class FakeNvml(types.ModuleType):
    """The part of pynvml the counter uses, with a GPU drawing a set power on the fake clock."""

    class NVMLError(Exception):
        pass

    def __init__(self, supported: bool = True):
        super().__init__("pynvml")
        self.now, self.millijoules, self.supported = 0.0, 5_000_000, supported
        self.initialised, self.handles = False, []

    def nvmlInit(self):
        self.initialised = True

    def nvmlDeviceGetHandleByIndex(self, index):
        self.handles.append(index)
        return ("handle", index)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        assert self.initialised and handle[0] == "handle"
        if not self.supported:
            raise self.NVMLError("Not Supported")
        return self.millijoules

    def run(self, seconds, watts):
        self.now += seconds
        self.millijoules += round(watts * seconds * 1e3)


def test_nvml_millijoules_become_joules_per_image(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    counter = energy_counter(torch.device("cuda:1"))
    assert isinstance(counter, NvmlCounter) and nvml.handles == [1]
    assert "GPU 1" in counter.method
    assert counter.read_joules() == pytest.approx(5_000.0)

    # Idle 50 W x 2 s = 100 J; two 0.25 s calls at 250 W reach 0.5 s: 125 J over 2 x 4 images.
    record = measure_energy(lambda: nvml.run(0.25, 250), counter, min_seconds=0.5, idle_seconds=2.0,
                            images_per_call=4, clock=lambda: nvml.now,
                            sleep=lambda seconds: nvml.run(seconds, 50))
    assert (record.calls, record.images, record.window_seconds) == (2, 8, 0.5)
    assert record.joules_per_image == pytest.approx(125.0 / 8)
    assert record.average_power_w == pytest.approx(250.0)
    assert record.idle_power_w == pytest.approx(50.0)
    assert record.joules_per_image_above_idle == pytest.approx((125.0 - 50.0 * 0.5) / 8)


def test_gpu_without_the_energy_counter_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(supported=False))
    counter = nvml_counter(0)
    assert isinstance(counter, Unavailable)
    assert "GPU 0" in counter.reason and "Not Supported" in counter.reason


def test_missing_nvidia_ml_py_is_unavailable_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    counter = energy_counter(torch.device("cuda:0"))
    assert counter == Unavailable(NVML_MISSING)
    assert counter.reason == "nvidia-ml-py not installed: pip install -e .[gpu]"


def test_cpu_reads_rapl_and_other_devices_have_no_counter(machine, tmp_path):
    assert isinstance(energy_counter(torch.device("cpu"), powercap_root=machine.root), RaplCounter)
    assert isinstance(energy_counter(torch.device("cpu"), powercap_root=tmp_path / "none"),
                      Unavailable)
    assert "mps" in energy_counter(torch.device("mps")).reason
