"""Alternative designs of the method (the paper's ablations) as Bayesian models, and their comparison.

Each design is fitted on the same ladder, predicts the same held-out runs' final accuracy, and is
scored the same way (MAE of the median, 90% coverage, mean interval width, CRPS):

- ``two-step``: the package's model (:mod:`bayesladder.bayes.model`), task loss as the intermediate.
- ``flops-step1``: step 1 is L(C) = E + A C^-alpha with C = 6ND (one exponent instead of two); step 2 as
  in ``two-step``. It sees exactly the same observations as ``two-step``, so their PSIS-LOO is comparable.
- ``single-step``: no intermediate: accuracy = floor + (ceiling - floor) sigmoid(m - A e^(-alpha x) - B e^(-beta y)),
  x, y standardised ln N and ln D, fitted to the same blocks of checkpoints as step 2.
- ``c4-intermediate`` (or any valset): the intermediate feature is a validation loss of the dataset
  (``val_loss``) instead of the task loss; fitted by the package's own fit on a copy of the dataset whose
  task_loss is that validation loss.
- ``baseline``: the paper's point fit (no interval: coverage 0, width 0).

PSIS-LOO is reported only where observations coincide (two-step and flops-step1); elsewhere it is NaN.
Each Bayesian design's largest R-hat is reported beside its scores: above 1.01 its numbers are not to be trusted.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import stats
from scipy.special import expit

from bayesladder import baseline
from bayesladder.bayes.backtest import holdout_runs
from bayesladder.bayes.data import BLOCK, ModelData, prepare, with_replicates
from bayesladder.bayes.fit import FitConfig, available_cores
from bayesladder.bayes.fit import fit as fit_two_step
from bayesladder.bayes.model import LOSS_NU, accuracy_curve
from bayesladder.bayes.predict import crps, predictive_draws
from bayesladder.bayes.priors import merge
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import actual_final, resolve_target, select_runs, step2_checkpoints

DESIGNS = ("two-step", "flops-step1", "single-step", "c4-intermediate", "baseline")
E_SHARPNESS = 20.0
COLUMNS = ["design", "rank", "mae", "coverage", "mean_width", "mean_crps", "elpd_loo", "max_rhat", "n", "description"]
DESCRIPTIONS = {
    "two-step": "task loss L(N, D) then sigmoid accuracy(L) (the package's model)",
    "flops-step1": "task loss L(C) = E + A C^-alpha, C = 6ND, then sigmoid accuracy(L)",
    "single-step": "accuracy as a sigmoid of the power law in (N, D), no intermediate",
    "c4-intermediate": "validation loss (c4_en) L(N, D) then sigmoid accuracy(L)",
    "baseline": "the paper's point fit (two least-squares steps)",
}


# ---------------------------------------------------------------- models
def build_flops_model(data: ModelData, priors=None) -> pm.Model:
    """Step 1 through compute only: l = E + A exp(-alpha z), z = ln(C / C_ref) = x + y; step 2 as the package's."""
    p_all = merge(priors)
    coords = {
        "task": data.tasks,
        "size": data.sizes,
        "loss_point": np.arange(len(data.s1_loss)),
        "acc_point": np.arange(len(data.s2_acc)),
    }
    with pm.Model(coords=coords) as model:
        p = {
            n: p_all[n].create(n)
            for n in ("centre_loss", "slope_n", "log_alpha_mu", "log_alpha_sigma", "loss_noise", "loss_size_scale")
        }
        alpha = pm.Deterministic(
            "alpha", pt.exp(p["log_alpha_mu"] + p["log_alpha_sigma"] * pm.Normal("alpha_z", dims="task")), dims="task"
        )
        remainder = p["centre_loss"] - p["slope_n"] / alpha
        pm.Potential("irreducible_prior", p_all["irreducible"].logp(remainder).sum())
        E = pm.Deterministic("E_rel", pt.softplus(E_SHARPNESS * remainder) / E_SHARPNESS, dims="task")
        size_effect = pm.Deterministic(
            "loss_size_effect",
            p["loss_size_scale"] * pm.Normal("loss_size_z", dims=("size", "task")),
            dims=("size", "task"),
        )
        t1 = data.s1_task
        curve = E[t1] + p["slope_n"][t1] / alpha[t1] * pt.exp(-alpha[t1] * (data.s1_x + data.s1_y))
        pm.StudentT(
            "log_loss",
            nu=LOSS_NU,
            mu=pt.log(data.loss_scale[t1] * curve) + size_effect[data.s1_size, t1],
            sigma=p["loss_noise"][t1],
            observed=np.log(data.s1_loss),
            dims="loss_point",
        )
        _step2(data, p_all)
    return model


def _step2(data: ModelData, p_all) -> None:
    """The package's step 2, verbatim in structure (see bayes.model)."""
    p = {
        n: p_all[n].create(n)
        for n in ("floor_offset", "ceiling_gap", "log_k_mu", "log_k_sigma", "midpoint", "acc_jitter", "acc_size_scale")
    }
    k = pm.Deterministic("k", pt.exp(pm.Normal("log_k", p["log_k_mu"], p["log_k_sigma"], dims="task")), dims="task")
    size_effect = pm.Normal("acc_size_effect", 0.0, p["acc_size_scale"], dims=("size", "task"))
    logit_chance = np.log(data.chance / (1 - data.chance))
    floor = pm.Deterministic("floor", pm.math.sigmoid(logit_chance + p["floor_offset"]), dims="task")
    ceiling = pm.Deterministic("ceiling", 1 - p["ceiling_gap"], dims="task")
    t2 = data.s2_task
    u = (data.s2_loss - data.step2_center[t2]) / data.step2_spread[t2]
    acc = accuracy_curve(
        u, floor[t2], ceiling[t2], k[t2], p["midpoint"][t2], size_effect[data.s2_size, t2], pm.math.sigmoid
    )
    sd = pt.sqrt(acc * (1 - acc) / data.n_questions[t2] + p["acc_jitter"][t2] ** 2)
    pm.Normal("accuracy", mu=acc, sigma=sd, observed=data.s2_acc, dims="acc_point")


@dataclass(frozen=True)
class SingleStepData:
    tasks: list[str]
    sizes: list[str]
    chance: np.ndarray
    n_questions: np.ndarray
    log_n_ref: float
    log_d_ref: float
    task: np.ndarray
    size: np.ndarray
    x: np.ndarray
    y: np.ndarray
    acc: np.ndarray


def prepare_single_step(ds: xr.Dataset, runs: list[str], tasks: list[str]) -> SingleStepData:
    """Step 2's blocks of checkpoints (see bayes.data), each with its run's N and the block's mean ln D."""
    base = prepare(ds, runs, tasks)  # refs, sizes, chance, n_questions: the same as the two-step model's
    runs = with_replicates(ds, runs)
    out = {"task": [], "size": [], "x": [], "y": [], "acc": []}
    for run in runs:
        log_n = math.log(float(ds["n_params"].sel(run=run)))
        size = base.sizes.index(str(ds["size"].sel(run=run).values))
        for t, task in enumerate(tasks):
            tokens, _, acc = step2_checkpoints(ds, run, task)
            block = BLOCK if len(acc) >= 2 * BLOCK else 1
            n_blocks = len(acc) // block
            if n_blocks == 0:
                continue
            start = len(acc) - n_blocks * block
            out["acc"].append(acc[start:].reshape(n_blocks, block).mean(axis=1))
            out["y"].append(np.log(tokens[start:]).reshape(n_blocks, block).mean(axis=1) - base.log_d_ref)
            out["x"].append(np.full(n_blocks, log_n - base.log_n_ref))
            out["task"].append(np.full(n_blocks, t))
            out["size"].append(np.full(n_blocks, size))
    joined = {k: np.concatenate(v) for k, v in out.items()}
    return SingleStepData(
        tasks=list(tasks),
        sizes=base.sizes,
        chance=base.chance,
        n_questions=base.n_questions,
        log_n_ref=base.log_n_ref,
        log_d_ref=base.log_d_ref,
        **joined,
    )


def build_single_step_model(data: SingleStepData) -> pm.Model:
    coords = {"task": data.tasks, "size": data.sizes, "acc_point": np.arange(len(data.acc))}
    logit_chance = np.log(data.chance / (1 - data.chance))
    with pm.Model(coords=coords) as model:
        alpha = pm.Deterministic(
            "alpha",
            pt.exp(
                pm.Normal("log_alpha_mu", -1.2, 0.5)
                + pm.LogNormal("log_alpha_sigma", -2.3, 0.3) * pm.Normal("alpha_z", dims="task")
            ),
            dims="task",
        )
        beta = pm.Deterministic(
            "beta",
            pt.exp(
                pm.Normal("log_beta_mu", -1.2, 0.5)
                + pm.LogNormal("log_beta_sigma", -2.3, 0.3) * pm.Normal("beta_z", dims="task")
            ),
            dims="task",
        )
        a = pm.LogNormal("a", 0.0, 1.0, dims="task")
        b = pm.LogNormal("b", 0.0, 1.0, dims="task")
        m = pm.Normal("m", 0.0, 2.0, dims="task")
        floor = pm.Deterministic(
            "floor", pm.math.sigmoid(logit_chance + pm.Normal("floor_offset", 0.0, 0.5, dims="task")), dims="task"
        )
        ceiling = pm.Deterministic("ceiling", 1 - pm.HalfNormal("ceiling_gap", 0.02, dims="task"), dims="task")
        size_effect = pm.Normal(
            "acc_size_effect", 0.0, pm.LogNormal("acc_size_scale", -3.0, 0.5), dims=("size", "task")
        )
        jitter = pm.HalfNormal("acc_jitter", 0.02, dims="task")
        t = data.task
        logit = m[t] - a[t] * pt.exp(-alpha[t] * data.x) - b[t] * pt.exp(-beta[t] * data.y) + size_effect[data.size, t]
        acc = floor[t] + (ceiling[t] - floor[t]) * pm.math.sigmoid(logit)
        sd = pt.sqrt(acc * (1 - acc) / data.n_questions[t] + jitter[t] ** 2)
        pm.Normal("accuracy", mu=acc, sigma=sd, observed=data.acc, dims="acc_point")
    return model


def _sample(model: pm.Model, config: FitConfig) -> xr.Dataset:
    import nutpie

    compiled = nutpie.compile_pymc_model(model)
    tree = nutpie.sample(
        compiled,
        chains=config.chains,
        draws=config.draws,
        tune=config.tune,
        cores=available_cores(),
        seed=config.seed,
        progress_bar=False,
        save_warmup=False,
        target_accept=0.9,
    )
    return tree["posterior"].to_dataset()


def _stacked(post: xr.Dataset, name: str) -> np.ndarray:
    v = post[name].stack(sample=("chain", "draw")).transpose("sample", ...).values
    return v[:, None] if v.ndim == 1 else v


# ---------------------------------------------------------------- predictions: (draws, tasks) of accuracy
def _fresh_or_known(post, name, scale_name, size, rng, shape):
    if size is not None and size in list(post["size"].values):
        return post[name].sel(size=size).stack(sample=("chain", "draw")).transpose("sample", ...).values
    return _stacked(post, scale_name) * rng.standard_normal(shape)


def predict_flops(post, data: ModelData, n_params, tokens, size, seed=0):
    rng = np.random.default_rng(seed)
    z = math.log(n_params) - data.log_n_ref + math.log(tokens) - data.log_d_ref
    alpha = _stacked(post, "alpha")
    curve = _stacked(post, "E_rel") + _stacked(post, "slope_n") / alpha * np.exp(-alpha * z)
    loss_effect = _fresh_or_known(post, "loss_size_effect", "loss_size_scale", size, rng, alpha.shape)
    expected = data.loss_scale * curve * np.exp(loss_effect)
    acc_effect = _fresh_or_known(post, "acc_size_effect", "acc_size_scale", size, rng, alpha.shape)
    u = (expected - data.step2_center) / data.step2_spread
    acc = accuracy_curve(
        u,
        _stacked(post, "floor"),
        _stacked(post, "ceiling"),
        _stacked(post, "k"),
        _stacked(post, "midpoint"),
        acc_effect,
        expit,
    )
    return np.clip(acc + _stacked(post, "acc_jitter") * rng.standard_normal(acc.shape), 0, 1)


def predict_single_step(post, data: SingleStepData, n_params, tokens, size, seed=0):
    rng = np.random.default_rng(seed)
    x, y = math.log(n_params) - data.log_n_ref, math.log(tokens) - data.log_d_ref
    a = _stacked(post, "a")
    effect = _fresh_or_known(post, "acc_size_effect", "acc_size_scale", size, rng, a.shape)
    logit = (
        _stacked(post, "m")
        - a * np.exp(-_stacked(post, "alpha") * x)
        - _stacked(post, "b") * np.exp(-_stacked(post, "beta") * y)
        + effect
    )
    floor, ceiling = _stacked(post, "floor"), _stacked(post, "ceiling")
    acc = floor + (ceiling - floor) * expit(logit)
    return np.clip(acc + _stacked(post, "acc_jitter") * rng.standard_normal(acc.shape), 0, 1)


# ---------------------------------------------------------------- PSIS-LOO of the flops design (same points as two-step)
def flops_elpd(post, data: ModelData) -> float:
    def at(name, idx, size_idx=None):
        v = post[name].values
        return v[..., size_idx, idx] if size_idx is not None else v[..., idx]

    t1, s1 = data.s1_task, data.s1_size
    alpha = at("alpha", t1)
    curve = at("E_rel", t1) + at("slope_n", t1) / alpha * np.exp(-alpha * (data.s1_x + data.s1_y))
    mu = np.log(data.loss_scale[t1] * curve) + at("loss_size_effect", t1, s1)
    ll1 = stats.t.logpdf(np.log(data.s1_loss), LOSS_NU, loc=mu, scale=at("loss_noise", t1))
    t2, s2 = data.s2_task, data.s2_size
    u = (data.s2_loss - data.step2_center[t2]) / data.step2_spread[t2]
    acc = accuracy_curve(
        u, at("floor", t2), at("ceiling", t2), at("k", t2), at("midpoint", t2), at("acc_size_effect", t2, s2), expit
    )
    sd = np.sqrt(acc * (1 - acc) / data.n_questions[t2] + at("acc_jitter", t2) ** 2)
    ll2 = stats.norm.logpdf(data.s2_acc, loc=acc, scale=sd)
    tree = xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_likelihood": xr.Dataset({"obs": (("chain", "draw", "point"), np.concatenate([ll1, ll2], axis=-1))}),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(az.loo(tree).elpd)


# ---------------------------------------------------------------- comparison
def swap_intermediate(ds: xr.Dataset, valset: str) -> xr.Dataset:
    """A copy of ``ds`` whose task_loss is validation set ``valset``'s loss, for every task."""
    if "val_loss" not in ds:
        raise BayesLadderError("the dataset has no validation losses (val_loss); the c4-intermediate design needs them")
    known = [str(v) for v in ds["valset"].values]
    if valset not in known:
        raise BayesLadderError(f"unknown validation set '{valset}'; the dataset has {', '.join(known)}")
    out = ds.copy()
    val = ds["val_loss"].sel(valset=valset, drop=True)
    out["task_loss"] = val.expand_dims(task=ds["task"].values).transpose("run", "checkpoint", "task").copy()
    out["task_loss"].attrs.update(
        long_name=f"validation loss on {valset} (in place of the task loss)", units="nats/token"
    )
    return out


def compare(
    ds: xr.Dataset, config: FitConfig, holdout_sizes: list[str], designs: list[str] | None = None, valset: str = "c4_en"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Backtest every design on the same held-out runs; (ranking with :data:`COLUMNS`, per run x task x design rows)."""
    designs = list(designs or DESIGNS)
    unknown = [d for d in designs if d not in DESIGNS]
    if unknown:
        raise BayesLadderError(f"unknown design(s) {', '.join(unknown)}; choose from {', '.join(DESIGNS)}")
    if "c4-intermediate" in designs:
        swapped = swap_intermediate(ds, valset)  # bad input fails before any fit
    if config.selection.sizes is None:
        ladder_sizes = dict.fromkeys(map(str, ds["size"].values[(ds["role"] == "ladder").values]))
        config = replace(
            config, selection=replace(config.selection, sizes=tuple(s for s in ladder_sizes if s not in holdout_sizes))
        )
    targets = holdout_runs(ds, config, holdout_sizes)
    runs = select_runs(ds, config.selection)
    tasks = list(config.tasks)
    rows, elpd, rhat = [], {}, {}
    for design in designs:
        predict = _fit_design(design, ds if design != "c4-intermediate" else swapped, config, runs, tasks, elpd, rhat)
        for run in targets:
            target = resolve_target(ds, run, None, None)
            acc = predict(target.n_params, target.tokens, str(ds["size"].sel(run=run).values))
            actual = actual_final(ds, run)
            for i, task in enumerate(tasks):
                a = float(actual.loc[task, "accuracy"])
                lo, med, hi = np.quantile(acc[:, i], [0.05, 0.5, 0.95])
                rows.append(
                    dict(
                        design=design,
                        run=run,
                        task=task,
                        actual_acc=a,
                        acc_median=med,
                        acc_q05=lo,
                        acc_q95=hi,
                        error=med - a,
                        covered=bool(lo <= a <= hi),
                        crps=crps(acc[:, i], a),
                    )
                )
    table = pd.DataFrame.from_records(rows)
    ranking = []
    for design, group in table.groupby("design", sort=False):
        ranking.append(
            dict(
                design=design,
                mae=float(group["error"].abs().mean()),
                coverage=float(group["covered"].mean()),
                mean_width=float((group["acc_q95"] - group["acc_q05"]).mean()),
                mean_crps=float(group["crps"].mean()),
                elpd_loo=elpd.get(design, float("nan")),
                max_rhat=rhat.get(design, float("nan")),
                n=len(group),
                description=DESCRIPTIONS[design],
            )
        )
    ranking = pd.DataFrame.from_records(ranking).sort_values(["mae", "mean_crps"]).reset_index(drop=True)
    ranking.insert(1, "rank", np.arange(1, len(ranking) + 1))
    return ranking[COLUMNS], table


def max_rhat(post: xr.Dataset) -> float:
    """Largest R-hat over every parameter (NaN with one chain): above 1.01 the design's numbers are not to be trusted."""
    if post.sizes["chain"] < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = az.rhat(post)
    return float(max(np.nanmax(r[v].values) for v in r.data_vars))


def _fit_design(design, ds, config, runs, tasks, elpd, rhat):
    """Fit one design; returns predict(n_params, tokens, size) -> accuracy draws (draws, tasks)."""
    if design in ("two-step", "c4-intermediate"):
        fitted = fit_two_step(ds, config)
        rhat[design] = max_rhat(fitted.posterior)
        if design == "two-step":
            from bayesladder.bayes.diagnostics import diagnose

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                elpd[design] = diagnose(fitted).elpd_loo
        return lambda n, d, size: predictive_draws(fitted.posterior, fitted.constants, n, d, size, config.seed)[1]
    if design == "flops-step1":
        data = prepare(ds, runs, tasks)
        post = _sample(build_flops_model(data, config.priors), config)
        elpd[design], rhat[design] = flops_elpd(post, data), max_rhat(post)
        return lambda n, d, size: predict_flops(post, data, n, d, size, config.seed)
    if design == "single-step":
        data = prepare_single_step(ds, runs, tasks)
        post = _sample(build_single_step_model(data), config)
        rhat[design] = max_rhat(post)
        return lambda n, d, size: predict_single_step(post, data, n, d, size, config.seed)
    fits = baseline.fit(ds, runs, tasks)
    return lambda n, d, size: baseline.predict(fits, n, d).set_index("task").loc[tasks, "accuracy"].to_numpy()[None, :]
