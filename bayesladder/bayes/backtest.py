"""Backtests: fit on a ladder, predict runs of held-out sizes, score against what they really got.

Each held-out run's actual values are the mean of its last 5 checkpoints (as the baseline's fit
points are); its size is new to the fit, so it draws fresh size effects, like a real target.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import baseline
from bayesladder.bayes.fit import FitConfig, LadderFit, fit
from bayesladder.bayes.predict import crps, predictive_draws
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import actual_final, resolve_target, select_runs

INTERVAL = (0.05, 0.95)


def holdout_runs(ds: xr.Dataset, config: FitConfig, sizes: list[str]) -> list[str]:
    """First-replicate runs of the held-out sizes, at the lengths the ladder selection uses."""
    known = set(map(str, ds["size"].values))
    unknown = [s for s in sizes if s not in known]
    if unknown:
        raise BayesLadderError(
            f"unknown held-out size(s) {', '.join(unknown)}; the dataset has {', '.join(sorted(known))}"
        )
    if config.selection.sizes and set(sizes) & set(config.selection.sizes):
        raise BayesLadderError("a held-out size is also in the ladder; choose sizes outside --sizes/--ladder")
    keep = ds["size"].isin(sizes) & (ds["replicate"] == 0)
    if config.selection.lengths:
        keep &= ds["length"].isin(list(config.selection.lengths))
    runs = [str(r) for r in ds["run"].values[keep.values]]
    if not runs:
        raise BayesLadderError(f"no runs of size(s) {', '.join(sizes)} at the ladder's lengths to hold out")
    return runs


def score(fitted: LadderFit, ds: xr.Dataset, runs: list[str], seed: int = 0) -> pd.DataFrame:
    """One row per (held-out run, task): actual, posterior summary, coverage, CRPS, baseline."""
    tasks = list(fitted.config.tasks)
    point_fits = baseline.fit(ds, select_runs(ds, fitted.config.selection), tasks)
    rows = []
    for run in runs:
        target = resolve_target(ds, run, None, None)
        size = str(ds["size"].sel(run=run).values)
        loss, acc = predictive_draws(fitted.posterior, fitted.constants, target.n_params, target.tokens, size, seed)
        actual = actual_final(ds, run)
        base = baseline.predict(point_fits, target.n_params, target.tokens).set_index("task")
        for i, task in enumerate(tasks):
            a = float(actual.loc[task, "accuracy"])
            lo, median, hi = np.quantile(acc[:, i], [INTERVAL[0], 0.5, INTERVAL[1]])
            rows.append(
                dict(
                    run=run,
                    task=task,
                    actual_acc=a,
                    acc_median=median,
                    acc_q05=lo,
                    acc_q95=hi,
                    covered=bool(lo <= a <= hi),
                    crps=crps(acc[:, i], a),
                    baseline_acc=float(base.loc[task, "accuracy"]),
                    error=median - a,
                    baseline_error=float(base.loc[task, "accuracy"]) - a,
                    actual_loss=float(actual.loc[task, "task_loss"]),
                    loss_median=float(np.median(loss[:, i])),
                    loss_q05=float(np.quantile(loss[:, i], INTERVAL[0])),
                    loss_q95=float(np.quantile(loss[:, i], INTERVAL[1])),
                    baseline_loss=float(base.loc[task, "loss"]),
                )
            )
    return pd.DataFrame.from_records(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per held-out run, and over all: MAE of the median, coverage, mean CRPS, width, baseline MAE."""

    def one(group: pd.DataFrame) -> dict:
        return dict(
            n=len(group),
            mae=float(group["error"].abs().mean()),
            covered=int(group["covered"].sum()),
            coverage=float(group["covered"].mean()),
            mean_crps=float(group["crps"].mean()),
            mean_width=float((group["acc_q95"] - group["acc_q05"]).mean()),
            baseline_mae=float(group["baseline_error"].abs().mean()),
        )

    rows = [dict(run=run, **one(g)) for run, g in table.groupby("run", sort=False)]
    rows.append(dict(run="all", **one(table)))
    return pd.DataFrame.from_records(rows)


def run_backtest(ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str], progress: bool = False):
    """Fit on the ladder (held-out sizes excluded) and score every held-out run."""
    selection = config.selection
    if selection.sizes is None:
        sizes = [
            s
            for s in dict.fromkeys(map(str, ds["size"].values[(ds["role"] == "ladder").values]))
            if s not in holdout_sizes
        ]
        config = replace(config, selection=replace(selection, sizes=tuple(sizes)))
    runs = holdout_runs(ds, config, holdout_sizes)
    fitted = fit(ds, config, progress=progress)
    table = score(fitted, ds, runs, seed=config.seed)
    return fitted, table, summarise(table)
