"""``python -m bench.report [--results-dir DIR]``: regenerate the report from the stored rows."""
from __future__ import annotations

import argparse
import os

from bench.report.build import write_outputs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    parser.add_argument("--results-dir", default=os.environ.get("SEGBENCH_RESULTS", "results"),
                        help="the results directory holding rows/ (default: $SEGBENCH_RESULTS or results)")
    args = parser.parse_args(argv)
    for path in write_outputs(args.results_dir):
        print(path)


if __name__ == "__main__":
    main()
