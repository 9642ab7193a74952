"""The PyMC model of every design, built by one pure function from data and priors.

A design is made of blocks that share no parameter, so their posteriors are independent and ``bayes.fit``
samples each block on its own (each gets the step size and tree depth its own geometry needs; sampled
jointly, the cheap step-1 block would set the tree depth of the costly step-2 block). ``build_model`` builds
the blocks asked for into one model; the formulas are those of ``bayes.curves``.

Blocks:
* ``loss`` (step 1): ln L_run ~ Normal(ln(loss_scale * curve(x, y)) + size effect, loss_noise), the size effect
  shared by the runs of a size and integrated out (``curves.grouped_normal_logp``); alpha, beta partially
  pooled across tasks through non-centred offsets whose between-task scales are bounded away from 0.
* ``loss_flops``: step 1 through compute C = 6ND only (one exponent), for the flops-step1 design.
* ``accuracy`` (step 2): acc ~ Normal(curves.accuracy(u, floor, k, midpoint, shift), binomial + jitter SD), the
  shift of a size = a per-task trend in ln N (partially pooled) + the size's own residual.
* ``direct`` (single-step design): acc ~ Normal(curves.direct_accuracy(x, y, ...), same noise), a size's own
  residual as its shift (the power law in N is its trend).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bayesladder.bayes import curves
from bayesladder.bayes.data import ModelData
from bayesladder.bayes.priors import BLOCK_PRIORS, Prior, merge


def unused_priors(data: ModelData) -> set[str]:
    """Step-1 parameters this ladder cannot inform and the model leaves out: the D term when every run has the
    same D, and a size's own deviation when every size has one run (it is then the run noise itself)."""
    unused = {"slope_d", "log_beta_mu", "log_beta_sigma"} if data.single_length else set()
    return unused if data.sizes_repeat else unused | {"loss_size_scale"}


def build_model(data: ModelData, priors: Mapping[str, Prior] | None = None, blocks=("loss", "accuracy")):
    """One PyMC model holding the given blocks (see the module docstring)."""
    import pymc as pm

    priors = merge(priors)
    coords = {"task": data.tasks, "size": data.sizes}
    with pm.Model(coords=coords) as model:
        for block in blocks:
            skipped = {"irreducible"} | (unused_priors(data) if block.startswith("loss") else set())
            names = [n for n in BLOCK_PRIORS[block] if n not in skipped and n not in model.named_vars]
            p = {n: model.named_vars.get(n) for n in BLOCK_PRIORS[block]}
            p.update({n: priors[n].create(n) for n in names})
            BUILDERS[block](data, p, priors)
    return model


def _pooled(name: str, mu, sigma):  # used by the direct design
    """exp(mu + sigma z) per task, z standard normal (non-centred partial pooling)."""
    import pymc as pm
    import pytensor.tensor as pt

    return pm.Deterministic(name, pt.exp(mu + sigma * pm.Normal(f"{name}_z", dims="task")), dims="task")


def _loss_likelihood(data: ModelData, p, relative) -> None:
    """Step-1 observations: log losses around the curve, with the size effect integrated out."""
    import pymc as pm

    ops = curves.tensor_ops()
    t = data.s1_task
    residual = curves.log_loss_residual(data.s1_loss, data.loss_scale[t], relative, ops)
    noise_var = p["loss_noise"][data.s1_group_task] ** 2
    size_var = p["loss_size_scale"] ** 2 if data.sizes_repeat else 0.0
    logp = curves.grouped_normal_logp(residual, data.s1_membership, noise_var, size_var, ops)
    pm.Potential("log_loss", logp.sum())


def _power_law(data: ModelData, p, priors, with_d: bool):
    """The step-1 power law's terms (see curves.power_law_terms), stored as E, A, B, alpha, beta, with their priors:
    alpha and beta log-normal, partially pooled across tasks; the irreducible prior on E."""
    import pymc as pm

    ops = curves.tensor_ops()
    split_e = pm.Flat("split_e", dims="task")
    split_w = pm.Flat("split_w", dims="task") if with_d else None
    e, a, b, alpha, beta = curves.power_law_terms(
        p["centre_loss"], p["slope_n"], p["slope_d"] if with_d else None, split_e, split_w, ops
    )
    terms = {"E": e, "A": a, "alpha": alpha} | ({"B": b, "beta": beta} if with_d else {})
    stored = {name: pm.Deterministic(name, value, dims="task") for name, value in terms.items()}
    prior_terms = [
        curves.normal_logp(ops.log(alpha), p["log_alpha_mu"], p["log_alpha_sigma"], ops),
        curves.power_law_log_jacobian(split_e, ops),
        priors["irreducible"].logp(e),
    ]
    if with_d:
        prior_terms.append(curves.normal_logp(ops.log(beta), p["log_beta_mu"], p["log_beta_sigma"], ops))
    pm.Potential("power_law_prior", sum(term.sum() for term in prior_terms))
    return stored


def _add_loss(data: ModelData, p, priors) -> None:
    ops = curves.tensor_ops()
    t = data.s1_task
    if data.single_length:  # every run trained to the same D: the D term is a constant inside E
        v = _power_law(data, p, priors, with_d=False)
        relative = curves.relative_loss(data.s1_x, 0.0, v["E"][t], v["A"][t], 0.0, v["alpha"][t], 1.0, ops)
    else:
        v = _power_law(data, p, priors, with_d=True)
        terms = (v["E"][t], v["A"][t], v["B"][t], v["alpha"][t], v["beta"][t])
        relative = curves.relative_loss(data.s1_x, data.s1_y, *terms, ops)
    _loss_likelihood(data, p, relative)


def _add_loss_flops(data: ModelData, p, priors) -> None:
    """Step 1 through compute only: L / loss_scale = E + A exp(-alpha z), z = x + y = ln(C / C_ref), C = 6ND."""
    ops = curves.tensor_ops()
    t = data.s1_task
    v = _power_law(data, p, priors, with_d=False)
    _loss_likelihood(
        data, p, curves.relative_loss(data.s1_x + data.s1_y, 0.0, v["E"][t], v["A"][t], 0.0, v["alpha"][t], 1.0, ops)
    )


def _accuracy_likelihood(data: ModelData, p, mean) -> None:
    import pymc as pm

    ops = curves.tensor_ops()
    t = data.s2_task
    sd = curves.accuracy_sd(mean, data.n_questions[t] * data.s2_count, p["acc_jitter"][t], ops)
    pm.Normal("accuracy", mu=mean, sigma=sd, observed=data.s2_acc)


def _level_and_floor(data: ModelData, p, priors):
    """Step 2's level (accuracy at the task's mean loss) and floor below it (see curves.floor_below)."""
    import pymc as pm

    ops = curves.tensor_ops()
    level = pm.Deterministic("level", ops.sigmoid(p["level_logit"]), dims="task")
    split = pm.Flat("floor_split", dims="task")
    floor_ = pm.Deterministic("floor", curves.floor_below(level, split, ops), dims="task")
    offset = ops.log(floor_) - ops.log(1 - floor_) - np.log(data.chance / (1 - data.chance))
    jacobian = curves.floor_offset_log_jacobian(split, floor_, ops)
    pm.Potential("floor_prior", (priors["floor_offset"].logp(offset) + jacobian).sum())
    return level, floor_


def _size_residual(data: ModelData, p):
    """Each size's own step-2 shift around the trend, iid Normal(0, acc_size_scale) restricted to shifts without a
    mean or a linear trend in ln N (data.residual_basis), which the level and the trend already carry.

    Non-centred (standard normals times the scale): a size's residual is pinned by a few step-2 points a task (3 on
    Gemstones), so sampled centred, the scale mixed slowest of every parameter (single-step, Gemstones' 12 smallest
    models, seeds 0-9: bulk ESS 464-785 of 4000 draws, R-hat 1.011-1.014 at 2 seeds; non-centred: >= 1700, <= 1.004).
    """
    import pymc as pm
    import pytensor.tensor as pt

    basis = data.residual_basis
    if basis.shape[1] == 0:
        return pm.Deterministic("size_residual", pt.zeros((len(data.sizes), len(data.tasks))), dims=("size", "task"))
    standard = pm.Normal("size_residual_z", 0.0, 1.0, shape=(basis.shape[1], len(data.tasks)))
    return pm.Deterministic("size_residual", pt.dot(basis, p["acc_size_scale"] * standard), dims=("size", "task"))


def _add_accuracy(data: ModelData, p, priors) -> None:
    import pymc as pm

    ops = curves.tensor_ops()
    k = pm.Deterministic("k", ops.exp(pm.Normal("log_k", p["log_k_mu"], p["log_k_sigma"], dims="task")), dims="task")
    spread = curves.trend_sd(p["trend_sigma"], p["acc_size_scale"], data.absorbed_covariance, ops)
    trend = pm.Normal("trend", p["trend_mu"], pm.Deterministic("trend_sd", spread), dims="task")
    residual = _size_residual(data, p)
    shift = curves.size_shift(trend[None, :], data.size_x[:, None], residual)
    level, floor_ = _level_and_floor(data, p, priors)
    midpoint = pm.Deterministic("midpoint", curves.midpoint(level, floor_, ops), dims="task")
    t, s = data.s2_task, data.s2_size
    u = (data.s2_loss - data.step2_center[t]) / data.step2_spread[t]
    mean = curves.accuracy(u, floor_[t], k[t], midpoint[t], shift[s, t], ops)
    _accuracy_likelihood(data, p, mean)


def _add_direct(data: ModelData, p, priors) -> None:
    import pymc as pm

    ops = curves.tensor_ops()
    alpha = _pooled("alpha", p["log_alpha_mu"], p["log_alpha_sigma"])
    beta = _pooled("beta", p["log_beta_mu"], p["log_beta_sigma"])
    residual = _size_residual(data, p)
    level, floor_ = _level_and_floor(data, p, priors)
    # sampled through the slopes at the ladder's centre (a alpha, b beta), as step 1 is: what the data pin down
    a = pm.Deterministic("direct_a", p["direct_slope_n"] / alpha, dims="task")
    b = pm.Deterministic("direct_b", p["direct_slope_d"] / beta, dims="task")
    # the level is the accuracy at the ladder's centre (x = y = 0), where the power-law terms are a and b
    midpoint = pm.Deterministic("midpoint", curves.midpoint(level, floor_, ops) + a + b, dims="task")
    t, s = data.s2_task, data.s2_size
    mean = curves.direct_accuracy(
        data.size_x[s], data.s2_y, floor_[t], midpoint[t], a[t], b[t], alpha[t], beta[t], residual[s, t], ops
    )
    _accuracy_likelihood(data, p, mean)


BUILDERS = {"loss": _add_loss, "loss_flops": _add_loss_flops, "accuracy": _add_accuracy, "direct": _add_direct}
