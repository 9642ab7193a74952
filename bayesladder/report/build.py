"""The report's content, computed from a fit and its dataset: tables (DataFrames) and figures (PNG bytes).

:func:`build` returns a :class:`Report`; rendering it as HTML or Markdown is :mod:`bayesladder.report.render`'s job.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import __version__, baseline, datasets, extrapolation, schema
from bayesladder.bayes.backtest import prediction_rows
from bayesladder.bayes.data import with_replicates
from bayesladder.bayes.diagnostics import Diagnostics, Thresholds, checks, diagnose
from bayesladder.bayes.fit import LadderFit
from bayesladder.bayes.predict import predictive_draws
from bayesladder.bayes.stacking import KAPPA_EVIDENCE, NO_SPLIT, describe_weights
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import resolve_target, select_runs
from bayesladder.report import figures
from bayesladder.targets import Target, default_targets


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
    banner: list[str]  # failed diagnostics, targets far outside the ladder: warnings shown at the top
    sections: list[Section]
    predictions: pd.DataFrame  # every number of the headline tables, one row per target and task


def resolve_targets(ds: xr.Dataset, fitted: LadderFit, names: list[str] | None) -> list[TargetSpec]:
    out = []
    for target in [resolve_target(ds, name, None, None) for name in names] if names else default_targets(ds, fitted):
        size = str(ds["size"].sel(run=target.name).values) if target.name in ds["run"].values else None
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
    plan_table: pd.DataFrame | None = None,
    thresholds: Thresholds | None = None,
    max_draws: int = 500,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Every section of the report. ``fitted`` must have been fitted on ``ds`` (checked by hash).

    Every input is checked before any work starts; ``progress`` (e.g. a printer) then hears of each stage."""
    thresholds = thresholds or Thresholds()
    progress = progress or (lambda text: None)
    if schema.content_hash(ds) != fitted.data_hash:
        raise BayesLadderError(
            f"the fit was made on a different dataset than {dataset_path}; pass the fit's own dataset with --data"
        )
    _check_tables(subsets_table, compare_table, plan_table)  # bad input fails before any figure is drawn
    tasks = list(fitted.config.tasks)
    specs = resolve_targets(ds, fitted, targets)
    runs = select_runs(ds, fitted.config.selection)
    runs_all = with_replicates(ds, runs)

    progress(f"predicting {', '.join(s.name for s in specs)} and fitting the paper's baseline")
    draws = {s.name: predictive_draws(fitted, s.target.n_params, s.target.tokens, s.size, seed) for s in specs}
    base_fits, base_note = _baseline(ds, runs, tasks)
    extent = fitted.extent()
    beyond = {s.name: extrapolation.beyond(extent, s.target.n_params, s.target.tokens) for s in specs}
    weights = {s.name: fitted.weights_at(s.target.n_params, s.target.tokens) for s in specs}
    predictions = headline_table(ds, tasks, specs, draws, base_fits, beyond)
    loss_design = fitted.designs.get("two-step")
    progress("checking the diagnostics")
    with warnings.catch_warnings():  # PSIS warns of high Pareto k; the diagnostics table reports it
        warnings.simplefilter("ignore")
        diag = diagnose(fitted, thresholds)
    banner = [
        f"Diagnostics failed: {f}. Do not trust these predictions (see the Diagnostics section)." for f in diag.failures
    ]
    banner += [said + "." for name, b in beyond.items() if (said := b.warning(name))]

    noisy = set(variance_table.loc[variance_table["noisy"], "task"]) if variance_table is not None else set()
    progress("drawing the figures")
    sections = [
        predictions_section(predictions, specs, beyond, weights, noisy, base_note, fitted.data.loss_units),
        Section(
            "chained",
            "Chained prediction",
            "Accuracy against training compute C = 6ND: the ladder's final points by size, and at each target the "
            "chained prediction (step 1 then step 2): its median (white circle) with the 50% (thick bar) and 90% "
            "(thin bar) intervals, the paper's point fit (cross) and, for a run of the dataset, its actual value (star).",
            figures=[("Chained predictions", figures.chained(ds, runs, tasks, specs, draws, base_fits))],
        ),
        designs_section(fitted),
        *(_step_sections(ds, loss_design, runs_all, tasks, specs, draws, seed, max_draws) if loss_design else []),
        diagnostics_section(diag, thresholds),
        priors_section(fitted, seed),
    ]
    if variance_table is not None:
        sections.append(variance_section(variance_table, predictions))
    if subsets_table is not None:
        sections.append(subsets_section(subsets_table))
    if compare_table is not None:
        sections.append(compare_section(compare_table))
    if plan_table is not None:
        sections.append(plan_section(plan_table))
    sections.append(provenance_section(fitted, ds, dataset_path, runs, runs_all, specs))
    return Report(
        title=f"bayesladder report: {', '.join(s.name for s in specs)}",
        banner=banner,
        sections=sections,
        predictions=predictions,
    )


def _step_sections(ds, design, runs_all, tasks, specs, draws, seed, max_draws) -> list[Section]:
    """The two steps' figures, from the fitted two-step design."""
    return [
        Section(
            "step1",
            "Step 1: task loss against N and D",
            "Per task: each run's final task loss (points, by size) against training tokens D, the posterior "
            "predictive median and 90% band of the loss curve at each ladder size's N, and each target's curve at "
            "its own N (dashed) with the target marked (diamond: prediction with its 90% interval; star: actual).",
            figures=figures.step1(ds, design, runs_all, tasks, specs, draws, seed, max_draws),
        ),
        Section(
            "step2",
            "Step 2: accuracy against task loss",
            "Per task: every checkpoint of the ladder's runs (by size), the sigmoid's posterior median and 90% band "
            "at the ladder's central size (a size's own shift, its trend in N and its residual, moves its points "
            "off it), the chance floor, and the targets (diamond: predicted median with its 90% interval; star: "
            "actual).",
            figures=figures.step2(ds, design, runs_all, tasks, specs, draws, max_draws),
        ),
    ]


def designs_section(fitted: LadderFit) -> Section:
    """The nested backtest that weighted the designs and sized the extrapolation discrepancy."""
    calibration = fitted.calibration
    if not calibration.splits:
        text = (
            f"{NO_SPLIT[0].upper()}{NO_SPLIT[1:]}; so the designs are mixed in equal parts, with no added discrepancy."
        )
        return Section("designs", "Designs and extrapolation", text)
    fitted_on = "; ".join(
        f"fitted on {split.axis}s {', '.join(split.fitted)}, it predicted the runs of {split.axis}s "
        f"{', '.join(split.held_out)}" for split in calibration.splits
    )  # fmt: skip
    text = (
        f"Before the full ladder was fitted, each design was backtested on the ladder itself: {fitted_on}. Its "
        "discrepancy scale kappa on each split (logits per e-fold beyond the fitted part: of N on the size split, "
        "of tokens per parameter on the length split) is what its intervals needed beyond their own width to score "
        f"best on those held-out values, kept only where it gained at least {KAPPA_EVIDENCE:g} nat of the tempered "
        "log score (kappa_gain); its weight on each split is its share in the mixture that scored best on that "
        "split's held-out values (tempered to the number of its held-out sizes or lengths, with a Dirichlet(2) "
        "prior): a design can extrapolate better in N than in tokens per parameter. A target's prediction mixes the "
        "designs' draws by the two splits' weights in proportion to its e-folds beyond the ladder's largest size and "
        "its longest-trained run (a split the ladder lacks takes the other's weights), each design widened by its "
        "kappas times those e-folds (added in quadrature); each target's table under Target predictions gives its "
        "weights."
    )
    notes = calibration.left_out_notes()
    if notes:
        text += f" Tasks left out of these scores: {'; '.join(notes)}."
    columns = [c for c in ("split", "design", "weight", "kappa", "kappa_gain", "log_score", "mae", "coverage90", "n",
                           "max_rhat", "divergences") if c in calibration.scores]  # fmt: skip
    return Section("designs", "Designs and extrapolation", text,
                   tables=[("Nested backtest per design", calibration.scores[columns])])  # fmt: skip


def headline_table(ds, tasks, specs, draws, base_fits, beyond) -> pd.DataFrame:
    """One row per target and task: quantiles of loss and accuracy, the baseline, the actual value and errors
    where the dataset holds the target, and how far the target lies beyond the ladder."""
    rows = prediction_rows(
        ds, [spec.target for spec in specs], tasks, lambda target, size: draws[target.name], base_fits
    )
    rows = rows.rename(columns={"run": "target"})
    flags = pd.DataFrame.from_dict({name: b.record() for name, b in beyond.items()}, orient="index")
    return rows.join(flags, on="target")


def predictions_section(predictions, specs, beyond, weights, noisy, base_note, loss_units: str) -> Section:
    """One readable table per target: accuracy in points, intervals as ranges, actual and errors where known."""
    text = (
        f"Per target and task: the posterior median of task loss ({loss_units}) and accuracy (in points, i.e. "
        "percent), with the 50% and 90% intervals, beside the paper's point fit on the same ladder (paper fit) "
        "and, where the dataset holds the target, its actual final value and the errors (median - actual)."
    )
    if base_note:
        text += f" {base_note}"
    tables = []
    for spec in specs:
        rows = predictions[predictions["target"] == spec.name]
        caption = (
            f"{spec.name}: N = {spec.target.n_params:.3g}, D = {spec.target.tokens:.3g} "
            f"({beyond[spec.name].describe()}; designs' weights: {describe_weights(weights[spec.name])})"
        )
        tables.append((caption, _readable(rows, noisy)))
    return Section("predictions", "Target predictions", text, tables=tables)


def _readable(rows: pd.DataFrame, noisy: set[str]) -> pd.DataFrame:
    def points(v):
        return "-" if pd.isna(v) else f"{100 * v:.1f}"

    def span(lo, hi, fmt):
        return f"{fmt(lo)} \u2013 {fmt(hi)}"  # an en dash

    table = pd.DataFrame({"task": rows["task"].values})
    if noisy:
        table["noisy task"] = ["yes" if t in noisy else "no" for t in rows["task"]]
    table["loss median"] = [f"{v:.3f}" for v in rows["loss_median"]]
    table["loss 90% interval"] = [span(a, b, "{:.3f}".format) for a, b in zip(rows["loss_q05"], rows["loss_q95"])]
    table["accuracy median"] = [points(v) for v in rows["acc_median"]]
    table["50% interval"] = [span(a, b, points) for a, b in zip(rows["acc_q25"], rows["acc_q75"])]
    table["90% interval"] = [span(a, b, points) for a, b in zip(rows["acc_q05"], rows["acc_q95"])]
    table["paper fit"] = [points(v) for v in rows["baseline_acc"]]
    if rows["actual_acc"].notna().any():
        table["actual"] = [points(v) for v in rows["actual_acc"]]
        table["error"] = [f"{100 * v:+.1f}" for v in rows["error"]]
        table["paper fit error"] = ["-" if pd.isna(v) else f"{100 * v:+.1f}" for v in rows["baseline_error"]]
        table["in 90% interval"] = ["yes" if c else "no" for c in rows["covered"]]
    return table


def diagnostics_section(diag: Diagnostics, t: Thresholds) -> Section:
    rows = checks(diag, t)
    for row in rows:  # one column of mixed counts and measures: format here
        v = row["value"]
        row["value"] = str(v) if isinstance(v, (int, np.integer)) else f"{v:.4g}"
    verdict = "All convergence checks pass." if diag.ok else f"FAILED: {'; '.join(diag.failures)}."
    return Section(
        "diagnostics", "Diagnostics", verdict, tables=[("Convergence, LOO and predictive checks", pd.DataFrame(rows))]
    )


def priors_section(fitted: LadderFit, seed: int) -> Section:
    return Section(
        "priors",
        "Prior vs posterior: shared hyperparameters",
        "Prior draws (grey, from the fit's priors) against posterior draws (blue) of the hyperparameters shared "
        "by all tasks, each panel saying what its parameter is. A posterior that merely repeats its prior means "
        "the data say little about that parameter.",
        figures=[("Prior vs posterior", figures.prior_posterior(fitted, seed))],
    )


def variance_section(table: pd.DataFrame, predictions: pd.DataFrame) -> Section:
    from bayesladder.analyses.variance import rule_text, with_errors

    table = table.copy()
    with_actual = predictions.dropna(subset=["actual_acc"])
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


SHOWN_MISSING = 4  # a table of another command lacks most columns: name a few, count the rest


def _check_tables(subsets_table, compare_table, plan_table=None) -> None:
    from bayesladder.analyses import designs, subsets
    from bayesladder.bayes import plan

    for table, columns, command in (
        (subsets_table, subsets.COLUMNS, "backtest --subsets --json"),
        (compare_table, designs.COLUMNS, "compare --json"),
        (plan_table, plan.COLUMNS, "plan --json"),
    ):
        missing = [c for c in columns if table is not None and c not in table.columns]
        if missing:
            named = ", ".join(missing[:SHOWN_MISSING]) + (
                f" and {len(missing) - SHOWN_MISSING} more of its {len(columns)}"
                if len(missing) > SHOWN_MISSING
                else ""
            )
            raise BayesLadderError(
                f"{table.attrs.get('source', 'the table for the report')} lacks column(s) {named}; "
                f"make it with 'bayesladder {command}'"
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


def plan_section(table: pd.DataFrame) -> Section:
    """The ranking of ``bayesladder plan --json`` and its width-against-FLOPs figure."""
    from bayesladder.bayes.plan import describe, figure, readable

    table = table.sort_values("rank").reset_index(drop=True)
    text = (
        f"Candidate rungs for {table['target'].iloc[0]}, each scored by how much training it would narrow the "
        f"target's 90% accuracy interval, in expectation over its outcomes as the fit predicts them. {describe(table)}."
    )
    if table["step"].notna().any():
        spent = table["cumulative_flops"].max()
        text += (
            f" With a budget, plan chose the sequence marked (step): {spent:.3g} FLOPs in all, after which the interval "
            f"is expected to be {100 * table['width_after_step'].min():.2f} points wide."
        )
    return Section(
        "plan",
        "Which rung to train next",
        text,
        tables=[("Candidates ranked by expected narrowing per FLOP (points)", readable(table))],
        figures=[("Expected interval width after each candidate against its FLOPs", figure(table))],
    )


def provenance_section(fitted: LadderFit, ds, dataset_path, runs, runs_all, specs) -> Section:
    cfg = fitted.config
    reruns = [r for r in runs_all if r not in runs]
    sizes = ", ".join(cfg.selection.sizes) if cfg.selection.sizes else "all"
    lengths = ", ".join(cfg.selection.lengths) if cfg.selection.lengths else "all"
    items = [
        (
            "dataset file",
            datasets.describe(Path(dataset_path).resolve() if Path(str(dataset_path)).exists() else dataset_path),
        ),
        ("dataset content hash", f"{schema.content_hash(ds)} (the fit's: matches)"),
        ("dataset producer", str(ds.attrs.get("producer", ""))),
        ("dataset created", str(ds.attrs.get("created", ""))),
        ("ladder selection", f"sizes {sizes}; lengths {lengths}"),
        ("runs fitted", ", ".join(runs)),
        (
            "independent reruns fitted",
            (
                ", ".join(reruns)
                + " (extra step-1 and step-2 points of the same recipes: they inform the run-to-run noise)"
            )
            if reruns
            else "none",
        ),
        ("tasks", ", ".join(cfg.tasks)),
        (
            "step-2 points",
            "each run's one evaluation (a final-only ladder: step 2 is fitted on the runs' final points)"
            if fitted.data.final_only
            else "every checkpoint after each run's first 10%, in blocks of up to 10",
        ),
        ("task loss units", fitted.data.loss_units),
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
    """The paper's point fit, or (None, why) when it does not converge on this ladder."""
    try:
        return baseline.fit(ds, runs, tasks), ""
    except baseline.BaselineFitError as exc:
        return None, f"The paper's point fit did not converge on this ladder ({exc}); its columns are empty."
