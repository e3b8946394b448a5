"""Hydra callback for multiruns: a progress bar over the jobs, then a summary and exit code."""
from __future__ import annotations

import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tqdm import tqdm

from bench.schema import FAILED_STATUSES


def count_jobs(config: DictConfig) -> int | None:
    """How many jobs the sweep will launch: the product of the sweep overrides' lengths."""
    sweeper_params = config.hydra.sweeper.get("params") or {}
    overrides = [*config.hydra.overrides.task, *(f"{k}={v}" for k, v in sweeper_params.items())]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:  # noqa: BLE001  (a sweeper with its own syntax: no bar total, no harm)
        return None
    lengths = {o.key_or_group: len(list(o.sweep_iterator())) for o in parsed if o.is_sweep_override()}
    return math.prod(lengths.values())


def read_outcomes(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/outcome.json"))]


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Launchers such as submitit pickle the callbacks into each job; the bar stays here.
        return {**self.__dict__, "bar": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.bar = tqdm(total=count_jobs(config), desc="sweep", unit="job", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        outcomes = read_outcomes(Path(config.hydra.sweep.dir))
        if self.bar is not None:
            self.bar.update(len(outcomes) - self.bar.n)  # jobs run by other processes count too
            self.bar.close()
        counts = Counter(o["status"] for o in outcomes)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        print(f"sweep finished: {len(outcomes)} jobs: {summary or 'none ran'}  "
              f"(rows in {config.results_dir}/rows, jobs in {config.hydra.sweep.dir})")
        failed = [o for o in outcomes if o["status"] in FAILED_STATUSES]
        for outcome in failed:
            print(f"  {outcome['status']}: {outcome['job_key'] or outcome['error']}  ({outcome['row_file']})")
        if failed:
            sys.exit(1)
