"""How long ``python -m bench.report`` takes on many rows: copies real rows under distinct job keys.

    python benchmarks/report_at_scale.py --source results --rows 10000

The source is a results directory with real rows (``make bench`` writes one); each copy gets its
own job key and run id, so the report sees ``--rows`` jobs. The report runs in a fresh process,
as a user runs it, three times: the first reads every JSON row file and builds the caches (the
consolidated row table, the figures, the data-set sample); the second finds nothing changed;
the third follows one new row (as after a sweep: one more file to read, every figure drawn again).
Prints the wall time and peak resident memory of each run, and the size of the page.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
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
    process = subprocess.Popen([sys.executable, "-m", "bench.report", "--results-dir", str(results)], cwd=ROOT,
                               stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak (ru_maxrss, KiB on Linux)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"python -m bench.report failed on {results}")
    return seconds, usage.ru_maxrss / 1024


#: Typed into the last search box on the page (the "All jobs" table) once the tables are drawn.
SEARCH_SCRIPT = """<script>
setTimeout(() => {
  const boxes = document.querySelectorAll(".dt-search input");
  boxes[boxes.length - 1].value = %s;
  boxes[boxes.length - 1].dispatchEvent(new Event("input", {bubbles: true}));
}, 3000);
</script>"""


def check_in_chromium(chromium: str, page: Path, model: str) -> str:
    """The "All jobs" table's count line after searching for ``model``, as headless Chromium shows it."""
    probe = page.with_name("chromium_check.html")
    probe.write_text(page.read_text() + SEARCH_SCRIPT % json.dumps(model))
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=300).stdout
    probe.unlink()
    counts = re.findall(r"Showing [^<]*entries[^<]*", dom)
    return counts[-1] if counts else "no DataTables count line: the interactive table did not render"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=Path(os.environ.get("SEGBENCH_RESULTS", "results")))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="where to write the copies (default: a temp dir)")
    parser.add_argument("--chromium", default=shutil.which("chromium"),
                        help="a Chromium binary for the interactive-table check (default: chromium on PATH)")
    args = parser.parse_args()
    target = args.out or Path(tempfile.mkdtemp(prefix="segbench-report-at-scale-"))
    distinct = copy_rows(args.source, target, args.rows)
    os.sync()   # the copies on disk first: the first report is not timed against their write-back
    print(f"{args.rows} rows ({distinct} distinct source rows) under {target}")
    for attempt in ("first (every row read from JSON, caches built)", "second (nothing changed)",
                    "third (one new row)"):
        if attempt.startswith("third"):
            row = ResultStore(target).load(ResultStore(target).row_files()[0].parent.name).rows[0]
            ResultStore(target).write(dataclasses.replace(row, job_key=f"{row.job_key}_new", run_id="new"))
            os.sync()
        seconds, peak_mib = time_report(target)
        print(f"python -m bench.report, {attempt}: {seconds:.2f} s, peak RSS {peak_mib:.0f} MiB")
    page = target / "report" / "index.html"
    print(f"page {page}: {page.stat().st_size / 2**20:.2f} MiB; load average {os.getloadavg()[0]:.2f}")
    if args.chromium:
        model = ResultStore(args.source).load().rows[0].model
        print(f"headless Chromium, 'All jobs' searched for {model!r}: {check_in_chromium(args.chromium, page, model)}")


if __name__ == "__main__":
    main()
