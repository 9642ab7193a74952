"""Checkpoint-to-checkpoint variance per task (the paper's variance analysis).

Over the last ``n`` evaluated checkpoints of one run, per task: the sample SD (ddof=1) and the
coefficient of variation (SD / mean) of task loss and of accuracy. Late in training the model barely
changes between checkpoints, so this spread is evaluation noise that no fit can remove.

Rule for noisy tasks (our thresholds, arguments of :func:`variance`): a task is noisy when the CV of
its accuracy exceeds 2% or the CV of its task loss exceeds 1%. On the OLMo ladder's 1B-10xC run
(last 10 checkpoints) this flags openbookqa and boolq.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder.errors import BayesLadderError

NOISY_ACC_CV = 0.02
NOISY_LOSS_CV = 0.01
COLUMNS = ["run", "task", "n", "loss_mean", "loss_sd", "loss_cv", "acc_mean", "acc_sd", "acc_cv", "noisy"]


def variance(
    ds: xr.Dataset, run: str, last: int = 10, acc_cv: float = NOISY_ACC_CV, loss_cv: float = NOISY_LOSS_CV
) -> pd.DataFrame:
    """One row per task (columns :data:`COLUMNS`); bad run names and sizes of ``last`` are errors."""
    runs = [str(r) for r in ds["run"].values]
    if run not in runs:
        raise BayesLadderError(
            f"unknown run '{run}'; the dataset has {', '.join(runs[:8])}{', ...' if len(runs) > 8 else ''}"
        )
    r = ds.sel(run=run)
    present = np.flatnonzero(r["tokens"].notnull().values)
    if last < 2:
        raise BayesLadderError("--last must be at least 2 (an SD needs two checkpoints)")
    if last > len(present):
        raise BayesLadderError(f"--last {last} is more than the {len(present)} checkpoints run '{run}' has")
    kept = present[-last:]
    rows = []
    for task in map(str, ds["task"].values):
        loss = r["task_loss"].sel(task=task).values[kept]
        acc = r["accuracy"].sel(task=task).values[kept]
        row = dict(run=run, task=task, n=int(np.sum(~np.isnan(acc))))
        for prefix, values in (("loss", loss), ("acc", acc)):
            mean, sd = float(np.nanmean(values)), float(np.nanstd(values, ddof=1))
            row.update(
                {f"{prefix}_mean": mean, f"{prefix}_sd": sd, f"{prefix}_cv": sd / mean if mean else float("nan")}
            )
        row["noisy"] = bool(row["acc_cv"] > acc_cv or row["loss_cv"] > loss_cv)
        rows.append(row)
    return pd.DataFrame.from_records(rows, columns=COLUMNS)


def rule_text(acc_cv: float = NOISY_ACC_CV, loss_cv: float = NOISY_LOSS_CV) -> str:
    return f"noisy = accuracy CV > {acc_cv:.0%} or task-loss CV > {loss_cv:.0%} over the last checkpoints"


def with_errors(table: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Add each task's mean |median - actual| accuracy from backtest rows (columns task, acc_median, actual_acc)
    and its ratio to the checkpoint SD: a ratio near 1 or below means the prediction is as good as the noise allows."""
    missing = [c for c in ("task", "acc_median", "actual_acc") if c not in predictions.columns]
    if missing:
        raise BayesLadderError(
            f"{predictions.attrs.get('source', 'the backtest table')} lacks column(s) {', '.join(missing)}; write it "
            "with 'bayesladder backtest --json'"
        )
    errors = (predictions["acc_median"] - predictions["actual_acc"]).abs().groupby(predictions["task"]).mean()
    out = table.copy()
    out["abs_error"] = out["task"].map(errors)
    out["error_over_sd"] = out["abs_error"] / out["acc_sd"]
    return out
