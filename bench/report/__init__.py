"""The report: summaries, Markdown tables, plots and a self-contained HTML page, from stored rows.

    python -m bench.report [--results-dir results]      (what `make report` runs)
"""
from bench.report.build import write_outputs, write_report
from bench.report.frame import load_frame
from bench.report.pareto import pareto_front

__all__ = ["load_frame", "pareto_front", "write_outputs", "write_report"]
