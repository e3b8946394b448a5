import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import bench.config_schema  # noqa: F401  (stores the schema conf/config.yaml extends: tests compose it in-process)

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
        if not torch.cuda.is_available():
            for item in marked:
                item.add_marker(pytest.mark.skip(reason="no CUDA device"))


class ResultsDir:
    """One results directory (``.results``) and the rows stored in it."""

    def __init__(self, results: Path):
        self.results = results

    def rows(self):
        from bench.store import ResultStore
        return ResultStore(self.results).load()


class Bench(ResultsDir):
    """Runs the CLI against one results directory, as many times as a test likes."""

    def __call__(self, *overrides: str, **kwargs) -> subprocess.CompletedProcess:
        return run_bench(self.results, *overrides, **kwargs)


@pytest.fixture
def bench(tmp_path):
    return Bench(tmp_path / "results")


def meta_model(name: str, **options) -> torch.nn.Module:
    """A registered model built on the meta device: its layers and parameter shapes, without the
    memory or the initialisation (seconds for the VGG- and ResNet-sized nets) that counting does not need."""
    from models import create_model
    with torch.device("meta"):
        return create_model(name, **options)


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compose_config(*overrides: str):
    """conf/config.yaml composed with ``overrides``, as ``python -m bench`` composes a single run."""
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("config", list(overrides))


class InProcess(ResultsDir):
    """Runs one job in this process (Hydra's ``compose`` plus ``bench.runner.run_job``) against one
    results directory (``.results``), with the CLI's FAST_TIMING overrides: the job's behaviour
    (its row, its error, its refusal of a config) without paying torch's and Hydra's start-up in a
    fresh interpreter. What only the CLI does (exit codes, the printed row, the sweep's checks
    before any job, launchers, signals) is for ``Bench``."""

    def __init__(self, results: Path):
        super().__init__(results)
        self.runs = 0

    def config(self, *overrides: str):
        return compose_config(f"results_dir={self.results}", *FAST_TIMING, *overrides)

    def __call__(self, *overrides: str):
        """The job's outcome (status, error, row_file); its run directory is under ``.results``,
        as the CLI's is."""
        from bench.runner import run_job
        self.runs += 1
        cfg = self.config(*overrides)
        # run_job sets torch's thread count and seed for its job: give the next test the ones it had.
        threads = torch.get_num_threads()
        with torch.random.fork_rng(devices=[]):
            try:
                return run_job(cfg, self.results / "runs" / str(self.runs))
            finally:
                torch.set_num_threads(threads)


@pytest.fixture
def in_process(tmp_path):
    return InProcess(tmp_path / "results")
