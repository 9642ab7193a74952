"""The model's formulas, written once: both steps' curves, the size shifts and the observation densities.

Every function here takes NumPy arrays or PyTensor tensors alike, with an ``ops`` namespace saying which
(:data:`NUMPY_OPS`, or :func:`tensor_ops`). The PyMC model (``bayes.model``), predictions (``bayes.predict``),
the pointwise log-likelihood of PSIS-LOO and the posterior predictive checks (``bayes.diagnostics``) and every
alternative design call these functions, so they cannot drift apart. (PyMC's own posterior-predictive
machinery would recompile a graph per target; predictions here run at many points per figure and per
planned rung, so they stay NumPy functions of the posterior draws.)

Units: x = ln(N / N_ref) and y = ln(D / D_ref) (e-folds from the ladder's centre); step-1 losses are relative to
each task's typical loss (``loss_scale``); step-2 losses are standardised per task (u).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

CEILING = 1.0  # the paper's anchor: a model with no task loss answers everything right


@dataclass(frozen=True)
class Ops:
    exp: Callable
    log: Callable
    sigmoid: Callable
    softplus: Callable
    sqrt: Callable
    dot: Callable


NUMPY_OPS = Ops(np.exp, np.log, expit, lambda v: np.logaddexp(0.0, v), np.sqrt, np.matmul)


def tensor_ops() -> Ops:
    import pytensor.tensor as pt

    return Ops(pt.exp, pt.log, pt.sigmoid, pt.softplus, pt.sqrt, pt.dot)


# ---------------------------------------------------------------- step 1: task loss L(N, D)
def power_law_terms(centre, slope_n, slope_d, split_e, split_w, ops: Ops):
    """(E, A, B, alpha, beta) of L / loss_scale = E + A exp(-alpha x) + B exp(-beta y), from sampling coordinates.

    A ladder pins down the loss at its centre (``centre`` = E + A + B) and the slopes there (``slope_n`` = A alpha,
    ``slope_d`` = B beta) far better than E, A and alpha apart. So those are sampled, and two logits split the
    centre loss: E = centre sigmoid(e), A + B = centre sigmoid(-e), shared sigmoid(w) : sigmoid(-w). E >= 0 then
    holds with no wall for the sampler to hit (a remainder clipped at 0 left one, where the chains diverged).
    ``slope_d`` None: a ladder of one length, whose D term is a constant inside E (B = 0).
    """
    shared = centre * ops.sigmoid(-split_e)
    e = centre * ops.sigmoid(split_e)
    if slope_d is None:
        return e, shared, 0.0, slope_n / shared, 1.0
    a, b = shared * ops.sigmoid(split_w), shared * ops.sigmoid(-split_w)
    return e, a, b, slope_n / a, slope_d / b


def power_law_parameters(single_length: bool) -> int:
    """The step-1 curve's free parameters per task: E, A, alpha, and B, beta where the runs' lengths differ."""
    return 3 if single_length else 5


def power_law_log_jacobian(split_e, ops: Ops):
    """ln |d(ln alpha, ln beta) / d(e, w)| (or ln |d ln alpha / d e| with one length): both are ln sigmoid(e)."""
    return ops.log(ops.sigmoid(split_e))


def relative_loss(x, y, e, a, b, alpha, beta, ops: Ops):
    """Step 1 in units of the task's typical loss: E + A exp(-alpha x) + B exp(-beta y)."""
    return e + a * ops.exp(-alpha * x) + b * ops.exp(-beta * y)


def log_loss_residual(loss, loss_scale, relative, ops: Ops):
    """A measured task loss on step 1's log scale, less the curve's: what a size's effect and run noise explain."""
    return ops.log(loss) - ops.log(loss_scale * relative)


def grouped_normal_logp(residual, membership, noise_var, size_var, ops: Ops):
    """Log density of log-loss residuals whose runs share a size effect, the effect integrated out.

    The runs of one (size, task) group share a Normal size effect (variance ``size_var``) on top of independent
    run noise (``noise_var`` per group): their residuals are jointly Normal with covariance
    noise_var I + size_var 11'. ``membership`` is the (points x groups) 0/1 matrix. Integrating the effect out
    (rather than sampling one per size and task) leaves the sampler no funnel, also on ladders whose sizes
    have a single run each, where the size effect and the run noise cannot be told apart.
    """
    n = membership.sum(axis=0)
    total = ops.dot(residual, membership)
    squares = ops.dot(residual**2, membership)
    pooled = noise_var + n * size_var
    quadratic = squares / noise_var - size_var / (noise_var * pooled) * total**2
    return -0.5 * (quadratic + (n - 1) * ops.log(noise_var) + ops.log(pooled) + n * np.log(2 * np.pi))


def grouped_normal_loo_logp(residual, membership, noise_var, size_var):
    """ln p(r_i | the other residuals of its group) for every point (NumPy): the pointwise terms of PSIS-LOO for
    the grouped model, whose points are not independent given the parameters (Burkner, Gabry and Vehtari
    2021, "Efficient leave-one-out cross-validation for Bayesian non-factorized normal and Student-t models").
    ``residual``: (samples, points); ``noise_var``: (samples, groups); ``size_var``: (samples, 1) or 0.
    """
    group = membership.argmax(axis=1)
    others_total = residual @ membership  # (samples, groups)
    others_total = others_total[:, group] - residual
    others = membership.sum(axis=0)[group] - 1
    noise = noise_var[:, group]
    pooled = noise + others * size_var
    mean = size_var * others_total / pooled
    var = noise + size_var * noise / pooled
    return -0.5 * ((residual - mean) ** 2 / var + np.log(2 * np.pi * var))


def size_effect_given_residuals(total, n, noise_var, size_var):
    """Mean and variance of a group's size effect given the sum ``total`` of its ``n`` residuals (NumPy)."""
    pooled = noise_var + n * size_var
    return size_var * total / pooled, size_var * noise_var / pooled


# ---------------------------------------------------------------- step 2: accuracy of a task loss
def floor_below(level, split, ops: Ops):
    """A floor under ``level`` (the accuracy at the task's mean step-2 loss): level * sigmoid(split).

    Sampled this way, the accuracy the data pin down (``level``) moves independently of the floor; sampled as
    floor and midpoint, the two formed a ridge (posterior correlation -0.95) that took ~125 leapfrog steps a draw.
    """
    return level * ops.sigmoid(split)


def floor_offset_log_jacobian(split, floor_, ops: Ops):
    """ln |d floor_offset / d split| for :func:`floor_below`, floor_offset = logit(floor) - logit(chance)."""
    return ops.log(ops.sigmoid(-split)) - ops.log(1 - floor_)


def midpoint(level, floor_, ops: Ops):
    """The sigmoid's argument at the task's mean step-2 loss (u = 0), given the accuracy there and the floor."""
    return ops.log(level - floor_) - ops.log(CEILING - level)


def size_shift(trend, z, residual):
    """A size's shift of the sigmoid (logit units): a per-task trend in z = ln(N / N_ref), plus its own residual.

    The trend is what lets a size beyond the ladder be predicted on the ladder's trend rather than on the
    average size's curve; its posterior uncertainty widens the prediction with the distance z.
    """
    return trend * z + residual


def trend_sd(trend_sigma, size_scale, absorbed, ops: Ops):
    """Prior SD of a task's fitted trend around the tasks' mean: its own spread ``trend_sigma`` plus the part of the
    sizes' residuals along ln N that it absorbs (the residuals are fitted orthogonal to 1 and ln N, see
    :func:`new_size_shift`; ``absorbed``: ``ModelData.absorbed_covariance``)."""
    along = absorbed[1, 1] if absorbed.shape[0] > 1 else 0.0
    return ops.sqrt(trend_sigma**2 + size_scale**2 * along)


def new_size_shift(x, absorbed, size_scale, trend_offset=None, trend_sd=None):
    """Mean and variance of the shift of a size outside the ladder at x = ln(N / N_ref), beyond the fitted trend's
    (fitted trend x x), per posterior draw (NumPy).

    Each size's true residual r ~ Normal(0, size_scale) has a part c0 + c1 x along 1 and ln N, with (c0, c1) ~
    Normal(0, size_scale^2 absorbed); the model fits the residuals orthogonal to it, so the level carries c0 and the
    fitted trend carries c1 (``trend_offset`` = fitted trend - the tasks' mean trend, of prior SD ``trend_sd``; None
    where the design's trend in N has a broad prior: its power law). A new size's shift around the fitted level and
    trend is then its fresh residual minus c0 + c1 x, given what the fitted trend says of c1: as the prediction
    interval of a linear regression, it widens with the leverage of x, the more the farther x lies beyond the
    ladder. Without this term a fit on 2 sizes was sure of a trend that one size's residual had set.
    """
    variance = new_sizes_covariance(np.atleast_1d(x), absorbed, size_scale, trend_sd)[..., 0, 0]
    if trend_offset is None:
        return np.zeros(np.shape(variance)), variance
    return -(size_scale**2) * _along_trend(np.atleast_1d(x), absorbed)[0] / trend_sd**2 * trend_offset, variance


def new_sizes_covariance(xs, absorbed, size_scale, trend_sd=None):
    """Covariance of the shifts of distinct sizes outside the ladder at ``xs`` (K,), per posterior draw: (..., K, K)
    for ``size_scale`` (...). Each has its fresh residual; all share minus the part c0 + c1 x that the fitted level
    and trend absorbed (:func:`new_size_shift`), so one new size's shift tells of another's, the more the nearer."""
    xs = np.asarray(xs, dtype=float)
    rows = _rows(xs, absorbed)
    variance = np.asarray(size_scale, dtype=float)[..., None, None] ** 2
    covariance = variance * (np.eye(len(xs)) + rows @ absorbed @ rows.T)
    if trend_sd is None:
        return covariance
    along = _along_trend(xs, absorbed)
    return covariance - variance**2 * np.outer(along, along) / np.asarray(trend_sd, dtype=float)[..., None, None] ** 2


def _rows(xs: np.ndarray, absorbed: np.ndarray) -> np.ndarray:
    """(K, 1 or 2) rows of the level (and the trend in x) at ``xs``."""
    return np.stack([np.ones_like(xs), xs], axis=-1) if absorbed.shape[0] > 1 else np.ones((len(xs), 1))


def _along_trend(xs: np.ndarray, absorbed: np.ndarray) -> np.ndarray:
    """(K,) per unit residual variance, the covariance of the absorbed part at each x with the fitted trend's c1."""
    return _rows(xs, absorbed) @ absorbed[:, 1] if absorbed.shape[0] > 1 else np.zeros(len(xs))


def sigmoid_accuracy(argument, floor_, ops: Ops):
    """Accuracy from the sigmoid's argument: ``floor_`` plus the sigmoid's share of the way up to :data:`CEILING`."""
    return floor_ + (CEILING - floor_) * ops.sigmoid(argument)


def accuracy(u, floor_, k, midpoint, shift, ops: Ops):
    """Step 2: from :data:`CEILING` at low loss down to ``floor_`` at high loss; u is the standardised task loss."""
    return sigmoid_accuracy(midpoint - k * u + shift, floor_, ops)


def direct_argument(x, y, midpoint, a, b, alpha, beta, ops: Ops):
    """The single-step design's sigmoid argument without a size's shift: the power law in N and D."""
    return midpoint - a * ops.exp(-alpha * x) - b * ops.exp(-beta * y)


def direct_accuracy(x, y, floor_, midpoint, a, b, alpha, beta, shift, ops: Ops):
    """The single-step design: accuracy as a sigmoid of the power law in N and D, no intermediate loss."""
    return sigmoid_accuracy(direct_argument(x, y, midpoint, a, b, alpha, beta, ops) + shift, floor_, ops)


def accuracy_logit_slope(acc, floor_):
    """d accuracy / d (sigmoid argument) at ``acc``: (ceiling - floor) sigmoid'(.), written through acc itself."""
    scaled = (acc - floor_) / (CEILING - floor_)
    return (CEILING - floor_) * scaled * (1 - scaled)


def accuracy_sd(acc, evaluations, jitter, ops: Ops):
    """SD of a measured accuracy: binomial over the questions of every checkpoint averaged, plus a jitter."""
    return ops.sqrt(acc * (1 - acc) / evaluations + jitter**2)


def normal_logp(value, mean, sd, ops: Ops):
    return -0.5 * ((value - mean) / sd) ** 2 - ops.log(sd) - 0.5 * np.log(2 * np.pi)
