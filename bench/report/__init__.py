"""The report: summaries, Markdown tables, plots and a self-contained HTML page, from stored rows.

    python -m bench.report [--results-dir results] [report.latency_budget_ms=50]   (what `make report` runs)
"""
from bench.report.build import write_outputs, write_report
from bench.report.frame import load_frame

__all__ = ["load_frame", "write_outputs", "write_report"]
