"""Slow checks of the Bayesian model against simulated ladders with known parameters (``bayesladder.testing``):
parameter recovery on one ladder, and the calibration of predictions far beyond the ladder over several.

Run with ``nice python -m pytest -m slow tests/test_bayes_recovery.py -s`` (about 20 minutes on 2 cores: 13 fits
through the full default pipeline, ~95 s each; ``-s`` prints the measured numbers). Every fit is what
``bayesladder fit`` does by default: both designs, each first fitted on the ladder's lower sizes (the nested
backtest: stacking weights, discrepancy scales), then on the whole ladder; predictions are the stacked mixture.

The simulated ladders' size deviations trend with N, as real ladders' do (``testing.draw_trends``): at equal task
loss, a larger size's accuracy logit is higher by a per-task trend x ln N (from none to Gemstones' ~0.27 per
e-fold), plus a small residual of its own. Targets sit 3x and 10x beyond the largest rung in N, at one of the
ladder's lengths (so also beyond it in D), and are measured like ladder runs: what a predictive interval must
cover. The truths come from ``testing.draw_truths`` (plausible values), not from the model's prior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesladder import testing
from bayesladder.bayes.diagnostics import convergence
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.bayes.predict import INTERVALS, QUANTILES, predictive_draws
from bayesladder.ladder import LadderSelection, actual_final

pytestmark = pytest.mark.slow

DISTANCES = (3, 10)  # targets at these multiples of the largest rung's N
N_TASKS = 8  # as the OLMo ladder's default tasks; a fit takes about as long with 3
CALIBRATION_SEEDS = range(200, 212)
COVERAGE_BAND = (0.85, 0.95)  # issue 8: 90% intervals cover 85-95% of simulated targets 3x and 10x beyond


def simulate(seed: int, n_tasks: int = N_TASKS):
    """(truths, trends, ladder dataset with its targets, {target: (N, D, distance)}) of a trending ladder. A task's
    trend is the one its ladder shows, what the model estimates: the least-squares slope in ln N of the ladder
    sizes' true shifts (the drawn trend plus the slope of the sizes' own residuals, which no fit can tell apart)."""
    rng = np.random.default_rng(seed)
    truths = testing.draw_truths(rng, n_tasks)
    trends = testing.draw_trends(rng, truths)
    length = str(rng.choice(list(testing.MULTIPLIERS)))
    largest = max(testing.SIZES.values())
    targets = {f"{k}x-{length}": (k * largest, 20 * testing.MULTIPLIERS[length] * k * largest, k) for k in DISTANCES}
    sizes = testing.SIZES | {name: n for name, (n, _, _) in targets.items()}
    effects = testing.draw_size_effects(rng, sizes, truths, trends=trends)
    log_n = np.log(list(testing.SIZES.values()))
    shown = {t: np.polyfit(log_n, [effects[(s, t)][1] for s in testing.SIZES], 1)[0] for t in truths}
    ds = testing.simulate_ladder(
        truths, rng, targets={name: (n, d) for name, (n, d, _) in targets.items()}, noisy_targets=True,
        size_effects=effects,
    )  # fmt: skip
    return truths, shown, ds, targets


def fit_default(ds, truths, seed: int):
    """The default fit (designs, chains, draws, nested calibration) of every task of a simulated ladder."""
    return fit(ds, FitConfig(tasks=tuple(truths), selection=LadderSelection(), seed=seed))


def interval(draws: np.ndarray, label: str = "90%") -> tuple[np.ndarray, np.ndarray]:
    """The interval ``label`` of INTERVALS (the one predict reports), per column of ``draws``."""
    lo, hi = INTERVALS[label]
    return np.quantile(draws, QUANTILES[lo], axis=0), np.quantile(draws, QUANTILES[hi], axis=0)


def per_task(fitted, name: str) -> np.ndarray:
    """(samples, task) draws of a per-task variable of the two-step design."""
    posterior = fitted.designs["two-step"].posterior
    return posterior[name].stack(sample=("chain", "draw")).transpose("sample", "task").values


def truth_values(truths, trends, fitted) -> dict[str, np.ndarray]:
    """The true alpha, beta, E, floor and trend per task, in the model's units (E relative to the task's typical
    loss, ``loss_scale``; the trend per e-fold of N, as the ladder shows it: see :func:`simulate`)."""
    tasks = list(truths)
    return {
        "alpha": np.array([truths[t].alpha for t in tasks]),
        "beta": np.array([truths[t].beta for t in tasks]),
        "E": np.array([truths[t].E for t in tasks]) / fitted.data.loss_scale,
        "floor": np.array([truths[t].floor for t in tasks]),
        "trend": np.array([trends[t] for t in tasks]),
    }


def worst_convergence(fitted) -> tuple[float, int]:
    checks = [convergence(design) for design in fitted.designs.values()]
    return max(c["max_rhat"] for c in checks), sum(c["divergences"] for c in checks)


def acceptance_region(n: int, p: float, tail: float = 0.001) -> tuple[int, int]:
    """Counts of covered intervals that a binomial(n, p) gives with probability >= 1 - 2 * tail."""
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p))


# --- recovery on one ladder ---------------------------------------------------------------------------------


def test_parameters_and_a_far_target_are_recovered_on_one_trending_ladder():
    """The true alpha, E, floor and trend of each task, and the measured accuracy of the targets 3x and 10x beyond
    the ladder, inside their 90% intervals: all within 99.9% intervals, and as many within the 90% ones as a
    binomial(n, 0.9) gives with probability 99.8% (intervals of 4 tasks x 4 parameters + 2 x 4 targets)."""
    truths, trends, ds, targets = simulate(seed=11, n_tasks=4)
    fitted = fit_default(ds, truths, seed=1)
    rhat, divergences = worst_convergence(fitted)
    assert rhat < 1.05, rhat  # converged, else recovery means nothing
    rows = []
    truth = truth_values(truths, trends, fitted)
    for name in ("alpha", "E", "floor", "trend"):
        draws = per_task(fitted, name)
        for i, task in enumerate(truths):
            rows.append(dict(quantity=name, task=task, truth=truth[name][i], draws=draws[:, i]))
    for name, (n, d, _) in targets.items():
        _, acc = predictive_draws(fitted, n, d)
        measured = actual_final(ds, name).loc[list(truths), "accuracy"].to_numpy()
        for i, task in enumerate(truths):
            rows.append(dict(quantity=f"accuracy of {name}", task=task, truth=measured[i], draws=acc[:, i]))
    for row in rows:
        draws = row.pop("draws")
        (row["lo90"],), (row["hi90"],) = interval(draws[:, None])
        row["lo999"], row["hi999"] = np.quantile(draws, [0.0005, 0.9995])
        row["in90"] = bool(row["lo90"] <= row["truth"] <= row["hi90"])
        row["in999"] = bool(row["lo999"] <= row["truth"] <= row["hi999"])
    table = pd.DataFrame(rows)
    print(f"\nrecovery (max R-hat {rhat:.3f}, {divergences} divergences):\n{table.round(4).to_string()}")
    low, _ = acceptance_region(len(table), 0.9)
    assert table["in999"].all(), table[~table["in999"]]
    assert table["in90"].sum() >= low, f"{table['in90'].sum()} of {len(table)} inside their 90% intervals"


# --- calibration far beyond the ladder, over several ladders -----------------------------------------------


@pytest.fixture(scope="module")
def calibration_runs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Over the simulated ladders: (one row per target x task: its measured accuracy, the 50% and 90% intervals of
    the default prediction; one row per ladder x task x parameter: truth and 90% interval; one row per ladder:
    stacking weights, discrepancy scales, convergence)."""
    targets_rows, parameter_rows, ladder_rows = [], [], []
    for seed in CALIBRATION_SEEDS:
        truths, trends, ds, targets = simulate(seed)
        fitted = fit_default(ds, truths, seed=seed)
        for name, (n, d, distance) in targets.items():
            _, acc = predictive_draws(fitted, n, d, seed=seed)
            measured = actual_final(ds, name).loc[list(truths), "accuracy"].to_numpy()
            (lo90, hi90), (lo50, hi50) = interval(acc, "90%"), interval(acc, "50%")
            for i, task in enumerate(truths):
                targets_rows.append(
                    dict(seed=seed, distance=distance, task=task, trend=trends[task], actual=measured[i],
                         median=float(np.median(acc[:, i])), lo90=lo90[i], hi90=hi90[i], lo50=lo50[i], hi50=hi50[i])
                )  # fmt: skip
        truth = truth_values(truths, trends, fitted)
        for name in ("alpha", "beta", "trend"):
            lo, hi = interval(per_task(fitted, name))
            for i, task in enumerate(truths):
                parameter_rows.append(
                    dict(seed=seed, parameter=name, task=task, truth=truth[name][i], lo90=lo[i], hi90=hi[i])
                )
        rhat, divergences = worst_convergence(fitted)
        calibration = fitted.calibration
        ladder_rows.append(
            dict(seed=seed, mean_trend=np.mean(list(trends.values())), max_rhat=rhat, divergences=divergences,
                 **{f"weight {d}": w for d, w in calibration.weights["size"].items()},  # the targets lie beyond in N
                 **{f"kappa {d}": k for d, k in calibration.kappa.items()})
        )  # fmt: skip
    targets = pd.DataFrame(targets_rows).assign(
        covered90=lambda t: (t["lo90"] <= t["actual"]) & (t["actual"] <= t["hi90"]),
        covered50=lambda t: (t["lo50"] <= t["actual"]) & (t["actual"] <= t["hi50"]),
        width90=lambda t: t["hi90"] - t["lo90"],
        error=lambda t: t["median"] - t["actual"],
    )
    parameters = pd.DataFrame(parameter_rows).assign(
        covered90=lambda t: (t["lo90"] <= t["truth"]) & (t["truth"] <= t["hi90"])
    )
    return targets, parameters, pd.DataFrame(ladder_rows)


def test_90_percent_intervals_cover_85_to_95_percent_of_targets_far_beyond_the_ladder(calibration_runs):
    targets, _, ladders = calibration_runs
    summary = targets.groupby("distance").agg(
        n=("covered90", "size"), covered90=("covered90", "mean"), covered50=("covered50", "mean"),
        mean_width90=("width90", "mean"), mae=("error", lambda e: e.abs().mean()), bias=("error", "mean"),
        below=("actual", lambda a: (a < targets.loc[a.index, "lo90"]).mean()),
        above=("actual", lambda a: (a > targets.loc[a.index, "hi90"]).mean()),
    )  # fmt: skip
    per_ladder = targets.groupby("seed")["covered90"].mean().rename("covered90")
    coverage = float(targets["covered90"].mean())
    report = (
        f"90% intervals cover {targets['covered90'].sum()}/{len(targets)} = {coverage:.1%} of the targets "
        f"(band {COVERAGE_BAND[0]:.0%}-{COVERAGE_BAND[1]:.0%})\n{summary.round(4).to_string()}\n"
        f"{ladders.join(per_ladder, on='seed').round(3).to_string()}"
    )
    print("\n" + report)
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], report


@pytest.mark.parametrize("parameter", ["alpha", "beta", "trend"])
def test_parameter_intervals_cover_their_truths_over_simulated_ladders(calibration_runs, parameter):
    _, parameters, _ = calibration_runs
    hits = parameters.loc[parameters["parameter"] == parameter, "covered90"]
    n, covered = len(hits), int(hits.sum())
    low, high = acceptance_region(n, 0.9)
    print(f"\n{parameter}: 90% intervals cover {covered}/{n} ({covered / n:.0%}); accepted {low}..{high}")
    assert low <= covered <= high, f"{parameter}: 90% intervals cover {covered}/{n}, outside {low}..{high}"
