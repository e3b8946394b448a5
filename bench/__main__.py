"""``python -m bench``: run one grid point, or a Hydra multirun (``-m``) over many.

    python -m bench model=unet resolution=128x128
    python -m bench -m model=fcn8s,segnet resolution=256x256,512x512
    python -m bench sweep=default            # the named grid `make bench` runs
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bench.callbacks import SweepSummary
import bench.config_schema  # noqa: F401  (stores the schema conf/config.yaml extends)
from bench.runner import run_job
from bench.schema import FAILED_STATUSES
from bench.store import ResultStore

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> str:
    hydra_cfg = HydraConfig.get()
    outcome = run_job(cfg, Path(hydra_cfg.runtime.output_dir))
    if hydra_cfg.mode == RunMode.RUN:
        if outcome.status == "ok":
            row = ResultStore(cfg.results_dir).read(Path(outcome.row_file))
            print(f"row written to {outcome.row_file}:")
            print(row.to_text())
        elif outcome.row_file and Path(outcome.row_file).exists():
            print(f"row written to {outcome.row_file}")
        if outcome.status in FAILED_STATUSES:
            if outcome.status != "invalid":  # run_job printed that one's message last already
                print(f"[{outcome.status}] {outcome.error}", file=sys.stderr)  # the last line on screen
            sys.exit(1)
    return outcome.status


def cli() -> None:
    """``main``, with Ctrl-C ending in a summary and exit code 130 (128 + SIGINT), as shells expect."""
    try:
        main()
    except KeyboardInterrupt:
        SweepSummary.interrupted()
        # Rows and outcome markers are on disk. Leaving without interpreter shutdown guarantees the
        # status a shell expects: once, under load, a normal exit here ended in death by SIGINT (-2).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


if __name__ == "__main__":
    cli()
