"""Importer for a plain long CSV: one row per run x checkpoint x task, for logs from any trainer.

Required columns: ``run, n_params, tokens, task, task_loss, accuracy``.
Optional columns: ``size`` (default: the run name), ``length`` (default: ``{tokens/(20 N)}xC`` of the
run's last checkpoint), ``replicate`` (default 0), ``role`` (``ladder`` or ``target``, default
``ladder``), ``step``, ``n_questions`` and ``chance`` (per task; constant within a task), and
``val_loss`` with ``val_set`` (a validation loss of the checkpoint, nats/token, on the named set; a row
may carry only a validation loss, with ``task``, ``task_loss`` and ``accuracy`` empty).
Checkpoints of a run are ordered by ``tokens``. An empty cell (or ``NaN``) means "not evaluated".

:func:`rows_to_dataset` turns validated rows into the ladder dataset; the lm-eval importer uses it too.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import schema
from bayesladder.errors import BayesLadderError, BayesLadderWarning
from bayesladder.importers.tables import (
    Problems,
    lines_text,
    numeric_column,
    read_csv_strict,
    require_columns,
    written_nan,
)

REQUIRED = ["run", "n_params", "tokens", "task", "task_loss", "accuracy"]
NUMERIC_OPTIONAL = ("step", "replicate", "n_questions", "chance", "val_loss")
TEXT_OPTIONAL = ("size", "length", "role", "val_set")
LENGTH_LABEL = re.compile(r"^([0-9.]+)xC$")


def import_file(path: str | Path, *, units: str = "bits/byte", final_checkpoints: int | None = None) -> xr.Dataset:
    """Read a long CSV into a ladder dataset; every problem in the file is reported in one error.

    ``units``: what ``task_loss`` is measured in (see ``schema.TASK_LOSS_UNITS``). ``final_checkpoints``:
    how many of a run's last checkpoints make its final value (stored as the dataset attribute).
    Warns (BayesLadderWarning) when NaN cells are read as "not evaluated" or a task has no task loss.
    """
    path = Path(path)
    check_options(units, final_checkpoints)
    table = read_csv_strict(path)
    require_columns(table, REQUIRED + (["val_set"] if "val_loss" in table.columns else []), path)
    problems = Problems(path)
    frame = _parse(table, problems)
    problems.raise_if_any()
    _check_combinations(frame, problems)
    problems.raise_if_any()
    ds = rows_to_dataset(
        frame,
        problems,
        source=path.name,
        producer=f"bayesladder import csv {path}",
        n_params_convention=f"as given in {path.name}",
        units=units,
        final_checkpoints=final_checkpoints,
    )
    _warn_about(table, frame, path)
    return ds


def check_options(units: str, final_checkpoints: int | None) -> None:
    schema.check_task_loss_units(units)
    if final_checkpoints is not None and final_checkpoints < 1:
        raise BayesLadderError("final checkpoints must be at least 1 (how many last checkpoints make a final value)")


def _parse(table: pd.DataFrame, problems: Problems) -> pd.DataFrame:
    """The columns as numbers and stripped text, with every row-level problem added to ``problems``."""
    frame = pd.DataFrame(index=table.index)
    for column in ("run", "task", *TEXT_OPTIONAL):
        if column in table.columns:
            frame[column] = table[column].str.strip()
    for column in ("n_params", "tokens", "task_loss", "accuracy", *NUMERIC_OPTIONAL):
        if column in table.columns:
            allow_empty = column not in ("n_params", "tokens", "replicate")
            frame[column] = numeric_column(table, column, problems, allow_empty=allow_empty)
    check_run_columns(table, frame, problems)
    accuracy, loss = frame["accuracy"], frame["task_loss"]
    problems.add_rows(table, (accuracy < 0) | (accuracy > 1), "accuracy", "must lie in [0, 1]")
    problems.add_rows(table, (loss < 0) | np.isinf(loss), "task_loss", "must be non-negative and finite")
    has_val = frame["val_loss"].notna() if "val_loss" in frame else pd.Series(False, index=frame.index)
    val_only = has_val & loss.isna() & accuracy.isna()
    problems.add_rows(
        table, (frame["task"] == "") & ~val_only, "task", "must not be empty (except on a row with only a val_loss)"
    )
    if "val_loss" in frame:
        val = frame["val_loss"]
        problems.add_rows(table, (val < 0) | np.isinf(val), "val_loss", "must be non-negative and finite")
        problems.add_rows(table, has_val & (frame["val_set"] == ""), "val_set", "must name the set of the val_loss")
    return frame


def check_run_columns(table: pd.DataFrame, frame: pd.DataFrame, problems: Problems) -> None:
    """Row checks of the columns that describe a run: run, n_params, tokens, replicate, role."""
    problems.add_rows(table, frame["run"] == "", "run", "must not be empty")
    for column in ("n_params", "tokens"):
        values = frame[column]
        problems.add_rows(table, (values <= 0) | np.isinf(values), column, "must be a positive (finite) number")
    if "replicate" in frame:
        replicate = frame["replicate"]
        problems.add_rows(
            table, (replicate < 0) | (replicate != np.round(replicate)), "replicate", "must be a whole number >= 0"
        )
    if "role" in frame:
        known = frame["role"].isin(schema.ROLES) | (frame["role"] == "")
        problems.add_rows(table, ~known, "role", f"must be one of {', '.join(schema.ROLES)}")


def _check_combinations(frame: pd.DataFrame, problems: Problems) -> None:
    """Problems between rows: repeated (run, tokens, task), conflicting validation losses."""
    tasks = frame[frame["task"] != ""]
    repeated = tasks.duplicated(["run", "tokens", "task"])
    problems.add_rows(tasks, repeated, "tokens", "repeats a (run, tokens, task) combination already given")
    if "val_loss" in frame:
        val = frame[frame["val_loss"].notna()]
        conflicting = val.groupby(["run", "tokens", "val_set"])["val_loss"].transform("nunique") > 1
        problems.add_rows(val, conflicting, "val_loss", "differs between rows of the same (run, tokens, val_set)")


def rows_to_dataset(
    frame: pd.DataFrame,
    problems: Problems,
    *,
    source: str,
    producer: str,
    n_params_convention: str,
    units: str = "bits/byte",
    final_checkpoints: int | None = None,
) -> xr.Dataset:
    """A ladder dataset from validated long rows (columns as in the long CSV; numbers already floats).

    Inconsistent run or task metadata (two N for one run, ...) is added to ``problems`` and raised together.
    """
    task_rows = frame[frame["task"] != ""]
    runs = list(dict.fromkeys(frame["run"]))
    tasks = list(dict.fromkeys(task_rows["task"]))
    checkpoints = {run: np.sort(frame.loc[frame["run"] == run, "tokens"].unique()) for run in runs}
    width = max(len(c) for c in checkpoints.values())
    task_loss = np.full((len(runs), width, len(tasks)), np.nan)
    accuracy = np.full_like(task_loss, np.nan)
    tokens = np.full((len(runs), width), np.nan)
    step = np.full_like(tokens, np.nan)
    val_rows = frame[frame["val_loss"].notna()] if "val_loss" in frame else frame.iloc[:0]
    valsets = list(dict.fromkeys(val_rows["val_set"])) if len(val_rows) else []
    val_loss = np.full((len(runs), width, len(valsets)), np.nan)
    run_meta = []
    for i, run in enumerate(runs):
        rows = frame[frame["run"] == run]
        tokens[i, : len(checkpoints[run])] = checkpoints[run]
        measured = rows[rows["task"] != ""]
        ci = np.searchsorted(checkpoints[run], measured["tokens"].values)
        ti = np.array([tasks.index(t) for t in measured["task"]], dtype=int)
        task_loss[i, ci, ti] = measured["task_loss"].values
        accuracy[i, ci, ti] = measured["accuracy"].values
        if "step" in rows:
            known = rows.dropna(subset=["step"])
            step[i, np.searchsorted(checkpoints[run], known["tokens"].values)] = known["step"].values
        if valsets:
            run_val = val_rows[val_rows["run"] == run]
            vi = np.array([valsets.index(v) for v in run_val["val_set"]], dtype=int)
            val_loss[i, np.searchsorted(checkpoints[run], run_val["tokens"].values), vi] = run_val["val_loss"].values
        run_meta.append(_run_metadata(run, rows, checkpoints[run][-1], source, problems))
    task_meta = [_task_metadata(task, task_rows[task_rows["task"] == task], problems) for task in tasks]
    problems.raise_if_any()
    if not tasks:
        raise BayesLadderError(f"{problems.path}: no row names a task; a ladder needs task results")
    ds = schema.build_dataset(
        runs=run_meta,
        tasks=task_meta,
        task_loss=task_loss,
        accuracy=accuracy,
        tokens=tokens,
        step=step if "step" in frame else None,
        val_loss=val_loss if valsets else None,
        valsets=valsets or None,
        producer=producer,
        n_params_convention=n_params_convention,
        task_loss_units=units,
    )
    if final_checkpoints is not None:
        ds.attrs["final_checkpoints"] = int(final_checkpoints)
    return ds


def _distinct(values) -> list[str]:
    """Values as text, numbers with as few digits as tell them apart (4.83776e+07 twice said nothing)."""
    for digits in (6, 9, 12, 17):
        shown = [f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values]
        if len(set(shown)) == len(shown):
            break
    return shown


def _run_metadata(run: str, rows: pd.DataFrame, final_tokens: float, source: str, problems: Problems) -> dict:
    meta = {"name": run, "source": source, "schedule": ""}
    for column, default in (("size", run), ("role", "ladder"), ("replicate", 0.0), ("n_params", None)):
        given = rows[column].dropna() if column in rows else []
        values = pd.unique(given[given != ""]) if len(given) else [default]
        values = values if len(values) else [default]
        if len(values) > 1:
            shown = ", ".join(_distinct(values))
            problems.add(f"run '{run}' has more than one {column} ({shown}): give one per run")
        meta[column] = values[0]
    meta["n_params"] = float(meta["n_params"])
    meta["replicate"] = int(meta["replicate"])
    multiplier = final_tokens / (20 * meta["n_params"])
    given = rows["length"].dropna() if "length" in rows else []
    length = given.iloc[0] if len(given) else f"{multiplier:.3g}xC"
    label = LENGTH_LABEL.match(length)
    meta["length"] = length
    meta["multiplier"] = float(label[1]) if label and len(given) else multiplier  # exact when defaulted
    return meta


def _task_metadata(task: str, rows: pd.DataFrame, problems: Problems) -> dict:
    meta = {"name": task, "source_key": task}
    for column in ("n_questions", "chance"):
        values = rows[column].dropna().unique() if column in rows else []
        if len(values) > 1:
            problems.add(f"task '{task}' has more than one {column} (give one per task)")
        meta[column] = float(values[0]) if len(values) else np.nan
    if not np.isnan(meta["chance"]) and not 0 < meta["chance"] < 1:
        problems.add(f"task '{task}': chance must lie strictly between 0 and 1")
    return meta


def _warn_about(table: pd.DataFrame, frame: pd.DataFrame, path: Path) -> None:
    for column in ("task_loss", "accuracy", "val_loss", "step", "n_questions", "chance"):
        if column in table.columns:
            nan = written_nan(table, column)
            if nan.any():
                warnings.warn(
                    f"{path}: {lines_text(table.index[nan])}, column '{column}': NaN read as 'not evaluated' "
                    "(leave the cell empty to say so)",
                    BayesLadderWarning,
                    stacklevel=3,
                )
    warn_missing_task_loss(frame[frame["task"] != ""], str(path))


def warn_missing_task_loss(rows: pd.DataFrame, where: str) -> None:
    """Warn about every task whose task loss is empty in every row."""
    empty = rows.groupby("task", sort=False)["task_loss"].apply(lambda loss: loss.isna().all())
    if empty.any():
        warnings.warn(
            f"{where}: no task loss for task(s) {', '.join(empty.index[empty])}: they have accuracy only, "
            "which designs without a task loss (single-step) can use but the two-step fit and the paper "
            "baseline cannot",
            BayesLadderWarning,
            stacklevel=3,
        )
