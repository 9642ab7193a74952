"""Backtests: fit on a ladder, predict runs of held-out sizes, score against what they really got.

Each held-out run's actual values are the mean of its last 5 checkpoints (as the baseline's fit points are);
its size is new to the fit, so it draws fresh size effects, like a real target.

Nested backtests (``nested``) are the ladder's own evidence about extrapolation: fit on the smallest sizes and
predict every larger one, for each cut of the sizes; fit on the shortest lengths and predict the longer runs,
for each cut of the lengths. Their coverage against the distance extrapolated (e-folds of N or of D beyond the
fitted part) shows whether intervals grow as fast as errors do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import baseline
from bayesladder.bayes.fit import FitConfig, LadderFit, fit
from bayesladder.bayes.predict import INTERVALS, QUANTILES, crps, predictive_draws
from bayesladder.bayes.stacking import AXES
from bayesladder.errors import BayesLadderError
from bayesladder.extrapolation import beyond
from bayesladder.ladder import actual_final, resolve_target, run_targets, select_runs
from bayesladder.targets import Target

ROW_COLUMNS = ["run", "task", "actual_acc", "acc_median", "acc_q05", "acc_q95", "covered", "crps", "error",
               "baseline_acc", "baseline_error", "acc_q25", "acc_q75", "actual_loss", "loss_median", "loss_q05",
               "loss_q25", "loss_q75", "loss_q95", "baseline_loss"]  # fmt: skip
SUMMARY_COLUMNS = ["run", "n", "mae", "bias", "covered", "coverage", "mean_width", "mean_crps", "baseline_mae"]


def prediction_rows(
    ds: xr.Dataset,
    targets: list[Target],
    tasks: list[str],
    predict: Callable[[Target, str], tuple[np.ndarray, np.ndarray]],
    baseline_fits: dict | None = None,
) -> pd.DataFrame:
    """One row per (target, task) with :data:`ROW_COLUMNS` (``run`` is the target's name): the prediction's median
    and 90% interval of accuracy and loss, its coverage and CRPS, the paper's point fit and, where the target is a
    run of the dataset, the actual values and errors. ``predict(target, size)`` gives (loss, accuracy) draws, each
    (samples, tasks). The one place where predictions meet actual values (backtests, design comparisons, reports)."""
    lo, hi = INTERVALS["90%"]
    rows = []
    for target in targets:
        run = target.name
        size = str(ds["size"].sel(run=run).values) if run in ds["run"].values else None
        loss, acc = predict(target, size)
        actual = actual_final(ds, run)
        base = (
            baseline.predict(baseline_fits, target.n_params, target.tokens).set_index("task") if baseline_fits else None
        )
        for i, task in enumerate(tasks):
            row = dict(run=run, task=task)
            for prefix, draws in (("acc", acc), ("loss", loss)):
                values = (
                    np.quantile(draws[:, i], list(QUANTILES.values()))
                    if not np.isnan(draws[:, i]).all()
                    else [np.nan] * len(QUANTILES)
                )
                row |= {f"{prefix}_{label}": float(v) for label, v in zip(QUANTILES, values)}
            a = float(actual.loc[task, "accuracy"]) if actual is not None else np.nan
            row["baseline_acc"] = float(base.loc[task, "accuracy"]) if base is not None else np.nan
            row["baseline_loss"] = float(base.loc[task, "loss"]) if base is not None else np.nan
            row |= dict(
                actual_acc=a,
                actual_loss=float(actual.loc[task, "task_loss"]) if actual is not None else np.nan,
                covered=bool(row[f"acc_{lo}"] <= a <= row[f"acc_{hi}"]) if np.isfinite(a) else None,
                crps=crps(acc[:, i], a) if np.isfinite(a) else np.nan,
                error=row["acc_median"] - a,
                baseline_error=row["baseline_acc"] - a,
            )
            rows.append(row)
    return pd.DataFrame.from_records(rows, columns=ROW_COLUMNS)


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
    """:func:`prediction_rows` of the fit for ``runs``, with the paper's point fit on the same ladder beside it,
    each run's distance beyond the ladder (``Extrapolation.record``) and the designs' weights for it (``weight_``
    and the design's name)."""
    tasks = list(fitted.config.tasks)
    try:
        point_fits = baseline.fit(ds, select_runs(ds, fitted.config.selection), tasks)
    except BayesLadderError:  # a ladder the paper's method cannot fit (e.g. no task loss): no baseline columns
        point_fits = None

    def predict(target, size):
        return predictive_draws(fitted, target.n_params, target.tokens, size, seed)

    targets = run_targets(ds, runs)
    table = prediction_rows(ds, targets, tasks, predict, point_fits)
    extent = fitted.extent()

    def flags(target: Target) -> dict:
        weights = fitted.calibration.weights_at(extent.efolds_beyond(target.n_params, target.tokens))
        return beyond(extent, target.n_params, target.tokens).record() | {f"weight_{d}": w for d, w in weights.items()}

    return table.join(pd.DataFrame.from_dict({t.name: flags(t) for t in targets}, orient="index"), on="run")


def _n_and_d(ds: xr.Dataset, run: str) -> tuple[float, float]:
    target = resolve_target(ds, run, None, None)
    return target.n_params, target.tokens


def summarise(table: pd.DataFrame, by: str = "run") -> pd.DataFrame:
    """Per ``by`` group, and over all: MAE and bias of the median, coverage, mean width and CRPS of the 90%
    interval, baseline MAE (:data:`SUMMARY_COLUMNS`)."""

    def one(group: pd.DataFrame) -> dict:
        group = group[group["actual_acc"].notna()]  # a task the dataset did not evaluate for a run
        return dict(
            n=len(group),
            mae=float(group["error"].abs().mean()),
            bias=float(group["error"].mean()),
            covered=int(group["covered"].sum()),
            coverage=float(group["covered"].mean()),
            mean_width=float((group["acc_q95"] - group["acc_q05"]).mean()),
            mean_crps=float(group["crps"].mean()),
            baseline_mae=float(group["baseline_error"].abs().mean()),
        )

    rows = [{by: key, **one(g)} for key, g in table.groupby(by, sort=False)]
    rows.append({by: "all", **one(table)})
    return pd.DataFrame.from_records(rows)


def refit_checks(fitted: LadderFit) -> dict:
    """A refit's max R-hat and divergences (its designs and its nested backtest's) and whether it passed."""
    from bayesladder.bayes.diagnostics import diagnose

    checked = diagnose(fitted)
    return dict(
        max_rhat=float(np.nanmax([checked.max_rhat, checked.nested_max_rhat])),
        divergences=checked.divergences + checked.nested_divergences,
        diagnostics_ok=checked.ok,
        failures="; ".join(checked.failures),
    )


def run_backtest(ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str], progress=None):
    """Fit on the ladder (held-out sizes excluded) and score every held-out run.

    Returns (fit, rows, summary); the summary's every row carries the refit's max R-hat, divergences and
    whether it passed its diagnostics (``refit_checks``); a run's row, the designs' weights for it (the row over all:
    their mean)."""
    config = without_sizes(ds, config, holdout_sizes)
    runs = holdout_runs(ds, config, holdout_sizes)
    fitted = fit(ds, config, progress=progress)
    table = score(fitted, ds, runs, seed=config.seed)
    checks = refit_checks(fitted)
    weights = table.groupby("run", sort=False)[[f"weight_{design}" for design in fitted.designs]].first()
    summary = summarise(table).assign(**checks).join(weights, on="run").fillna(weights.mean())
    return fitted, table.assign(diagnostics_ok=checks["diagnostics_ok"]), summary


def without_sizes(ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str]) -> FitConfig:
    """The config's ladder without the held-out sizes (all of the dataset's ladder sizes when none were chosen)."""
    if config.selection.sizes is not None:
        return config
    ladder_sizes = dict.fromkeys(map(str, ds["size"].values[(ds["role"] == "ladder").values]))
    sizes = tuple(s for s in ladder_sizes if s not in holdout_sizes)
    if not sizes:  # an empty selection would mean every size: the held-out runs would be fitted on
        raise BayesLadderError(
            f"--holdout-size holds out every ladder size ({', '.join(ladder_sizes)}); leave some to fit on"
        )
    return replace(config, selection=replace(config.selection, sizes=sizes))


NESTED_COLUMNS = ["split", "axis", "fitted", "held_out", "run", "task", "distance", *ROW_COLUMNS[2:]]


def nested_splits(ds: xr.Dataset, config: FitConfig) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(name, axis, fitted labels, held-out labels): every cut of the ladder's sizes (by N) leaving at least 2
    fitted, and every cut of its lengths (by tokens) leaving at least 2 fitted."""
    runs = select_runs(ds, config.selection)
    chosen = ds.sel(run=runs)
    out = []
    for axis, key in (("size", "n_params"), ("length", "multiplier")):
        labels = sorted(
            set(map(str, chosen[axis].values)), key=lambda v: float(chosen[key].where(chosen[axis] == v).max())
        )
        for cut in range(2, len(labels)):
            fitted, held = tuple(labels[:cut]), tuple(labels[cut:])
            out.append((f"{axis}s {fitted[0]}-{fitted[-1]} -> {', '.join(held)}", axis, fitted, held))
    return out


DISTANCE_BINS = ([-np.inf, 0.5, 1.0, 2.0, np.inf], ["< 0.5", "0.5-1", "1-2", "> 2"])  # e-folds beyond the fit


def nested(ds: xr.Dataset, config: FitConfig, progress=None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every nested backtest of the ladder (see the module docstring). Returns (rows with
    :data:`NESTED_COLUMNS`; the summary per axis and distance bin, nearest first, e.g. "size 1-2" = held-out runs 1
    to 2 e-folds of N beyond the fitted sizes; each refit's checks)."""
    runs = select_runs(ds, config.selection)
    rows, checks = [], []
    for name, axis, fitted_labels, held in nested_splits(ds, config):
        sub = replace(config, selection=replace(config.selection, **{f"{axis}s": fitted_labels}))
        held_runs = [r for r in runs if str(ds[axis].sel(run=r).values) in held]
        if progress is not None:
            progress(f"nested backtest {name}: {len(held_runs)} held-out runs")
        fitted = fit(ds, sub)
        table = score(fitted, ds, held_runs, seed=config.seed)
        index = 0 if axis == "size" else 1
        ladder = fitted.extent()
        largest = (ladder.largest_n, ladder.largest_d)[index]
        distance = [float(np.log(_n_and_d(ds, r)[index] / largest)) for r in table["run"]]
        held_out = ",".join(held)
        rows.append(
            table.assign(split=name, axis=axis, fitted=",".join(fitted_labels), held_out=held_out, distance=distance)
        )
        checks.append(dict(split=name, **refit_checks(fitted)))
    if not rows:
        raise BayesLadderError("the ladder has too few sizes and lengths for a nested backtest (it needs 3 of either)")
    table = pd.concat(rows, ignore_index=True)[NESTED_COLUMNS]
    edges, labels = DISTANCE_BINS
    table["bin"] = table["axis"] + " " + pd.cut(table["distance"], edges, labels=labels).astype(str)
    return table, distance_summary(table), pd.DataFrame.from_records(checks)


def distance_summary(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`summarise` of the nested backtests' rows per ``bin``: each axis's bins nearest first, sizes first."""
    nearest_first = table.sort_values("distance", kind="stable").sort_values(
        "axis", key=lambda axis: axis.map(AXES.index), kind="stable"
    )
    return summarise(nearest_first, by="bin")
