"""What training more rungs would do to a target's prediction, before they are trained (a preposterior analysis).

**Outcomes.** The outcomes of planned rungs are simulated from the fit's stacked posterior predictive, as
``bayes.predict`` draws a target: each of J outcomes comes from one design (in proportion to the stacking weights)
and one of its posterior draws. A rung's outcome is what the model would see of it: its final task loss (step 1)
and its accuracy at every block of checkpoints step 2 keeps (``bayes.data``; the rung is evaluated on the schedule of
a similar run of the ladder). The rungs of one size share that size's own effects (a ladder size's from its
posterior, a new size's fresh); each run has its own run noise, each block its measurement noise, and a size beyond
the ladder its design's discrepancy (kappa x e-folds of N beyond the largest rung, a logit shift per task; a planned
rung's tokens per parameter are taken to lie within the ladder's, as the ladder's lengths do).

**Update.** Each design is updated on each outcome by importance weighting of its posterior draws: a draw's weight is
the likelihood of the outcome under it, through the model's own densities (``bayes.curves``). A new size's own
effects are latent and integrated out per draw: its loss effect exactly (the grouped normal of step 1), its step-2
shift by a Laplace approximation (Gauss-Newton about the mode). For a ladder size both are its posterior's.

**Target.** Under each draw the target's accuracy is, linearised in its size effects and the discrepancy, normal:
mean at the effects' mean (a fresh size: given the planned new sizes' outcomes, whose shifts share with the target's
the part of the residuals that the fitted level and trend absorbed, ``curves.new_sizes_covariance``, so that a new
size near the target narrows it as a new point narrows a regression's prediction; the size of a planned rung: their
posterior given its outcome), variance
= slope^2 x (size effects' variance + discrepancy SD^2) + the measurement variance of a final value (the discrepancy
at the target's e-folds of N and of tokens per parameter beyond the ladder and the planned rungs,
``Calibration.shift_sd``). The 90%
interval is that of the weighted mixture over draws and designs; its width, averaged over tasks and outcomes, is the
expected width after the rungs. The variance splits into four terms that say what a rung narrows: the curves'
parameters (the spread of the per-draw means), the size effects, the discrepancy and the measurement noise.

Approximations (checked against refits on simulated outcomes in ``benchmarks/bench_plan.py``):

* each task's weights use that task's observations alone: what the other tasks' outcomes would say about the
  hyperparameters the tasks share (trend_mu, log_k_mu, loss_size_scale, acc_size_scale) is left out;
* the stacking weights and kappas stay as the nested backtests set them for the target's distance beyond the fitted
  ladder (only the distances the kappas multiply shrink as rungs approach the target), and so do the data's scales
  (N_ref, D_ref, loss_scale, step-2 centre and spread);
* each planned new size's outcomes are simulated, and weigh the draws, with its own shift's marginal (as
  ``bayes.predict`` draws a new size); the covariance of the planned sizes' shifts acts only in the target's
  conditional shift;
* importance weights degenerate when an outcome says much more than the posterior is wide; the effective sample
  size is reported with every evaluation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp, ndtr

from bayesladder.bayes import curves
from bayesladder.bayes.data import ModelData, step2_blocks
from bayesladder.bayes.predict import (
    INTERVALS,
    QUANTILES,
    Draws,
    new_size_shift,
    new_sizes_covariance,
    relative_curve,
)
from bayesladder.extrapolation import Extent
from bayesladder.ladder import step2_kept
from bayesladder.targets import Target

OPS = curves.NUMPY_OPS
OUTCOMES = 64  # simulated outcomes per evaluation
MAX_DRAWS = 2000  # posterior draws per design
CRPS_SAMPLES = 256  # draws of the target's predictive per outcome and task for its expected CRPS (16x for one outcome)
LAPLACE_STEPS = 4  # Gauss-Newton steps: 3 leave the log-likelihood within 1e-4 of its converged value
TERMS = ("parameters", "size effects", "discrepancy", "noise")  # the target's predictive variance, split
VARIANCES = TERMS[1:]  # the terms that are variances under each draw (the first is the spread of their means)
# what a rung can teach the model, by kind: the noise of runs and measurements, and what carries a prediction to
# sizes beyond the ladder (the exponent of N, step 2's trend in N, the scales of a new size's own effects)
LEARNS = {
    "noise": ("loss_noise", "acc_jitter"),
    "extrapolation": ("alpha", "trend", "loss_size_scale", "acc_size_scale"),
}
SAME_SIZE = 1e-3  # |ln N1 - ln N2| below which two models are of one size


@dataclass(frozen=True, eq=False)
class Rung:
    """A run that could be trained: its size (a label; the rungs and the target of one size share its effects),
    length, N and D, the tokens of its evaluated checkpoints (ascending, the last at D) and, per checkpoint and
    task, its task loss relative to its final one (the shape a similar run of the ladder showed: the learning-rate
    schedule makes a checkpoint's loss higher than that of a run trained to its D)."""

    size: str
    length: str
    n_params: float
    tokens: float
    checkpoints: np.ndarray  # (checkpoints,)
    loss_profile: np.ndarray  # (checkpoints, tasks); 1 over the final checkpoints
    kind: str  # "rerun" of a fitted cell, "new length" of a fitted size, or "new size"

    @property
    def flops(self) -> float:
        return 6.0 * self.n_params * self.tokens

    @property
    def name(self) -> str:
        return f"{self.size}-{self.length}" + (" (rerun)" if self.kind == "rerun" else "")

    def seed(self) -> int:
        return zlib.crc32(f"{self.size}|{self.length}|{self.n_params:.6g}|{self.tokens:.6g}|{self.kind}".encode())


@dataclass
class Outcome:
    """J simulated outcomes of one rung (arrays over outcomes first, tasks last)."""

    rung: Rung
    checkpoint_loss: np.ndarray | None  # (J, checkpoints, T); None when no fitted design models the loss
    blocks: np.ndarray  # (B, checkpoints per block) indices into the rung's checkpoints
    block_acc: np.ndarray  # (J, B, T)
    final_count: int

    @property
    def final_loss(self) -> np.ndarray:
        return self.checkpoint_loss[:, -self.final_count :].mean(axis=1)

    @property
    def block_loss(self) -> np.ndarray:
        return self.checkpoint_loss[:, self.blocks].mean(axis=2)


@dataclass
class Evaluation:
    """The target's 90% interval width per outcome and task, the variance terms of :data:`TERMS`, the effective
    sample size of the importance weights (in draws; the smallest over designs), how much the posterior SD of each
    kind of parameter of :data:`LEARNS` shrinks (mean over its parameters, designs weighted as stacked) and the
    target's expected CRPS per outcome and task (:func:`expected_crps`)."""

    widths: np.ndarray  # (J, T)
    terms: dict[str, np.ndarray]  # name -> (J, T) variance
    ess: np.ndarray  # (J, T)
    learned: dict[str, np.ndarray]  # kind of LEARNS -> (J, T) relative reduction of the parameters' posterior SD
    crps: np.ndarray  # (J, T)

    @property
    def width(self) -> float:
        """Expected mean width over tasks."""
        return float(self.widths.mean())

    @property
    def width_se(self) -> float:
        """Monte Carlo standard error of :attr:`width` (over the simulated outcomes)."""
        per_outcome = self.widths.mean(axis=1)
        return float(per_outcome.std(ddof=1) / np.sqrt(len(per_outcome))) if len(per_outcome) > 1 else 0.0

    @property
    def expected_crps(self) -> float:
        """Expected CRPS of the target's accuracy, mean over tasks and outcomes."""
        return float(self.crps.mean())

    def term(self, name: str) -> float:
        return float(self.terms[name].mean())

    def learns(self, kind: str) -> float:
        return float(self.learned[kind].mean())


class DesignDraws:
    """One fitted design's posterior draws, data, stacking weight (at the target's distance) and discrepancy
    (``Calibration.shift_sd``), with the per-draw curves the update needs."""

    def __init__(self, name: str, posterior, data: ModelData, calibration, weight: float, max_draws: int):
        self.name, self.data, self.weight = name, data, weight
        self.calibration = calibration
        self.draws = Draws(posterior, max_draws)
        self.has_loss = name != "single-step"

    @property
    def count(self) -> int:
        return self.draws.count

    def shift_sd(self, efolds: tuple[float, float]) -> float:
        """The logit SD of the design's discrepancy at (e-folds of N, of tokens per parameter) beyond the ladder."""
        return self.calibration.shift_sd(self.name, efolds)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.draws[name]

    def curve(self, x: float, y: float) -> np.ndarray:
        """Relative step-1 loss at (x, y): (S, T)."""
        return relative_curve(self.draws, self.name, x, y)

    def new_size_shift(self, x: float) -> tuple[np.ndarray, np.ndarray]:
        """(S, T) mean and variance of the step-2 shift of a size outside the ladder at x (``predict``'s)."""
        return new_size_shift(self.draws, self.data, x)

    def new_sizes_covariance(self, xs: np.ndarray) -> np.ndarray:
        """(S, T, K, K) covariance of the own shifts of K distinct sizes outside the ladder (``predict``'s)."""
        return new_sizes_covariance(self.draws, self.data, xs)

    def size_var(self) -> np.ndarray:
        """(S,) variance of a size's loss effect (0 on a ladder without reruns, whose model has none)."""
        if not self.data.sizes_repeat:
            return np.zeros(self.count)
        return self["loss_size_scale"][:, 0] ** 2

    def old_residuals(self, size: int, task: int) -> np.ndarray:
        """(S, points) log-loss residuals of a ladder size's fitted runs for one task."""
        data = self.data
        points = np.flatnonzero((data.s1_size == size) & (data.s1_task == task))
        if len(points) == 0:
            return np.zeros((self.count, 0))
        relative = relative_curve(self.draws, self.name, data.s1_x[points], data.s1_y[points], task=task)
        return curves.log_loss_residual(data.s1_loss[points], data.loss_scale[task], relative, OPS)

    def step2_argument(self, task: int, x: float, block_y: np.ndarray, block_loss: np.ndarray | None) -> np.ndarray:
        """The step-2 sigmoid's argument without the size's own shift, for blocks of one run: (S, B) for the direct
        design, (J, S, B) for a design with a loss (``block_loss`` (J, B))."""
        t = task
        if not self.has_loss:
            a, b = self["direct_a"][:, [t]], self["direct_b"][:, [t]]
            alpha, beta = self["alpha"][:, [t]], self["beta"][:, [t]]
            return curves.direct_argument(x, block_y[None, :], self["midpoint"][:, [t]], a, b, alpha, beta, OPS)
        u = (block_loss - self.data.step2_center[t]) / self.data.step2_spread[t]
        base = self["midpoint"][:, t] + self["trend"][:, t] * x
        return base[None, :, None] - self["k"][:, t][None, :, None] * u[:, None, :]


class Preposterior:
    """Expected width of a target's 90% accuracy interval after planned rungs (see the module docstring)."""

    def __init__(
        self,
        fitted,
        target: Target,
        target_size: str | None = None,
        outcomes: int = OUTCOMES,
        max_draws: int = MAX_DRAWS,
        seed: int = 0,
    ):
        calibration = fitted.calibration
        weights = fitted.weights_at(target.n_params, target.tokens)
        every = [
            DesignDraws(name, d.posterior, d.data, calibration, weights[name], max_draws)
            for name, d in fitted.designs.items()
        ]
        self.designs = [d for d in every if d.weight > 0]
        self.loss_design = next((d for d in every if d.has_loss), None)
        self.data = fitted.data
        self.target = target
        self.target_size = target_size
        self.extent = fitted.extent()
        self.n_outcomes, self.seed = outcomes, seed
        rng = np.random.default_rng(seed)
        self.draw = {d.name: rng.integers(d.count, size=outcomes) for d in every}  # each outcome's draw of a design
        self._latents: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._outcomes: dict[tuple[Rung, str], Outcome] = {}
        self._before: dict[str, dict] | None = None

    # ------------------------------------------------------------ sizes
    def x(self, n_params: float) -> float:
        return float(np.log(n_params) - self.data.log_n_ref)

    def rung_efolds(self, n_params: float) -> tuple[float, float]:
        """A planned size's distance beyond the fitted ladder: e-folds of N; its tokens per parameter within the
        ladder's (see the module docstring)."""
        return self.extent.efolds_beyond(n_params, n_params * self.extent.most_tokens_per_param)[0], 0.0

    def target_efolds(self, rungs: list[Rung]) -> tuple[float, float]:
        """The target's distance beyond the ladder and the planned rungs, in N and in tokens per parameter."""
        extent = Extent(self.extent.n_params + tuple(r.n_params for r in rungs),
                        self.extent.tokens + tuple(r.tokens for r in rungs))  # fmt: skip
        return extent.efolds_beyond(self.target.n_params, self.target.tokens)

    def ladder_size(self, size: str) -> int | None:
        return self.data.sizes.index(size) if size in self.data.sizes else None

    def target_group(self, rungs: list[Rung]) -> str:
        """The size label the target shares effects with: its own, a rung's or ladder size's of the same N, or none."""
        if self.target_size is not None:
            return self.target_size
        known = {r.size: r.n_params for r in rungs}
        known |= {s: float(np.exp(x + self.data.log_n_ref)) for s, x in zip(self.data.sizes, self.data.size_x)}
        for size, n in known.items():
            if abs(np.log(n) - np.log(self.target.n_params)) < SAME_SIZE:
                return size
        return "\0target"  # a size of its own

    def latents(self, size: str, n_params: float, design: DesignDraws) -> tuple[np.ndarray, np.ndarray]:
        """(loss effect, step-2 shift incl. the discrepancy), each (J, T): a size's own effects in each outcome of a
        design's predictive, drawn once per size so that every rung of the size shares them. The loss effect comes
        from the design that models the loss."""
        key = (size, design.name)
        if key in self._latents:
            return self._latents[key]
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{size}|{design.name}".encode())])
        shape = (self.n_outcomes, len(self.data.tasks))
        index = self.ladder_size(size)
        loss_effect = np.zeros(shape)
        if self.loss_design is not None:
            a = self.draw[self.loss_design.name]
            if index is None:
                mean, var = 0.0, self.loss_design.size_var()[a][:, None]
            else:
                mean, var = self._ladder_loss_effect(self.loss_design, index)
                mean, var = mean[a], var[a]
            loss_effect = mean + np.sqrt(var) * rng.standard_normal(shape)
        b = self.draw[design.name]
        if index is None:
            mean, var = design.new_size_shift(self.x(n_params))
            own = mean[b] + np.sqrt(var[b]) * rng.standard_normal(shape)
        else:
            own = design.draws.at_size("size_residual", index)[b]
        shift = own + design.shift_sd(self.rung_efolds(n_params)) * rng.standard_normal(shape)
        self._latents[key] = (loss_effect, shift)
        return self._latents[key]

    def _ladder_loss_effect(self, design: DesignDraws, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(S, T) mean and variance of a ladder size's loss effect given its fitted runs."""
        mean, var = np.zeros((design.count, len(self.data.tasks))), np.zeros((design.count, len(self.data.tasks)))
        noise_var, size_var = design["loss_noise"] ** 2, design.size_var()
        for t in range(len(self.data.tasks)):
            old = design.old_residuals(index, t)
            mean[:, t], var[:, t] = curves.size_effect_given_residuals(
                old.sum(axis=1), old.shape[1], noise_var[:, t], size_var
            )
        return mean, var

    # ------------------------------------------------------------ outcomes
    def outcome(self, rung: Rung, design: DesignDraws) -> Outcome:
        """The rung's J outcomes simulated from a design's predictive (drawn once; a plan's rungs keep theirs as
        others are added). Losses come from the design that models them (the same draws when that is ``design``)."""
        key = (rung, design.name)
        if key in self._outcomes:
            return self._outcomes[key]
        rng = np.random.default_rng([self.seed, rung.seed(), zlib.crc32(design.name.encode())])
        data, n_tasks = self.data, len(self.data.tasks)
        loss_effect, shift = self.latents(rung.size, rung.n_params, design)
        tokens = np.asarray(rung.checkpoints, dtype=float)
        y = np.log(tokens) - data.log_d_ref
        kept = np.arange(len(tokens))[step2_kept(len(tokens))]
        blocks = kept[step2_blocks(len(kept))]
        block_y = y[blocks].mean(axis=1)
        x = self.x(rung.n_params)
        checkpoint_loss = block_loss = None
        if self.loss_design is not None:
            losses = self.loss_design
            a = self.draw[losses.name]
            final = losses.data.loss_scale * losses.curve(x, float(y[-1]))[a]  # (J, T)
            noise = losses["loss_noise"][a] * rng.standard_normal((self.n_outcomes, n_tasks))
            checkpoint_loss = (final * np.exp(loss_effect + noise))[:, None, :] * rung.loss_profile[None, :, :]
            block_loss = checkpoint_loss[:, blocks].mean(axis=2)
        b = self.draw[design.name]
        block_acc = np.empty((self.n_outcomes, blocks.shape[0], n_tasks))
        for t in range(n_tasks):
            argument = design.step2_argument(t, x, block_y, None if block_loss is None else block_loss[:, :, t])
            argument = argument[np.arange(self.n_outcomes), b] if argument.ndim == 3 else argument[b]  # (J, B)
            floor_ = design["floor"][b, t][:, None]
            mean = curves.sigmoid_accuracy(argument + shift[:, t][:, None], floor_, OPS)
            evaluations = data.n_questions[t] * blocks.shape[1]
            sd = curves.accuracy_sd(mean, evaluations, design["acc_jitter"][b, t][:, None], OPS)
            block_acc[:, :, t] = np.clip(mean + sd * rng.standard_normal(mean.shape), 0.0, 1.0)
        outcome = Outcome(rung, checkpoint_loss, blocks, block_acc, data.final_count)
        self._outcomes[key] = outcome
        return outcome

    # ------------------------------------------------------------ update and target
    def evaluate(self, rungs: list[Rung] | tuple[Rung, ...] = ()) -> Evaluation:
        """The target's interval after ``rungs`` (none: as the fit stands), per simulated outcome and task.

        Each design is updated on outcomes of its own predictive: updated on another design's, its importance weights
        collapse on the designs' disagreement at cells both already fit (the direct design's smooth curve in D
        against the checkpoints' real shape), which real runs do not show. Where the designs disagree about the
        target, that disagreement is taken to shrink as each design's own uncertainty about the target's mean does
        (the ratio of the SDs of its per-draw means after and before)."""
        rungs = list(rungs)
        n_outcomes = self.n_outcomes if rungs else 1
        efolds = self.target_efolds(rungs)
        group = self.target_group(rungs)
        parts = {
            d.name: self._update(d, [self.outcome(r, d) for r in rungs], n_outcomes, group, efolds)
            for d in self.designs
        }
        if self._before is None:
            before = (
                parts
                if not rungs
                else {d.name: self._update(d, [], 1, group, self.target_efolds([])) for d in self.designs}
            )
            self._before = {name: dict(part) for name, part in before.items()}
        weights = np.array([d.weight for d in self.designs])
        weights = weights / weights.sum()
        centre_before = {name: _centre(p)[0] for name, p in self._before.items()}
        overall = sum(w * centre_before[d.name] for w, d in zip(weights, self.designs))
        for d in self.designs:
            part = parts[d.name]
            centre, spread = _centre(part)
            _, spread_before = _centre(self._before[d.name])
            # the weighted spread of S means shrinks by 1 - sum(w^2) from the weights' own noise: undone here
            debias, debias_before = (_debias(p["log_weight"]) for p in (part, self._before[d.name]))
            ratio = debias / debias_before * np.sqrt(spread / np.maximum(spread_before, 1e-300))
            move = overall + ratio * (centre_before[d.name] - overall) - centre
            part["mean"] = (
                centre[:, None, :] + move[:, None, :] + debias[:, None, :] * (part["mean"] - centre[:, None, :])
            )
        parts = [parts[d.name] for d in self.designs]
        w = np.concatenate([wd * np.exp(p["log_weight"]) for wd, p in zip(weights, parts)], axis=1)
        mean = np.concatenate([p["mean"] for p in parts], axis=1)
        variances = {name: np.concatenate([p[name] for p in parts], axis=1) for name in VARIANCES}
        sd = np.sqrt(sum(variances.values()))
        low, high = (QUANTILES[q] for q in INTERVALS["90%"])
        widths = mixture_quantile(mean, sd, w, high) - mixture_quantile(mean, sd, w, low)
        terms = {"parameters": (w * (mean - (w * mean).sum(axis=1)[:, None, :]) ** 2).sum(axis=1)}
        terms |= {name: (w * v).sum(axis=1) for name, v in variances.items()}
        learned = {kind: sum(wd * p["learned"][kind] for wd, p in zip(weights, parts)) for kind in LEARNS}
        ess = np.min([1.0 / np.exp(logsumexp(2 * p["log_weight"], axis=1)) for p in parts], axis=0)
        crps = expected_crps(mean, sd, w, np.random.default_rng([self.seed, len(rungs)]))
        return Evaluation(widths, terms, ess, learned, crps)

    def _update(self, design: DesignDraws, outcomes: list[Outcome], n_outcomes: int, group: str, efolds):
        """Per task: log importance weights of the design's draws for each outcome, and the target's normal
        components under each draw (its mean, the mean at the ladder's largest size, the variances of
        :data:`VARIANCES`), each (J, S, T)."""
        data, target = self.data, self.target
        shape = (n_outcomes, design.count, len(data.tasks))
        log_lik = np.zeros(shape)
        out = {name: np.zeros(shape) for name in ("mean", *VARIANCES)}
        by_size: dict[str, list[Outcome]] = {}
        for o in outcomes:
            by_size.setdefault(o.rung.size, []).append(o)
        x_t = self.x(target.n_params)
        y_t = float(np.log(target.tokens) - data.log_d_ref)
        noise_var, size_var = (design["loss_noise"] ** 2, design.size_var()) if design.has_loss else (None, None)
        fresh_t = design.new_size_shift(x_t)
        fresh = {  # the prior of each planned new size's own shift, and the variance of its discrepancy
            size: (*design.new_size_shift(self.x(members[0].rung.n_params)), self._discrepancy_var(design, members))
            for size, members in by_size.items()
            if self.ladder_size(size) is None
        }
        target_index = self.ladder_size(group)
        curve_t = design.curve(x_t, y_t) if design.has_loss else None
        for t in range(len(data.tasks)):
            loss_post = (np.zeros((1, design.count)), size_var[None, :] if design.has_loss else None)
            shift_post = (fresh_t[0][None, :, t], fresh_t[1][None, :, t])
            if target_index is not None:
                shift_post = (design.draws.at_size("size_residual", target_index)[None, :, t], np.zeros((1, 1)))
                if design.has_loss:
                    old = design.old_residuals(target_index, t)
                    loss_post = curves.size_effect_given_residuals(
                        old.sum(axis=1)[None, :], old.shape[1], noise_var[None, :, t], size_var[None, :]
                    )
            seen = {}  # each planned new size's x and its shift's posterior and prior mean and variance, (J or 1, S)
            for size, members in by_size.items():
                index = self.ladder_size(size)
                x = self.x(members[0].rung.n_params)
                if design.has_loss:
                    ll, total, count = self._loss_likelihood(design, index, members, x, t, noise_var[:, t], size_var)
                    log_lik[..., t] += ll
                    if size == group:
                        loss_post = curves.size_effect_given_residuals(total, count, noise_var[None, :, t], size_var)
                argument, acc, evaluations = self._step2_points(design, members, x, t)
                floor_ = design["floor"][:, t][None, :, None]
                jitter = design["acc_jitter"][:, t][None, :, None]
                if index is not None:
                    argument = argument + design.draws.at_size("size_residual", index)[None, :, t, None]
                    mean = curves.sigmoid_accuracy(argument, floor_, OPS)
                    sd = curves.accuracy_sd(mean, evaluations, jitter, OPS)
                    log_lik[..., t] += curves.normal_logp(acc, mean, sd, OPS).sum(axis=-1)
                else:
                    prior_mean, prior_var, discrepancy_var = fresh[size]
                    prior_mean, prior_var = prior_mean[None, :, t], prior_var[None, :, t] + discrepancy_var
                    ll, r_mean, r_var = latent_shift(argument, acc, evaluations, floor_, jitter, prior_mean, prior_var)
                    log_lik[..., t] += ll
                    seen[size] = (x, r_mean, r_var, prior_mean, prior_var)
            if seen and target_index is None:
                shift_post = self._joint_shift(design, t, seen, fresh, group, x_t, fresh_t)
            self._target(design, t, x_t, y_t, curve_t, loss_post, shift_post, efolds, out)
        out["log_weight"] = log_lik - logsumexp(log_lik, axis=1, keepdims=True)
        out["learned"] = {kind: _sd_reduction(design, names, out["log_weight"]) for kind, names in LEARNS.items()}
        return out

    def _discrepancy_var(self, design: DesignDraws, members: list[Outcome]) -> float:
        """The variance of a planned new size's discrepancy (beyond the fitted ladder), which its simulated outcomes
        carry (:meth:`latents`)."""
        return design.shift_sd(self.rung_efolds(members[0].rung.n_params)) ** 2

    def _joint_shift(self, design, t, seen, fresh, group, x_t, fresh_t):
        """The target's own step-2 shift given the planned new sizes' outcomes: (mean, variance), each (J, S).

        New sizes' shifts are jointly normal under a draw (``curves.new_sizes_covariance``: they share what the
        fitted level and trend absorbed), so a planned size between the ladder and the target narrows the target's
        shift as a new point narrows a regression's prediction interval. Each planned size's outcomes enter as the
        Gaussian likelihood its Laplace posterior implies; the target is one of them where it shares that size."""
        sizes = list(seen)
        own = group not in seen  # the target is a size of its own, beside the planned ones
        xs = [seen[size][0] for size in sizes] + ([x_t] if own else [])
        covariance = design.new_sizes_covariance(np.array(xs))[:, t]  # (S, K, K)
        covariance = covariance + np.diag([fresh[size][2] for size in sizes] + ([0.0] if own else []))
        prior_mean = np.stack([fresh[size][0][:, t] for size in sizes] + ([fresh_t[0][:, t]] if own else []), axis=-1)
        prior_precision = np.linalg.inv(covariance)
        # each planned size's data: precision = the posterior's - the prior's; information = precision x its value
        precision, information = [], []
        for _, r_mean, r_var, mean, var in (seen[size] for size in sizes):
            precision.append(1.0 / r_var - 1.0 / var)
            information.append(r_mean / r_var - mean / var)
        if own:
            precision.append(np.zeros((1, 1)))
            information.append(np.zeros((1, 1)))
        shape = np.broadcast_shapes(*(p.shape for p in precision + information))
        precision = np.stack([np.broadcast_to(p, shape) for p in precision], axis=-1)  # (J, S, K)
        information = np.stack([np.broadcast_to(i, shape) for i in information], axis=-1)
        covariance_after = np.linalg.inv(prior_precision + precision[..., None, :] * np.eye(len(xs)))
        mean = (covariance_after @ ((prior_precision @ prior_mean[..., None])[..., 0] + information)[..., None])[..., 0]
        k = len(xs) - 1 if own else sizes.index(group)
        return mean[..., k], covariance_after[..., k, k]

    def _loss_likelihood(self, design, index, members, x, t, noise_var, size_var):
        """ln p(the members' final losses | draw), the size's effect integrated out given its fitted runs: (J, S);
        and the residuals' total and count (for the size effect's posterior)."""
        scale = design.data.loss_scale[t]
        new = np.stack(
            [
                curves.log_loss_residual(
                    o.final_loss[:, t][:, None],
                    scale,
                    design.curve(x, float(np.log(o.rung.tokens) - self.data.log_d_ref))[:, t][None, :],
                    OPS,
                )
                for o in members
            ],
            axis=-1,
        )  # (J, S, n)
        old = design.old_residuals(index, t) if index is not None else np.zeros((design.count, 0))
        both = np.concatenate([np.broadcast_to(old, new.shape[:2] + old.shape[1:]), new], axis=-1)
        ll = _group_logp(both, noise_var, size_var) - _group_logp(old, noise_var, size_var)[None, :]
        return ll, both.sum(axis=-1), both.shape[-1]

    def _step2_points(self, design, members, x, t):
        """The sigmoid's argument without the size's shift (J or 1, S, B), the accuracies (J, 1, B) and the number of
        question evaluations behind each (B,), over the blocks of every member rung."""
        arguments, accs, evaluations = [], [], []
        for o in members:
            tokens = np.asarray(o.rung.checkpoints, dtype=float)
            block_y = (np.log(tokens) - self.data.log_d_ref)[o.blocks].mean(axis=1)
            block_loss = o.block_loss[:, :, t] if design.has_loss else None
            argument = design.step2_argument(t, x, block_y, block_loss)
            arguments.append(argument if argument.ndim == 3 else argument[None])
            accs.append(o.block_acc[:, None, :, t])
            evaluations.append(np.full(o.blocks.shape[0], self.data.n_questions[t] * o.blocks.shape[1]))
        width = max(a.shape[0] for a in arguments)
        arguments = [np.broadcast_to(a, (width, *a.shape[1:])) for a in arguments]
        return np.concatenate(arguments, axis=-1), np.concatenate(accs, axis=-1), np.concatenate(evaluations)

    def _target(self, design, t, x_t, y_t, curve_t, loss_post, shift_post, efolds, out):
        """The target's normal components under each draw, for task t, written into ``out``."""
        data = self.data
        floor_ = design["floor"][:, t][None, :]
        shift_mean, shift_var = shift_post
        if design.has_loss:
            loss_mean, loss_var = loss_post
            expected = design.data.loss_scale[t] * curve_t[:, t][None, :] * np.exp(loss_mean)
            u = (expected - design.data.step2_center[t]) / design.data.step2_spread[t]
            k = design["k"][:, t][None, :]
            argument = design["midpoint"][:, t] + design["trend"][:, t] * x_t - k * u + shift_mean
            effect_var = shift_var + (k * expected / design.data.step2_spread[t]) ** 2 * loss_var
        else:
            argument = design.step2_argument(t, x_t, np.array([y_t]), None)[:, 0][None, :] + shift_mean
            effect_var = shift_var
        mean = curves.sigmoid_accuracy(argument, floor_, OPS)
        slope = curves.accuracy_logit_slope(mean, floor_)
        evaluations = data.n_questions[t] * data.final_count
        out["mean"][..., t] = mean
        out["size effects"][..., t] = slope**2 * effect_var
        out["discrepancy"][..., t] = (slope * design.shift_sd(efolds)) ** 2
        out["noise"][..., t] = curves.accuracy_sd(mean, evaluations, design["acc_jitter"][:, t][None, :], OPS) ** 2


def _sd_reduction(design: DesignDraws, names: tuple[str, ...], log_weight: np.ndarray) -> np.ndarray:
    """1 - weighted SD / SD of each named parameter the design has (per task; a shared one is the same for every
    task), averaged over them: (J, T)."""
    weight = np.exp(log_weight)
    out = []
    for name in names:
        if name not in design.draws or np.ptp(design[name]) == 0:
            continue
        value = np.broadcast_to(design[name], weight.shape[1:])[None]  # (1, S, T)
        centre = (weight * value).sum(axis=1, keepdims=True)
        sd = np.sqrt((weight * (value - centre) ** 2).sum(axis=1)) * _debias(log_weight)
        out.append(1.0 - sd / value.std(axis=1))
    return np.mean(out, axis=0) if out else np.zeros(weight.shape[::2])


def _debias(log_weight: np.ndarray) -> np.ndarray:
    """1 / sqrt(1 - sum of squared weights): what the weighted SD of S draws' means is short of the SD (J, T).

    1 where every weight sits on one draw (an outcome far narrower than the posterior): that draw's spread is 0
    whatever the factor, and an infinite factor would turn the zero-weight draws' terms into NaN. Such updates are
    flagged by their effective sample size (``Evaluation.ess``)."""
    shortfall = 1.0 - np.exp(logsumexp(2 * log_weight, axis=1))
    return 1.0 / np.sqrt(np.where(shortfall > 0, shortfall, 1.0))


def _centre(part: dict, name: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and variance of a design's per-draw target means (or ``name``): (J, T) each."""
    weight = np.exp(part["log_weight"])
    centre = (weight * part[name]).sum(axis=1)
    return centre, (weight * (part[name] - centre[:, None, :]) ** 2).sum(axis=1)


def _group_logp(residual: np.ndarray, noise_var: np.ndarray, size_var: np.ndarray) -> np.ndarray:
    """ln density of one group's residuals (..., S, n) sharing a size effect (curves.grouped_normal_logp): (..., S)."""
    membership = np.ones((residual.shape[-1], 1))
    return curves.grouped_normal_logp(residual, membership, noise_var[:, None], size_var[:, None], OPS)[..., 0]


def latent_shift(argument, acc, evaluations, floor_, jitter, prior_mean, prior_var):
    """A new size's step-2 shift r ~ Normal(prior_mean, prior_var) integrated out of the likelihood of its accuracies
    (Laplace).

    ``argument``: (J, S, B) sigmoid arguments without r; ``acc``: (J, 1, B); ``prior_mean``, ``prior_var``: (1, S).
    Returns the marginal log-likelihood and r's posterior mean and variance, each (J, S). The mode is found by
    Gauss-Newton steps (the noise's dependence on the mean left out of the steps, kept in the density).
    """
    r = np.broadcast_to(prior_mean, np.broadcast_shapes(argument.shape, acc.shape)[:-1]).copy()
    prior_precision = 1.0 / prior_var
    for _ in range(LAPLACE_STEPS):
        p = OPS.sigmoid(argument + r[..., None])
        mean = floor_ + (curves.CEILING - floor_) * p
        gradient = (curves.CEILING - floor_) * p * (1 - p)
        var = curves.accuracy_sd(mean, evaluations, jitter, OPS) ** 2
        precision = (gradient**2 / var).sum(axis=-1) + prior_precision
        r = r + (((acc - mean) * gradient / var).sum(axis=-1) - (r - prior_mean) * prior_precision) / precision
    mean = curves.sigmoid_accuracy(argument + r[..., None], floor_, OPS)
    sd = curves.accuracy_sd(mean, evaluations, jitter, OPS)
    prior = curves.normal_logp(r, prior_mean, np.sqrt(prior_var), OPS)
    log_lik = curves.normal_logp(acc, mean, sd, OPS).sum(axis=-1) + prior
    return log_lik + 0.5 * np.log(2 * np.pi / precision), r, 1.0 / precision


def expected_crps(mean: np.ndarray, sd: np.ndarray, weight: np.ndarray, rng, samples: int = CRPS_SAMPLES) -> np.ndarray:
    """The expected CRPS of the mixture sum_i weight_i Normal(mean_i, sd_i) (over axis 1 of (J, components, T) arrays)
    for an actual drawn from that mixture itself, as the preposterior's outcomes are: half the mean absolute difference
    of two of its draws (Gneiting and Raftery 2007), by Monte Carlo from ``samples`` x J draws in all per task: (J, T)."""
    n_outcomes, n_components, n_tasks = mean.shape
    count = max(samples, samples * 16 // n_outcomes)
    cumulative = np.cumsum(weight, axis=1)
    cumulative /= cumulative[:, -1:, :]
    out = np.empty((n_outcomes, n_tasks))
    rank = 2.0 * np.arange(1, count + 1) - count - 1
    for j in range(n_outcomes):
        for t in range(n_tasks):
            pick = np.minimum(np.searchsorted(cumulative[j, :, t], rng.random(count)), n_components - 1)
            x = np.sort(mean[j, pick, t] + sd[j, pick, t] * rng.standard_normal(count))
            out[j, t] = (rank * x).sum() / (count * (count - 1))  # half of E|X - X'|
    return out


def mixture_quantile(mean: np.ndarray, sd: np.ndarray, weight: np.ndarray, q: float, steps: int = 24) -> np.ndarray:
    """The q-quantile of sum_i weight_i Normal(mean_i, sd_i) over axis 1 of (J, components, T) arrays, by bisection
    from the mixture's mean +- 4.5 of its SDs (which holds the 5% and 95% quantiles of any distribution, by
    Cantelli's inequality): 24 halvings leave an error below 1e-6 of the SD."""
    centre = (weight * mean).sum(axis=1)
    spread = np.sqrt((weight * (sd**2 + (mean - centre[:, None, :]) ** 2)).sum(axis=1))
    low, high = centre - 4.5 * spread, centre + 4.5 * spread
    for _ in range(steps):
        mid = 0.5 * (low + high)
        below = (weight * ndtr((mid[:, None, :] - mean) / sd)).sum(axis=1) < q
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    return 0.5 * (low + high)
