"""``python -m bench.report [--results-dir DIR] [report.KEY=VALUE ...]``: regenerate the report from
the stored rows, with the budgets its picks fit (``bench/report/config.py``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from bench.report.build import write_outputs
from bench.report.config import help_text, parse_overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                     epilog="settings:\n" + help_text(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default=os.environ.get("SEGBENCH_RESULTS", "results"),
                        help="the results directory holding rows/ (default: $SEGBENCH_RESULTS or results)")
    parser.add_argument("overrides", nargs="*", metavar="report.KEY=VALUE", help="report settings (below)")
    args = parser.parse_args(argv)
    try:
        config = parse_overrides(args.overrides)
    except ValueError as exc:
        sys.exit(f"python -m bench.report: {exc}")
    for path in write_outputs(args.results_dir, config):
        print(path)


if __name__ == "__main__":
    main()
    # Every file is written and closed: skip the interpreter's teardown, which frees pandas',
    # pyarrow's and matplotlib's modules one by one (0.3 to 0.4 s, up to a tenth of a report).
    logging.shutdown()
    sys.stdout.flush()
    os._exit(0)
