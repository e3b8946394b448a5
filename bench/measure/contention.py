"""What else used the machine while a window was timed: other processes' CPU time, load, the GPU.

A latency measured while another process competes for the cores is slower and more spread out
than the same model alone, and the row cannot tell the two apart unless it records the machine's
state. Linux counts every CPU's busy time since boot in the aggregate ``cpu`` line of /proc/stat
(user, nice, system, irq, softirq, steal; clock ticks) and this process's own in /proc/self/stat
(utime + stime, the whole thread group: every torch/OpenMP thread of this process, but no child
process, so a data-loader worker counts as another process). Read both at the start and the end of
the window; the difference of the differences is what other processes took:

    other CPU seconds  = (machine busy ticks - own ticks) / ticks per second
    other CPU fraction = other CPU seconds / (window wall seconds x CPUs of the machine)

The fraction is of the whole machine, because /proc/stat's ``cpu`` line sums every online CPU.
Steal (time a virtual machine's hypervisor gave the CPU to someone else) is part of the busy time
and is also given on its own. The 1-minute load average (/proc/loadavg, what ``os.getloadavg``
reads) before and after shows load that was building up or draining around the window.

Where /proc cannot be read (not Linux, a sandbox) the record says contention is unknown and why;
measuring never fails for it. On CUDA, ``gpu_contention`` asks NVML which other processes hold the
device and why its clocks are held down.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

from bench.records import column

# Busy when other processes took more than a tenth of the machine's CPU time during the window.
# On the 2-core machine that is a fifth of a core: above what the system's daemons and the tick
# rounding of the counters (a few 10 ms ticks over a window of a second) add up to, and far below
# one other busy process (half the machine). On a machine with more than 10 CPUs a single other
# busy core stays under it; pass a lower threshold there.
BUSY_THRESHOLD = 0.10

# /proc/stat ``cpu`` line, after the label: user nice system idle iowait irq softirq steal guest
# guest_nice. Guest time is already counted in user (and guest_nice in nice), so it is not added;
# idle and iowait are time no one ran.
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
_STEAL_FIELD = 7

# NVML's clocks event ("throttle") reason bits, as nvml.h defines them.
_GPU_CLOCK_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


@dataclass(frozen=True)
class CpuSnapshot:
    """The counters at one instant; two of them bound a window."""
    wall: float        # seconds, on the watch's clock
    busy_ticks: int    # all CPUs, since boot
    steal_ticks: int   # all CPUs, since boot
    own_ticks: int     # this process's utime + stime, since it started
    load: float        # 1-minute load average


@dataclass(frozen=True)
class ContentionRecord:
    """What other processes took during one window. The figures and ``busy`` are None when
    contention is unknown; ``reason`` then says why."""
    window_seconds: float | None
    other_cpu_seconds: float | None
    other_cpu_fraction: float | None
    steal_seconds: float | None
    load_before: float | None
    load_after: float | None
    cpus: int
    busy: bool | None
    reason: str = column("note")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy ticks, steal ticks) of all CPUs from /proc/stat's aggregate ``cpu`` line. Old kernels
    print fewer columns; the missing ones count as zero."""
    for line in text.splitlines():
        label, *values = line.split()
        if label == "cpu":
            ticks = [int(v) for v in values] + [0] * (_STEAL_FIELD + 1 - len(values))
            return sum(ticks[i] for i in _BUSY_FIELDS), ticks[_STEAL_FIELD]
    raise ValueError("no aggregate 'cpu' line")


def parse_self_stat(text: str) -> int:
    """utime + stime (ticks) from /proc/<pid>/stat. The command name in parentheses may hold spaces
    and parentheses, so the fields are counted from the last ')': state is field 3, utime 14,
    stime 15."""
    fields = text[text.rindex(")") + 1:].split()
    return int(fields[14 - 3]) + int(fields[15 - 3])


def parse_loadavg(text: str) -> float:
    """The 1-minute load average, the first field of /proc/loadavg."""
    return float(text.split()[0])


def read_snapshot(proc_root: Path, clock: Callable[[], float]) -> CpuSnapshot:
    """The counters now; raises OSError or ValueError where /proc cannot be read or parsed."""
    busy, steal = parse_proc_stat((proc_root / "stat").read_text())
    own = parse_self_stat((proc_root / "self" / "stat").read_text())
    load = parse_loadavg((proc_root / "loadavg").read_text())
    return CpuSnapshot(wall=clock(), busy_ticks=busy, steal_ticks=steal, own_ticks=own, load=load)


def other_cpu_fraction(before: CpuSnapshot, after: CpuSnapshot, ticks_per_second: float,
                       cpus: int) -> tuple[float, float, float]:
    """(other CPU seconds, fraction of the machine, steal seconds) between two snapshots.

    The machine's and the process's counters are read one after the other and each is rounded to
    whole ticks, so over a short window the process's own time can exceed the machine's by a tick
    or two; that is rounding, not a negative load, and reads as zero."""
    window = after.wall - before.wall
    own = after.own_ticks - before.own_ticks
    other = max(0.0, (after.busy_ticks - before.busy_ticks - own) / ticks_per_second)
    steal = (after.steal_ticks - before.steal_ticks) / ticks_per_second
    return other, other / (window * cpus), steal


def unknown(reason: str, cpus: int) -> ContentionRecord:
    """A record for a window whose contention could not be read."""
    return ContentionRecord(window_seconds=None, other_cpu_seconds=None, other_cpu_fraction=None,
                            steal_seconds=None, load_before=None, load_after=None, cpus=cpus,
                            busy=None, reason=f"contention unknown: {reason}")


def contention_record(before: CpuSnapshot, after: CpuSnapshot, ticks_per_second: float, cpus: int,
                      threshold: float = BUSY_THRESHOLD) -> ContentionRecord:
    """The record of the window between two snapshots; busy when other processes took more than
    ``threshold`` of the machine's CPU time."""
    window = after.wall - before.wall
    if window <= 0:
        return unknown("the window took no measurable time", cpus)
    other, fraction, steal = other_cpu_fraction(before, after, ticks_per_second, cpus)
    busy = fraction > threshold
    reason = (f"other processes took {fraction:.0%} of the machine's CPU time "
              f"({other:.2f} s of {cpus} CPUs x {window:.2f} s; steal {steal:.2f} s), "
              f"{'above' if busy else 'within'} the {threshold:.0%} threshold")
    return ContentionRecord(window_seconds=window, other_cpu_seconds=other,
                            other_cpu_fraction=fraction, steal_seconds=steal,
                            load_before=before.load, load_after=after.load, cpus=cpus, busy=busy,
                            reason=reason)


class ContentionWatch:
    """``with ContentionWatch() as w: <timed window>`` then ``w.record``.

    ``proc_root`` and ``clock`` are there so a test can give a stand-in /proc tree and clock;
    ``cpus`` defaults to ``os.cpu_count()`` (every CPU the machine has, as /proc/stat sums them,
    not only the ones this process may use) and ``ticks_per_second`` to the kernel's clock tick.
    """

    def __init__(self, proc_root: Path = Path("/proc"), clock: Callable[[], float] = time.monotonic,
                 cpus: int | None = None, threshold: float = BUSY_THRESHOLD,
                 ticks_per_second: float | None = None):
        self._proc_root = proc_root
        self._clock = clock
        self._cpus = cpus or os.cpu_count() or 1
        self._threshold = threshold
        self._ticks_per_second = ticks_per_second
        self._before: CpuSnapshot | str = ""
        self._record: ContentionRecord | None = None

    def _read(self) -> CpuSnapshot | str:
        """A snapshot, or why none could be taken."""
        try:
            return read_snapshot(self._proc_root, self._clock)
        except (OSError, ValueError, IndexError) as exc:
            return f"cannot read {self._proc_root} ({exc})"

    def __enter__(self) -> "ContentionWatch":
        self._before = self._read()
        return self

    def __exit__(self, *exc_info) -> None:
        after = self._read()
        if isinstance(self._before, str) or isinstance(after, str):
            self._record = unknown(self._before if isinstance(self._before, str) else after,
                                   self._cpus)
            return
        ticks = self._ticks_per_second or os.sysconf("SC_CLK_TCK")
        self._record = contention_record(self._before, after, ticks, self._cpus, self._threshold)

    @property
    def record(self) -> ContentionRecord:
        """The window's record, once the ``with`` block has ended."""
        if self._record is None:
            raise RuntimeError("the watched window has not ended yet")
        return self._record


class IdleWait(NamedTuple):
    """The outcome of ``wait_for_idle``; ``idle`` is None when contention cannot be read."""
    idle: bool | None
    waited_seconds: float
    last_fraction: float | None


def wait_for_idle(max_wait_seconds: float, threshold: float = BUSY_THRESHOLD,
                  sample_seconds: float = 1.0, proc_root: Path = Path("/proc"),
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep, cpus: int | None = None,
                  ticks_per_second: float | None = None) -> IdleWait:
    """For ``measure.require_idle``: watch windows of ``sample_seconds`` until other processes take
    no more than ``threshold`` of the machine, or ``max_wait_seconds`` have passed.

    The first sample is always taken, and the last may end up to one sample past the limit. When
    the machine never became idle the caller measures anyway and flags the row; a sample shorter
    than a second would be mostly tick rounding, hence the default."""
    start = clock()
    while True:
        with ContentionWatch(proc_root, clock, cpus, threshold, ticks_per_second) as watch:
            sleep(sample_seconds)
        record = watch.record
        waited = clock() - start
        if record.busy is None:
            return IdleWait(None, waited, None)
        if not record.busy or waited >= max_wait_seconds:
            return IdleWait(not record.busy, waited, record.other_cpu_fraction)


def _clock_reasons(mask: int) -> str:
    """NVML's clock reason bits by name, comma-separated; bits nvml.h did not name are given in
    hex."""
    names = [name for bit, name in _GPU_CLOCK_REASONS.items() if mask & bit]
    unnamed = mask & ~sum(_GPU_CLOCK_REASONS)
    return ",".join(names + ([hex(unnamed)] if unnamed else []))


def _gpu_unknown(reason: str) -> dict[str, Any]:
    return {"contention_gpu_other_processes": None, "contention_gpu_other_pids": None,
            "contention_gpu_throttle_reasons": None, "contention_gpu_busy": None,
            "contention_gpu_note": f"GPU contention unknown: {reason}"}


def gpu_contention(device_index: int, uuid: str | None = None) -> dict[str, Any]:
    """Other processes holding the GPU, and why its clocks are held down, as flat row columns.

    The device is found by ``uuid`` when given (``torch.cuda.get_device_properties(i).uuid``,
    since CUDA may number the devices differently from NVML), else by NVML index
    ``device_index``. NVML (package ``nvidia-ml-py``) is optional: without it, or without a
    driver, the columns say why they are empty.

    In a container with its own PID namespace NVML gives the host's process ids, so this process is
    not found by ``os.getpid()``; it is then taken to be one of the processes listed (the caller
    holds a CUDA context while timing), and the device counts as busy only when more than one is.
    Clock reasons are recorded, not judged: power-cap throttling under this process's own load is
    normal, thermal or hardware slowdown is worth reading next to the latency.
    """
    try:
        import pynvml
    except ImportError:
        return _gpu_unknown("nvidia-ml-py is not installed (pip install -e '.[gpu]')")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return _gpu_unknown(f"NVML could not be read: {exc}")
    try:
        handle = (pynvml.nvmlDeviceGetHandleByUUID(f"GPU-{uuid}") if uuid
                  else pynvml.nvmlDeviceGetHandleByIndex(device_index))
        pids = [p.pid for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]
        reasons_of = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) \
            or pynvml.nvmlDeviceGetCurrentClocksThrottleReasons
        reasons = _clock_reasons(reasons_of(handle))
    except pynvml.NVMLError as exc:
        return _gpu_unknown(f"NVML could not be read: {exc}")
    finally:
        pynvml.nvmlShutdown()
    others = [pid for pid in pids if pid != os.getpid()]
    own_found = len(others) < len(pids)
    busy = bool(others) if own_found else len(pids) > 1
    note = (f"{len(others)} other process(es) on the GPU" if own_found else
            f"this process's id is not among NVML's {len(pids)} (a PID namespace), "
            "so one of them is taken to be this process")
    return {"contention_gpu_other_processes": len(others) if own_found else max(0, len(pids) - 1),
            "contention_gpu_other_pids": ",".join(map(str, others)),
            "contention_gpu_throttle_reasons": reasons, "contention_gpu_busy": busy,
            "contention_gpu_note": f"{note}; throttle reasons: {reasons or 'none'}"}
