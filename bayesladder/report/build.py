"""The report's content, computed from a fit and its dataset: tables (DataFrames) and figures (PNG bytes).

:func:`build` returns a :class:`Report`; rendering it as HTML or Markdown is :mod:`bayesladder.report.render`'s job.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import __version__, baseline, schema
from bayesladder.bayes.data import with_replicates
from bayesladder.bayes.diagnostics import Diagnostics, Thresholds, diagnose
from bayesladder.bayes.fit import LadderFit
from bayesladder.bayes.predict import predictive_draws
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import actual_final, resolve_target, select_runs
from bayesladder.report import figures
from bayesladder.targets import KNOWN_TARGETS, Target


@dataclass(frozen=True)
class TargetSpec:
    target: Target
    size: str | None  # the dataset's size label when the target is a run of the dataset

    @property
    def name(self) -> str:
        return self.target.name


@dataclass
class Section:
    key: str  # anchor id, stable: tests look for it
    title: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, bytes]] = field(default_factory=list)  # (caption, PNG bytes)


@dataclass
class Report:
    title: str
    banner: list[str]  # failed diagnostics; shown at the top
    sections: list[Section]


def default_targets(ds: xr.Dataset, fitted: LadderFit) -> list[str]:
    """The dataset's target runs; else its first-replicate runs of sizes outside the fit; else 7B-4T and 13B-5T."""
    roles = ds["role"].values.astype(str)
    names = [str(r) for r in ds["run"].values]
    chosen = [n for n, role in zip(names, roles) if role == "target"]
    if not chosen:
        lengths = fitted.config.selection.lengths
        chosen = [
            n
            for n, size, length, rep in zip(names, ds["size"].values, ds["length"].values, ds["replicate"].values)
            if str(size) not in fitted.sizes and int(rep) == 0 and (not lengths or str(length) in lengths)
        ]
    return chosen or list(KNOWN_TARGETS)


def resolve_targets(ds: xr.Dataset, fitted: LadderFit, names: list[str] | None) -> list[TargetSpec]:
    out = []
    for name in names or default_targets(ds, fitted):
        target = resolve_target(ds, name, None, None)
        size = str(ds["size"].sel(run=name).values) if name in ds["run"].values else None
        out.append(TargetSpec(target, size))
    return out


def build(
    fitted: LadderFit,
    ds: xr.Dataset,
    dataset_path: str | Path,
    targets: list[str] | None = None,
    variance_table: pd.DataFrame | None = None,
    subsets_table: pd.DataFrame | None = None,
    compare_table: pd.DataFrame | None = None,
    thresholds: Thresholds | None = None,
    max_draws: int = 500,
    seed: int = 0,
) -> Report:
    """Every section of the report. ``fitted`` must have been fitted on ``ds`` (checked by hash)."""
    thresholds = thresholds or Thresholds()
    if schema.content_hash(ds) != fitted.data_hash:
        raise BayesLadderError(
            f"the fit was made on a different dataset than {dataset_path}; pass the fit's own dataset with --data"
        )
    _check_tables(subsets_table, compare_table)  # bad input fails before any figure is drawn
    tasks = list(fitted.config.tasks)
    specs = resolve_targets(ds, fitted, targets)
    runs = select_runs(ds, fitted.config.selection)
    runs_all = with_replicates(ds, runs)
    thin = _thinned(fitted.posterior, max_draws)

    draws = {
        s.name: predictive_draws(fitted.posterior, fitted.constants, s.target.n_params, s.target.tokens, s.size, seed)
        for s in specs
    }
    base_fits, base_note = _baseline(ds, runs, tasks)
    headline = headline_table(ds, tasks, specs, draws, base_fits)
    with warnings.catch_warnings():  # PSIS warns of high Pareto k; the diagnostics table reports it
        warnings.simplefilter("ignore")
        diag = diagnose(fitted, thresholds)
    banner = [
        f"Diagnostics failed: {f}. Do not trust these predictions; sample longer or check the data."
        for f in diag.failures
    ]

    noisy = set(variance_table.loc[variance_table["noisy"], "task"]) if variance_table is not None else set()
    if noisy:
        headline.insert(2, "noisy", headline["task"].isin(noisy))
    sections = [
        Section(
            "predictions",
            "Target predictions",
            "Posterior median with 50% (q25-q75) and 90% (q05-q95) intervals of task loss (bits/byte) and accuracy, "
            "the paper's point fit (baseline) on the same ladder, and, where the dataset holds the target, its actual "
            "final value (mean of the last 5 checkpoints) and the error (median - actual)."
            + (f" {base_note}" if base_note else ""),
            tables=[("Predictions per target and task", headline)],
        ),
        Section(
            "chained",
            "Chained prediction",
            "Accuracy against training compute C = 6ND: the ladder's final points, and at each target the chained "
            "prediction (step 1 then step 2) with its 50% (thick) and 90% (thin) interval, the baseline and the actual value.",
            figures=[("Chained predictions", figures.chained(ds, runs, tasks, specs, draws, base_fits))],
        ),
        Section(
            "step1",
            "Step 1: task loss against N and D",
            "Per task: each run's final task loss (points, by size) against training tokens D, the posterior "
            "predictive median and 90% band of the loss curve at each ladder size's N, and each target's curve at its own N "
            "(dashed) with the target marked (diamond: prediction; star: actual).",
            figures=figures.step1(ds, fitted, thin, runs_all, tasks, specs, draws, seed),
        ),
        Section(
            "step2",
            "Step 2: accuracy against task loss",
            "Per task: every checkpoint of the ladder's runs (by size), the sigmoid's posterior median and 90% band "
            "(without size effects), the chance floor, and the targets (diamond: predicted median; star: actual).",
            figures=figures.step2(ds, thin, fitted.constants, runs_all, tasks, specs, draws),
        ),
        diagnostics_section(diag, thresholds),
        Section(
            "priors",
            "Prior vs posterior: shared hyperparameters",
            "Prior draws (from the fit's priors) against posterior draws of the hyperparameters shared by all tasks. "
            "A posterior that merely repeats its prior means the data say little about that parameter.",
            figures=[("Prior vs posterior", figures.prior_posterior(fitted, seed))],
        ),
    ]
    if variance_table is not None:
        sections.append(variance_section(variance_table, headline))
    if subsets_table is not None:
        sections.append(subsets_section(subsets_table))
    if compare_table is not None:
        sections.append(compare_section(compare_table))
    sections.append(provenance_section(fitted, ds, dataset_path, runs_all, specs))
    return Report(title=f"bayesladder report: {', '.join(s.name for s in specs)}", banner=banner, sections=sections)


def headline_table(ds, tasks, specs, draws, base_fits) -> pd.DataFrame:
    rows = []
    for spec in specs:
        loss, acc = draws[spec.name]
        base = (
            baseline.predict(base_fits, spec.target.n_params, spec.target.tokens).set_index("task")
            if base_fits
            else None
        )
        actual = actual_final(ds, spec.name)
        for i, task in enumerate(tasks):
            lq = np.quantile(loss[:, i], [0.05, 0.25, 0.5, 0.75, 0.95])
            aq = np.quantile(acc[:, i], [0.05, 0.25, 0.5, 0.75, 0.95])
            row = dict(
                target=spec.name,
                task=task,
                loss_median=lq[2],
                loss_q05=lq[0],
                loss_q95=lq[4],
                acc_median=aq[2],
                acc_q25=aq[1],
                acc_q75=aq[3],
                acc_q05=aq[0],
                acc_q95=aq[4],
                baseline_loss=float(base.loc[task, "loss"]) if base is not None else np.nan,
                baseline_acc=float(base.loc[task, "accuracy"]) if base is not None else np.nan,
                actual_loss=np.nan,
                actual_acc=np.nan,
                error=np.nan,
                baseline_error=np.nan,
                covered90=None,
            )
            if actual is not None:
                a = float(actual.loc[task, "accuracy"])
                row.update(
                    actual_loss=float(actual.loc[task, "task_loss"]),
                    actual_acc=a,
                    error=aq[2] - a,
                    baseline_error=row["baseline_acc"] - a,
                    covered90=bool(aq[0] <= a <= aq[4]),
                )
            rows.append(row)
    return pd.DataFrame.from_records(rows)


def diagnostics_section(diag: Diagnostics, t: Thresholds) -> Section:
    def check(name, value, rule, ok):
        return dict(check=name, value=value, rule=rule, status="pass" if ok else "FAIL")

    rows = [
        check("max R-hat", diag.max_rhat, f"<= {t.max_rhat}", diag.max_rhat <= t.max_rhat),
        check("min bulk ESS", diag.min_ess_bulk, f">= {t.min_ess:.0f}", diag.min_ess_bulk >= t.min_ess),
        check("min tail ESS", diag.min_ess_tail, f">= {t.min_ess:.0f}", diag.min_ess_tail >= t.min_ess),
        check(
            "divergent transitions", diag.divergences, f"<= {t.max_divergences}", diag.divergences <= t.max_divergences
        ),
        check("min E-BFMI", diag.min_bfmi, f">= {t.min_bfmi}", diag.min_bfmi >= t.min_bfmi),
        check("draws at max tree depth", diag.tree_depth_saturated, "0", diag.tree_depth_saturated == 0),
        dict(
            check="max Pareto k (PSIS-LOO)",
            value=diag.max_pareto_k,
            rule=f"<= {t.max_pareto_k} for reliable LOO",
            status="pass" if diag.max_pareto_k <= t.max_pareto_k else "warn",
        ),
        dict(
            check="elpd (PSIS-LOO)", value=diag.elpd_loo, rule="higher is better; compare between models", status="info"
        ),
        dict(check="PPC 90% coverage, task loss", value=diag.ppc_loss_coverage90, rule="near 0.90", status="info"),
        dict(check="PPC 90% coverage, accuracy", value=diag.ppc_acc_coverage90, rule="near 0.90", status="info"),
        dict(check="mean tree depth", value=diag.mean_tree_depth, rule="", status="info"),
    ]
    for row in rows:  # one column of mixed counts and measures: format here
        v = row["value"]
        row["value"] = str(v) if isinstance(v, (int, np.integer)) else f"{v:.4g}"
    verdict = "All convergence checks pass." if diag.ok else f"FAILED: {'; '.join(diag.failures)}."
    return Section(
        "diagnostics", "Diagnostics", verdict, tables=[("Convergence, LOO and predictive checks", pd.DataFrame(rows))]
    )


def variance_section(table: pd.DataFrame, headline: pd.DataFrame) -> Section:
    from bayesladder.analyses.variance import rule_text, with_errors

    table = table.copy()
    with_actual = headline.dropna(subset=["actual_acc"])
    text = (
        f"Checkpoint-to-checkpoint variation of run {table['run'].iloc[0]} over its last {int(table['n'].max())} "
        f"checkpoints ({rule_text()})."
    )
    if len(with_actual):
        table = with_errors(table, with_actual)
        text += (
            " abs_error is the mean |median - actual| accuracy over the targets with actuals; error_over_sd "
            "near 1 or below means the prediction error is as small as the evaluation noise allows."
        )
    noisy = ", ".join(table.loc[table["noisy"], "task"]) or "none"
    return Section(
        "variance", "Checkpoint variance", f"{text} Noisy tasks: {noisy}.", tables=[("Variance per task", table)]
    )


def _check_tables(subsets_table, compare_table) -> None:
    from bayesladder.analyses import designs, subsets

    for table, columns, command in (
        (subsets_table, subsets.COLUMNS, "backtest --subsets --json"),
        (compare_table, designs.COLUMNS, "compare --json"),
    ):
        missing = [c for c in columns if table is not None and c not in table.columns]
        if missing:
            raise BayesLadderError(
                f"the table for the report lacks column(s) {', '.join(missing)}; make it with 'bayesladder {command}'"
            )


def subsets_section(table: pd.DataFrame) -> Section:
    """The table of ``bayesladder backtest --subsets --json`` and its compute-vs-error figure."""
    from bayesladder.analyses.subsets import COLUMNS, figure

    text = (
        "Refits on smaller ladders, each scored on the same held-out runs: MAE of the posterior median accuracy, "
        "coverage of the 90% interval, its mean width, and the baseline's MAE, against the ladder's compute "
        "(6ND summed over its runs) as a fraction of the largest held-out run's."
    )
    return Section(
        "subsets",
        "Compute vs error",
        text,
        tables=[("Per ladder subset", table[COLUMNS])],
        figures=[("Error and interval width against ladder compute", figure(table))],
    )


def compare_section(table: pd.DataFrame) -> Section:
    """The ranking of ``bayesladder compare --json``."""
    from bayesladder.analyses.designs import COLUMNS

    text = (
        "Alternative designs backtested on the same held-out runs, ranked by MAE of the median accuracy; coverage "
        "of the 90% interval and mean CRPS beside it. elpd_loo (PSIS-LOO) is given only for designs that see the "
        "same observations (two-step and flops-step1)."
    )
    return Section("compare", "Alternative designs", text, tables=[("Designs ranked", table[COLUMNS])])


def provenance_section(fitted: LadderFit, ds, dataset_path, runs, specs) -> Section:
    cfg = fitted.config
    items = [
        ("dataset file", str(Path(dataset_path).resolve()) if Path(str(dataset_path)).exists() else str(dataset_path)),
        ("dataset content hash", schema.content_hash(ds)),
        ("fit's dataset hash", f"{fitted.data_hash} (matches)"),
        ("dataset producer", str(ds.attrs.get("producer", ""))),
        ("dataset created", str(ds.attrs.get("created", ""))),
        ("runs used by the fit", ", ".join(runs)),
        ("ladder selection", cfg.selection.describe()),
        ("tasks", ", ".join(cfg.tasks)),
        ("targets", "; ".join(f"{s.name} (N={s.target.n_params:.4g}, D={s.target.tokens:.4g})" for s in specs)),
        ("sampler", f"nutpie, {cfg.chains} chains x {cfg.draws} draws after {cfg.tune} tuning, seed {cfg.seed}"),
        ("priors overridden", ", ".join(sorted(cfg.priors)) or "none (defaults)"),
        ("fit made by bayesladder", str(fitted.tree.attrs.get("bayesladder_version", "?"))),
        ("report made by bayesladder", __version__),
        ("report created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")),
    ]
    return Section(
        "provenance", "Data provenance", tables=[("Provenance", pd.DataFrame(items, columns=["item", "value"]))]
    )


def _baseline(ds, runs, tasks):
    try:
        return baseline.fit(ds, runs, tasks), ""
    except (RuntimeError, ValueError) as exc:  # curve_fit gives up on some ladders; the report stands without it
        return None, f"The baseline point fit failed ({type(exc).__name__}); its columns are empty."


def _thinned(posterior: xr.Dataset, max_draws: int) -> xr.Dataset:
    total = posterior.sizes["chain"] * posterior.sizes["draw"]
    step = max(1, int(np.ceil(total / max_draws)))
    return posterior.isel(draw=slice(None, None, step))
