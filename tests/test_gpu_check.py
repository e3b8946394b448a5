"""The GPU validation kit (benchmarks/gpu_check.py) without a GPU: its dry run reports every CUDA
check as skipped with the reason and exits 0, a failing check makes the exit non-zero and is named,
and the summary lists every check. The GPU-only pieces that need no GPU to check (NVML's reading,
through a stand-in NVML; the batch that cannot fit) are checked here too."""
import io
import os
import sys
import types
from contextlib import redirect_stdout

import pytest
import torch

import benchmarks.gpu_check as kit
import benchmarks.gpu_checks as checks
from bench.measure import nvml
from bench.measure.size import MIB
from bench.store import ResultStore

#: The quick checks; make gpu-check's own dry run runs the rest (pytest, the model grid, ONNX, report).
QUICK = ["machine-tests", "latency", "memory", "fp16-training", "oom", "energy"]


def run_kit(out, *args: str) -> tuple[int, str]:
    """The kit in this process, as on a machine without CUDA; (exit status, what it printed)."""
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(printed):
        patch.setattr(torch.cuda, "is_available", lambda: False)
        code = kit.main(["--out", str(out), *args])
    return code, printed.getvalue()


def check_lines(printed: str) -> dict[str, str]:
    """Each check's line, by name: '[status] name (seconds): reason'."""
    return {line.split()[1]: line for line in printed.splitlines() if line.startswith("[")}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    return (out, *run_kit(out, "--checks", ",".join(QUICK)))


def test_the_dry_run_skips_every_cuda_check_with_its_reason_and_exits_0(dry_run):
    out, code, printed = dry_run
    assert code == 0, printed
    lines = check_lines(printed)
    for name in QUICK:
        assert lines[name].startswith(f"[skipped] {name} ") and "no CUDA device" in lines[name]
    # The dry runs went through the same code: a training run, a real allocation failure, halved.
    assert "60 steps of tiny_segmenter" in lines["fp16-training"] and "no inf/NaN" in lines["fp16-training"]
    assert "batch 8 ran out of memory, the row is batch 2's" in lines["oom"]
    assert "energy unavailable: no RAPL powercap tree" in lines["energy"] or "J/image" in lines["energy"]
    [row] = [r for r in ResultStore(out / "results").load().rows if r.model == "fault_injector"]
    assert row.status == "ok" and (row.batch_size, row.batch_size_used) == (8, 2)
    assert f"gpu-check: 0 passed, 0 failed, {len(checks.CHECKS)} skipped" in printed


def test_the_summary_lists_every_check(dry_run):
    out, _, printed = dry_run
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# GPU validation kit: dry run on the CPU")
    for name in checks.CHECKS:
        assert f"| {name} | skipped | " in summary
        assert f"[skipped] {name} " in printed
    assert "not selected (--checks)" in summary and summary.rstrip().endswith("Failed: none.")


def test_a_failing_check_makes_the_exit_non_zero_and_is_named(tmp_path, monkeypatch):
    def stand_in_failure(setup):
        return checks.Record("latency", checks.FAILED, "stand-in failure")

    def stand_in_crash(setup):
        raise RuntimeError("stand-in crash\nsecond line")

    monkeypatch.setitem(checks.CHECKS, "latency", stand_in_failure)
    monkeypatch.setitem(checks.CHECKS, "oom", stand_in_crash)
    code, printed = run_kit(tmp_path, "--checks", "latency,oom,memory")
    assert code == 1
    lines = check_lines(printed)
    assert lines["latency"].startswith("[failed] latency ") and lines["latency"].endswith("stand-in failure")
    assert lines["oom"].startswith("[failed] oom ") and lines["oom"].endswith("RuntimeError: stand-in crash")
    assert lines["memory"].startswith("[skipped] memory ")   # the kit went on after the crash
    assert printed.splitlines()[-1] == "gpu-check FAILED: latency, oom"
    assert "stand-in crash" in (tmp_path / "oom.traceback.txt").read_text()
    assert "Failed: latency, oom." in (tmp_path / "summary.md").read_text()


@pytest.fixture
def no_nvml(monkeypatch):
    """nvidia-ml-py not installed (whether it is or not)."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


def test_without_nvml_the_gpu_memory_check_is_skipped_with_the_reason(tmp_path, no_nvml):
    setup = checks.Setup.gpu(tmp_path)   # makes no CUDA context: NVML's reader comes first, and fails
    assert set(setup.models) == set(checks.models.list_models()) - {"fcdensenet103_upsample_all"}
    assert setup.resolution == "360x480"
    record = checks.check_memory(setup)
    assert record.status == checks.SKIPPED and "nvidia-ml-py is not installed" in record.reason


def test_the_out_of_memory_batch_alone_exceeds_the_card(tmp_path, monkeypatch, no_nvml):
    card = 141 * 2**30
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(total_memory=card))
    batch = checks.too_big_batch(checks.Setup.gpu(tmp_path))
    image = 3 * 360 * 480 * 4
    assert batch // 2 * image < card < batch * image   # the smallest power of two that cannot fit


class StandInNvml(types.ModuleType):
    """The pynvml calls the reader makes, for one GPU whose used memory a test sets."""

    class NVMLError(Exception):
        pass

    def __init__(self, processes, used):
        super().__init__("pynvml")
        self.processes, self.used = processes, used

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        assert uuid == "GPU-1234"
        return "gpu"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=self.used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.processes]


@pytest.fixture
def stand_in_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace(uuid="1234"))

    def install(processes, used):
        fake = StandInNvml(processes, used)
        monkeypatch.setitem(sys.modules, "pynvml", fake)
        return fake

    return install


def test_nvml_reads_this_process_by_its_id(stand_in_gpu):
    stand_in_gpu([(1, 900 * MIB), (os.getpid(), 300 * MIB)], used=2000 * MIB)
    assert nvml.ProcessMemory(torch.device("cuda", 0)).read() == (300 * MIB, nvml.PER_PROCESS)


def test_nvml_falls_back_to_the_rise_of_the_device_when_the_process_is_not_listed(stand_in_gpu):
    fake = stand_in_gpu([(1, 900 * MIB)], used=1000 * MIB)   # a container: NVML lists host process ids
    reader = nvml.ProcessMemory(torch.device("cuda", 0))
    fake.used = 1600 * MIB
    assert reader.read() == (600 * MIB, nvml.DEVICE_RISE)


def test_nvml_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(nvml.NvmlUnavailable, match=r"pip install -e '\.\[gpu\]'"):
        nvml.ProcessMemory(torch.device("cuda", 0))
