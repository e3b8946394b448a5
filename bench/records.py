"""An instrument's record and the row's flat columns: one mechanical flattening between them.

Every instrument (bench/instruments/) returns a typed record, a dataclass. On disk a row is flat
(``bench/schema.py`` ``ResultRow``), so a record becomes columns by one rule: the instrument's
prefix joined to each field's column name, which is the field's own name unless the field
declares another with ``column()`` (the names rows have carried since before records existed).
A field holding a record is flattened the same way, under the same prefix; a mapping field's
keys are columns as they are (figures whose names a device decides, e.g. NVML's).

Nothing here imports torch: the schema and the report use it too.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

#: A field's metadata keys: its column name, and whether the instrument's prefix is joined to it.
COLUMN, PREFIXED = "column", "prefixed"


def column(name: str, *, prefixed: bool = True, **field_options: Any) -> Any:
    """A record field stored under ``name`` (joined to the instrument's prefix unless
    ``prefixed=False``) instead of its own name."""
    return dataclasses.field(metadata={COLUMN: name, PREFIXED: prefixed}, **field_options)


def _column_name(field: dataclasses.Field, prefix: str) -> str:
    name = field.metadata.get(COLUMN, field.name)
    return prefix + name if field.metadata.get(PREFIXED, True) else name


def flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    """``record``'s columns and values: ``prefix`` + column name; nested records under the same
    prefix; a mapping's keys unchanged; tuples stored as lists (JSON has no tuple)."""
    if record is None:
        return {}
    if isinstance(record, Mapping):
        return dict(record)
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        if dataclasses.is_dataclass(value) or isinstance(value, Mapping):
            flat.update(flatten(value, prefix))
        else:
            flat[_column_name(field, prefix)] = list(value) if isinstance(value, tuple) else value
    return flat


def column_names(record_type: type, prefix: str = "") -> list[str]:
    """The columns a record of ``record_type`` fills, known before any is measured (nested record
    types are followed through the field's annotation; mapping fields have no fixed names)."""
    import typing

    hints = typing.get_type_hints(record_type)
    names: list[str] = []
    for field in dataclasses.fields(record_type):
        kind = hints[field.name]
        nested = [k for k in (typing.get_args(kind) or (kind,)) if dataclasses.is_dataclass(k)]
        if nested:
            names.extend(column_names(nested[0], prefix))
        elif typing.get_origin(kind) is not dict and kind is not dict:
            names.append(_column_name(field, prefix))
    return names
