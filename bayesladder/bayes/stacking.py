"""Combining designs and calibrating extrapolation with the ladder's own nested backtest.

Before the full ladder is fitted, each design is fitted on the ladder's lower sizes (those below the geometric
middle of its N range) and predicts the final accuracy of every run of its upper sizes: an extrapolation of one
to two e-folds of N that the ladder can check. On those held-out values:

* each design's **discrepancy scale** kappa: the prediction gets an extra Normal shift on the logit scale with SD
  kappa x (e-folds of N beyond the largest fitted size). kappa is the value that maximises the held-out log score,
  kept only where it gains at least :data:`KAPPA_EVIDENCE` nats of that score tempered as the weights' (below):
  the model's own intervals already widen with distance (the trend's uncertainty, a new size's leverage), and kappa
  is what the ladder shows beyond them. As a variance estimated at its boundary from one split, the unrestricted
  maximum is biased up: on 12 simulated ladders where the model is the truth it came out 0.05-0.21 on 8 and made
  90% intervals 3x and 10x beyond the ladder cover 98% of targets; its tempered gain there was at most 0.76, and
  on the real dev splits 0 (OLMo), 0.10 (Gemstones) and 0.52 (the micro ladder).
* the designs' **stacking weights** (Yao, Vehtari, Simpson and Gelman 2018): the mixture weights that maximise
  the held-out log score of the designs' predictions combined, with two safeguards for how little one nested
  split says. The held-out values of a size share its deviation (across lengths and tasks), so the log score is
  tempered to the number of held-out sizes (a power of sizes / values), and the weights get a Dirichlet(2)
  prior. Unregularised, stacking put all weight on one design on every split tried (OLMo: single-step; Gemstones:
  two-step), and the full ladder's predictions were worse than an even mixture on 4 of 5 dev splits (OLMo's
  10-task 3B backtest: MAE 1.48 and 31 of 40 covered by single-step alone, 1.34 and 36 of 40 mixed).

The log score of a held-out value uses each posterior draw's mean accuracy and its measurement SD widened by the
discrepancy (``predict.Components``): mean over draws of Normal densities.

Nested fits that fail their sampler checks (R-hat, ESS, divergences) where some tasks' own parameters fail are
fitted again without those tasks (a design that only diverges names none; it is refitted without those the others
name); where that passes, the tasks are left out of every design's scores (the weights and kappa come from the
other tasks; the full ladder's fit still fits and predicts them), and the fit says so. A task the lower sizes cannot
pin down does this: OLMo's boolq sits at its floor on 190M-760M, which leaves its step-2 floor and steepness free
(an L-shaped posterior no parameterisation tried sampled well), and the direct design diverges there too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import minimize, minimize_scalar

from bayesladder.bayes.data import step1_design
from bayesladder.bayes.predict import components
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import actual_final, resolve_target

DIRICHLET = 2.0  # the weights' prior concentration: keeps a design in unless the evidence is strong
MIN_NESTED_SPAN = 0.5  # e-folds of N (a factor 1.65) the nested fit's sizes must span
MAX_KAPPA = 2.0  # logits per e-fold of N: far beyond anything a ladder has shown (Gemstones: ~0.1)
# tempered log-score gain (nats) a kappa above 0 must reach to be kept: the one a parameter costs (AIC); the
# largest gains seen where the model is true were 0.76 (simulated ladders), on real ladders 0.10-0.52 (see above)
KAPPA_EVIDENCE = 1.0
NO_SPLIT = (
    "the ladder is too small for a nested backtest: it needs 2 sizes below the middle of its N range, a factor "
    f"{np.exp(MIN_NESTED_SPAN):.3g} apart, with more runs than step 1's curve has parameters per task, and 1 size above"
)  # what nested_split asks, for the CLI and the report


@dataclass(frozen=True)
class NestedSplit:
    """The ladder's sizes below the geometric middle of its N range (fitted) and above it (held out)."""

    fitted: tuple[str, ...]
    held_out: tuple[str, ...]


@dataclass
class Calibration:
    """What the nested backtest decided, and the per-design scores it was decided on."""

    split: NestedSplit | None
    weights: dict[str, float]
    kappa: dict[str, float]
    scores: pd.DataFrame  # per design: log score, MAE, 90% coverage; its nested fit's max R-hat, min ESS, divergences,
    # the blocks it sampled again (fit.sample_block), the tasks it left out and why (left_out, left_out_because)

    def left_out(self) -> list[str]:
        """The tasks left out of the calibration (by any design's nested fit), each once."""
        tasks = self.scores["left_out"] if "left_out" in self.scores else []
        return list(dict.fromkeys(task for listed in tasks for task in listed))

    def left_out_notes(self) -> list[str]:
        """One sentence per design whose nested fit was fitted again without some tasks (empty for most fits)."""
        rows = self.scores.to_dict(orient="records") if "left_out" in self.scores else []
        return [
            f"nested backtest, {row['design']}: fitted with {', '.join(row['left_out'])} it failed its checks "
            f"({row['left_out_because']}) and passed without, so the stacking weights and kappa leave "
            f"{'it' if len(row['left_out']) == 1 else 'them'} out (the full ladder's fit keeps every task): a task "
            "the lower sizes cannot pin down (at its floor there, say)"
            for row in rows
            if row["left_out"]
        ]

    def record(self) -> dict:
        return {
            "split": None if self.split is None else {"fitted": self.split.fitted, "held_out": self.split.held_out},
            "weights": self.weights,
            "kappa": self.kappa,
            "scores": self.scores.to_dict(orient="records"),
        }

    @classmethod
    def from_record(cls, record: dict) -> Calibration:
        split = record["split"]
        return cls(
            split=None if split is None else NestedSplit(tuple(split["fitted"]), tuple(split["held_out"])),
            weights=dict(record["weights"]),
            kappa=dict(record["kappa"]),
            scores=pd.DataFrame.from_records(record["scores"]),
        )


def nested_split(ds: xr.Dataset, runs: list[str]) -> NestedSplit | None:
    """Sizes by N, split at the geometric middle of their range. None when the lower part would have fewer than 2
    sizes or span less than :data:`MIN_NESTED_SPAN` e-folds of N (it could not test an extrapolation: a curve
    in N cannot be fitted on it), or the upper part no size; also when the lower part has no more runs than step 1's
    curve has parameters per task (``data.step1_design``: such nested fits diverged)."""
    n_of = {str(s): float(n) for s, n in zip(ds["size"].sel(run=runs).values, ds["n_params"].sel(run=runs).values)}
    sizes = sorted(n_of, key=n_of.get)
    middle = 0.5 * (np.log(n_of[sizes[0]]) + np.log(n_of[sizes[-1]]))
    fitted = tuple(s for s in sizes if np.log(n_of[s]) < middle)
    held_out = tuple(s for s in sizes if np.log(n_of[s]) >= middle)
    if len(fitted) < 2 or not held_out or np.log(n_of[fitted[-1]] / n_of[fitted[0]]) < MIN_NESTED_SPAN:
        return None
    count, parameters = step1_design(ds, [r for r in runs if str(ds["size"].sel(run=r).values) in fitted])
    if count <= parameters:
        return None
    return NestedSplit(fitted, held_out)


def calibrate(ds: xr.Dataset, config, progress=None) -> Calibration:
    """Fit every design of ``config`` on the lower sizes, score it on the upper sizes, and derive each design's
    kappa and the stacking weights. A ladder with no nested split gives every design the same weight (the
    weights' prior mean) and kappa 0."""
    designs = list(config.designs)
    runs = config.check(ds)
    split = nested_split(ds, runs)
    if split is None:
        weights = {d: 1.0 / len(designs) for d in designs}
        return Calibration(None, weights, {d: 0.0 for d in designs}, pd.DataFrame({"design": designs}))
    nested_config = replace(config, selection=replace(config.selection, sizes=split.fitted))
    held_out = _held_out_runs(ds, runs, split)
    nested = _nested_fits(ds, nested_config, progress)
    left_out = {task for fit in nested.values() for task in fit.left_out}
    tasks = [t for t in config.tasks if t not in left_out]  # never empty: _nested_fits leaves some task in
    actual = np.array([[float(actual_final(ds, r).loc[t, "accuracy"]) for t in tasks] for r in held_out])
    densities, rows = {}, []
    for design, fitted in nested.items():
        columns = [fitted.fit.data.tasks.index(t) for t in tasks]
        parts = [_components(fitted.fit, design, ds, run).select(columns) for run in held_out]
        largest = float(fitted.fit.data.size_x.max() + fitted.fit.data.log_n_ref)
        distance = np.array([max(0.0, np.log(resolve_target(ds, r, None, None).n_params) - largest) for r in held_out])
        kappa, gain = discrepancy_scale(parts, actual, distance, units=len(split.held_out))
        densities[design] = _densities(parts, actual, distance, kappa)
        check = fitted.check
        rows.append(
            dict(design=design, kappa=kappa, kappa_gain=gain, log_score=float(np.log(densities[design]).sum()),
                 **_point_scores(parts, actual, distance, kappa), max_rhat=check["max_rhat"],
                 worst_rhat_parameter=check["worst_rhat_parameter"],
                 min_ess=min(check["min_ess_bulk"], check["min_ess_tail"]), divergences=check["divergences"],
                 resampled=fitted.fit.resampled, left_out=list(fitted.left_out), left_out_because=fitted.because)
        )  # fmt: skip
    weights = stacking_weights(np.column_stack([densities[d].ravel() for d in designs]), units=len(split.held_out))
    weights = {d: float(w) for d, w in zip(designs, weights)}
    scores = pd.DataFrame.from_records(rows).assign(weight=lambda t: t["design"].map(weights))
    return Calibration(split, weights, {r["design"]: r["kappa"] for r in rows}, scores)


@dataclass
class NestedFit:
    """One design's nested fit (a ``DesignFit``) and its sampler checks; the tasks it was fitted without and the
    failures of the fit with them that made it so (see the module docstring)."""

    fit: object
    check: dict
    left_out: tuple[str, ...] = ()
    because: str = ""


def _nested_fits(ds: xr.Dataset, config, progress=None) -> dict[str, NestedFit]:
    """Every design's nested fit. Where some fail their sampler checks and name tasks (their own parameters fail),
    each failed design is fitted again without the tasks any design named (divergences name none: a design that
    only diverges is refitted without the tasks the others named) and keeps that fit if it passes."""
    from bayesladder.bayes.diagnostics import Thresholds, convergence, failing_tasks, sampler_failures
    from bayesladder.bayes.fit import fit_design

    thresholds = Thresholds()
    fits = {}
    for design in config.designs:
        if progress is not None:
            progress(f"nested backtest: fitting {design} on sizes {', '.join(config.selection.sizes)}")
        fit = fit_design(ds, config, design)
        fits[design] = NestedFit(fit, convergence(fit))
    failures = {d: sampler_failures(f.check, thresholds) for d, f in fits.items()}
    named = {task for d, f in fits.items() if failures[d] for task in failing_tasks(f.fit, thresholds)}
    culprits = tuple(t for t in config.tasks if t in named)
    if not culprits or len(culprits) == len(config.tasks):
        return fits
    without = replace(config, tasks=tuple(t for t in config.tasks if t not in culprits))
    for design in [d for d in config.designs if failures[d]]:
        if progress is not None:
            progress(f"nested backtest: fitting {design} again without {', '.join(culprits)} "
                     f"({'; '.join(failures[design])})")  # fmt: skip
        fit = fit_design(ds, without, design)
        check = convergence(fit)
        if not sampler_failures(check, thresholds):  # else the failure stands, as the fit with them showed it
            fits[design] = NestedFit(fit, check, culprits, "; ".join(failures[design]))
    return fits


def _held_out_runs(ds: xr.Dataset, runs: list[str], split: NestedSplit) -> list[str]:
    held = [r for r in runs if str(ds["size"].sel(run=r).values) in split.held_out]
    if not held:
        raise BayesLadderError(f"no run of the held-out sizes {', '.join(split.held_out)}")
    return held


def _components(nested, design: str, ds: xr.Dataset, run: str):
    target = resolve_target(ds, run, None, None)
    return components(nested.posterior, nested.data, design, target.n_params, target.tokens, None)


def _densities(parts, actual: np.ndarray, distance: np.ndarray, kappa: float) -> np.ndarray:
    """(runs, tasks) predictive densities of the held-out values (mean over draws of Normal densities)."""
    out = np.empty(actual.shape)
    for i, part in enumerate(parts):
        var = part.measurement_sd**2 + (kappa * distance[i] * part.slope) ** 2
        z = (actual[i] - part.mean) ** 2 / var
        out[i] = np.mean(np.exp(-0.5 * z) / np.sqrt(2 * np.pi * var), axis=0)
    # a value the dataset does not hold counts as density 1 for every design: it moves neither kappa nor weights
    return np.where(np.isnan(actual), 1.0, np.maximum(out, 1e-300))


def discrepancy_scale(parts, actual: np.ndarray, distance: np.ndarray, units: int) -> tuple[float, float]:
    """(kappa, its tempered log-score gain over kappa = 0) from held-out values ``actual`` (runs, tasks), their
    predictive ``parts`` (one ``predict.Components`` per run) and e-folds of N beyond the fit (per run): the kappa
    that scores them best, kept only where it gains at least :data:`KAPPA_EVIDENCE` (else 0). ``units``: how many
    independent groups the values come from (see :func:`tempering`)."""
    temper = tempering(units, actual.size)

    def negative_log_score(kappa):
        return -float(np.log(_densities(parts, actual, distance, kappa)).sum())

    best = minimize_scalar(negative_log_score, bounds=(0.0, MAX_KAPPA), method="bounded", options={"xatol": 1e-3})
    gain = max(0.0, temper * (negative_log_score(0.0) - negative_log_score(best.x)))
    return (float(best.x) if gain >= KAPPA_EVIDENCE else 0.0), gain


def _point_scores(parts, actual: np.ndarray, distance: np.ndarray, kappa: float, seed: int = 0) -> dict:
    """MAE of the median and 90% coverage of the held-out values (accuracy units) with the discrepancy added."""
    rng = np.random.default_rng(seed)
    errors, covered = [], []
    for i, part in enumerate(parts):
        _, acc = part.sample(rng, kappa * distance[i])
        lo, median, hi = np.quantile(acc, [0.05, 0.5, 0.95], axis=0)
        errors.append(median - actual[i])
        covered.append((lo <= actual[i]) & (actual[i] <= hi))
    known = ~np.isnan(actual)
    return dict(
        mae=float(np.abs(np.array(errors))[known].mean()),
        coverage90=float(np.array(covered)[known].mean()),
        n=int(known.sum()),
    )


def tempering(units: int, points: int) -> float:
    """The power of a held-out log score whose ``points`` come from ``units`` independent groups (a held-out size's
    values share its deviation): scored as if the log score summed ``units`` independent values."""
    return units / points


def stacking_weights(densities: np.ndarray, units: int | None = None) -> np.ndarray:
    """Weights on the simplex maximising the tempered held-out log score plus a Dirichlet(:data:`DIRICHLET`) prior:
    (units / points) sum_i log(sum_k w_k densities[i, k]) + (DIRICHLET - 1) sum_k log w_k. ``units``: how many
    independent groups the points come from (default: every point on its own)."""
    points, k = densities.shape
    if k == 1:
        return np.ones(1)
    temper = tempering(units or points, points)

    def negative(logits):
        w = np.exp(logits - logits.max())
        w /= w.sum()
        return -(temper * float(np.log(densities @ w).sum()) + (DIRICHLET - 1) * float(np.log(w).sum()))

    best = minimize(negative, np.zeros(k), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-8})
    w = np.exp(best.x - best.x.max())
    return w / w.sum()
