"""How long ``python -m bench.report`` takes on many rows: copies real rows under distinct job keys.

    python benchmarks/report_at_scale.py --source results --rows 10000

The source is a results directory with real rows (``make bench`` writes one); each copy gets its
own job key and run id, so the report sees ``--rows`` jobs. The report runs in a fresh process,
as a user runs it, twice: the first run builds the consolidated row table
(``results/rows.parquet``) and the data-set sample cache, the second reuses them. Prints the wall
time and peak resident memory of each run, and the size of the page.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from bench.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent


def copy_rows(source: Path, target: Path, count: int) -> int:
    """Write ``count`` rows into ``target``: the source's rows in turn, each under a new key."""
    rows = ResultStore(source).load().rows
    if not rows:
        sys.exit(f"no rows under {source}/rows: run `make bench` first, or pass --source DIR")
    store = ResultStore(target)
    for index in tqdm(range(count), desc="writing rows", unit="row"):
        row = rows[index % len(rows)]
        copy = dataclasses.replace(row, job_key=f"{row.job_key}_copy{index:05d}", run_id=f"copy{index:07d}")
        store.write(copy)
    return len(rows)


def time_report(results: Path) -> tuple[float, float]:
    """Seconds and peak resident MiB of ``python -m bench.report`` in a fresh process."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench.report", "--results-dir", str(results)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    # ru_maxrss of waited-for children is their largest peak (KiB on Linux); each run is the latest.
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path(os.environ.get("SEGBENCH_RESULTS", "results")))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="where to write the copies (default: a temp dir)")
    args = parser.parse_args()
    target = args.out or Path(tempfile.mkdtemp(prefix="segbench-report-at-scale-"))
    distinct = copy_rows(args.source, target, args.rows)
    print(f"{args.rows} rows ({distinct} distinct source rows) under {target}")
    for attempt in ("first (builds the caches)", "second (reuses them)"):
        seconds, peak_mib = time_report(target)
        print(f"python -m bench.report, {attempt}: {seconds:.2f} s, peak RSS {peak_mib:.0f} MiB")
    page = target / "report" / "index.html"
    print(f"page {page}: {page.stat().st_size / 2**20:.2f} MiB; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
