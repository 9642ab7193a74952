"""Slow checks of the Bayesian model against simulated ladders with known parameters
(``bayesladder.testing``): parameter recovery on one ladder, and interval coverage over several.

Run with ``python -m pytest -m slow tests/test_bayes_recovery.py``. The truths come from
``testing.draw_truths`` (plausible values), not from the model's own prior, so coverage need not be
exactly nominal; the tolerances are binomial acceptance regions (0.1% in each tail, treating the
3 tasks of a ladder as independent trials), and the observed numbers are printed (``-s``) so that a
failure says how far off the intervals are.

The coverage ladders carry per-size deviations from the curves (``testing.draw_size_effects``, of
the size the model's priors expect): real ladders have them, and the model widens its extrapolation
intervals for them. Without them the intervals over-cover (50% intervals of the target's expected
accuracy covered 26/30 in one run), which says the simulation is too clean, not that the model is.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import stats

from bayesladder import testing
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.bayes.predict import predictive_draws
from bayesladder.ladder import LadderSelection, actual_final

pytestmark = pytest.mark.slow

# one size past the simulated ladder's largest (160M), at 5x Chinchilla
TARGET = ("320M-5xC", 320e6, 20 * 5 * 320e6)


def simulate(seed: int, n_tasks: int = 3):
    rng = np.random.default_rng(seed)
    truths = testing.draw_truths(rng, n_tasks)
    ds = testing.simulate_ladder(truths, rng, targets={TARGET[0]: TARGET[1:]})
    return truths, ds


def fit_simulated(ds, truths, chains, draws, seed):
    config = FitConfig(
        tasks=tuple(truths), selection=LadderSelection(), chains=chains, draws=draws, tune=draws, seed=seed
    )
    return fit(ds, config)


def true_target_accuracy(truths, effects=None) -> np.ndarray:
    """Noise-free accuracy of the target per task, with the target size's own effects when given."""
    log_n_ref, log_d_ref = testing.reference_point()
    name, n, d = TARGET
    out = []
    for task, t in truths.items():
        loss_shift, logit_shift = (effects or {}).get((name, task), (0.0, 0.0))
        loss = testing.true_loss(t, n, d, log_n_ref, log_d_ref) * np.exp(loss_shift)
        out.append(testing.true_accuracy(t, loss, logit_shift))
    return np.array(out)


def interval(draws: np.ndarray, mass: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - mass) / 2
    return np.quantile(draws, tail, axis=0), np.quantile(draws, 1 - tail, axis=0)


def posterior_draws(fitted, name: str) -> np.ndarray:
    """(samples, task) draws of a per-task posterior variable."""
    return fitted.posterior[name].stack(sample=("chain", "draw")).transpose("sample", "task").values


def acceptance_region(n: int, p: float, tail: float = 0.001) -> tuple[int, int]:
    """Counts of covered intervals that a binomial(n, p) gives with probability >= 1 - 2 * tail."""
    return int(stats.binom.ppf(tail, n, p)), int(stats.binom.isf(tail, n, p))


def test_parameter_recovery_on_one_simulated_ladder():
    truths, ds = simulate(seed=11)
    fitted = fit_simulated(ds, truths, chains=4, draws=500, seed=1)
    divergences = int(fitted.tree["sample_stats"]["diverging"].sum())
    rhat = az.rhat(fitted.posterior, var_names=["alpha", "beta", "floor", "E"])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) < 1.05, rhat  # converged, else recovery means nothing
    misses = []
    report = []
    for name in ("alpha", "beta", "floor", "E"):
        lo, hi = interval(posterior_draws(fitted, name), 0.9)
        for i, (task, truth) in enumerate(truths.items()):
            value = getattr(truth, name)
            report.append(f"{name}[{task}] truth {value:.3f} in [{lo[i]:.3f}, {hi[i]:.3f}]")
            if not lo[i] <= value <= hi[i]:
                misses.append(report[-1])
    _, acc = predictive_draws(fitted.posterior, fitted.constants, TARGET[1], TARGET[2])
    lo, hi = interval(acc, 0.9)
    for i, (task, value) in enumerate(zip(truths, true_target_accuracy(truths))):
        report.append(f"target acc[{task}] truth {value:.4f} in [{lo[i]:.4f}, {hi[i]:.4f}]")
        if not lo[i] <= value <= hi[i]:
            misses.append(report[-1])
    print(f"\nrecovery ({divergences} divergences):\n  " + "\n  ".join(report))
    assert not misses, misses


SBC_SEEDS = range(100, 110)
QUANTITIES = ("target_acc", "target_mean_acc", "alpha", "beta")


def without_noise(posterior):
    """The posterior with run noise and accuracy jitter set to zero: predictive draws of the expected values."""
    return posterior.assign(loss_noise=posterior["loss_noise"] * 0.0, acc_jitter=posterior["acc_jitter"] * 0.0)


@pytest.fixture(scope="module")
def coverage_runs():
    """Per simulated ladder, 50% / 90% interval hits of:
    target_acc       the predictive interval (what ``predict`` reports) vs the target's measured accuracy
                     (noisy like a ladder run, mean of its last 5 checkpoints);
    target_mean_acc  the interval of the expected accuracy (no run noise or jitter) vs the noise-free truth;
    alpha, beta      per-task posterior intervals vs the true exponents.
    """
    hits = {(q, level): [] for q in QUANTITIES for level in (0.5, 0.9)}
    for seed in SBC_SEEDS:
        rng = np.random.default_rng(seed)
        truths = testing.draw_truths(rng, 3)
        effects = testing.draw_size_effects(rng, [*testing.SIZES, TARGET[0]], list(truths))
        ds = testing.simulate_ladder(
            truths, rng, targets={TARGET[0]: TARGET[1:]}, noisy_targets=True, size_effects=effects
        )
        fitted = fit_simulated(ds, truths, chains=2, draws=300, seed=seed)
        _, acc = predictive_draws(fitted.posterior, fitted.constants, TARGET[1], TARGET[2], seed=seed)
        _, mean_acc = predictive_draws(
            without_noise(fitted.posterior), fitted.constants, TARGET[1], TARGET[2], seed=seed
        )
        measured = actual_final(ds, TARGET[0]).loc[list(truths), "accuracy"].to_numpy()
        quantities = {
            "target_acc": (acc, measured),
            "target_mean_acc": (mean_acc, true_target_accuracy(truths, effects)),
            "alpha": (posterior_draws(fitted, "alpha"), np.array([t.alpha for t in truths.values()])),
            "beta": (posterior_draws(fitted, "beta"), np.array([t.beta for t in truths.values()])),
        }
        for q, (draws, truth) in quantities.items():
            for level in (0.5, 0.9):
                lo, hi = interval(draws, level)
                hits[(q, level)].extend(((lo <= truth) & (truth <= hi)).tolist())
    return hits


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("level", [0.5, 0.9])
def test_interval_coverage_over_simulated_ladders(coverage_runs, quantity, level):
    hits = coverage_runs[(quantity, level)]
    n, covered = len(hits), int(sum(hits))
    low, high = acceptance_region(n, level)
    print(f"\n{quantity} {level:.0%} intervals cover {covered}/{n} ({covered / n:.0%}); accepted {low}..{high}")
    assert low <= covered <= high, f"{quantity}: {level:.0%} intervals cover {covered}/{n}, outside {low}..{high}"
