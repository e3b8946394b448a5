import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# measure.peak_flops=false: a 2048x2048 matmul per fresh results directory would add ~1 s per test.
FAST_TIMING = ["measure.min_run_time=0.05", "measure.max_run_time=0.2", "measure.min_iters=3", "measure.warmup_iters=1",
               "measure.peak_flops=false", "progress=false"]


def run_bench(results_dir: Path, *overrides: str, multirun: bool = False, timeout: float = 300):
    """``python -m bench`` as a user runs it, writing into ``results_dir``."""
    command = [sys.executable, "-m", "bench", *(["-m"] if multirun else []),
               f"results_dir={results_dir}", *FAST_TIMING, *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HYDRA_FULL_ERROR": "0"})


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` need a GPU: without one they are skipped (``make gpu-check`` runs
    them on a GPU machine)."""
    marked = [item for item in items if item.get_closest_marker("cuda")]
    if marked:
        import torch
        if not torch.cuda.is_available():
            for item in marked:
                item.add_marker(pytest.mark.skip(reason="no CUDA device"))


class Bench:
    """Runs the CLI against one results directory (``.results``), as many times as a test likes."""

    def __init__(self, results: Path):
        self.results = results

    def __call__(self, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
        return run_bench(self.results, *overrides, **kwargs)

    def rows(self):
        from bench.store import ResultStore
        return ResultStore(self.results).load()


@pytest.fixture
def bench(tmp_path):
    return Bench(tmp_path / "results")
