"""``make gpu-check``: the GPU validation kit, one prepared command for the first minutes a GPU is
available. On one CUDA device it checks every CUDA path of the harness (``benchmarks/gpu_checks.py``
lists them) and names each check that failed; without CUDA it runs the same checks as a dry run on
the CPU, every CUDA-specific one reported as skipped with the reason, so its own code runs on
every change.

    .venv/bin/python -m benchmarks.gpu_check [--out DIR] [--checks NAME,...] [--models NAME,...]

Everything goes under one folder ($OUT when set, else results/gpu-check/<timestamp>): the rows and
the report (``results/``), ``summary.md`` (one page), ``checks.json``, the jobs' console output
(``jobs.log``) and pytest's logs. The exit status is 1 when a check failed, else 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import torch

from bench.environment import environment
from benchmarks.gpu_checks import CHECKS, FAILED, PASSED, SKIPPED, Record, Setup, first_line

STATUSES = (PASSED, FAILED, SKIPPED)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                        help="output folder (default: $OUT, else results/gpu-check/<timestamp>)")
    parser.add_argument("--checks", default=",".join(CHECKS),
                        help=f"the checks to run, comma-separated (default: all: {','.join(CHECKS)})")
    parser.add_argument("--models", default="",
                        help="on a GPU, the models of the per-model checks (default: every registered model)")
    args = parser.parse_args(argv)
    unknown = set(args.checks.split(",")) - set(CHECKS)
    if unknown:
        parser.error(f"unknown check(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHECKS)}")
    return args


def run_check(setup: Setup, name: str) -> Record:
    """One check, timed; an exception inside it is that check's failure (its traceback in
    ``<out>/<name>.traceback.txt``), and the kit goes on to the next."""
    started = time.perf_counter()
    try:
        record = CHECKS[name](setup)
    except Exception as exc:  # noqa: BLE001  (a broken check is reported, not fatal)
        trace = setup.out / f"{name}.traceback.txt"
        trace.write_text(traceback.format_exc())
        record = Record(name, FAILED, f"{type(exc).__name__}: {first_line(str(exc))}", [f"traceback: {trace}"])
    record.seconds = time.perf_counter() - started
    return record


def print_record(record: Record) -> None:
    print(f"[{record.status}] {record.name} ({record.seconds:.1f} s): {record.reason}", flush=True)
    for line in record.details:
        print(f"    {line}", flush=True)


def cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def summary_markdown(setup: Setup, records: list[Record], seconds: float) -> str:
    """One page: where it ran, one table line per check, the details, and what failed."""
    env = environment(setup.device)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = env["device_name"] if setup.cuda else f"dry run on the CPU ({env['device_name']}), no CUDA device"
    lines = [f"# GPU validation kit: {where}", "",
             f"{when}, commit {env['git_commit'] or 'unknown'}, torch {env['torch_version']} "
             f"(CUDA {env['cuda_version'] or 'none'}), host {env['host']}; {seconds:.0f} s in all. "
             f"Rows and report: `{setup.results}`.", "",
             "| check | status | result | seconds |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {cell(r.reason)} | {r.seconds:.1f} |" for r in records]
    for record in (r for r in records if r.details):
        lines += ["", f"**{record.name}**", "", *(f"- {cell(line)}" for line in record.details)]
    failed = [r.name for r in records if r.status == FAILED]
    lines += ["", f"Failed: {', '.join(failed) if failed else 'none'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path("results") / "gpu-check" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    if torch.cuda.is_available():
        setup = Setup.gpu(out, tuple(name for name in args.models.split(",") if name))
    else:
        setup = Setup.dry_run(out)
        print("no CUDA device: a dry run on the CPU; every CUDA check is reported as skipped", flush=True)
    selected = args.checks.split(",")
    started = time.perf_counter()
    records = []
    for name in CHECKS:
        record = run_check(setup, name) if name in selected else Record(name, SKIPPED, "not selected (--checks)")
        print_record(record)
        records.append(record)
    seconds = time.perf_counter() - started
    (out / "checks.json").write_text(json.dumps([asdict(r) for r in records], indent=2))
    (out / "summary.md").write_text(summary_markdown(setup, records, seconds))
    counts = ", ".join(f"{sum(r.status == s for r in records)} {s}" for s in STATUSES)
    print(f"gpu-check: {counts} in {seconds:.0f} s; summary: {out / 'summary.md'}")
    failed = [r.name for r in records if r.status == FAILED]
    if failed:
        print(f"gpu-check FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
