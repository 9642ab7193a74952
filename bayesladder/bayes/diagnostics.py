"""Diagnostics of a fit: convergence (R-hat, ESS, divergences, E-BFMI, tree depth), PSIS-LOO with
Pareto k, and posterior predictive checks. Computes and returns; printing is the CLI's job.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import arviz as az
import numpy as np
import xarray as xr
from scipy import stats
from scipy.special import expit

from bayesladder.bayes.fit import LadderFit
from bayesladder.bayes.model import LOSS_NU, accuracy_curve, measurement_sd, numpy_softplus, relative_loss

# Structural standard-normal variables (non-centred offsets) carry no information of their own.
SKIPPED = ("alpha_z", "beta_z", "loss_size_z")


@dataclass(frozen=True)
class Thresholds:
    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    min_bfmi: float = 0.3
    max_pareto_k: float = 0.7  # reported (a warning in reports), not a failure: LOO is not the fit


@dataclass(frozen=True)
class Diagnostics:
    ok: bool
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    min_bfmi: float
    max_pareto_k: float
    tree_depth_saturated: int
    mean_tree_depth: float
    elpd_loo: float
    ppc_loss_coverage90: float
    ppc_acc_coverage90: float
    failures: tuple[str, ...]

    def record(self) -> dict:
        out = asdict(self)
        out["failures"] = list(self.failures)
        return out


def diagnose(fit: LadderFit, thresholds: Thresholds = Thresholds()) -> Diagnostics:
    posterior = fit.tree["posterior"].to_dataset()
    names = [v for v in posterior.data_vars if v not in SKIPPED]
    rhat = _max(az.rhat(posterior, var_names=names))
    ess_bulk = _min(az.ess(posterior, var_names=names, method="bulk"))
    ess_tail = _min(az.ess(posterior, var_names=names, method="tail"))
    stats_ = fit.tree["sample_stats"].to_dataset()
    divergences = int(stats_["diverging"].sum())
    bfmi = float(az.bfmi(fit.tree)["energy"].min())
    saturated = int(stats_["maxdepth_reached"].sum()) if "maxdepth_reached" in stats_ else 0
    depth = float(stats_["depth"].mean()) if "depth" in stats_ else float("nan")

    log_lik, replicated = pointwise(fit)
    loo = az.loo(_with_log_likelihood(fit.tree, log_lik), pointwise=True)
    pareto_k = float(np.nanmax(np.asarray(loo.pareto_k)))
    observed = fit.tree["observed_data"].to_dataset()
    coverage = {name: _coverage90(replicated[name], observed[name].values) for name in ("log_loss", "accuracy")}

    failures = []
    if not rhat <= thresholds.max_rhat:
        failures.append(f"R-hat {rhat:.3f} > {thresholds.max_rhat}")
    if not min(ess_bulk, ess_tail) >= thresholds.min_ess:
        failures.append(f"ESS {min(ess_bulk, ess_tail):.0f} < {thresholds.min_ess:.0f}")
    if divergences > thresholds.max_divergences:
        failures.append(f"{divergences} divergent transitions")
    if not bfmi >= thresholds.min_bfmi:
        failures.append(f"E-BFMI {bfmi:.2f} < {thresholds.min_bfmi}")
    if saturated:
        failures.append(f"{saturated} draws hit the maximum tree depth")
    return Diagnostics(
        ok=not failures,
        max_rhat=rhat,
        min_ess_bulk=ess_bulk,
        min_ess_tail=ess_tail,
        divergences=divergences,
        min_bfmi=bfmi,
        max_pareto_k=pareto_k,
        tree_depth_saturated=saturated,
        mean_tree_depth=depth,
        elpd_loo=float(loo.elpd),
        ppc_loss_coverage90=coverage["log_loss"],
        ppc_acc_coverage90=coverage["accuracy"],
        failures=tuple(failures),
    )


def pointwise(fit: LadderFit, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-draw log-likelihood and replicated data of every observation, shape (chain, draw, point)."""
    post, const = fit.tree["posterior"].to_dataset(), fit.tree["constant_data"].to_dataset()
    obs = fit.tree["observed_data"].to_dataset()
    rng = np.random.default_rng(seed)

    def at(name, index_task, index_size=None):
        values = post[name].values  # (chain, draw, task) or (chain, draw, size, task)
        return values[..., index_size, index_task] if index_size is not None else values[..., index_task]

    t1, s1 = const["loss_task"].values, const["loss_size"].values
    curve = relative_loss(
        const["loss_x"].values,
        const["loss_y"].values,
        *(at(n, t1) for n in ("centre_loss", "slope_n", "slope_d", "alpha", "beta")),
        np.exp,
        numpy_softplus,
    )
    mu = np.log(const["loss_scale"].values[t1] * curve) + at("loss_size_effect", t1, s1)
    sigma = at("loss_noise", t1)
    ll_loss = stats.t.logpdf(obs["log_loss"].values, LOSS_NU, loc=mu, scale=sigma)
    rep_loss = mu + sigma * rng.standard_t(LOSS_NU, mu.shape)

    t2, s2 = const["acc_task"].values, const["acc_size"].values
    u = (const["acc_loss"].values - const["step2_center"].values[t2]) / const["step2_spread"].values[t2]
    acc = accuracy_curve(
        u, at("floor", t2), at("ceiling", t2), at("k", t2), at("midpoint", t2), at("acc_size_effect", t2, s2), expit
    )
    evaluations = const["n_questions"].values[t2] * const["acc_count"].values
    sd = measurement_sd(acc, evaluations, at("acc_jitter", t2), np.sqrt)
    ll_acc = stats.norm.logpdf(obs["accuracy"].values, loc=acc, scale=sd)
    rep_acc = acc + sd * rng.standard_normal(acc.shape)
    return {"log_loss": ll_loss, "accuracy": ll_acc}, {"log_loss": rep_loss, "accuracy": rep_acc}


def posterior_predictive(fit: LadderFit) -> xr.DataTree:
    """The fit's tree with a posterior_predictive group (replicated observations), for PPC plots."""
    _, replicated = pointwise(fit)
    tree = fit.tree.copy()
    tree["posterior_predictive"] = xr.DataTree(
        xr.Dataset(
            {
                name: (("chain", "draw", dim), replicated[name])
                for name, dim in (("log_loss", "loss_point"), ("accuracy", "acc_point"))
            }
        )
    )
    return tree


def _with_log_likelihood(tree: xr.DataTree, log_lik: dict[str, np.ndarray]) -> xr.DataTree:
    """One log-likelihood variable over all observations (step 1 and step 2 points together)."""
    joined = np.concatenate([log_lik["log_loss"], log_lik["accuracy"]], axis=-1)
    out = tree.copy()
    out["log_likelihood"] = xr.DataTree(xr.Dataset({"obs": (("chain", "draw", "point"), joined)}))
    return out


def _coverage90(replicated: np.ndarray, observed: np.ndarray) -> float:
    lo, hi = np.quantile(replicated, [0.05, 0.95], axis=(0, 1))
    return float(np.mean((observed >= lo) & (observed <= hi)))


def _max(ds: xr.Dataset) -> float:
    return float(max(np.nanmax(ds[v].values) for v in ds.data_vars))


def _min(ds: xr.Dataset) -> float:
    return float(min(np.nanmin(ds[v].values) for v in ds.data_vars))


def checks(diag: Diagnostics, t: Thresholds) -> list[dict]:
    """The diagnostics as rows (check, value, rule, status): 'pass'/'FAIL' for the convergence checks that
    decide ``ok``, 'warn' for a high Pareto k, 'info' for the measures that have no pass mark."""

    def check(name, value, rule, ok):
        return dict(check=name, value=value, rule=rule, status="pass" if ok else "FAIL")

    return [
        check("max R-hat", diag.max_rhat, f"<= {t.max_rhat}", diag.max_rhat <= t.max_rhat),
        check("min bulk ESS", diag.min_ess_bulk, f">= {t.min_ess:.0f}", diag.min_ess_bulk >= t.min_ess),
        check("min tail ESS", diag.min_ess_tail, f">= {t.min_ess:.0f}", diag.min_ess_tail >= t.min_ess),
        check(
            "divergent transitions", diag.divergences, f"<= {t.max_divergences}", diag.divergences <= t.max_divergences
        ),
        check("min E-BFMI", diag.min_bfmi, f">= {t.min_bfmi}", diag.min_bfmi >= t.min_bfmi),
        check("draws at max tree depth", diag.tree_depth_saturated, "= 0", diag.tree_depth_saturated == 0),
        dict(
            check="max Pareto k (PSIS-LOO)",
            value=diag.max_pareto_k,
            rule=f"<= {t.max_pareto_k} for reliable LOO",
            status="pass" if diag.max_pareto_k <= t.max_pareto_k else "warn",
        ),
        dict(check="elpd (PSIS-LOO)", value=diag.elpd_loo, rule="higher is better", status="info"),
        dict(check="PPC 90% coverage, task loss", value=diag.ppc_loss_coverage90, rule="near 0.90", status="info"),
        dict(check="PPC 90% coverage, accuracy", value=diag.ppc_acc_coverage90, rule="near 0.90", status="info"),
        dict(check="mean tree depth", value=diag.mean_tree_depth, rule="", status="info"),
    ]
