"""Entry point of an isolated job: ``python -m bench.worker CONFIG RUN_DIR RUN_ID LEASE TOKEN``.

Started by the runner when ``isolate=true`` or ``job_timeout`` is set; runs one job in this fresh
process and stores its row (abandoned, if the parent's claim ``LEASE`` no longer holds ``TOKEN``).
If this process dies (killed, timed out), the parent records the failure instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from bench.runner import Claim, execute, summary_line
from bench.store import ResultStore


def main(config_file: str, run_dir: str, run_id: str, lease_path: str, token: str) -> None:
    cfg = OmegaConf.load(config_file)
    row, trace = execute(cfg, Path(run_dir), run_id=run_id, claim_held=Claim(Path(lease_path), token))
    ResultStore(cfg.results_dir).write(row, trace)
    print(summary_line(row), file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:6])
