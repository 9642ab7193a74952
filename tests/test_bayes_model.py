"""The Bayesian model itself, without MCMC: its log density at given parameter points against what diagnostics,
designs and predictions compute from the same formulas, its priors and variables, and FitConfig's validation.

A "parameter point" is a jittered initial point of the model (any point will do for an identity) or a posterior
draw of the session's tiny fit (a realistic one). Graphs are compiled with PyTensor's FAST_COMPILE mode: the same
graph, without its rewrites (0.5 s a compile instead of 4).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
import xarray as xr
from pymc.distributions.continuous import FlatRV
from pytensor.graph.replace import vectorize_graph
from scipy import stats
from scipy.special import expit, logit

from bayesladder import testing
from bayesladder.bayes import curves, diagnostics, predict
from bayesladder.bayes.data import prepare
from bayesladder.bayes.fit import DESIGNS, DesignFit, FitConfig, constant_data, fit, observed_data
from bayesladder.bayes.model import build_model, unused_priors
from bayesladder.bayes.priors import DEFAULT_PRIORS, Prior, merge
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import PRESETS, LadderSelection, select_runs

FAST = "FAST_COMPILE"
TWO_STEP_DESIGNS = [d for d, blocks in DESIGNS.items() if "accuracy" in blocks]


# --- helpers: parameter points, fake posteriors --------------------------------------------------------------


def jittered_point(model, seed: int) -> dict[str, np.ndarray]:
    """The model's initial point (value variables) with every coordinate moved by U(-1, 1)."""
    rng = np.random.default_rng(seed)
    return {name: value + rng.uniform(-1, 1, np.shape(value)) for name, value in model.initial_point().items()}


def named_values(model, point) -> dict[str, np.ndarray]:
    """Every free and deterministic variable's value, on its natural scale, at a point of the value variables."""
    outs = model.unobserved_value_vars
    values = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=FAST)(point)
    return {v.name: np.asarray(x) for v, x in zip(outs, values) if v.name in model.named_vars}


def value_point(model, values) -> dict[str, np.ndarray]:
    """The point of the model's value variables where its free variables take ``values`` (natural scale)."""
    point = {}
    for rv in model.free_RVs:
        transform, value = model.rvs_to_transforms[rv], np.asarray(values[rv.name], dtype=float)
        forward = value if transform is None else transform.forward(value, *rv.owner.inputs).eval()
        point[model.rvs_to_values[rv].name] = np.asarray(forward)
    return point


def as_posterior(model, draws: dict[str, np.ndarray]) -> xr.Dataset:
    """A posterior of one chain from per-draw values (a leading draw axis), with the model's dims: what a fit file
    stores."""
    variables = {}
    for name, value in draws.items():
        dims = model.named_vars_to_dims.get(name) or tuple(f"{name}_dim_{i}" for i in range(np.ndim(value) - 1))
        variables[name] = (("chain", "draw", *dims), np.asarray(value)[None])
    return xr.Dataset(variables, coords={name: list(labels) for name, labels in model.coords.items()})


def repeat(values: dict[str, np.ndarray], draws: int = 1) -> dict[str, np.ndarray]:
    """``draws`` copies of one parameter point, as per-draw values."""
    return {name: np.broadcast_to(value, (draws, *np.shape(value))) for name, value in values.items()}


def design_fit(design: str, data, posterior: xr.Dataset) -> DesignFit:
    """A fitted design as a fit file holds it, with the given posterior."""
    tree = xr.DataTree.from_dict(
        {"posterior": posterior, "observed_data": observed_data(data), "constant_data": constant_data(data)}
    )
    return DesignFit(design, tree)


def model_terms(model, names: list[str], point) -> dict[str, np.ndarray]:
    """Elementwise log density of the named variables / Potentials at a point (PyMC's own logp graph)."""
    terms = model.logp(vars=[model[n] for n in names], sum=False)
    fn = model.compile_fn(terms, inputs=model.value_vars, on_unused_input="ignore", mode=FAST)
    return {n: np.asarray(v) for n, v in zip(names, fn(point))}


def group_logp(residuals: np.ndarray, noise_var: float, size_var: float) -> float:
    """ln N(residuals; 0, noise_var I + size_var 11'): the model's joint density of one (size, task) group's
    log-loss residuals (runs of a size share its effect), written as a plain multivariate Normal."""
    n = len(residuals)
    cov = noise_var * np.eye(n) + size_var * np.ones((n, n))
    return float(stats.multivariate_normal(np.zeros(n), cov).logpdf(residuals))


def new_run_given_group(residuals: np.ndarray, noise_var: float, size_var: float) -> tuple[float, float]:
    """Mean and variance of one more run's log-loss residual in a (size, task) group, given the group's residuals:
    Gaussian conditioning in the same multivariate Normal (no residuals: a size the ladder has not seen)."""
    n = len(residuals)
    if n == 0:
        return 0.0, noise_var + size_var
    cov = noise_var * np.eye(n) + size_var * np.ones((n, n))
    weights = np.linalg.solve(cov, np.full(n, size_var))
    return float(weights @ residuals), float(noise_var + size_var - weights @ np.full(n, size_var))


def loss_residuals(data, posterior: xr.Dataset, design: str) -> np.ndarray:
    """ln(observed loss / fitted curve) of every step-1 point at a one-draw posterior."""
    draws = predict.Draws(posterior)
    out = np.empty(len(data.s1_loss))
    for t in range(len(data.tasks)):
        points = data.s1_task == t
        curve = predict.relative_curve(draws, design, data.s1_x[points], data.s1_y[points], task=t)[0]
        out[points] = np.log(data.s1_loss[points]) - np.log(data.loss_scale[t] * curve)
    return out


# --- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated_ds():
    """A simulated ladder (4 sizes x 4 lengths, 2 tasks): each (size, task) group has 4 runs."""
    rng = np.random.default_rng(0)
    truths = testing.draw_truths(rng, 2)
    return testing.simulate_ladder(truths, rng, size_effects=testing.draw_size_effects(rng, testing.SIZES, truths))


@pytest.fixture(scope="module")
def simulated(simulated_ds):
    return prepare(simulated_ds, select_runs(simulated_ds, LadderSelection()), ["task0", "task1"])


LADDERS = {  # what the model sees of: (dataset fixture, selection, tasks)
    "simulated": ("simulated_ds", LadderSelection(), ["task0", "task1"]),
    "simulated, one run per size": ("simulated_ds", LadderSelection(lengths=("1xC",)), ["task0", "task1"]),
    "OLMo paper ladder": ("olmo_ladder_ds", PRESETS["paper"], ["mmlu", "hellaswag"]),
    "OLMo paper ladder at 1xC and reruns": (
        "olmo_ladder_ds", replace(PRESETS["paper"], lengths=("1xC",)), ["mmlu", "hellaswag"],
    ),
    "Gemstones": ("gemstones_ds", LadderSelection(), ["mmlu", "hellaswag"]),  # one length: every run to 350B tokens
}  # fmt: skip


def ladder_data(request, ladder: str):
    fixture, selection, tasks = LADDERS[ladder]
    ds = request.getfixturevalue(fixture)
    return prepare(ds, select_runs(ds, selection), tasks)


def parameter_point(request, source: str, design: str):
    """(data, model, point) of a design at a parameter point: the last draw of the session's tiny fit (of the OLMo
    paper ladder), or a jittered initial point of the model of a ladder of :data:`LADDERS`."""
    if source == "tiny fit":
        fit_ = request.getfixturevalue("loaded_fit")
        fitted = fit_.designs[design]
        model = build_model(fitted.data, fit_.config.priors, blocks=DESIGNS[design])
        draw = fitted.posterior.isel(chain=0, draw=-1)
        return fitted.data, model, value_point(model, {name: draw[name].values for name in draw.data_vars})
    data = ladder_data(request, source)
    model = build_model(data, blocks=DESIGNS[design])
    return data, model, jittered_point(model, seed=0)


# --- the log density used by LOO and the posterior predictive checks is the model's -------------------------

POINT_CASES = [
    ("simulated", "two-step"),
    ("simulated", "flops-step1"),
    ("simulated", "single-step"),
    ("simulated, one run per size", "two-step"),  # no size effect apart from the run noise
    ("OLMo paper ladder at 1xC and reruns", "two-step"),  # groups of 2 runs
    ("Gemstones", "two-step"),  # one length: no D term; one run per size
    ("tiny fit", "two-step"),
    ("tiny fit", "single-step"),
]


@pytest.mark.parametrize("source, design", POINT_CASES)
def test_pointwise_log_likelihood_is_the_models_density_at_a_parameter_point(request, source, design):
    """diagnostics.pointwise (what PSIS-LOO and the PPCs use) against PyMC's logp of the model at the same point.

    Step 1: the model's log_loss Potential is the sum over (size, task) groups of a multivariate Normal density of
    the group's residuals, and each point's LOO term is its conditional given the rest of its group:
    ln p(group) - ln p(group without it). Step 2: each accuracy's term is PyMC's logp of the observed variable.
    """
    data, model, point = parameter_point(request, source, design)
    values = named_values(model, point)
    posterior = as_posterior(model, repeat(values))
    log_lik, _ = diagnostics.pointwise(design_fit(design, data, posterior))
    has_loss = design != "single-step"
    terms = model_terms(model, ["log_loss", "accuracy"] if has_loss else ["accuracy"], point)

    np.testing.assert_allclose(log_lik["accuracy"][0, 0], terms["accuracy"], rtol=1e-9, atol=1e-9)
    assert log_lik["accuracy"].shape == (1, 1, len(data.s2_acc))
    if not has_loss:
        assert "log_loss" not in log_lik
        return
    residuals = loss_residuals(data, posterior, design)
    size_var = float(values["loss_size_scale"] ** 2) if data.sizes_repeat else 0.0
    groups = data.s1_membership.argmax(axis=1)
    joint, loo = 0.0, np.empty(len(residuals))
    for g, task in enumerate(data.s1_group_task):
        members = np.flatnonzero(groups == g)
        noise_var = float(values["loss_noise"][task] ** 2)
        group = group_logp(residuals[members], noise_var, size_var)
        joint += group
        for i, point_index in enumerate(members):
            rest = np.delete(residuals[members], i)
            loo[point_index] = group - (group_logp(rest, noise_var, size_var) if len(rest) else 0.0)
    assert float(terms["log_loss"]) == pytest.approx(joint, rel=1e-9)
    np.testing.assert_allclose(log_lik["log_loss"][0, 0], loo, rtol=1e-7, atol=1e-9)


# The parameters are given (the posterior): the Potentials that shaped them and the Data upstream of the trend are
# irrelevant to drawing the observations, which is all PyMC warns of here.
@pytest.mark.filterwarnings("ignore:The effect of Potentials:UserWarning")
@pytest.mark.filterwarnings("ignore:The following trace variables were implicitly frozen")
def test_replicated_accuracies_are_pymcs_posterior_predictive(simulated):
    """The PPC's replicated accuracies (diagnostics.pointwise) against pm.sample_posterior_predictive on the model's
    observed variable, over a posterior of 4 distinct points x 500 draws: same mean and SD at every point."""
    model = build_model(simulated)
    points = [named_values(model, jittered_point(model, seed)) for seed in range(4)]
    per_draw = {name: np.repeat(np.stack([p[name] for p in points]), 500, axis=0) for name in points[0]}
    posterior = as_posterior(model, per_draw)
    _, replicated = diagnostics.pointwise(design_fit("two-step", simulated, posterior), seed=3)
    theirs = pm.sample_posterior_predictive(
        posterior, model, var_names=["accuracy"], random_seed=4, progressbar=False, compile_kwargs={"mode": FAST}
    )
    theirs = theirs["posterior_predictive"]["accuracy"].values.reshape(2000, -1)
    ours = replicated["accuracy"].reshape(2000, -1)
    sd = theirs.std(axis=0)
    standard_error = np.sqrt(2 / 2000) * sd  # of a difference of two means of 2000 draws
    assert (np.abs(ours.mean(axis=0) - theirs.mean(axis=0)) < 5 * standard_error).all()
    np.testing.assert_allclose(ours.std(axis=0), sd, rtol=0.15)
    assert np.median(ours.std(axis=0) / sd) == pytest.approx(1.0, abs=0.03)


# --- every design's step 2 is the main model's; blocks share no parameter -------------------------------------


def step2_names(model) -> list[str]:
    """The log-density terms of the step-2 block: its free variables, the floor's prior and the observations."""
    return [rv.name for rv in model.free_RVs] + ["floor_prior", "accuracy"]


@pytest.mark.parametrize("design", TWO_STEP_DESIGNS)
def test_each_designs_step_2_is_the_main_models(simulated, design):
    """Building a design gives the same step-2 block as the main model (two-step): the same variables with the
    same dims, and the same log density of each at the same point, whatever step 1 is doing."""
    main = build_model(simulated)
    other = build_model(simulated, blocks=DESIGNS[design])
    step2 = build_model(simulated, blocks=("accuracy",))
    names = set(step2.named_vars)
    for model in (main, other):
        assert names <= set(model.named_vars)
        for name in names:
            assert model.named_vars_to_dims.get(name) == step2.named_vars_to_dims.get(name), name
    point = jittered_point(step2, seed=5)
    want = model_terms(step2, step2_names(step2), point)
    for model in (main, other):
        for seed in (6, 7):  # two different step-1 points: step 2 does not depend on them
            full = jittered_point(model, seed) | point
            got = model_terms(model, step2_names(step2), full)
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)


@pytest.mark.parametrize("design", list(DESIGNS))
def test_a_designs_log_density_is_the_sum_of_its_blocks(simulated, design):
    """Blocks share no parameter, which is what lets bayes.fit sample each on its own and pair the draws."""
    model = build_model(simulated, blocks=DESIGNS[design])
    blocks = [build_model(simulated, blocks=(block,)) for block in DESIGNS[design]]
    assert sum(len(b.free_RVs) for b in blocks) == len(model.free_RVs)
    point = jittered_point(model, seed=8)

    def log_density(m, at):
        names = [v.name for v in m.free_RVs + m.observed_RVs + m.potentials]
        return sum(float(v.sum()) for v in model_terms(m, names, at).values())

    parts = [log_density(b, {name: point[name] for name in b.initial_point()}) for b in blocks]
    assert log_density(model, point) == pytest.approx(sum(parts), rel=1e-12)


# --- predictions match a direct simulation from the model ------------------------------------------------------

PREDICTION_DRAWS = 20000
SIMULATED_DRAWS = 1000


@pytest.fixture(scope="module")
def sharp_points(simulated):
    """Per design, (model, named values) at a parameter point where what a prediction must get right shows: a size's
    loss effect (3%) well above the run noise (1%), large step-2 size residuals (0.5 logit) and trends (0.3 and -0.2
    logit per e-fold of N, about a mean of 0.05), little measurement jitter, accuracies well inside (0, 1)."""
    points = {}
    for design in ("two-step", "single-step"):
        model = build_model(simulated, blocks=DESIGNS[design])
        point = jittered_point(model, seed=9)
        point |= {
            "acc_size_scale_log__": np.log(0.5),
            "size_residual_z": np.random.default_rng(9).standard_normal(point["size_residual_z"].shape),
            "acc_jitter_log__": np.full(2, np.log(0.002)),
            "level_logit": np.array([0.0, 0.4]),  # 0.5 and 0.6 at the ladder's centre, floors half of that
            "floor_split": np.zeros(2),
        }
        if design == "two-step":
            point |= {
                "loss_size_scale_log__": np.log(0.03),
                "loss_noise_log__": np.full(2, np.log(0.01)),
                "trend": np.array([0.3, -0.2]),
                "trend_mu": np.array(0.05),
                "log_k": np.zeros(2),
            }
        points[design] = model, named_values(model, point)
    return points


def prediction_target(data, where: str) -> tuple[str | None, float, float]:
    """(size, N, D): the ladder's second size at a length the ladder does not have, or a new size 3x its largest N."""
    if where == "ladder size":
        return data.sizes[1], float(np.exp(data.size_x[1] + data.log_n_ref)), float(np.exp(data.log_d_ref + 0.3))
    n_params = 3 * float(np.exp(data.size_x.max() + data.log_n_ref))
    return None, n_params, 100 * n_params


def new_run_log_loss(data, model, values, size: str | None, n_params: float, tokens: float) -> list[tuple]:
    """Per task, (mean, variance) of the ln loss of one more run at the target and the run noise's variance, from
    the model's joint Normal of the runs of the target's size (none for a new size), at the point ``values``."""
    posterior = as_posterior(model, repeat(values))
    x, y = np.log(n_params) - data.log_n_ref, np.log(tokens) - data.log_d_ref
    curve = np.log(data.loss_scale * predict.relative_curve(predict.Draws(posterior), "two-step", x, y)[0])
    residuals = loss_residuals(data, posterior, "two-step")
    size_index = data.sizes.index(size) if size is not None else -1
    out = []
    for t in range(len(data.tasks)):
        members = (data.s1_task == t) & (data.s1_size == size_index)
        noise_var = float(values["loss_noise"][t] ** 2)
        mean, var = new_run_given_group(residuals[members], noise_var, float(values["loss_size_scale"] ** 2))
        out.append((curve[t] + mean, var, noise_var))
    return out


@pytest.mark.parametrize("where", ["ladder size", "new size"])
def test_predicted_losses_are_the_models_distribution_of_a_new_run(simulated, sharp_points, where):
    """At a ladder size a target's ln loss is the conditional Normal of one more run of that size given its runs
    (its size effect learned); at a new size, the size effect is fresh: mean on the curve, variance noise + size."""
    model, values = sharp_points["two-step"]
    size, n_params, tokens = prediction_target(simulated, where)
    posterior = as_posterior(model, repeat(values, PREDICTION_DRAWS))
    parts = predict.components(posterior, simulated, "two-step", n_params, tokens, size, seed=1)
    tolerance = 5 / np.sqrt(PREDICTION_DRAWS)  # 5 standard errors
    for t, (mean, var, noise_var) in enumerate(new_run_log_loss(simulated, model, values, size, n_params, tokens)):
        log_loss = np.log(parts.loss[:, t])
        assert log_loss.mean() == pytest.approx(mean, abs=tolerance * np.sqrt(var))
        assert log_loss.var() == pytest.approx(var, rel=tolerance * np.sqrt(2))
        if size is not None:  # the conditioning matters at this point: a fresh size effect would fail above
            assert var < 0.5 * (noise_var + float(values["loss_size_scale"] ** 2))


def simulate_accuracy_from_the_model(data, design, model, values, size, n_params: float, tokens: float, seed: int):
    """(draws, tasks) measured final accuracies of a target, simulated with the model's own step-2 graph.

    Two-step: the expected loss is drawn from step 1's Normal (a new run's, less its run noise). The design's
    accuracy block is rebuilt on data whose observations are at the target (its size, its D, those losses), each the
    mean of as many checkpoints as a final value; pm.do fixes its parameters at the point and pm.draw simulates the
    observations. For a new size, each draw gets a size of its own at the target's ln N, with a residual of its own
    drawn as ``predict.new_size_shift`` says (checked against the model's iid residuals below).
    """
    rng = np.random.default_rng(seed)
    k, tasks = SIMULATED_DRAWS, np.arange(len(data.tasks))
    loss = np.ones((k, len(tasks)))  # single-step: no loss
    if design == "two-step":
        for t, (mean, var, noise_var) in enumerate(new_run_log_loss(data, model, values, size, n_params, tokens)):
            loss[:, t] = np.exp(mean + np.sqrt(var - noise_var) * rng.standard_normal(k))
    sizes, size_x, residual = list(data.sizes), data.size_x, values["size_residual"]
    if size is not None:
        size_of = np.full((k, len(tasks)), data.sizes.index(size))
    else:
        size_of = np.repeat(len(sizes) + np.arange(k)[:, None], len(tasks), axis=1)
        sizes = sizes + [f"new-{i}" for i in range(k)]
        size_x = np.concatenate([size_x, np.full(k, np.log(n_params) - data.log_n_ref)])
        posterior = as_posterior(model, repeat(values))
        mean, var = predict.new_size_shift(predict.Draws(posterior), data, size_x[-1])
        residual = np.concatenate([residual, mean + np.sqrt(var) * rng.standard_normal((k, len(tasks)))])
    points = k * len(tasks)
    target_data = replace(
        data,
        sizes=sizes,
        size_x=size_x,
        s2_task=np.tile(tasks, k),
        s2_size=size_of.ravel(),
        s2_y=np.full(points, np.log(tokens) - data.log_d_ref),
        s2_loss=loss.ravel(),
        s2_acc=np.full(points, 0.5),  # not used: the observations are simulated
        s2_count=np.full(points, data.final_count),
    )
    step2 = build_model(target_data, blocks=DESIGNS[design][-1:])
    fixed = {rv.name: values[rv.name] for rv in step2.free_RVs if rv.name != "size_residual_z"}
    at_point = pm.do(step2, fixed | {"size_residual": residual})
    return pm.draw(at_point["accuracy"], random_seed=seed, mode=FAST).reshape(k, len(tasks))


@pytest.mark.parametrize("design", ["two-step", "single-step"])
@pytest.mark.parametrize("where", ["ladder size", "new size"])
def test_predicted_accuracies_match_a_simulation_from_the_model(simulated, sharp_points, design, where):
    """predict.design_draws (what predict and the stacked mixture draw from) against the model simulated directly:
    the same distribution of a target's measured accuracy (two-sample KS test, mean and SD)."""
    model, values = sharp_points[design]
    size, n_params, tokens = prediction_target(simulated, where)
    posterior = as_posterior(model, repeat(values, PREDICTION_DRAWS))
    _, predicted = predict.design_draws(posterior, simulated, design, n_params, tokens, size, seed=2)
    direct = simulate_accuracy_from_the_model(simulated, design, model, values, size, n_params, tokens, seed=3)
    for t in range(len(simulated.tasks)):
        p, d = predicted[:, t], direct[:, t]
        quantiles = (np.quantile(p, [0.05, 0.5, 0.95]), np.quantile(d, [0.05, 0.5, 0.95]))
        assert stats.ks_2samp(p, d).pvalue > 1e-3, (t, quantiles)
        assert p.mean() == pytest.approx(d.mean(), abs=5 * d.std() / np.sqrt(SIMULATED_DRAWS))
        assert p.std() == pytest.approx(d.std(), rel=0.15)


@pytest.mark.parametrize("with_trend", [True, False], ids=["two-step", "single-step"])
@pytest.mark.parametrize("sizes", [2, 4])
def test_a_new_sizes_shift_is_what_iid_residuals_leave_beyond_the_fitted_trend(simulated, with_trend, sizes):
    """The model fits the sizes' step-2 residuals orthogonal to 1 and ln N; the truth it stands for has every size,
    the ladder's and a new one 3x beyond it, draw an iid residual around a trend drawn from its prior. Simulated that
    way, the fitted trend (trend + the residuals' slope on ln N) has the prior SD ``curves.trend_sd`` gives, and the
    new size's shift beyond the fitted level and trend, standardised by ``curves.new_size_shift`` given the fitted
    trend, is standard normal and independent of it: its intervals neither too narrow nor too wide, near or far."""
    rng = np.random.default_rng(21)
    draws, trend_mu, trend_sigma, scale = 400_000, 0.1, 0.05, 0.3
    data = replace(simulated, sizes=simulated.sizes[:sizes], size_x=simulated.size_x[:sizes])
    x_new = float(data.size_x.max() + np.log(3))
    design = np.column_stack([np.ones(sizes), data.size_x])
    trend = trend_mu + trend_sigma * rng.standard_normal(draws)
    residuals = scale * rng.standard_normal((draws, sizes + 1))
    level_part, slope_part = np.linalg.lstsq(design, residuals[:, :sizes].T, rcond=None)[0]  # what the fit absorbs
    fitted_trend = trend + slope_part
    beyond = residuals[:, -1] - level_part - slope_part * x_new  # the new size's shift - the fitted level and trend
    if with_trend:
        sd = curves.trend_sd(trend_sigma, scale, data.absorbed_covariance, curves.NUMPY_OPS)
        assert fitted_trend.std() == pytest.approx(sd, rel=0.01)
        mean, var = curves.new_size_shift(x_new, data.absorbed_covariance, scale, fitted_trend - trend_mu, sd)
    else:  # the single-step design's trend in N is its power law, of a broad prior
        mean, var = curves.new_size_shift(x_new, data.absorbed_covariance, scale)
    z = (beyond - mean) / np.sqrt(var)
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)
    if with_trend:
        assert abs(np.corrcoef(z, fitted_trend)[0, 1]) < 0.01
    assert np.sqrt(var).min() > 1.1 * scale  # wider than a fresh residual alone, which under-covered this far out


# --- priors: the stated ones, overridable by name, and the data they predict --------------------------------------


def central_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def prior_draws(model, data, n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """n proposals for the model's prior: (per-draw values of its free and deterministic variables and of the mean
    accuracy of every step-2 point, log importance weights, the irreducible-loss prior's log density at E).

    The Flat coordinates (split_e, split_w, floor_split) have no prior of their own: Potentials put the stated priors
    on what they parametrise (ln alpha, ln beta, E, the floor's offset from chance), and PyMC's forward sampling
    cannot draw them. So the proper variables are drawn forward, the Flat ones through ln alpha, ln beta and the
    offset drawn from their stated priors, and each draw is weighted by exp(the model's prior Potentials) over that
    proposal's density in the Flat coordinates (its Jacobian by central differences). If the Potentials are the
    stated priors, a log weight is exactly the irreducible-loss prior at E, the one prior the proposal leaves out.
    A proposal outside the model's space (E <= 0, or a floor above the level) has weight 0.
    """
    rng = np.random.default_rng(seed)
    priors = merge(None)
    proper = [rv for rv in model.free_RVs if not isinstance(rv.owner.op, FlatRV)]
    values = dict(zip([rv.name for rv in proper], pm.draw(proper, draws=n, random_seed=rng, mode=FAST)))
    shape = (n, len(data.tasks))
    log_q = np.zeros(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        # step 1: split_e (and split_w) through the exponents alpha (and beta)
        centre, slope_n = values["centre_loss"], values["slope_n"]
        with_d = "split_w" in model.named_vars
        slope_d = values["slope_d"] if with_d else None
        exponents = {}
        for name in ("alpha", "beta") if with_d else ("alpha",):
            mu, sigma = values[f"log_{name}_mu"][:, None], values[f"log_{name}_sigma"][:, None]
            exponents[name] = rng.normal(mu, sigma, shape)
            log_q += stats.norm(mu, sigma).logpdf(exponents[name]).sum(axis=1)
        a = slope_n / np.exp(exponents["alpha"])
        b = slope_d / np.exp(exponents["beta"]) if with_d else 0.0
        values["split_e"] = logit((centre - a - b) / centre)
        if with_d:
            values["split_w"] = logit(a / (a + b))

        def log_exponents(split_e, split_w):
            _, _, _, alpha, beta = curves.power_law_terms(centre, slope_n, slope_d, split_e, split_w, curves.NUMPY_OPS)
            return np.log(alpha), np.log(beta)

        e, w = values["split_e"], values.get("split_w")
        d_alpha_e = central_difference(lambda v: log_exponents(v, w)[0], e)
        if with_d:
            d_alpha_w = central_difference(lambda v: log_exponents(e, v)[0], w)
            d_beta_e = central_difference(lambda v: log_exponents(v, w)[1], e)
            d_beta_w = central_difference(lambda v: log_exponents(e, v)[1], w)
            log_q += np.log(np.abs(d_alpha_e * d_beta_w - d_alpha_w * d_beta_e)).sum(axis=1)
        else:
            log_q += np.log(np.abs(d_alpha_e)).sum(axis=1)
        # step 2: floor_split through the floor's offset from chance
        offset_prior = priors["floor_offset"].params
        offset = rng.normal(offset_prior["mu"], offset_prior["sigma"], shape)
        log_q += stats.norm(offset_prior["mu"], offset_prior["sigma"]).logpdf(offset).sum(axis=1)
        level, logit_chance = expit(values["level_logit"]), logit(data.chance)
        values["floor_split"] = logit(expit(logit_chance + offset) / level)

        def offset_of(split):
            return logit(curves.floor_below(level, split, curves.NUMPY_OPS)) - logit_chance

        log_q += np.log(np.abs(central_difference(offset_of, values["floor_split"]))).sum(axis=1)

    valid = np.isfinite(log_q)
    batched = {rv: pt.tensor(rv.name, shape=(None, *rv.type.shape), dtype=rv.dtype) for rv in model.free_RVs}
    accuracy = model["accuracy"]
    mean_accuracy, _ = accuracy.owner.op.dist_params(accuracy.owner)
    outs = [model["power_law_prior"], model["floor_prior"], mean_accuracy, *model.deterministics]
    fn = pytensor.function(list(batched.values()), vectorize_graph(outs, replace=batched), mode=FAST,
                           on_unused_input="ignore")  # fmt: skip
    results = fn(*(np.where(valid.reshape(-1, *[1] * (np.ndim(values[rv.name]) - 1)), values[rv.name], 0.5)
                   for rv in batched))  # fmt: skip
    values |= {d.name: value for d, value in zip(model.deterministics, results[3:])}
    values["mean_accuracy"] = results[2]
    log_weight = np.where(valid, results[0] + results[1] - log_q, -np.inf)
    irreducible = priors["irreducible"].params
    log_irreducible = stats.norm(irreducible["mu"], irreducible["sigma"]).logpdf(values["E"]).sum(axis=1)
    return values, log_weight, log_irreducible


def resample(values: dict[str, np.ndarray], log_weight: np.ndarray, size: int, seed: int) -> dict[str, np.ndarray]:
    weight = np.exp(log_weight - log_weight.max())
    chosen = np.random.default_rng(seed).choice(len(weight), size=size, p=weight / weight.sum())
    return {name: value[chosen] for name, value in values.items()}


@pytest.mark.parametrize("ladder", ["OLMo paper ladder", "Gemstones"])
def test_the_potentials_put_the_stated_priors_on_what_the_flat_coordinates_parametrise(request, ladder):
    """E, A, alpha (beta, B) and the floor are sampled through Flat coordinates; the priors a user reads (and
    overrides) in priors.py are on ln alpha, ln beta, E and the floor's offset from chance. Their Jacobians make the
    two agree, with a D term (OLMo) and without (Gemstones: one length)."""
    data = ladder_data(request, ladder)
    model = build_model(data)
    _, log_weight, log_irreducible = prior_draws(model, data, 2000, seed=10)
    valid = np.isfinite(log_weight)
    assert valid.sum() > 200
    np.testing.assert_allclose(log_weight[valid], log_irreducible[valid], atol=1e-5)


def test_prior_predictive_data_look_like_the_ladders(request):
    """Losses and accuracies replicated from the prior (diagnostics.pointwise at prior draws): accuracies within
    [0, 1], losses positive and on the real ladder's scale, and every observed value plausible a priori."""
    olmo_paper = ladder_data(request, "OLMo paper ladder")
    model = build_model(olmo_paper)
    values, log_weight, _ = prior_draws(model, olmo_paper, 20000, seed=11)
    weight = np.exp(log_weight - log_weight.max())
    assert weight.sum() ** 2 / (weight**2).sum() > 2000  # effective number of prior draws
    draws = resample(values, log_weight, 4000, seed=12)
    mean_accuracy = draws.pop("mean_accuracy")
    _, replicated = diagnostics.pointwise(design_fit("two-step", olmo_paper, as_posterior(model, draws)))
    loss, acc = np.exp(replicated["log_loss"][0]), replicated["accuracy"][0]

    ratio = np.quantile(loss / olmo_paper.s1_loss, [0.005, 0.5, 0.995], axis=0)
    assert (loss > 0).all()
    assert ((0.9 < ratio[1]) & (ratio[1] < 1.1)).all(), ratio[1]  # centred on the ladder's losses
    assert ((ratio[0] < 1) & (1 < ratio[2])).all()  # each observed loss inside the prior's 99% interval
    assert ((1 / 3 < ratio[0]) & (ratio[2] < 3)).all(), ratio  # ... which knows the scale: within a factor 3

    assert ((0 <= mean_accuracy) & (mean_accuracy <= 1)).all()
    # replicated values leave [0, 1] by measurement noise only: the Normal around a mean near 1, with a jitter from
    # its prior's tail (4% of them exceed 1, 1% by more than 0.02, at most 0.21 with a jitter of 0.07)
    assert ((0 <= acc) & (acc <= 1)).mean() > 0.95
    assert ((-0.02 <= acc) & (acc <= 1.02)).mean() > 0.98
    low, high = np.quantile(acc, [0.005, 0.995], axis=0)
    assert ((low < olmo_paper.s2_acc) & (olmo_paper.s2_acc < high)).all()  # each observed accuracy plausible


def test_merge_puts_overrides_over_the_defaults():
    assert merge(None) == DEFAULT_PRIORS and merge({}) == DEFAULT_PRIORS
    wider = Prior("HalfNormal", {"sigma": 0.05}, ("task",))
    merged = merge({"acc_jitter": wider})
    assert merged["acc_jitter"] == wider
    assert {n: p for n, p in merged.items() if n != "acc_jitter"} == {
        n: p for n, p in DEFAULT_PRIORS.items() if n != "acc_jitter"
    }
    merged["trend_mu"] = wider  # the result is the caller's: the defaults stay as they were
    assert DEFAULT_PRIORS["trend_mu"] == Prior("Normal", {"mu": 0.0, "sigma": 0.2})


def test_unknown_prior_names_are_one_error_listing_the_valid_ones(simulated_ds, simulated):
    bad = {"acc_jiter": Prior("HalfNormal", {"sigma": 0.05}), "alpha": Prior("Normal", {"mu": 0, "sigma": 1})}
    attempts = [
        lambda: merge(bad),
        lambda: build_model(simulated, bad),
        lambda: FitConfig(tasks=("task0",), selection=LadderSelection(), priors=bad),
    ]
    for attempt in attempts:
        with pytest.raises(BayesLadderError) as error:
            attempt()
        message = str(error.value)
        assert "\n" not in message
        assert "acc_jiter" in message and "'alpha'" in message
        assert all(name in message for name in DEFAULT_PRIORS)  # the valid names, to pick from


def test_an_overridden_prior_is_the_one_the_model_uses(simulated):
    """A sampled variable's prior, and the priors applied through Potentials (E's and the floor's offset)."""
    overrides = {
        "acc_jitter": Prior("HalfNormal", {"sigma": 0.05}, ("task",)),
        "irreducible": Prior("Normal", {"mu": 0.8, "sigma": 0.1}),
        "floor_offset": Prior("Normal", {"mu": 0.5, "sigma": 0.2}, ("task",)),
    }
    default, custom = build_model(simulated), build_model(simulated, overrides)
    point = jittered_point(default, seed=13)
    values = named_values(default, point)
    names = ["acc_jitter", "power_law_prior", "floor_prior"]
    before, after = model_terms(default, names, point), model_terms(custom, names, point)
    jitter = values["acc_jitter"]  # its log-transformed value: the Jacobian is the same in both models
    change = stats.halfnorm(scale=0.05).logpdf(jitter) - stats.halfnorm(scale=0.02).logpdf(jitter)
    np.testing.assert_allclose(after["acc_jitter"] - before["acc_jitter"], change, rtol=1e-9)
    e = values["E"]
    change = stats.norm(0.8, 0.1).logpdf(e).sum() - stats.norm(0.5, 0.3).logpdf(e).sum()
    assert after["power_law_prior"] - before["power_law_prior"] == pytest.approx(change, rel=1e-9)
    offset = logit(values["floor"]) - logit(simulated.chance)
    change = stats.norm(0.5, 0.2).logpdf(offset).sum() - stats.norm(0.0, 0.3).logpdf(offset).sum()
    assert after["floor_prior"] - before["floor_prior"] == pytest.approx(change, rel=1e-9)


def test_a_constant_prior_fixes_a_value_and_a_distribution_frees_it(simulated):
    """trend_sigma is a Constant by default (the trend's between-task SD); any prior can be made Constant too."""
    free = {rv.name for rv in build_model(simulated).free_RVs}
    assert "trend_sigma" not in free and "acc_size_scale" in free
    overrides = {"trend_sigma": Prior("Constant", {"value": 0.2}), "acc_size_scale": Prior("Constant", {"value": 0.1})}
    fixed = build_model(simulated, overrides)
    assert not {"trend_sigma", "acc_size_scale"} & {rv.name for rv in fixed.free_RVs}
    point = jittered_point(fixed, seed=14)
    terms = model_terms(fixed, ["trend"], point)
    # the trend's prior SD: its own 0.2 and the part of the sizes' residuals (SD 0.1) along ln N that it absorbs
    sd = np.hypot(0.2, 0.1 * np.sqrt(simulated.absorbed_covariance[1, 1]))
    np.testing.assert_allclose(terms["trend"], stats.norm(point["trend_mu"], sd).logpdf(point["trend"]))
    # the sizes' residuals: SD 0.1 along every direction without a mean or a trend in ln N
    residual = named_values(fixed, point)["size_residual"]
    np.testing.assert_allclose(simulated.residual_basis.T @ residual, 0.1 * point["size_residual_z"], rtol=1e-9)
    learned = build_model(simulated, {"trend_sigma": Prior("HalfNormal", {"sigma": 0.1})})
    assert "trend_sigma" in {rv.name for rv in learned.free_RVs}


# --- build_model: the variables every block stores (what predictions, reports and fit files read) ------------

STEP1 = {"centre_loss": ("task",), "slope_n": ("task",), "log_alpha_mu": None, "log_alpha_sigma": None,
         "loss_noise": ("task",), "loss_size_scale": None, "split_e": ("task",), "E": ("task",), "A": ("task",),
         "alpha": ("task",), "log_loss": None, "power_law_prior": None}  # fmt: skip
WITH_D = {"slope_d": ("task",), "log_beta_mu": None, "log_beta_sigma": None, "split_w": ("task",), "B": ("task",),
          "beta": ("task",)}  # fmt: skip
SHIFT_AND_FLOOR = {"level_logit": ("task",), "level": ("task",), "floor_split": ("task",), "floor": ("task",),
                   "floor_prior": None, "midpoint": ("task",), "acc_jitter": ("task",), "acc_size_scale": None,
                   "size_residual_z": None, "size_residual": ("size", "task"), "accuracy": None}  # fmt: skip
STEP2 = SHIFT_AND_FLOOR | {"log_k_mu": None, "log_k_sigma": None, "log_k": ("task",), "k": ("task",),
                           "trend_mu": None, "trend_sigma": None, "trend_sd": None, "trend": ("task",)}  # fmt: skip
DIRECT = SHIFT_AND_FLOOR | {"log_alpha_mu": None, "log_alpha_sigma": None, "log_beta_mu": None,
                            "log_beta_sigma": None, "alpha_z": ("task",), "beta_z": ("task",), "alpha": ("task",),
                            "beta": ("task",), "direct_slope_n": ("task",), "direct_slope_d": ("task",),
                            "direct_a": ("task",), "direct_b": ("task",)}  # fmt: skip
BLOCK_VARIABLES = {"loss": STEP1 | WITH_D, "loss_flops": STEP1, "accuracy": STEP2, "direct": DIRECT}


@pytest.mark.parametrize("design", list(DESIGNS))
def test_build_model_variables_and_dims_per_design(simulated, design):
    model = build_model(simulated, blocks=DESIGNS[design])
    expected = {}
    for block in DESIGNS[design]:
        expected |= BLOCK_VARIABLES[block]
    assert {name: model.named_vars_to_dims.get(name) for name in model.named_vars} == expected
    assert model.coords == {"task": ("task0", "task1"), "size": tuple(simulated.sizes)}


@pytest.mark.parametrize(
    "ladder, repeats, one_length, unused",
    [
        ("simulated", True, False, set()),
        ("simulated, one run per size", False, False, {"loss_size_scale"}),
        ("OLMo paper ladder at 1xC and reruns", True, False, set()),
        ("Gemstones", False, True, {"slope_d", "log_beta_mu", "log_beta_sigma", "loss_size_scale"}),
    ],
)
def test_a_ladder_leaves_out_the_step_1_terms_it_cannot_inform(request, ladder, repeats, one_length, unused):
    """Every run to the same D: no D term (B, beta and their priors); one run per size: no size effect apart from
    the run noise. The model leaves those out, and says so (unused_priors)."""
    data = ladder_data(request, ladder)
    assert (data.sizes_repeat, data.single_length) == (repeats, one_length)
    assert unused_priors(data) == unused
    absent = unused | ({"B", "beta", "split_w"} if one_length else set())
    assert set(build_model(data).named_vars) == set(STEP1 | WITH_D | STEP2) - absent


# --- FitConfig: bad settings are one error naming them, before any sampling ------------------------------------


@pytest.mark.parametrize(
    "settings, fragments",
    [
        ({"chains": 0}, ["chains must be a whole number >= 1 (got 0)"]),
        ({"draws": 2.5}, ["draws must be a whole number >= 1 (got 2.5)"]),
        ({"tune": -1}, ["tune must be a whole number >= 0 (got -1)"]),
        ({"target_accept": 1.0}, ["target_accept must lie strictly between 0 and 1 (got 1.0)"]),
        ({"designs": ("two-step", "three-step")}, ["three-step", "two-step, flops-step1, single-step"]),
        ({"designs": ()}, ["designs must be distinct"]),
        ({"designs": ("two-step", "two-step")}, ["designs must be distinct"]),
        ({"chains": "4", "target_accept": 0}, ["chains must", "(got '4')", "target_accept must"]),
    ],
)
def test_fit_config_refuses_bad_sampler_settings(settings, fragments):
    with pytest.raises(BayesLadderError) as error:
        FitConfig(tasks=("task0",), selection=LadderSelection(), **settings)
    message = str(error.value)
    assert "\n" not in message and message.startswith("bad fit configuration: ")
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize(
    "tasks, selection, fragments",
    [
        (("task0", "typo", "tpyo"), LadderSelection(), ["unknown task(s) typo, tpyo", "task0, task1"]),
        ((), LadderSelection(), ["no task given"]),
        (("task0",), LadderSelection(sizes=("20M", "9B")), ["unknown size(s) 9B", "160M, 20M, 40M, 80M"]),
        (("task0",), LadderSelection(lengths=("3xC",)), ["unknown length(s) 3xC"]),
        (("task0",), LadderSelection(sizes=("40M",)), ["all of one size (40M", "at least 2 sizes", "--sizes"]),
    ],
)
def test_fit_refuses_unknown_tasks_and_sizes_with_one_line_before_sampling(simulated_ds, tasks, selection, fragments):
    config = FitConfig(tasks=tasks, selection=selection, chains=1, draws=10, tune=10)
    for attempt in (lambda: config.check(simulated_ds), lambda: fit(simulated_ds, config)):
        with pytest.raises(BayesLadderError) as error:  # not a KeyError from deep inside
            attempt()
        message = str(error.value)
        assert "\n" not in message
        for fragment in fragments:
            assert fragment in message, message
