"""``python -m bench.report [--results-dir DIR] [report.KEY=VALUE ...]``: regenerate the report from
the stored rows, with the budgets its picks fit (``bench/report/config.py``)."""
from __future__ import annotations

import argparse
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
