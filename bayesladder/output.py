"""Printing results: a readable table for people, or with --json only a JSON list of records."""

from __future__ import annotations

import json
import math

import pandas as pd
from rich.console import Console
from rich.table import Table


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON-safe dicts (NaN becomes null, numpy scalars become Python ones)."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def emit(frame: pd.DataFrame, as_json: bool, title: str | None = None, digits: int = 4) -> None:
    if as_json:
        print(json.dumps(records(frame)))
        return
    table = Table(title=title, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), justify="right" if pd.api.types.is_numeric_dtype(frame[column]) else "left")
    for row in records(frame):
        table.add_row(*(_cell(v, digits) for v in row.values()))
    Console(width=200).print(table)


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
