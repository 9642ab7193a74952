"""Compute vs error: refit on smaller ladders and score each on the same held-out runs.

Subsets of the backtest's ladder (sizes ordered by N, lengths by token multiplier): the full ladder;
without its largest size; without its two largest sizes; without its smallest size; without its
longest length; without its two longest lengths; without its largest size and its longest length.
A subset is kept only when it leaves at least 2 sizes and 2 lengths, and each distinct one once.

Compute of a ladder: 6 N D summed over its runs (independent reruns included: they were trained too),
D being each run's last checkpoint. It is reported as a fraction of the target's compute, the
target being the held-out run with the most compute (6 N D of its last checkpoint). Each refit's
largest R-hat and divergences are reported beside its scores, and refit_ok whether it passed its diagnostics: a
failed refit's row is not to be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder.bayes.backtest import holdout_runs, refit_checks, score, summarise
from bayesladder.bayes.data import with_replicates
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import select_runs

COLUMNS = ["subset", "sizes", "lengths", "n_runs", "flops", "flops_fraction", "mae", "coverage", "mean_width",
           "mean_crps", "baseline_mae", "max_rhat", "divergences", "refit_ok", "n"]  # fmt: skip


@dataclass(frozen=True)
class Subset:
    name: str
    sizes: tuple[str, ...]
    lengths: tuple[str, ...]


def ladder_subsets(ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str]) -> list[Subset]:
    """The subsets of the backtest's ladder, full ladder first (see the module docstring)."""
    ladder = ds.sel(run=ds["run"].values[(ds["role"] == "ladder").values])
    sizes = list(
        config.selection.sizes or dict.fromkeys(s for s in map(str, ladder["size"].values) if s not in holdout_sizes)
    )
    lengths = list(config.selection.lengths or dict.fromkeys(map(str, ladder["length"].values)))
    sizes.sort(key=lambda s: float(ladder["n_params"].values[(ladder["size"] == s).values][0]))
    lengths.sort(key=lambda v: float(ladder["multiplier"].values[(ladder["length"] == v).values][0]))
    candidates = [
        Subset("full ladder", tuple(sizes), tuple(lengths)),
        Subset("drop largest size", tuple(sizes[:-1]), tuple(lengths)),
        Subset("drop 2 largest sizes", tuple(sizes[:-2]), tuple(lengths)),
        Subset("drop smallest size", tuple(sizes[1:]), tuple(lengths)),
        Subset("drop longest length", tuple(sizes), tuple(lengths[:-1])),
        Subset("drop 2 longest lengths", tuple(sizes), tuple(lengths[:-2])),
        Subset("drop largest size and longest length", tuple(sizes[:-1]), tuple(lengths[:-1])),
    ]
    out, seen = [], set()
    for subset in candidates:
        key = (subset.sizes, subset.lengths)
        if len(subset.sizes) >= 2 and len(subset.lengths) >= 2 and key not in seen:
            seen.add(key)
            out.append(subset)
    return out


def run_flops(ds: xr.Dataset, runs: list[str]) -> float:
    """6 N D summed over ``runs``, D being each run's last evaluated checkpoint."""
    total = 0.0
    for run in runs:
        tokens = ds["tokens"].sel(run=run).values
        total += 6.0 * float(ds["n_params"].sel(run=run)) * float(tokens[~np.isnan(tokens)][-1])
    return total


def run_subsets(
    ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str], names: list[str] | None = None, progress=None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every subset (or those named), score each on the full ladder's held-out runs.

    Returns (summary: one row per subset with :data:`COLUMNS`, table: every held-out run x task x subset).
    ``progress``: None, or a callable taking one line of text per subset.
    """
    subsets = ladder_subsets(ds, config, holdout_sizes)
    if names is not None:
        known = [s.name for s in subsets]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise BayesLadderError(f"unknown subset(s) {', '.join(unknown)}; this ladder has: {', '.join(known)}")
        subsets = [s for s in subsets if s.name in names]
    if not subsets:
        raise BayesLadderError("the ladder is too small for subsets: it needs at least 2 sizes and 2 lengths")
    full = replace(config, selection=replace(config.selection, sizes=subsets[0].sizes, lengths=subsets[0].lengths))
    targets = holdout_runs(ds, full, holdout_sizes)
    target_flops = max(run_flops(ds, [r]) for r in targets)
    rows, tables = [], []
    for subset in subsets:
        sub_config = replace(config, selection=replace(config.selection, sizes=subset.sizes, lengths=subset.lengths))
        runs = with_replicates(ds, select_runs(ds, sub_config.selection))
        if progress is not None:
            progress(f"subset: {subset.name}")
        fitted = fit(ds, sub_config)
        table = score(fitted, ds, targets, seed=config.seed)
        overall = summarise(table).iloc[-1]
        checks = refit_checks(fitted)
        flops = run_flops(ds, runs)
        rows.append(
            dict(
                subset=subset.name,
                sizes=",".join(subset.sizes),
                lengths=",".join(subset.lengths),
                n_runs=len(runs),
                flops=flops,
                flops_fraction=flops / target_flops,
                mae=overall["mae"],
                coverage=overall["coverage"],
                mean_width=overall["mean_width"],
                mean_crps=overall["mean_crps"],
                baseline_mae=overall["baseline_mae"],
                max_rhat=checks["max_rhat"],
                divergences=checks["divergences"],
                refit_ok=checks["diagnostics_ok"],
                n=int(overall["n"]),
            )
        )
        tables.append(table.assign(subset=subset.name))
    return pd.DataFrame.from_records(rows, columns=COLUMNS), pd.concat(tables, ignore_index=True)


def figure(summary: pd.DataFrame) -> bytes:
    """MAE (Bayesian median and baseline) and mean 90% interval width against ladder compute."""
    from matplotlib.ticker import PercentFormatter

    from bayesladder import plotting

    fig = plotting.figure(9, 4.8)
    ax = fig.subplots()
    order = summary.reset_index(drop=True)
    by_compute = order.sort_values("flops_fraction")
    x = by_compute["flops_fraction"].to_numpy()
    ax.plot(x, by_compute["mae"], "o-", color="tab:blue", label="MAE of the posterior median")
    ax.plot(x, by_compute["baseline_mae"], "x--", color="k", label="MAE of the baseline")
    ax.plot(x, by_compute["mean_width"], "s:", color="tab:orange", label="mean 90% interval width")
    for number, row in order.iterrows():
        ax.annotate(
            str(number + 1),
            (row["flops_fraction"], row["mae"]),
            fontsize=8,
            xytext=(3, -11),
            textcoords="offset points",
        )
    key = "\n".join(f"{i + 1}: {row['subset']} (coverage {row['coverage']:.0%})" for i, row in order.iterrows())
    ax.text(1.02, 0.0, key, transform=ax.transAxes, fontsize=8, va="bottom")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.xaxis.set_minor_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("ladder compute as a fraction of the target's (6ND)")
    ax.set_ylabel("accuracy (absolute)")
    ax.set_title("Compute vs error: smaller ladders, same held-out runs")
    ax.legend(fontsize=8, loc="upper right")
    return plotting.png(fig)
