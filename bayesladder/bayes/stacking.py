"""Combining designs and calibrating extrapolation with the ladder's own nested backtests.

Before the full ladder is fitted, each design is fitted on part of the ladder and predicts the final accuracy of
the rest, in two nested splits where the ladder has them:

* **sizes**: the sizes below the geometric middle of the ladder's N range are fitted and every run of the upper
  sizes is predicted (a new size's fresh effects): an extrapolation of one to two e-folds of N;
* **lengths**: the lengths below the geometric middle of the ladder's range of tokens per parameter are fitted (on
  the paper ladder 1xC and 2xC) and the longer runs of the same sizes are predicted (their sizes' own effects): an
  extrapolation in tokens per parameter alone, as the targets users care about make (OLMo's 7B-4T: 2.9x the
  paper ladder's longest runs per parameter). A ladder of one length (Gemstones) has none.

On each split's held-out values:

* each design's **discrepancy scale** kappa for that split's distance: the prediction gets an extra Normal shift
  on the logit scale with SD kappa x (e-folds beyond the fit: of N past its largest size on the size split, of
  tokens per parameter past its longest-trained run on the length split); a target beyond the ladder in both adds
  the two in quadrature (:meth:`Calibration.shift_sd`). kappa is the value that maximises the held-out log score,
  kept only where it gains at least :data:`KAPPA_EVIDENCE` nats of that score tempered as the weights' (below):
  the model's own intervals already widen with distance (the trend's uncertainty, a new size's leverage), and kappa
  is what the ladder shows beyond them. As a variance estimated at its boundary from one split, the unrestricted
  maximum is biased up: on 12 simulated ladders where the model is the truth the size split's came out 0.05-0.21
  on 8 and made 90% intervals 3x and 10x beyond the ladder cover 98% of targets; its tempered gain there was at
  most 0.76, and on the real dev splits 0 (OLMo), 0.10 (Gemstones) and 0.52 (the micro ladder).
* the designs' **stacking weights** (Yao, Vehtari, Simpson and Gelman 2018) per split: the mixture weights that
  maximise the split's held-out log score of the designs' predictions combined, with two safeguards for how little
  a nested split says. The held-out values of a size (of a length, on the length split) share its deviation across
  tasks and runs, so the log score is tempered to the number of held-out sizes (or lengths) (a power of groups /
  values), and the weights get a Dirichlet(2) prior. Unregularised, stacking put all weight on one design on every
  size split tried (OLMo: single-step; Gemstones: two-step), and the full ladder's predictions were worse than an
  even mixture on 4 of 5 dev splits (OLMo's 10-task 3B backtest: MAE 1.48 and 31 of 40 covered by single-step
  alone, 1.34 and 36 of 40 mixed). A target takes each split's weights in proportion to its distance beyond the
  ladder in that split's direction (:meth:`Calibration.weights_at`): a design can extrapolate better in one
  direction than the other. On the paper ladder the size split favours the single-step design and the length split
  the two-step design (on its length cut 1xC-2xC -> 5xC, 10xC the single-step design covered 25 of 64 held-out
  values, the two-step design 50); one set of weights from both splits' scores added moved a target beyond the
  ladder in N alone towards the design the size split disfavoured (OLMo 190M-1B -> 3B, 10 tasks: MAE 1.46 at
  seeds 0-2, against 1.29 with the size split's weights; benchmarks/bench_accuracy.py).

The log score of a held-out value uses each posterior draw's mean accuracy and its measurement SD widened by the
discrepancy (``predict.Components``): mean over draws of Normal densities.

Nested fits that fail their sampler checks (R-hat, ESS, divergences) where some tasks' own parameters fail are
fitted again without those tasks (a design that only diverges names none; it is refitted without those the others
name); where that passes, the tasks are left out of every design's scores on that split (the weights and kappa
come from the other tasks; the full ladder's fit still fits and predicts them), and the fit says so. A task the
lower sizes cannot pin down does this: OLMo's boolq sits at its floor on 190M-760M, which leaves its step-2 floor and
steepness free (an L-shaped posterior no parameterisation tried sampled well), and the direct design diverges there
too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import minimize, minimize_scalar

from bayesladder.bayes.data import step1_design
from bayesladder.bayes.predict import components
from bayesladder.ladder import actual_final, resolve_target

DIRICHLET = 2.0  # the weights' prior concentration: keeps a design in unless the evidence is strong
MIN_NESTED_SPAN = 0.5  # e-folds of N (a factor 1.65) the nested fit's sizes must span
MAX_KAPPA = 2.0  # logits per e-fold: far beyond anything a ladder has shown (Gemstones: ~0.1 in N)
# tempered log-score gain (nats) a kappa above 0 must reach to be kept: the one a parameter costs (AIC); the
# largest gains seen where the model is true were 0.76 (simulated ladders), on real ladders 0.10-0.52 (see above)
KAPPA_EVIDENCE = 1.0
NO_SPLIT = (
    "the ladder is too small for a nested backtest: it needs 2 sizes below the middle of its N range, a factor "
    f"{np.exp(MIN_NESTED_SPAN):.3g} apart, with more runs than step 1's curve has parameters per task, and 1 size "
    "above; or 2 such lengths below the middle of its range of tokens per parameter and 1 above"
)  # what calibration_splits asks, for the CLI and the report
AXES = ("size", "length")  # the nested splits, in the order they are fitted
DIRECTIONS = {"size": "in N", "length": "in tokens per parameter"}  # the direction each split extrapolates in


@dataclass(frozen=True)
class NestedSplit:
    """The ladder's sizes (``axis`` "size", by N) or lengths (``axis`` "length", by tokens per parameter) below the
    geometric middle of their range (fitted) and above it (held out)."""

    axis: str
    fitted: tuple[str, ...]
    held_out: tuple[str, ...]

    def describe(self) -> str:
        """E.g. 'sizes 190M, 370M -> 760M, 1B'."""
        return f"{self.axis}s {', '.join(self.fitted)} -> {', '.join(self.held_out)}"


@dataclass
class Calibration:
    """What the nested backtests decided, and the per-split, per-design scores it was decided on."""

    splits: tuple[NestedSplit, ...]
    weights: dict[str, dict[str, float]]  # per direction (an axis of AXES: "size" extrapolates in N, "length" in
    # tokens per parameter), per design: the stacking weights of that axis's split (the other split's where the
    # ladder lacks it, equal parts where it has neither)
    kappa: dict[str, float]  # per design: logit SD per e-fold of N beyond the ladder's largest size
    kappa_d: dict[str, float]  # per design: logit SD per e-fold of tokens per parameter beyond its longest-trained run
    scores: pd.DataFrame  # per split and design: kappa (that split's), log score, MAE, 90% coverage; its nested fit's
    # max R-hat, min ESS, divergences, the blocks it sampled again (fit.sample_block), the tasks it left out and why
    # (left_out, left_out_because)

    def shift_sd(self, design: str, efolds: tuple[float, float]) -> float:
        """The logit SD of ``design``'s discrepancy at ``efolds`` (of N, of tokens per parameter) beyond the ladder
        (``Extent.efolds_beyond``): each split's kappa times its distance, added in quadrature."""
        n_efolds, per_param_efolds = efolds
        return float(np.hypot(self.kappa[design] * n_efolds, self.kappa_d[design] * per_param_efolds))

    def weights_at(self, efolds: tuple[float, float]) -> dict[str, float]:
        """The designs' weights for a target ``efolds`` (of N, of tokens per parameter) beyond the ladder: each
        direction's weights in proportion to the target's distance in it (a target inside the ladder in both: in
        equal parts). A design can extrapolate better in one direction than the other (on OLMo's paper ladder the
        single-step design in N, the two-step design in tokens per parameter; see the module docstring)."""
        shares = np.asarray(efolds, dtype=float)
        shares = shares / shares.sum() if shares.sum() > 0 else np.full(len(AXES), 1.0 / len(AXES))
        designs = self.weights[AXES[0]]
        return {d: float(sum(share * self.weights[axis][d] for share, axis in zip(shares, AXES))) for d in designs}

    def left_out(self) -> list[str]:
        """The tasks left out of the calibration (by any design's nested fit), each once."""
        tasks = self.scores["left_out"] if "left_out" in self.scores else []
        return list(dict.fromkeys(task for listed in tasks for task in listed))

    def left_out_notes(self) -> list[str]:
        """One sentence per nested fit that was fitted again without some tasks (empty for most fits)."""
        rows = self.scores.to_dict(orient="records") if "left_out" in self.scores else []
        return [
            f"nested backtest ({row['split']}), {row['design']}: fitted with {', '.join(row['left_out'])} it failed "
            f"its checks ({row['left_out_because']}) and passed without, so the stacking weights and kappa leave "
            f"{'it' if len(row['left_out']) == 1 else 'them'} out (the full ladder's fit keeps every task): a task "
            "the fitted part cannot pin down (at its floor there, say)"
            for row in rows
            if row["left_out"]
        ]

    def record(self) -> dict:
        return {
            "splits": [{"axis": s.axis, "fitted": s.fitted, "held_out": s.held_out} for s in self.splits],
            "weights": self.weights,
            "kappa": self.kappa,
            "kappa_d": self.kappa_d,
            "scores": self.scores.to_dict(orient="records"),
        }

    @classmethod
    def from_record(cls, record: dict) -> Calibration:
        return cls(
            splits=tuple(NestedSplit(s["axis"], tuple(s["fitted"]), tuple(s["held_out"])) for s in record["splits"]),
            weights=dict(record["weights"]),
            kappa=dict(record["kappa"]),
            kappa_d=dict(record["kappa_d"]),
            scores=pd.DataFrame.from_records(record["scores"]),
        )


def describe_weights(weights: dict[str, float]) -> str:
    """E.g. 'two-step 0.62, single-step 0.38'."""
    return ", ".join(f"{design} {w:.2f}" for design, w in weights.items())


def calibration_splits(ds: xr.Dataset, runs: list[str]) -> tuple[NestedSplit, ...]:
    """The ladder's nested splits (:func:`nested_split` of each axis in :data:`AXES`), those it has."""
    return tuple(split for axis in AXES if (split := nested_split(ds, runs, axis)) is not None)


def nested_split(ds: xr.Dataset, runs: list[str], axis: str = "size") -> NestedSplit | None:
    """The ladder's sizes by N (or lengths by the median of their runs' tokens per parameter), split at the geometric
    middle of their range. None when the lower part would have fewer than 2 of them or span less than
    :data:`MIN_NESTED_SPAN` e-folds (it could not test an extrapolation: a curve in N, or in D beside N, cannot be
    fitted on it), or the upper part none (on the length split: none of the sizes fitted); also when the lower part
    has no more runs than step 1's curve has parameters per task (``data.step1_design``: such nested fits diverged)."""
    chosen = ds.sel(run=runs)
    scale = np.log(chosen["n_params"].values)
    if axis == "length":
        scale = np.log(chosen["tokens"].max("checkpoint").values) - scale  # a run's final D per parameter
    label_of = np.array(list(map(str, chosen[axis].values)))
    position = {label: float(np.median(scale[label_of == label])) for label in dict.fromkeys(label_of)}
    labels = sorted(position, key=position.get)
    middle = 0.5 * (position[labels[0]] + position[labels[-1]])
    fitted = tuple(label for label in labels if position[label] < middle)
    held_out = tuple(label for label in labels if position[label] >= middle)
    if len(fitted) < 2 or not held_out or position[fitted[-1]] - position[fitted[0]] < MIN_NESTED_SPAN:
        return None
    split = NestedSplit(axis, fitted, held_out)
    fitted_runs = [r for r, label in zip(runs, label_of) if label in fitted]
    count, parameters = step1_design(ds, fitted_runs)
    if count <= parameters or not held_out_runs(ds, runs, split):
        return None
    return split


def nested_config(config, split: NestedSplit):
    """The config (a ``FitConfig``) of a split's nested fits: the ladder's runs of the split's fitted sizes or
    lengths."""
    return replace(config, selection=replace(config.selection, **{f"{split.axis}s": split.fitted}))


def held_out_runs(ds: xr.Dataset, runs: list[str], split: NestedSplit) -> list[str]:
    """The runs a split predicts: those of its held-out sizes; on the length split, the runs of its held-out lengths
    whose sizes it fitted (a pure extrapolation in tokens per parameter)."""
    label = dict(zip(runs, map(str, ds[split.axis].sel(run=runs).values)))
    size = dict(zip(runs, map(str, ds["size"].sel(run=runs).values)))
    fitted_sizes = {size[r] for r in runs if label[r] in split.fitted}
    return [r for r in runs if label[r] in split.held_out and (split.axis == "size" or size[r] in fitted_sizes)]


def calibrate(ds: xr.Dataset, config, progress=None) -> Calibration:
    """Fit every design of ``config`` on the fitted part of each nested split, score it on the held-out runs, and
    derive each design's kappa and the stacking weights per split. A ladder with no nested split gives every design
    the same weight (the weights' prior mean) and kappa 0; a split it lacks, kappa 0 for that distance and the other
    split's weights."""
    designs = list(config.designs)
    runs = config.check(ds)
    splits = calibration_splits(ds, runs)
    kappa = {axis: {d: 0.0 for d in designs} for axis in AXES}
    weights, rows = {}, []
    for split in splits:
        densities, split_rows = _score_split(ds, config, runs, split, progress)
        block = np.column_stack([densities[d].ravel() for d in designs])
        weights[split.axis] = {d: float(w) for d, w in zip(designs, stacking_weights(block, len(split.held_out)))}
        kappa[split.axis] = {row["design"]: row["kappa"] for row in split_rows}
        rows += [dict(row, weight=weights[split.axis][row["design"]]) for row in split_rows]
    known = list(weights.values()) or [{d: 1.0 / len(designs) for d in designs}]
    weights = {axis: weights.get(axis, known[0]) for axis in AXES}
    scores = pd.DataFrame.from_records(rows) if rows else pd.DataFrame({"design": designs})
    return Calibration(splits, weights, kappa["size"], kappa["length"], scores)


def _score_split(ds: xr.Dataset, config, runs: list[str], split: NestedSplit, progress) -> tuple[dict, list[dict]]:
    """Every design fitted on one split's fitted part and scored on its held-out runs: (per design the held-out
    values' predictive densities at its kappa, (runs, tasks); per design a row of the calibration's scores)."""
    held_out = held_out_runs(ds, runs, split)
    nested = _nested_fits(ds, nested_config(config, split), split, progress)
    left_out = {task for fit in nested.values() for task in fit.left_out}
    tasks = [t for t in config.tasks if t not in left_out]  # never empty: _nested_fits leaves some task in
    actual = np.array([[float(actual_final(ds, r).loc[t, "accuracy"]) for t in tasks] for r in held_out])
    densities, rows = {}, []
    for design, fitted in nested.items():
        columns = [fitted.fit.data.tasks.index(t) for t in tasks]
        parts = [_components(fitted.fit, design, ds, run).select(columns) for run in held_out]
        extent = fitted.fit.extent()
        distance = np.array([_distance(extent, ds, run, split.axis) for run in held_out])
        kappa, gain = discrepancy_scale(parts, actual, distance, units=len(split.held_out))
        densities[design] = _densities(parts, actual, distance, kappa)
        check = fitted.check
        rows.append(
            dict(split=split.axis, design=design, kappa=kappa, kappa_gain=gain,
                 log_score=float(np.log(densities[design]).sum()), **_point_scores(parts, actual, distance, kappa),
                 max_rhat=check["max_rhat"], worst_rhat_parameter=check["worst_rhat_parameter"],
                 min_ess=min(check["min_ess_bulk"], check["min_ess_tail"]), divergences=check["divergences"],
                 resampled=fitted.fit.resampled, left_out=list(fitted.left_out), left_out_because=fitted.because)
        )  # fmt: skip
    return densities, rows


def _distance(extent, ds: xr.Dataset, run: str, axis: str) -> float:
    """A held-out run's distance beyond a nested fit's runs in e-folds of N (size split) or tokens per parameter."""
    target = resolve_target(ds, run, None, None)
    n_efolds, per_param_efolds = extent.efolds_beyond(target.n_params, target.tokens)
    return n_efolds if axis == "size" else per_param_efolds


@dataclass
class NestedFit:
    """One design's nested fit (a ``DesignFit``) and its sampler checks; the tasks it was fitted without and the
    failures of the fit with them that made it so (see the module docstring)."""

    fit: object
    check: dict
    left_out: tuple[str, ...] = ()
    because: str = ""


def _nested_fits(ds: xr.Dataset, config, split: NestedSplit, progress=None) -> dict[str, NestedFit]:
    """Every design's nested fit. Where some fail their sampler checks and name tasks (their own parameters fail),
    each failed design is fitted again without the tasks any design named (divergences name none: a design that
    only diverges is refitted without the tasks the others named) and keeps that fit if it passes."""
    from bayesladder.bayes.diagnostics import Thresholds, convergence, failing_tasks, sampler_failures
    from bayesladder.bayes.fit import fit_design

    thresholds = Thresholds()
    fits = {}
    for design in config.designs:
        if progress is not None:
            progress(f"nested backtest: fitting {design} on {split.axis}s {', '.join(split.fitted)}")
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
            progress(f"nested backtest: fitting {design} on {split.axis}s {', '.join(split.fitted)} again without "
                     f"{', '.join(culprits)} "
                     f"({'; '.join(failures[design])})")  # fmt: skip
        fit = fit_design(ds, without, design)
        check = convergence(fit)
        if not sampler_failures(check, thresholds):  # else the failure stands, as the fit with them showed it
            fits[design] = NestedFit(fit, check, culprits, "; ".join(failures[design]))
    return fits


def _components(nested, design: str, ds: xr.Dataset, run: str):
    """A held-out run's predictive under a nested fit: with its size's own effects where the fit has its size (the
    length split), else a new size's."""
    target = resolve_target(ds, run, None, None)
    size = str(ds["size"].sel(run=run).values)
    return components(nested.posterior, nested.data, design, target.n_params, target.tokens, size)


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
    predictive ``parts`` (one ``predict.Components`` per run) and e-folds beyond the fit (per run): the kappa
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


def stacking_weights(densities: np.ndarray, units: int | None) -> np.ndarray:
    """Weights on the simplex maximising one nested split's held-out log score, tempered, plus a
    Dirichlet(:data:`DIRICHLET`) prior: (units / points) sum_i log(sum_k w_k densities[i, k]) + (DIRICHLET - 1)
    sum_k log w_k. ``densities``: (points, designs); ``units``: how many independent groups its points come from
    (None: every point on its own)."""
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
