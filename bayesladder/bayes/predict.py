"""Posterior predictive draws of a target's task loss and accuracy, from a fitted posterior.

Each posterior draw gives a loss curve and an accuracy curve per task (``bayes.curves``). For a target at
(N, D) of size ``size``:

* loss = loss_scale x curve(N, D) x exp(size effect) x exp(run noise). The size effect is, for a ladder size,
  drawn from its posterior given that size's runs; for a size outside the ladder, a fresh draw.
* accuracy = the step-2 curve at the expected loss (the curve with the size effect, without the run noise),
  shifted by the size's shift (trend x ln N + residual: the ladder size's own residual; for a new size, a fresh
  one plus the part of the ladder's residuals that the fitted level and trend absorbed, see
  ``curves.new_size_shift``),
  plus the measurement noise of a final value (binomial over the task's questions and the checkpoints
  averaged, and the learned jitter). Step-1 uncertainty thus flows into every accuracy draw.

The loss's run-to-run noise is not passed through step 2 a second time: the step-2 curve was fitted on
observed losses that already carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder.bayes import curves
from bayesladder.bayes.data import ModelData

QUANTILES = {"q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95}
INTERVALS = {"50%": ("q25", "q75"), "90%": ("q05", "q95")}  # the intervals every table and figure shows


class Draws:
    """Posterior draws by name, as (samples, tasks) arrays (a parameter shared by all tasks as (samples, 1))."""

    def __init__(self, posterior: xr.Dataset, max_draws: int | None = None):
        stacked = posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        if max_draws is not None and stacked.sizes["sample"] > max_draws:
            step = int(np.ceil(stacked.sizes["sample"] / max_draws))
            stacked = stacked.isel(sample=slice(None, None, step))
        self.posterior = stacked

    @property
    def count(self) -> int:
        return self.posterior.sizes["sample"]

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.posterior[name].values
        return v[:, None] if v.ndim == 1 else v

    def __contains__(self, name: str) -> bool:
        return name in self.posterior

    def at_size(self, name: str, index: int) -> np.ndarray:
        return self.posterior[name].isel(size=index).values


def power_law_terms(draws: Draws) -> tuple:
    """(E, A, B, alpha, beta), each (samples, tasks) or a scalar where the design has no such term."""
    with_d = "beta" in draws
    return (draws["E"], draws["A"], draws["B"] if with_d else 0.0, draws["alpha"], draws["beta"] if with_d else 1.0)


def relative_curve(draws: Draws, design: str, x, y, task: int | None = None) -> np.ndarray:
    """Step-1 curve (relative to each task's loss_scale) at x = ln(N / N_ref), y = ln(D / D_ref): (samples, tasks)
    at one point, or (samples, points) of one ``task`` at arrays of points."""
    if design == "flops-step1":
        x, y = x + y, 0.0
    terms = power_law_terms(draws)
    if task is not None:
        terms = [v[:, [task]] if np.ndim(v) else v for v in terms]
    return curves.relative_loss(x, y, *terms, curves.NUMPY_OPS)


def loss_size_effect(draws: Draws, data: ModelData, design: str, size: int | None, rng) -> np.ndarray:
    """A size's relative deviation from the loss curve: from its runs' residuals for a ladder size, else fresh."""
    shape = (draws.count, len(data.tasks))
    if not data.sizes_repeat:  # one run per size: a size's deviation is the run noise itself (see bayes.model)
        return np.zeros(shape)
    size_var = draws["loss_size_scale"] ** 2
    if size is None:
        return np.sqrt(size_var) * rng.standard_normal(shape)
    mean, var = np.zeros(shape), np.broadcast_to(size_var, shape).copy()
    noise_var = draws["loss_noise"] ** 2
    for t in range(len(data.tasks)):
        points = np.flatnonzero((data.s1_size == size) & (data.s1_task == t))
        if len(points) == 0:
            continue
        relative = relative_curve(draws, design, data.s1_x[points], data.s1_y[points], task=t)
        residual = curves.log_loss_residual(data.s1_loss[points], data.loss_scale[t], relative, curves.NUMPY_OPS)
        mean[:, t], var[:, t] = curves.size_effect_given_residuals(
            residual.sum(axis=1), len(points), noise_var[:, t], size_var[:, 0]
        )
    return mean + np.sqrt(var) * rng.standard_normal(shape)


def new_size_shift(draws: Draws, data: ModelData, x: float) -> tuple[np.ndarray, np.ndarray]:
    """(samples, tasks) mean and variance of a size outside the ladder's own shift (``curves.new_size_shift``)."""
    scale = np.broadcast_to(draws["acc_size_scale"], (draws.count, len(data.tasks)))
    if "trend" not in draws:  # single-step: its trend in N is the power law
        return curves.new_size_shift(x, data.absorbed_covariance, scale)
    offset = draws["trend"] - draws["trend_mu"]
    return curves.new_size_shift(x, data.absorbed_covariance, scale, offset, draws["trend_sd"])


def new_sizes_covariance(draws: Draws, data: ModelData, xs) -> np.ndarray:
    """(samples, tasks, K, K) covariance of the own shifts of K distinct sizes outside the ladder at ``xs``
    (``curves.new_sizes_covariance``; the diagonal is :func:`new_size_shift`'s variance)."""
    scale = np.broadcast_to(draws["acc_size_scale"], (draws.count, len(data.tasks)))
    trend_sd = draws["trend_sd"] if "trend" in draws else None
    return curves.new_sizes_covariance(xs, data.absorbed_covariance, scale, trend_sd)


def accuracy_shift(draws: Draws, data: ModelData, x: float, size: int | None, rng) -> np.ndarray:
    """A size's step-2 shift: trend x ln N (two-step designs) plus its residual (a ladder size's own, else fresh)."""
    if size is not None:
        residual = draws.at_size("size_residual", size)
    else:
        mean, var = new_size_shift(draws, data, x)
        residual = mean + np.sqrt(var) * rng.standard_normal(mean.shape)
    trend = draws["trend"] if "trend" in draws else 0.0
    return curves.size_shift(trend, x, residual)


@dataclass
class Components:
    """A target's predictive distribution per posterior draw, (samples, tasks) each: the loss draws, the mean
    accuracy, how fast that accuracy moves per logit of shift (for a discrepancy added on the logit scale, see
    ``bayes.stacking``) and the SD of a measured final value."""

    loss: np.ndarray
    mean: np.ndarray
    slope: np.ndarray
    measurement_sd: np.ndarray

    def select(self, tasks: list[int]) -> Components:
        """The same components for the tasks at these column indices."""
        return Components(*(getattr(self, f.name)[:, tasks] for f in fields(self)))

    def sample(self, rng, shift_sd: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(loss, accuracy) draws: the mean, shifted by N(0, shift_sd) on the logit scale, then measured."""
        shift = shift_sd * self.slope * rng.standard_normal(self.mean.shape)
        noise = self.measurement_sd * rng.standard_normal(self.mean.shape)
        return self.loss, np.clip(self.mean + shift + noise, 0.0, 1.0)


def components(
    posterior: xr.Dataset, data: ModelData, design: str, n_params: float, tokens: float, size: str | None = None,
    seed: int = 0, max_draws: int | None = None,
) -> Components:  # fmt: skip
    """The per-draw predictive components of a target under one design (the loss is NaN for single-step)."""
    rng = np.random.default_rng(seed)
    draws = Draws(posterior, max_draws)
    index = data.sizes.index(size) if size in data.sizes else None
    x, y = np.log(n_params) - data.log_n_ref, np.log(tokens) - data.log_d_ref
    shift = accuracy_shift(draws, data, x, index, rng)
    floor_ = draws["floor"]
    if design == "single-step":
        direct = (draws["direct_a"], draws["direct_b"], draws["alpha"], draws["beta"])
        mean = curves.direct_accuracy(x, y, floor_, draws["midpoint"], *direct, shift, curves.NUMPY_OPS)
        loss = np.full(mean.shape, np.nan)
    else:
        expected = (
            data.loss_scale
            * relative_curve(draws, design, x, y)
            * np.exp(loss_size_effect(draws, data, design, index, rng))
        )
        loss = expected * np.exp(draws["loss_noise"] * rng.standard_normal(expected.shape))
        u = (expected - data.step2_center) / data.step2_spread
        mean = curves.accuracy(u, floor_, draws["k"], draws["midpoint"], shift, curves.NUMPY_OPS)
    sd = curves.accuracy_sd(mean, data.n_questions * data.final_count, draws["acc_jitter"], curves.NUMPY_OPS)
    return Components(loss, mean, curves.accuracy_logit_slope(mean, floor_), sd)


def design_draws(
    posterior: xr.Dataset, data: ModelData, design: str, n_params: float, tokens: float, size: str | None = None,
    seed: int = 0, max_draws: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(loss, accuracy) draws of a target under one design, each (samples, tasks)."""
    parts = components(posterior, data, design, n_params, tokens, size, seed, max_draws)
    return parts.sample(np.random.default_rng(seed + 1))


def predictive_draws(
    fitted, n_params: float, tokens: float, size: str | None = None, seed: int = 0, max_draws: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, accuracy) draws of a target from a :class:`~bayesladder.bayes.fit.LadderFit`, each (samples, tasks).

    Accuracy: every fitted design's draws in proportion to its stacking weight at the target's distance beyond the
    ladder (``Calibration.weights_at``), each widened by its discrepancy at that distance in N and in tokens per
    parameter (``Calibration.shift_sd``). Loss: the
    draws of the designs that model it, in proportion to their weights among themselves.
    """
    rng = np.random.default_rng(seed)
    calibration = fitted.calibration
    efolds = fitted.extent().efolds_beyond(n_params, tokens)
    sampled = {}
    for name, design in fitted.designs.items():
        parts = components(design.posterior, design.data, name, n_params, tokens, size, seed, max_draws)
        sampled[name] = parts.sample(rng, calibration.shift_sd(name, efolds))
    total = min(acc.shape[0] for _, acc in sampled.values())
    weights = calibration.weights_at(efolds)
    acc = _mixture({name: draws[1] for name, draws in sampled.items()}, weights, total, rng)
    with_loss = {name: draws[0] for name, draws in sampled.items() if not np.isnan(draws[0]).all()}
    loss = _mixture(with_loss, weights, total, rng) if with_loss else np.full(acc.shape, np.nan)
    return loss, acc


def _mixture(draws: dict[str, np.ndarray], weights: dict[str, float], total: int, rng) -> np.ndarray:
    """``total`` draws taken from each design's draws in proportion to its weight (renormalised over ``draws``)."""
    names = list(draws)
    w = np.array([weights[n] for n in names])
    counts = np.floor(w / w.sum() * total).astype(int)
    counts[np.argmax(w)] += total - counts.sum()
    parts = [draws[n][rng.permutation(draws[n].shape[0])[:c]] for n, c in zip(names, counts)]
    return np.concatenate(parts, axis=0)


def summarise(tasks: list[str], loss: np.ndarray, acc: np.ndarray) -> pd.DataFrame:
    """Median and 50% / 90% intervals per task: the columns of ``bayesladder predict --json``."""
    table = pd.DataFrame({"task": tasks})
    for prefix, draws in (("loss", loss), ("acc", acc)):
        for label, q in QUANTILES.items():
            table[f"{prefix}_{label}"] = np.quantile(draws, q, axis=0)
    order = ["task"] + [f"{p}_{label}" for p in ("loss", "acc") for label in ("median", "q05", "q25", "q75", "q95")]
    return table[order]


def crps(draws: np.ndarray, actual: float) -> float:
    """Continuous ranked probability score of an ensemble: E|X - y| - E|X - X'| / 2."""
    draws = np.sort(np.asarray(draws))
    n = len(draws)
    spread = np.sum((2 * np.arange(1, n + 1) - n - 1) * draws) / n**2
    return float(np.mean(np.abs(draws - actual)) - spread)


def predict_table(fitted, n_params: float, tokens: float, size: str | None = None, seed: int = 0) -> pd.DataFrame:
    """Per task: posterior median and 50% / 90% intervals of task loss and accuracy at (N, D)."""
    loss, acc = predictive_draws(fitted, n_params, tokens, size, seed)
    return summarise(list(fitted.config.tasks), loss, acc)
