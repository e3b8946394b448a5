"""Energy per image: a hardware energy counter read around a timed window of repeated calls.

Two counters are read, each giving the energy of a whole device, not of this process alone:

- CPU: Linux RAPL under ``/sys/class/powercap`` (Intel, and AMD through the same driver). Each
  package zone ``intel-rapl:N`` counts microjoules in ``energy_uj`` and wraps to zero at
  ``max_energy_range_uj``. Only the package zones are summed: their sub-zones (``intel-rapl:N:M``,
  cores, uncore, DRAM) are parts of a package or overlap it, ``intel-rapl-mmio:N`` is the same
  package read another way, and ``psys`` is the whole platform, package included; adding any of
  them would count the same joules twice. Since the Platypus side channel (CVE-2020-8694, kernels
  from 5.10 on) ``energy_uj`` is readable by root only, so elsewhere the counter is unavailable.
- CUDA: NVML's ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the driver loaded,
  Volta and newer), from ``nvidia-ml-py`` (the project's ``gpu`` extra), imported only when asked.

A counter either exists or is :class:`Unavailable` with the reason, so a row can say
"energy unavailable" and why instead of failing. :func:`measure_energy` first measures the idle
power (the counter across a sleep), then the energy of calling ``fn`` for at least
``min_seconds``; the clock and the sleep are parameters so tests run on a fake clock.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from bench.records import column

POWERCAP_ROOT = Path("/sys/class/powercap")
NVML_MISSING = "nvidia-ml-py not installed: pip install -e .[gpu]"
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")


class EnergyCounter(Protocol):
    """A device's energy in joules since an arbitrary origin; only differences between reads mean
    anything. ``method`` says what was read, for the row."""

    method: str

    def read_joules(self) -> float: ...


@dataclass(frozen=True)
class Unavailable:
    """No energy counter can be read here, and why (stored in the row instead of a figure)."""

    reason: str


def unwrapped_delta(before: int, after: int, max_range: int) -> int:
    """The counter's rise from ``before`` to ``after``, allowing for one wrap to zero at
    ``max_range``: a RAPL counter is 32 bits of energy units (about 262 kJ with Intel's usual
    61 uJ unit, 65 kJ with AMD's 15 uJ), so it wraps every 10 to 45 minutes at 100 W; reads must
    be closer together than one wrap. The kernel's range is the counter's largest value, one unit
    short of the modulus; that unit is ignored."""
    return after - before if after >= before else max_range - before + after


class RaplCounter:
    """The summed RAPL package zones; keeps each zone's last raw value so a wrap between two reads
    is undone per zone (a wrap cannot be undone from the sum)."""

    def __init__(self, zones: list[Path]):
        self._energy_files = [zone / "energy_uj" for zone in zones]
        self._max_ranges = [int((zone / "max_energy_range_uj").read_text()) for zone in zones]
        self._last = self._read_raw()
        self._microjoules = 0
        names = ", ".join(zone.name for zone in zones)
        self.method = f"RAPL energy_uj, sum of package zones {names} under {zones[0].parent}"

    def _read_raw(self) -> list[int]:
        return [int(path.read_text()) for path in self._energy_files]

    def read_joules(self) -> float:
        raw = self._read_raw()
        self._microjoules += sum(unwrapped_delta(before, after, max_range)
                                 for before, after, max_range in zip(self._last, raw, self._max_ranges))
        self._last = raw
        return self._microjoules / 1e6


def rapl_package_zones(root: Path) -> list[Path]:
    """The package zones under a powercap tree: ``intel-rapl:N`` named ``package-*``, not their
    sub-zones, the MMIO duplicate, or the platform (``psys``) zone (see the module docstring)."""
    return sorted(zone for zone in root.iterdir()
                  if _PACKAGE_ZONE.fullmatch(zone.name)
                  and (zone / "name").read_text().strip().startswith("package"))


def rapl_counter(root: Path = POWERCAP_ROOT) -> RaplCounter | Unavailable:
    """The RAPL package counter under ``root``, or why it cannot be read."""
    if not root.is_dir():
        return Unavailable(f"no RAPL powercap tree at {root} (no RAPL driver, or a VM or "
                           "container that does not expose it)")
    try:
        zones = rapl_package_zones(root)
        if not zones:
            return Unavailable(f"no RAPL package zones (intel-rapl:N named package-*) under {root}")
        return RaplCounter(zones)
    except PermissionError as exc:
        return Unavailable(f"cannot read {exc.filename}: permission denied (root only on "
                           "kernels since 5.10, CVE-2020-8694)")
    except (OSError, ValueError) as exc:
        return Unavailable(f"cannot read the RAPL counter under {root}: {exc}")


class NvmlCounter:
    """NVML's total-energy counter of one GPU (millijoules since the driver loaded)."""

    def __init__(self, nvml, handle, device_index: int):
        self._nvml = nvml
        self._handle = handle
        self.method = f"NVML nvmlDeviceGetTotalEnergyConsumption, GPU {device_index}"

    def read_joules(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1e3


def nvml_counter(device_index: int) -> NvmlCounter | Unavailable:
    """The NVML energy counter of the GPU at NVML index ``device_index``, or why it cannot be read
    (package missing, no driver, or a GPU older than Volta). NVML numbers GPUs in PCI bus order,
    which is CUDA's order only under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and no
    ``CUDA_VISIBLE_DEVICES`` remapping."""
    try:
        import pynvml
    except ImportError:
        return Unavailable(NVML_MISSING)
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # unsupported GPUs fail here, not mid-run
    except pynvml.NVMLError as exc:
        return Unavailable(f"NVML total-energy counter unreadable on GPU {device_index}: {exc}")
    return NvmlCounter(pynvml, handle, device_index)


def energy_counter(device: torch.device,
                   powercap_root: Path = POWERCAP_ROOT) -> EnergyCounter | Unavailable:
    """The counter for the device a model runs on: NVML on CUDA, RAPL on CPU, none elsewhere."""
    if device.type == "cuda":
        return nvml_counter(torch.cuda.current_device() if device.index is None else device.index)
    if device.type == "cpu":
        return rapl_counter(powercap_root)
    return Unavailable(f"no energy counter is read on {device.type} devices")


@dataclass(frozen=True)
class EnergyRecord:
    """Energy of a timed window of calls, with the idle power measured just before it.

    ``joules_per_image_above_idle`` subtracts idle power x window from the total. It is stored as
    measured, negative included: it goes below zero when the device drew more during the idle
    window than while running (other work during the idle sleep, or a GPU still clocked up from
    the previous job), and clamping it to zero would hide that the subtraction is not to be
    trusted for that row.
    """

    available: bool
    reason: str | None = column("unavailable_reason", default=None)  # the column says what it is
    method: str | None = None
    window_seconds: float | None = None
    calls: int | None = None
    images: int | None = None
    joules_total: float | None = None
    joules_per_image: float | None = None
    average_power_w: float | None = None
    idle_seconds: float | None = None
    idle_power_w: float | None = None
    joules_per_image_above_idle: float | None = None


def energy_record(method: str, idle_joules: float, idle_seconds: float, window_joules: float,
                  window_seconds: float, calls: int, images_per_call: int) -> EnergyRecord:
    """Per-image energy, average power and the idle-subtracted figure from the raw readings."""
    if idle_seconds <= 0 or window_seconds <= 0:
        raise ValueError(f"the idle ({idle_seconds} s) and timed ({window_seconds} s) windows "
                         "must have positive length")
    images = calls * images_per_call
    idle_power_w = idle_joules / idle_seconds
    return EnergyRecord(
        available=True,
        method=method,
        window_seconds=window_seconds,
        calls=calls,
        images=images,
        joules_total=window_joules,
        joules_per_image=window_joules / images,
        average_power_w=window_joules / window_seconds,
        idle_seconds=idle_seconds,
        idle_power_w=idle_power_w,
        joules_per_image_above_idle=(window_joules - idle_power_w * window_seconds) / images,
    )


def _reading(counter: EnergyCounter, clock: Callable[[], float]) -> tuple[float, float]:
    """(time, joules) read together, so each window's energy and duration span the same reads."""
    return clock(), counter.read_joules()


def measure_energy(fn: Callable[[], object], counter: EnergyCounter | Unavailable,
                   min_seconds: float, idle_seconds: float, images_per_call: int,
                   clock: Callable[[], float] = time.perf_counter,
                   sleep: Callable[[float], None] = time.sleep) -> EnergyRecord:
    """Idle power over a ``sleep(idle_seconds)``, then the energy of calling ``fn`` (at least once)
    until ``min_seconds`` have passed on ``clock``. ``fn`` must return only when its work is done
    (synchronise the device inside it), or the window's last reading misses queued work. Without a
    counter ``fn`` is not called and the record carries the reason."""
    if isinstance(counter, Unavailable):
        return EnergyRecord(available=False, reason=counter.reason)
    idle_start, idle_start_j = _reading(counter, clock)
    sleep(idle_seconds)
    idle_end, idle_end_j = _reading(counter, clock)
    start, start_j = _reading(counter, clock)
    calls = 0
    while calls == 0 or clock() - start < min_seconds:
        fn()
        calls += 1
    end, end_j = _reading(counter, clock)
    return energy_record(counter.method, idle_end_j - idle_start_j, idle_end - idle_start,
                         end_j - start_j, end - start, calls, images_per_call)
