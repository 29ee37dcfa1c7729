"""Per-unit tables merged across probes, for the Layer and Search pages (no Streamlit).

A probe run on a layer returns tables whose rows name a unit in the column
:data:`~mmneurons.results.UNIT_COLUMN` (modality's ranking, rendered
words' best words, neuron_label's labels, ...). Merging them by unit gives one row per unit that
the grid can sort by any column, whichever probes happen to be installed.
"""

from __future__ import annotations

import math
from typing import Any

from mmneurons.results import UNIT_COLUMN


def unit_rows(result: Any) -> list[dict]:
    """Rows of every table of ``result`` that has a ``unit`` column, concatenated."""
    rows: list[dict] = []
    for table in (getattr(result, "tables", None) or {}).values():
        if isinstance(table, list) and table and isinstance(table[0], dict) and UNIT_COLUMN in table[0]:
            rows += table
    return rows


def merge_unit_rows(results: dict[str, Any], units: list[str] | None = None) -> list[dict]:
    """One row per unit with the columns of every result (``{probe}:{column}`` where two probes use
    the same column name). ``units`` fixes the rows and their order (others are dropped)."""
    merged: dict[str, dict] = {u: {UNIT_COLUMN: u} for u in units or []}
    owner: dict[str, str] = {}
    for probe, result in results.items():
        for row in unit_rows(result):
            unit = str(row[UNIT_COLUMN])
            if units is not None and unit not in merged:
                continue
            target = merged.setdefault(unit, {UNIT_COLUMN: unit})
            for column, value in row.items():
                if column == UNIT_COLUMN:
                    continue
                name = column if owner.setdefault(column, probe) == probe else f"{probe}:{column}"
                target[name] = value
    return list(merged.values())


def sortable_columns(rows: list[dict]) -> list[str]:
    """Columns other than ``unit`` that hold numbers or text in some row."""
    columns: list[str] = []
    for row in rows:
        for column, value in row.items():
            if column != UNIT_COLUMN and column not in columns and isinstance(value, (int, float, str)):
                columns.append(column)
    return columns


def sort_rows(rows: list[dict], column: str | None, descending: bool = True) -> list[dict]:
    """Rows sorted by ``column`` (numbers numerically, text alphabetically); rows without a value,
    or with NaN or -inf/inf, go last whatever the direction. ``None`` keeps unit order."""
    if not column:
        return list(rows)

    def missing(row: dict) -> bool:
        value = row.get(column)
        return value is None or isinstance(value, float) and not math.isfinite(value)

    present = [r for r in rows if not missing(r)]
    absent = [r for r in rows if missing(r)]
    numeric = all(isinstance(r[column], (int, float)) and not isinstance(r[column], bool) for r in present)
    key = (lambda r: float(r[column])) if numeric else (lambda r: str(r[column]).lower())
    return sorted(present, key=key, reverse=descending) + absent
