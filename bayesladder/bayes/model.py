"""The joint two-step model over all tasks, built by one pure function from data and priors.

Step 1 (task loss, one point per run; l = L / loss_scale, x and y standardised log N and log D):
    l = E + A exp(-alpha x) + B exp(-beta y)
    ln L_obs ~ StudentT(4, ln(loss_scale l) + delta[size], loss_noise)
Step 2 (accuracy, blocks of checkpoints; u = standardised task loss):
    p = floor + (ceiling - floor) * sigmoid(midpoint - k u + eta[size])
    acc_obs ~ Normal(p, sqrt(p (1 - p) / (n m) + acc_jitter^2))   (m checkpoints averaged per point)

Geometry. A ladder pins down a task's loss at its centre and the slopes there far better than it
pins E, A and alpha apart; sampled directly they form a curved ridge (NUTS tree depth ~8). So the
model samples the centre loss and the slopes, with A = slope_n / alpha, B = slope_d / beta and E the
remainder; E gets its prior as a Potential and is kept positive by a sharp softplus. Step 2 samples
the sigmoid's value at the task's mean loss (``midpoint``) rather than its location L0.

Pooling. alpha, beta and k are partially pooled across tasks (the tasks are scored by the same
models); their between-task scales have priors bounded away from zero, which avoids funnels.

Extrapolation. delta and eta are per-size random effects: each size deviates from the curves by its
own amount, and a size outside the ladder draws a fresh one at prediction time, so their learned
scales become the prediction's extrapolation error. The ceiling sits just below 1 (the paper's
anchor: zero loss means accuracy 1), which keeps far targets from plateauing too low.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesladder.bayes.data import ModelData
from bayesladder.bayes.priors import Prior, merge

LOSS_NU = 4.0
E_SHARPNESS = 10.0  # softplus sharpness keeping E >= 0 (relative-loss units)


def irreducible_loss(centre, slope_n, slope_d, alpha, beta, softplus):
    """E as the remainder of the centre loss (may be <= 0 before the softplus)."""
    return softplus(E_SHARPNESS * (centre - slope_n / alpha - slope_d / beta)) / E_SHARPNESS


def numpy_softplus(v):
    return np.logaddexp(0.0, v)


def relative_loss(x, y, centre, slope_n, slope_d, alpha, beta, exp, softplus):
    """Step-1 curve in relative units; works on numpy arrays and pytensor tensors alike."""
    E = irreducible_loss(centre, slope_n, slope_d, alpha, beta, softplus)
    return E + slope_n / alpha * exp(-alpha * x) + slope_d / beta * exp(-beta * y)


def accuracy_curve(u, floor, ceiling, k, midpoint, size_effect, sigmoid):
    """Step-2 curve: from ``ceiling`` at low loss down to ``floor`` at high loss."""
    return floor + (ceiling - floor) * sigmoid(midpoint - k * u + size_effect)


def measurement_sd(acc, evaluations, jitter, sqrt):
    """SD of a measured accuracy: binomial over questions x averaged checkpoints, plus jitter."""
    return sqrt(acc * (1 - acc) / evaluations + jitter**2)


def build_model(data: ModelData, priors: Mapping[str, Prior] | None = None) -> pm.Model:
    priors = merge(priors)
    coords = {
        "task": data.tasks,
        "size": data.sizes,
        "loss_point": np.arange(len(data.s1_loss)),
        "acc_point": np.arange(len(data.s2_acc)),
    }
    logit_chance = np.log(data.chance / (1 - data.chance))
    with pm.Model(coords=coords) as model:
        p = {name: prior.create(name) for name, prior in priors.items() if name != "irreducible"}
        alpha = pm.Deterministic(
            "alpha", pt.exp(p["log_alpha_mu"] + p["log_alpha_sigma"] * pm.Normal("alpha_z", dims="task")), dims="task"
        )
        beta = pm.Deterministic(
            "beta", pt.exp(p["log_beta_mu"] + p["log_beta_sigma"] * pm.Normal("beta_z", dims="task")), dims="task"
        )
        shape = (p["centre_loss"], p["slope_n"], p["slope_d"], alpha, beta)
        remainder = p["centre_loss"] - p["slope_n"] / alpha - p["slope_d"] / beta
        pm.Potential("irreducible_prior", priors["irreducible"].logp(remainder).sum())
        pm.Deterministic("E", data.loss_scale * irreducible_loss(*shape, pt.softplus), dims="task")
        loss_size_effect = pm.Deterministic(
            "loss_size_effect",
            p["loss_size_scale"] * pm.Normal("loss_size_z", dims=("size", "task")),
            dims=("size", "task"),
        )

        t1 = data.s1_task
        curve = relative_loss(data.s1_x, data.s1_y, *(v[t1] for v in shape), pt.exp, pt.softplus)
        pm.StudentT(
            "log_loss",
            nu=LOSS_NU,
            mu=pt.log(data.loss_scale[t1] * curve) + loss_size_effect[data.s1_size, t1],
            sigma=p["loss_noise"][t1],
            observed=np.log(data.s1_loss),
            dims="loss_point",
        )

        log_k = pm.Normal("log_k", p["log_k_mu"], p["log_k_sigma"], dims="task")
        k = pm.Deterministic("k", pt.exp(log_k), dims="task")
        acc_size_effect = pm.Normal("acc_size_effect", 0.0, p["acc_size_scale"], dims=("size", "task"))
        floor = pm.Deterministic("floor", pm.math.sigmoid(logit_chance + p["floor_offset"]), dims="task")
        ceiling = pm.Deterministic("ceiling", 1 - p["ceiling_gap"], dims="task")

        t2 = data.s2_task
        u = (data.s2_loss - data.step2_center[t2]) / data.step2_spread[t2]
        acc = accuracy_curve(
            u, floor[t2], ceiling[t2], k[t2], p["midpoint"][t2], acc_size_effect[data.s2_size, t2], pm.math.sigmoid
        )
        sd = measurement_sd(acc, data.n_questions[t2] * data.s2_count, p["acc_jitter"][t2], pt.sqrt)
        pm.Normal("accuracy", mu=acc, sigma=sd, observed=data.s2_acc, dims="acc_point")
    return model
