"""Importer for a plain long CSV: one row per run x checkpoint x task, for logs from any trainer.

Required columns: ``run, n_params, tokens, task, task_loss, accuracy``.
Optional columns: ``size`` (default: the run name), ``length`` (default: ``{tokens/(20 N)}xC`` of the
run's last checkpoint), ``replicate`` (default 0), ``role`` (``ladder`` or ``target``, default
``ladder``), ``step``, ``n_questions`` and ``chance`` (per task; constant within a task).
Checkpoints of a run are ordered by ``tokens``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bayesladder import schema
from bayesladder.errors import BayesLadderError
from bayesladder.importers.tables import numeric_column, read_csv_strict, require_columns

REQUIRED = ["run", "n_params", "tokens", "task", "task_loss", "accuracy"]
LENGTH_LABEL = re.compile(r"^([0-9.]+)xC$")


def import_file(path: str | Path):
    path = Path(path)
    table = read_csv_strict(path)
    require_columns(table, REQUIRED, path)
    numbers = {
        c: numeric_column(table, c, path, allow_empty=c in ("task_loss", "accuracy"))
        for c in ("n_params", "tokens", "task_loss", "accuracy")
    }
    for column in ("n_params", "tokens"):
        _check((numbers[column] > 0) & np.isfinite(numbers[column]), path, column, "must be a positive (finite) number")
    _check(
        (numbers["accuracy"] >= 0) & (numbers["accuracy"] <= 1) | np.isnan(numbers["accuracy"]),
        path,
        "accuracy",
        "must lie in [0, 1]",
    )
    _check(
        (numbers["task_loss"] >= 0) | np.isnan(numbers["task_loss"]),
        path,
        "task_loss",
        "must be non-negative (bits per byte)",
    )
    for column in ("run", "task"):
        _check(table[column].str.strip() != "", path, column, "must not be empty")
    frame = pd.DataFrame({"run": table["run"].str.strip(), "task": table["task"].str.strip(), **numbers})
    for optional in ("step", "replicate", "n_questions", "chance"):
        if optional in table.columns:
            frame[optional] = numeric_column(table, optional, path, allow_empty=optional != "replicate")
    if "replicate" in frame:
        replicate = frame["replicate"]
        _check((replicate >= 0) & (replicate == np.round(replicate)), path, "replicate", "must be a whole number >= 0")
    for optional in ("size", "length", "role"):
        if optional in table.columns:
            frame[optional] = table[optional].str.strip()
    if "role" in frame:
        _check(frame["role"].isin(schema.ROLES), path, "role", f"must be one of {', '.join(schema.ROLES)}")

    duplicated = frame.duplicated(["run", "tokens", "task"])
    _check(~duplicated, path, "tokens", "repeats a (run, tokens, task) combination already given")
    runs = list(dict.fromkeys(frame["run"]))
    tasks = list(dict.fromkeys(frame["task"]))
    checkpoints = {run: np.sort(frame.loc[frame["run"] == run, "tokens"].unique()) for run in runs}
    width = max(len(c) for c in checkpoints.values())
    task_loss = np.full((len(runs), width, len(tasks)), np.nan)
    accuracy = np.full_like(task_loss, np.nan)
    tokens = np.full((len(runs), width), np.nan)
    step = np.full_like(tokens, np.nan)
    run_meta = []
    for i, run in enumerate(runs):
        rows = frame[frame["run"] == run]
        tokens[i, : len(checkpoints[run])] = checkpoints[run]
        ci = np.searchsorted(checkpoints[run], rows["tokens"].values)
        ti = np.array([tasks.index(t) for t in rows["task"]])
        task_loss[i, ci, ti] = rows["task_loss"].values
        accuracy[i, ci, ti] = rows["accuracy"].values
        if "step" in rows:
            step[i, ci] = rows["step"].values
        run_meta.append(_run_metadata(run, rows, checkpoints[run][-1], path))
    task_meta = [_task_metadata(task, frame[frame["task"] == task], path) for task in tasks]
    return schema.build_dataset(
        runs=run_meta,
        tasks=task_meta,
        task_loss=task_loss,
        accuracy=accuracy,
        tokens=tokens,
        step=step if "step" in frame else None,
        producer=f"bayesladder import csv {path}",
        n_params_convention=f"as given in {path.name}",
    )


def _run_metadata(run: str, rows: pd.DataFrame, final_tokens: float, path: Path) -> dict:
    meta = {"name": run, "source": path.name, "schedule": ""}
    for column, default in (("size", run), ("role", "ladder"), ("replicate", 0.0)):
        values = rows[column].unique() if column in rows else [default]
        if len(values) > 1:
            raise BayesLadderError(
                f"{path}: run '{run}' has more than one {column} ({', '.join(map(str, values))}); give one per run"
            )
        meta[column] = values[0]
    n_params = rows["n_params"].unique()
    if len(n_params) > 1:
        raise BayesLadderError(f"{path}: run '{run}' has more than one n_params; N must be constant within a run")
    meta["n_params"] = float(n_params[0])
    meta["replicate"] = int(meta["replicate"])
    multiplier = final_tokens / (20 * meta["n_params"])
    length = rows["length"].iloc[0] if "length" in rows else f"{multiplier:.3g}xC"
    label = LENGTH_LABEL.match(length)
    meta["length"] = length
    meta["multiplier"] = float(label[1]) if label and "length" in rows else multiplier  # exact when defaulted
    return meta


def _task_metadata(task: str, rows: pd.DataFrame, path: Path) -> dict:
    meta = {"name": task, "source_key": task}
    for column in ("n_questions", "chance"):
        values = rows[column].dropna().unique() if column in rows else []
        if len(values) > 1:
            raise BayesLadderError(
                f"{path}: task '{task}' has more than one {column}; it must be constant within a task"
            )
        meta[column] = float(values[0]) if len(values) else np.nan
    if not np.isnan(meta["chance"]) and not 0 < meta["chance"] < 1:
        raise BayesLadderError(f"{path}: task '{task}': chance must lie strictly between 0 and 1")
    return meta


def _check(ok, path: Path, column: str, problem: str) -> None:
    ok = np.asarray(ok, dtype=bool)
    if not ok.all():
        line = int(np.flatnonzero(~ok)[0]) + 2
        raise BayesLadderError(f"{path}, line {line}, column '{column}': {problem}")
