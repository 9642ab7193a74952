"""Alternative designs of the method (the paper's ablations) backtested on the same held-out runs, ranked.

Every Bayesian design is one of ``bayes.fit.DESIGNS``, built from the same formulas (``bayes.curves``) and
fitted by the same pipeline (its own nested calibration included); they differ only in their blocks:

- ``default``: what ``bayesladder fit`` does: two-step and single-step combined by the nested backtest's
  stacking weights (``bayes.stacking``).
- ``two-step``: task loss L(N, D), then accuracy as a sigmoid of the loss.
- ``flops-step1``: step 1 is L(C) = E + A C^-alpha with C = 6ND (one exponent instead of two); step 2 as in
  ``two-step``. It sees exactly the same observations as ``two-step``, so their PSIS-LOO is comparable.
- ``single-step``: accuracy as a sigmoid of the power law in N and D, no intermediate loss.
- ``c4-intermediate`` (or any valset): ``two-step`` with a validation loss of the dataset (``val_loss``) as the
  intermediate instead of the task loss.
- ``baseline``: the paper's point fit (no interval: coverage 0, width 0).

PSIS-LOO (elpd_loo) is reported only where observations coincide (two-step and flops-step1); elsewhere NaN.
Each refit's largest R-hat and divergences are reported beside its scores, and ``refit_ok`` says whether it
passed its diagnostics: a failed refit's numbers are not to be trusted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import baseline
from bayesladder.bayes.backtest import ROW_COLUMNS, holdout_runs, prediction_rows, refit_checks, score, without_sizes
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import run_targets, select_runs

DESIGNS = ("default", "two-step", "flops-step1", "single-step", "c4-intermediate", "baseline")
COLUMNS = ["design", "rank", "mae", "bias", "coverage", "mean_width", "mean_crps", "elpd_loo", "max_rhat",
           "divergences", "refit_ok", "fit_seconds", "n", "description"]  # fmt: skip
DESCRIPTIONS = {
    "default": "two-step and single-step, stacked by the nested backtest (what 'bayesladder fit' does)",
    "two-step": "task loss L(N, D) then sigmoid accuracy(L)",
    "flops-step1": "task loss L(C) = E + A C^-alpha, C = 6ND, then sigmoid accuracy(L)",
    "single-step": "accuracy as a sigmoid of the power law in (N, D), no intermediate",
    "c4-intermediate": "validation loss L(N, D) then sigmoid accuracy(L)",
    "baseline": "the paper's point fit (two least-squares steps)",
}


PAPER_VALSET = "c4_en"  # the paper's validation set


def resolve_valset(ds: xr.Dataset, valset: str | None = None) -> str:
    """The validation set of the c4-intermediate design: ``valset``, else the paper's (c4_en), else the dataset's
    only one."""
    where = ds.encoding.get("source", "the dataset")
    if "val_loss" not in ds:
        others = ",".join(d for d in DESIGNS if d != "c4-intermediate")
        raise BayesLadderError(
            f"{where} has no validation losses (val_loss), which the c4-intermediate design needs; leave it "
            f"out: --designs {others}"
        )
    known = [str(v) for v in ds["valset"].values]
    if valset is None:
        if PAPER_VALSET in known or len(known) != 1:
            valset = PAPER_VALSET
        else:
            (valset,) = known
    if valset not in known:
        raise BayesLadderError(f"unknown validation set '{valset}' (--valset); {where} has {', '.join(known)}")
    return valset


def swap_intermediate(ds: xr.Dataset, valset: str | None = None) -> xr.Dataset:
    """A copy of ``ds`` whose task_loss is validation set ``valset``'s loss (:func:`resolve_valset`), for every
    task."""
    valset = resolve_valset(ds, valset)
    out = ds.copy()
    val = ds["val_loss"].sel(valset=valset, drop=True)
    out["task_loss"] = val.expand_dims(task=ds["task"].values).transpose("run", "checkpoint", "task").copy()
    out["task_loss"].attrs.update(
        long_name=f"validation loss on {valset} (in place of the task loss)", units="nats/token"
    )
    return out


def compare(
    ds: xr.Dataset,
    config: FitConfig,
    holdout_sizes: list[str],
    designs: list[str] | None = None,
    valset: str | None = None,
    progress=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtest every design on the same held-out runs; (ranking with :data:`COLUMNS`, per run x task x design rows)."""
    designs = list(designs or DESIGNS)
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise BayesLadderError(f"unknown design(s) {', '.join(unknown)}; choose from {', '.join(DESIGNS)}")
    if "c4-intermediate" in designs:  # bad input fails first
        valset = resolve_valset(ds, valset)
        swapped = swap_intermediate(ds, valset)
    else:
        swapped = None
    config = without_sizes(ds, config, holdout_sizes)
    targets = holdout_runs(ds, config, holdout_sizes)
    tables, ranking = [], []
    for design in designs:
        if progress is not None:
            progress(f"design {design}")
        table, extra = _backtest_design(design, ds, swapped, config, targets)
        tables.append(table.assign(design=design))
        ranking.append(
            dict(
                design=design,
                mae=float(table["error"].abs().mean()),
                bias=float(table["error"].mean()),
                coverage=float(table["covered"].mean()),
                mean_width=float((table["acc_q95"] - table["acc_q05"]).mean()),
                mean_crps=float(table["crps"].mean()),
                **extra,
                n=len(table),
                description=DESCRIPTIONS[design].replace("validation loss", f"validation loss ({valset})"),
            )
        )
    ranking = pd.DataFrame.from_records(ranking).sort_values(["mae", "mean_crps"]).reset_index(drop=True)
    ranking.insert(1, "rank", np.arange(1, len(ranking) + 1))
    return ranking[COLUMNS], pd.concat(tables, ignore_index=True)


def _backtest_design(design: str, ds, swapped, config: FitConfig, targets: list[str]) -> tuple[pd.DataFrame, dict]:
    """(prediction rows of the held-out runs, the design's elpd_loo / refit checks)."""
    none = dict(elpd_loo=np.nan, max_rhat=np.nan, divergences=None, refit_ok=None, fit_seconds=np.nan)
    if design == "baseline":
        fits = baseline.fit(ds, select_runs(ds, config.selection), list(config.tasks))

        def point(target, size):
            acc = baseline.predict(fits, target.n_params, target.tokens).set_index("task")
            values = acc.loc[list(config.tasks)]
            return values["loss"].to_numpy()[None, :], values["accuracy"].to_numpy()[None, :]

        return prediction_rows(ds, run_targets(ds, targets), list(config.tasks), point), none
    designs = {"default": FitConfig.designs, "c4-intermediate": ("two-step",)}.get(design, (design,))
    data = swapped if design == "c4-intermediate" else ds
    fitted = fit(data, replace(config, designs=designs))
    checks = refit_checks(fitted)
    extra = dict(elpd_loo=np.nan, max_rhat=checks["max_rhat"], divergences=checks["divergences"],
                 refit_ok=checks["diagnostics_ok"], fit_seconds=fitted.seconds)  # fmt: skip
    if design in ("two-step", "flops-step1"):
        from bayesladder.bayes.diagnostics import diagnose

        extra["elpd_loo"] = diagnose(fitted).elpd_loo
    return score(fitted, data, targets, seed=config.seed)[ROW_COLUMNS], extra
