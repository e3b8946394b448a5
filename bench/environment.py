"""The environment stored with every row: versions, device name, host, git commit."""
from __future__ import annotations

import functools
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_commit() -> str:
    """HEAD's commit, with ``-dirty`` when the work tree has uncommitted changes; '' outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return cpu_name()


def environment(device: torch.device) -> dict[str, str]:
    """Fields of ResultRow that describe where and with what the row was measured."""
    try:
        version = metadata.version("segbench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "host": socket.gethostname(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "device_name": device_name(device),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "segbench_version": version,
    }
