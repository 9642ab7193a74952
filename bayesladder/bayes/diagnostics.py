"""Diagnostics of a fit: convergence (R-hat, ESS, divergences, E-BFMI, tree depth), PSIS-LOO with
Pareto k, and posterior predictive checks. Computes and returns; printing is the CLI's job.

The pointwise log-likelihood and the replicated data come from the model's own formulas (``bayes.curves``),
evaluated at every posterior draw: the same densities the PyMC model sampled (a test checks they agree).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr

from bayesladder.bayes import curves
from bayesladder.bayes.fit import LadderFit
from bayesladder.bayes.predict import Draws, power_law_terms
from bayesladder.errors import BayesLadderError

# Structural standard-normal variables (non-centred offsets) carry no information of their own.
SKIPPED = ("alpha_z", "beta_z")


@dataclass(frozen=True)
class Thresholds:
    """What a fit must reach to pass (defined once: the CLI, the report and the benchmarks use these)."""

    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    min_bfmi: float = 0.3
    max_pareto_k: float = 0.7  # reported (a warning in reports), not a failure: LOO is not the fit

    def __post_init__(self):
        lowest = {"max_rhat": 1.0, "min_ess": 0.0, "max_divergences": 0, "min_bfmi": 0.0, "max_pareto_k": 0.0}
        bad = [
            f"--{name.replace('_', '-')} must be a finite number >= {low:g} (got {getattr(self, name)!r})"
            for name, low in lowest.items()
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= low)
        ]
        if bad:
            raise BayesLadderError("bad diagnostic thresholds: " + "; ".join(bad))


@dataclass(frozen=True)
class Diagnostics:
    ok: bool
    max_rhat: float
    worst_rhat_parameter: str  # e.g. 'two-step: log_k[boolq]': where to look when R-hat fails
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
    nested_max_rhat: float  # the nested backtest's fits (bayes.stacking), NaN without one
    nested_worst_rhat_parameter: str
    nested_min_ess: float
    nested_divergences: int
    failures: tuple[str, ...]

    def record(self) -> dict:
        out = asdict(self)
        out["failures"] = list(self.failures)
        return out


def convergence(design) -> dict:
    """Sampler checks of one fitted design (a ``DesignFit``): max R-hat (and the parameter it belongs to), min bulk
    and tail ESS over every parameter, divergences, min E-BFMI, draws at the maximum tree depth, mean tree depth."""
    stats = design.sample_stats
    rhats, bulk, tail = _rhat_and_ess(design.posterior, _checked(design.posterior))
    with warnings.catch_warnings():  # all-NaN entries (R-hat of a single chain)
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat, worst, ess_bulk, ess_tail = _max(rhats), _argmax_label(rhats), _min(bulk), _min(tail)
    return dict(
        max_rhat=rhat,
        worst_rhat_parameter=f"{design.design}: {worst}" if worst else "",
        min_ess_bulk=ess_bulk,
        min_ess_tail=ess_tail,
        divergences=int(stats["diverging"].sum()),
        min_bfmi=min_bfmi(stats["energy"]),
        tree_depth_saturated=int(stats["maxdepth_reached"].sum()),
        mean_tree_depth=float(stats["depth"].mean()),
    )


def _checked(posterior: xr.Dataset) -> list[str]:
    """The parameters whose convergence is checked: every sampled or derived one that varies."""
    return [v for v in posterior.data_vars if v not in SKIPPED and float(posterior[v].std()) > 0]


def _rhat_and_ess(posterior: xr.Dataset, names: list[str]) -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    """R-hat, bulk ESS and tail ESS of every entry of the named parameters."""
    import arviz as az

    with warnings.catch_warnings():  # constant entries (e.g. a ladder of 2 sizes has no size residuals)
        warnings.simplefilter("ignore", RuntimeWarning)
        return (
            az.rhat(posterior[names]),
            az.ess(posterior[names], method="bulk"),
            az.ess(posterior[names], method="tail"),
        )


def sampler_failures(check: dict, thresholds: Thresholds) -> list[str]:
    """What fails in a :func:`convergence` record under the R-hat, ESS and divergence rules: one phrase each,
    e.g. 'R-hat 1.043 > 1.01 (two-step: log_k[boolq])'; empty when it passes them."""
    failures = []
    rhat, ess = check["max_rhat"], min(check["min_ess_bulk"], check["min_ess_tail"])
    if not rhat <= thresholds.max_rhat:
        failures.append(f"R-hat {rhat:.3f} > {thresholds.max_rhat}{_at(check['worst_rhat_parameter'])}")
    if not ess >= thresholds.min_ess:
        failures.append(f"ESS {ess:.0f} < {thresholds.min_ess:.0f}")
    if check["divergences"] > thresholds.max_divergences:
        failures.append(f"{check['divergences']} divergent transitions")
    return failures


def failing_tasks(design, thresholds: Thresholds) -> tuple[str, ...]:
    """The tasks of a fitted design (a ``DesignFit``) whose own parameters fail the R-hat or ESS rule, in the
    design's task order: where a failed fit's trouble lies when a task the fitted sizes cannot pin down causes it
    (OLMo's boolq, flat at its floor on 190M-760M, leaves its step-2 floor and steepness free)."""
    posterior = design.posterior
    names = [v for v in _checked(posterior) if "task" in posterior[v].dims]
    if not names:
        return ()
    rhat, bulk, tail = _rhat_and_ess(posterior, names)
    failing = set()
    for name in names:
        bad = (rhat[name] > thresholds.max_rhat) | (bulk[name] < thresholds.min_ess) | (tail[name] < thresholds.min_ess)
        per_task = bad.any([dim for dim in bad.dims if dim != "task"])
        failing |= {str(task) for task in per_task["task"].values[per_task.values]}
    return tuple(task for task in design.data.tasks if task in failing)


def diagnose(fit: LadderFit, thresholds: Thresholds | None = None) -> Diagnostics:
    """Every fitted design's sampler checks (the worst over designs decides) and those of the nested backtest's
    fits (their predictions set the stacking weights and the discrepancy), and the primary design's PSIS-LOO and
    posterior predictive checks."""
    import arviz as az

    thresholds = thresholds or Thresholds()
    checks_ = [convergence(design) for design in fit.designs.values()]
    worst = {
        "max_rhat": max(c["max_rhat"] for c in checks_),
        "worst_rhat_parameter": max(checks_, key=lambda c: c["max_rhat"])["worst_rhat_parameter"],
        "min_ess_bulk": min(c["min_ess_bulk"] for c in checks_),
        "min_ess_tail": min(c["min_ess_tail"] for c in checks_),
        "divergences": sum(c["divergences"] for c in checks_),
        "min_bfmi": min(c["min_bfmi"] for c in checks_),
        "tree_depth_saturated": sum(c["tree_depth_saturated"] for c in checks_),
        "mean_tree_depth": float(np.mean([c["mean_tree_depth"] for c in checks_])),
    }
    log_lik, replicated = pointwise(fit.primary)
    with warnings.catch_warnings():  # PSIS warns of high Pareto k; the diagnostics report it
        warnings.simplefilter("ignore")
        loo = az.loo(_with_log_likelihood(fit.primary.tree, log_lik), pointwise=True)
    observed = fit.primary.tree["observed_data"].to_dataset()
    coverage = {name: _coverage90(replicated[name], observed[name].values) if name in replicated else float("nan")
                for name in ("log_loss", "accuracy")}  # fmt: skip

    nested = fit.calibration.scores
    has_nested = "max_rhat" in nested
    nested_checks = dict(
        nested_max_rhat=float(nested["max_rhat"].max()) if has_nested else float("nan"),
        nested_min_ess=float(nested["min_ess"].min()) if has_nested else float("nan"),
        nested_divergences=int(nested["divergences"].sum()) if has_nested else 0,
        nested_worst_rhat_parameter=_worst_nested(nested) if has_nested else "",
    )
    failures = sampler_failures(worst, thresholds)
    if has_nested:
        nested_worst = dict(
            max_rhat=nested_checks["nested_max_rhat"],
            worst_rhat_parameter=nested_checks["nested_worst_rhat_parameter"],
            min_ess_bulk=nested_checks["nested_min_ess"],
            min_ess_tail=nested_checks["nested_min_ess"],
            divergences=nested_checks["nested_divergences"],
        )
        failures += [f"nested backtest: {failure}" for failure in sampler_failures(nested_worst, thresholds)]
    if not worst["min_bfmi"] >= thresholds.min_bfmi:
        failures.append(f"E-BFMI {worst['min_bfmi']:.2f} < {thresholds.min_bfmi}")
    if worst["tree_depth_saturated"]:
        failures.append(f"{worst['tree_depth_saturated']} draws hit the maximum tree depth")
    return Diagnostics(
        ok=not failures,
        **worst,
        max_pareto_k=float(np.nanmax(np.asarray(loo.pareto_k))),
        elpd_loo=float(loo.elpd),
        ppc_loss_coverage90=coverage["log_loss"],
        ppc_acc_coverage90=coverage["accuracy"],
        **nested_checks,
        failures=tuple(failures),
    )


def min_bfmi(energy: xr.DataArray) -> float:
    """Smallest E-BFMI over chains (and sampled blocks): mean squared energy change over the energy's variance."""
    values = energy.transpose(..., "draw").values
    values = values.reshape(-1, values.shape[-1])
    return float(np.min(np.mean(np.diff(values, axis=1) ** 2, axis=1) / np.var(values, axis=1)))


def pointwise(fitted, seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-draw log-likelihood and replicated data of every observation of one fitted design (a ``DesignFit``),
    shape (chain, draw, point): the loss points' densities are leave-one-out conditionals within their (size,
    task) group (curves.grouped_normal_loo_logp)."""
    data, design, posterior = fitted.data, fitted.design, fitted.posterior
    draws = Draws(posterior)
    rng = np.random.default_rng(seed)
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    log_lik, replicated = {}, {}
    if design != "single-step":
        t = data.s1_task
        x, y = (data.s1_x + data.s1_y, 0.0) if design == "flops-step1" else (data.s1_x, data.s1_y)
        terms = [v[:, t] if np.ndim(v) else v for v in power_law_terms(draws)]
        mean = np.log(data.loss_scale[t] * curves.relative_loss(x, y, *terms, curves.NUMPY_OPS))
        residual = np.log(data.s1_loss) - mean
        membership = data.s1_membership
        noise_var = draws["loss_noise"][:, data.s1_group_task] ** 2
        size_var = draws["loss_size_scale"] ** 2 if data.sizes_repeat else 0.0
        log_lik["log_loss"] = curves.grouped_normal_loo_logp(residual, membership, noise_var, size_var)
        effect_mean, effect_var = curves.size_effect_given_residuals(
            residual @ membership, membership.sum(axis=0), noise_var, size_var
        )
        effect = effect_mean + np.sqrt(effect_var) * rng.standard_normal(effect_mean.shape)
        group = membership.argmax(axis=1)
        noise_sd = draws["loss_noise"][:, t]
        replicated["log_loss"] = mean + effect[:, group] + noise_sd * rng.standard_normal(mean.shape)
    acc = _accuracy_means(draws, data, design)
    sd = curves.accuracy_sd(acc, data.n_questions[data.s2_task] * data.s2_count, draws["acc_jitter"][:, data.s2_task],
                            curves.NUMPY_OPS)  # fmt: skip
    log_lik["accuracy"] = curves.normal_logp(data.s2_acc, acc, sd, curves.NUMPY_OPS)
    replicated["accuracy"] = acc + sd * rng.standard_normal(acc.shape)
    reshape = {name: v.reshape(*shape, -1) for name, v in log_lik.items()}
    return reshape, {name: v.reshape(*shape, -1) for name, v in replicated.items()}


def _accuracy_means(draws: Draws, data, design: str) -> np.ndarray:
    """The fitted mean accuracy of every step-2 observation, (samples, points)."""
    t, s = data.s2_task, data.s2_size
    residual = draws.posterior["size_residual"].values[:, s, t]
    if design == "single-step":
        shift = residual
        return curves.direct_accuracy(
            data.size_x[s], data.s2_y, draws["floor"][:, t], draws["midpoint"][:, t], draws["direct_a"][:, t],
            draws["direct_b"][:, t], draws["alpha"][:, t], draws["beta"][:, t], shift, curves.NUMPY_OPS,
        )  # fmt: skip
    shift = curves.size_shift(draws["trend"][:, t], data.size_x[s], residual)
    u = (data.s2_loss - data.step2_center[t]) / data.step2_spread[t]
    return curves.accuracy(u, draws["floor"][:, t], draws["k"][:, t], draws["midpoint"][:, t], shift, curves.NUMPY_OPS)


def posterior_predictive(fit: LadderFit) -> xr.DataTree:
    """The primary design's tree with a posterior_predictive group (replicated observations), for PPC plots."""
    _, replicated = pointwise(fit.primary)
    dims = {"log_loss": "loss_point", "accuracy": "acc_point"}
    tree = fit.primary.tree.copy()
    tree["posterior_predictive"] = xr.DataTree(
        xr.Dataset({name: (("chain", "draw", dims[name]), values) for name, values in replicated.items()})
    )
    return tree


def _with_log_likelihood(tree: xr.DataTree, log_lik: dict[str, np.ndarray]) -> xr.DataTree:
    """One log-likelihood variable over all observations (step 1 and step 2 points together)."""
    joined = np.concatenate(list(log_lik.values()), axis=-1)
    out = tree.copy()
    out["log_likelihood"] = xr.DataTree(xr.Dataset({"obs": (("chain", "draw", "point"), joined)}))
    return out


def _coverage90(replicated: np.ndarray, observed: np.ndarray) -> float:
    lo, hi = np.quantile(replicated, [0.05, 0.95], axis=(0, 1))
    return float(np.mean((observed >= lo) & (observed <= hi)))


def _argmax_label(ds: xr.Dataset) -> str:
    """The entry of ``ds`` (one value per parameter entry) with the largest value, e.g. 'log_k[boolq]'; '' when no
    entry has a value (R-hat of a single chain)."""
    finite = [v for v in ds.data_vars if np.isfinite(ds[v].values).any()]
    if not finite:
        return ""
    name = max(finite, key=lambda v: np.nanmax(ds[v].values))
    values = ds[name]
    if values.ndim == 0:
        return str(name)
    index = np.unravel_index(int(np.nanargmax(values.values)), values.shape)
    labels = [str(values[dim].values[i]) if dim in values.coords else str(i) for dim, i in zip(values.dims, index)]
    return f"{name}[{', '.join(labels)}]"


def _at(parameter: str) -> str:
    """' (two-step: log_k[boolq])' after a failed R-hat check, where the fit file names the parameter."""
    return f" ({parameter})" if parameter else ""


def _worst_nested(scores) -> str:
    """The nested fits' parameter of largest R-hat ('' in a fit file made before it was recorded, or where no nested
    fit has an R-hat: fits of one chain, as compare and backtest --subsets make)."""
    if "worst_rhat_parameter" not in scores or scores["max_rhat"].isna().all():
        return ""
    return str(scores.loc[scores["max_rhat"].idxmax(), "worst_rhat_parameter"])


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
        *(
            [
                check(
                    "nested backtest: max R-hat",
                    diag.nested_max_rhat,
                    f"<= {t.max_rhat}",
                    diag.nested_max_rhat <= t.max_rhat,
                ),
                check(
                    "nested backtest: min ESS",
                    diag.nested_min_ess,
                    f">= {t.min_ess:.0f}",
                    diag.nested_min_ess >= t.min_ess,
                ),
                check(
                    "nested backtest: divergences",
                    diag.nested_divergences,
                    f"<= {t.max_divergences}",
                    diag.nested_divergences <= t.max_divergences,
                ),
            ]
            if not np.isnan(diag.nested_max_rhat)
            else []
        ),
    ]
