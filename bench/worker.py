"""Entry point of an isolated job: ``python -m bench.worker CONFIG RUN_DIR RUN_ID``.

Started by the runner when ``isolate=true``; runs one job in this fresh process and stores
its row. If this process dies (killed, timed out), the parent records the failure instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from bench.runner import execute, summary_line
from bench.store import ResultStore


def main(config_file: str, run_dir: str, run_id: str) -> None:
    cfg = OmegaConf.load(config_file)
    row, trace = execute(cfg, Path(run_dir), run_id=run_id)
    ResultStore(cfg.results_dir).write(row, trace)
    print(summary_line(row), file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:4])
