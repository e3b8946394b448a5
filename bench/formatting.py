"""How figures read on the console and in the report: one rule, imported by both (no torch here)."""
from __future__ import annotations


def significant(value: float, digits: int = 3) -> str:
    """``digits`` significant figures, never in exponent notation (2416.7 reads "2417", 0.000123
    "0.000123"); '' for a missing value."""
    if value is None or value != value:
        return ""
    if value == 0 or abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-4 else f"{value:.{digits - 1}e}"


def format_ms(value: float) -> str:
    """Three significant figures, never in exponent notation (2416.7 ms reads "2417")."""
    return significant(value)
