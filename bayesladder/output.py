"""Printing results: a table for people that fits the terminal, or with --json only JSON.

Tables show accuracies in points (percent) and intervals as ranges; JSON keeps every column as plain numbers
(accuracies as fractions).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

_NUMBER = r"[+-]?[\d.]+(e[+-]?\d+)?"
# cells that read as numbers (right-aligned): 61.2, +0.7, 1e+04, 55.0-65.0, 3/4, 59.8 [55.0-65.0]
NUMBERS = re.compile(rf"^(-|{_NUMBER}([-/ \[]+{_NUMBER})*\]?)$")


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain JSON-safe dicts (NaN becomes null, numpy scalars become Python ones)."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def emit(
    frame: pd.DataFrame,
    as_json: bool,
    title: str | None = None,
    digits: int = 4,
    view: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> None:
    """--json: the frame as a JSON list of records; else a table of ``view(frame)`` (the columns people read, e.g.
    accuracy in points), or of the frame itself with numbers to ``digits`` decimals."""
    if as_json:
        print(json.dumps(records(frame)))
        return
    table(view(frame) if view else frame, title, digits)


def emit_json(payload: dict[str, pd.DataFrame]) -> None:
    """Several tables as one JSON object, e.g. {"rows": [...], "summary": [...]}."""
    print(json.dumps({key: records(frame) for key, frame in payload.items()}))


def table(frame: pd.DataFrame, title: str | None = None, digits: int = 4) -> None:
    """A table at the terminal's own width (80 columns when stdout is not a terminal); the title above it wraps
    at that width too. Cells are plain text (no rich markup)."""
    console = Console()
    if title:
        console.print(Text(title, style="bold"))
    shown = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False)
    for column in frame.columns:
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        numeric = numeric or bool(values.map(lambda v: isinstance(v, str) and NUMBERS.match(v) is not None).all())
        shown.add_column(Text(str(column)), justify="right" if numeric else "left", no_wrap=True)
    for row in records(frame):
        shown.add_row(*(Text(_cell(v, digits)) for v in row.values()))
    console.print(shown)
    console.print()


def points(value: float) -> str:
    """An accuracy as points: 0.6123 -> '61.2'."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def signed_points(value: float) -> str:
    """An accuracy difference as signed points: -0.0123 -> '-1.2'."""
    return "-" if value is None or math.isnan(value) else f"{100 * value:+.1f}"


def verdict(passed: bool | None) -> str:
    """Whether a refit passed its diagnostics, loudly when it did not: 'yes', 'FAILED' or '-' (not checked)."""
    return "-" if passed is None or passed != passed else ("yes" if passed else "FAILED")


def point_range(low: float, high: float) -> str:
    """An accuracy interval as points: '59.8-63.0'."""
    return f"{points(low)}-{points(high)}"


def number_range(low: float, high: float, digits: int = 3) -> str:
    return f"{low:.{digits}f}-{high:.{digits}f}"


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
