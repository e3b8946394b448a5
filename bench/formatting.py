"""How figures read on the console and in the report: one rule, imported by both (no torch here)."""
from __future__ import annotations


def format_ms(value: float) -> str:
    """Three significant figures, never in exponent notation (2416.7 ms reads "2417")."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
