"""Reading CSV tables strictly: every problem is reported as file, line and column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from bayesladder.errors import BayesLadderError


def read_csv_strict(path: Path) -> pd.DataFrame:
    """All cells as text; empty file, binary file or ragged rows are a one-line error."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise BayesLadderError(f"{path}: cannot be read ({exc.strerror})") from None
    if b"\x00" in head:
        raise BayesLadderError(f"{path}: not a CSV file (binary content); pass a comma-separated text file")
    if not head.strip():
        raise BayesLadderError(f"{path}: the file is empty; expected a CSV header row and data rows")
    _check_row_lengths(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise BayesLadderError(f"{path}: not a well-formed CSV file ({reason})") from None
    if table.empty:
        raise BayesLadderError(f"{path}: has a header but no data rows")
    return table


def _check_row_lengths(path: Path) -> None:
    """Every non-blank row has one cell per header column (pandas would silently shift or pad them)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for row in reader:
                if row and len(row) != len(header):
                    raise BayesLadderError(
                        f"{path}, line {reader.line_num}: {len(row)} cells but the header has {len(header)} columns; "
                        "give every row one cell per column"
                    )
    except (csv.Error, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[-1]
        raise BayesLadderError(f"{path}: not a well-formed CSV file ({reason})") from None


def require_columns(table: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise BayesLadderError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; add them to the header row"
        )


def numeric_column(table: pd.DataFrame, column: str, path: Path, *, allow_empty: bool = True) -> np.ndarray:
    """The column as floats; an empty cell is NaN (if allowed), anything else non-numeric is an error."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    written_as_missing = (text.eq("") | text.str.lower().eq("nan")).to_numpy()
    bad = np.isnan(values) & ~(written_as_missing & allow_empty)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = text.iloc[row]
        what = f"non-numeric value {cell!r}" if cell else "an empty cell"
        raise BayesLadderError(f"{path}, line {row + 2}, column '{column}': {what}; expected a number")
    return values
