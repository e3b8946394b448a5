"""Hydra callback: a writable results directory before any job; for multiruns, every job's values
and data checked first (bench/preflight.py), a progress bar over the jobs, then a summary and the
exit code (also when Ctrl-C stops the sweep)."""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tqdm import tqdm

from bench.preflight import SweepInvalidError, check_sweep, sweep_overrides
from bench.schema import FAILED_STATUSES
from bench.store import ResultsNotWritableError, ResultStore


def read_outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/outcome.json"))]


def check_sweep_or_exit(config: DictConfig) -> list[list[str]] | None:
    """Every job's overrides, once every job's values and data are found good; else exit 1
    with every problem listed, before any job runs."""
    jobs = sweep_overrides(config)
    try:
        check_sweep(config, jobs)
    except SweepInvalidError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    return jobs


def check_results_dir(config: DictConfig) -> None:
    """Stop with one line, before any job, if rows cannot be written (no measurement is wasted)."""
    try:
        ResultStore(config.results_dir).check_writable()
    except ResultsNotWritableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


def print_summary(sweep_dir: Path, results_dir: str) -> bool:
    """The sweep's summary lines; returns whether any job failed."""
    outcomes = read_outcomes(sweep_dir)
    counts = Counter(o["status"] for o in outcomes)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"sweep finished: {len(outcomes)} jobs: {summary or 'none ran'}  "
          f"(rows in {results_dir}/rows, jobs in {sweep_dir})")
    failed = [o for o in outcomes if o["status"] in FAILED_STATUSES]
    for outcome in failed:
        print(f"  {outcome['status']}: {outcome['job_key'] or outcome['error']}  ({outcome['row_file']})")
    return bool(failed)


class SweepSummary(Callback):
    #: The multirun in progress in this process, for the summary after Ctrl-C (see ``interrupted``).
    active: "SweepSummary | None" = None

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.sweep_dir: Path | None = None
        self.results_dir = ""

    def __getstate__(self) -> dict[str, Any]:
        # Launchers such as submitit pickle the callbacks into each job; the bar stays here.
        return {**self.__dict__, "bar": None}

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_results_dir(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_results_dir(config)
        jobs = check_sweep_or_exit(config)
        self.sweep_dir, self.results_dir = Path(config.hydra.sweep.dir), str(config.results_dir)
        SweepSummary.active = self
        self.bar = tqdm(total=len(jobs) if jobs else None, desc="sweep", unit="job", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update()

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.update(len(read_outcomes(self.sweep_dir)) - self.bar.n)  # other processes' jobs count too
            self.bar.close()
            self.bar = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._close_bar()
        SweepSummary.active = None
        if print_summary(self.sweep_dir, self.results_dir):
            sys.exit(1)

    @classmethod
    def interrupted(cls) -> None:
        """After Ctrl-C: the summary of the jobs that ran, and how to go on."""
        sweep = cls.active
        if sweep is not None:
            sweep._close_bar()
            print_summary(sweep.sweep_dir, sweep.results_dir)
        print("interrupted by Ctrl-C: the job that was running is recorded as interrupted; run the same "
              "command again to go on (jobs with an ok row are skipped)", file=sys.stderr)
