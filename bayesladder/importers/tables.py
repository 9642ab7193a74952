"""Reading CSV tables strictly: every problem is reported, as file, line and column, in one error.

A table is read with :func:`read_csv_strict` into a DataFrame of text cells whose index is each row's line
number in the file (blank lines skipped, so the numbers stay right after them). Checks add what they find to
a :class:`Problems`, which raises once with all of them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from bayesladder.errors import BayesLadderError

LINES_SHOWN = 5  # per problem; the rest are counted


class Problems:
    """Every problem found in one input file, raised together as one BayesLadderError."""

    def __init__(self, path: Path):
        self.path = path
        self.items: list[str] = []

    def add(self, problem: str) -> None:
        self.items.append(problem)

    def add_rows(self, table: pd.DataFrame, bad, column: str | None, problem: str) -> None:
        """One problem for all rows of ``table`` where ``bad`` is true, naming their lines."""
        bad = np.asarray(bad, dtype=bool)
        if bad.any():
            where = f", column '{column}'" if column else ""
            self.add(f"{lines_text(table.index[bad])}{where}: {problem}")

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            separator = ", " if first.startswith("line") else ": "
            raise BayesLadderError(f"{self.path}{separator}{'; '.join(self.items)}")


def lines_text(lines) -> str:
    """'line 4', 'lines 4, 9 and 12', 'lines 4, 9, 12, 13, 20 and 7 more'."""
    lines = [int(n) for n in lines]
    if len(lines) == 1:
        return f"line {lines[0]}"
    shown = ", ".join(map(str, lines[:LINES_SHOWN]))
    rest = len(lines) - LINES_SHOWN
    if rest > 0:
        return f"lines {shown} and {rest} more"
    return f"lines {', '.join(map(str, lines[:-1]))} and {lines[-1]}"


def read_csv_strict(path: Path) -> pd.DataFrame:
    """All cells as text, indexed by line number; empty, binary, malformed or ragged files are one error."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise BayesLadderError(f"{path}: cannot be read ({exc.strerror})") from None
    if b"\x00" in head:
        raise BayesLadderError(f"{path}: not a CSV file (binary content); pass a comma-separated text file")
    if not head.strip():
        raise BayesLadderError(f"{path}: the file is empty; expected a CSV header row and data rows")
    problems = Problems(path)
    rows, lines = [], []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, [])
            start = reader.line_num + 1
            for row in reader:
                if row:
                    if len(row) != len(header):
                        problems.add(
                            f"line {start}: {len(row)} cells but the header has {len(header)} columns; "
                            "give every row one cell per column"
                        )
                    rows.append(row)
                    lines.append(start)
                start = reader.line_num + 1
    except (csv.Error, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise BayesLadderError(f"{path}: not a well-formed CSV file ({reason})") from None
    problems.raise_if_any()
    if not rows:
        raise BayesLadderError(f"{path}: has a header but no data rows")
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise BayesLadderError(f"{path}: column(s) {', '.join(map(repr, duplicated))} appear more than once")
    return pd.DataFrame(rows, columns=[h.strip() for h in header], index=pd.Index(lines, name="line"), dtype=str)


def require_columns(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        separator = next((sep for sep in (";", "\t", "|") if len(table.columns) == 1 and sep in table.columns[0]), None)
        fix = f"separate the columns with commas, not {separator!r}" if separator else "add them to the header row"
        raise BayesLadderError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; {fix}")


def is_written_missing(table: pd.DataFrame, column: str) -> np.ndarray:
    """Cells left empty or written as NaN: 'not evaluated'."""
    text = table[column].str.strip()
    return (text.eq("") | text.str.lower().eq("nan")).to_numpy()


def written_nan(table: pd.DataFrame, column: str) -> np.ndarray:
    """Cells written as a literal NaN (as opposed to left empty)."""
    return table[column].str.strip().str.lower().eq("nan").to_numpy()


def numeric_column(table: pd.DataFrame, column: str, problems: Problems, *, allow_empty: bool = True) -> np.ndarray:
    """The column as floats. Empty or NaN cells are NaN where allowed; any other non-number is a problem
    (and NaN in the result, so later checks can skip it)."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    missing = is_written_missing(table, column)
    not_numbers = np.isnan(values) & ~missing
    if not_numbers.any():
        cells = list(dict.fromkeys(text[not_numbers]))
        shown = ", ".join(repr(c) for c in cells[:LINES_SHOWN]) + (" …" if len(cells) > LINES_SHOWN else "")
        problems.add_rows(
            table, not_numbers, column, f"non-numeric value{'s' if len(cells) > 1 else ''} {shown}; expected a number"
        )
    if not allow_empty:
        nan = written_nan(table, column)
        problems.add_rows(table, missing & ~nan, column, "an empty cell; expected a number")
        problems.add_rows(table, nan, column, "NaN; expected a number")
    return values
