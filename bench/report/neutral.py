"""User strings made inert where the report writes Markdown (``report/*.md``) and CSV files.

Model names (plugins register any), data set and class names (folder data sets name their
classes) and error messages come from users. The HTML page escapes them as it builds (``html.esc``,
pandas' ``to_html``); a Markdown file would render their markup and a spreadsheet would run a
cell that reads as a formula, so those writers pass everything through here.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: What makes Markdown (or the HTML it may hold) out of text: HTML's three characters, the table
#: pipe, the code-span backtick, the brackets of a link and the backslash that escapes; each becomes
#: an entity or a backslash escape, so it renders as itself. Line breaks become spaces (a table row
#: is one line).
_MARKDOWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "\\": "\\\\",
                           "[": "\\[", "]": "\\]", "\n": " ", "\r": " "})

#: A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection").
_FORMULA_CHARS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = r"^([=+\-@\t\r])"


def markdown_text(value) -> str:
    """``value`` as one line of Markdown that renders as the text itself (a table cell, a list item)."""
    return str(value).translate(_MARKDOWN)


def csv_safe(table: pa.Table) -> pa.Table:
    """``table`` with a ``'`` before every string cell that starts like a formula, as OWASP
    recommends. Only string columns change: a negative number is no formula and stays a number.
    Column names are segbench's own (a class's IoU column starts with ``iou.``)."""
    def safe(column):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return column
        # The regex only where a cell needs it: checking first characters is 10x cheaper.
        starts = pc.is_in(pc.utf8_slice_codeunits(column, 0, 1), value_set=pa.array(_FORMULA_CHARS))
        return pc.replace_substring_regex(column, _FORMULA_START, r"'\1") if pc.any(starts).as_py() else column

    return pa.Table.from_arrays([safe(column) for column in table.columns], schema=table.schema)
