"""Simulated ladders from known parameters, shared by the tests (parameter recovery, calibration).

The truth follows the model's own two steps: L(N, D) = E + A (N/N_ref)^-alpha + B (D/D_ref)^-beta,
then accuracy = floor + (1 - floor) sigmoid(-k (L - L0)), with measurement noise on both (and,
optionally, per-size deviations from both curves, as the model's size effects; the accuracy's may
trend with N, as on real ladders where a larger model does better at equal task loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import expit

from bayesladder import schema

SIZES = {"20M": 20e6, "40M": 40e6, "80M": 80e6, "160M": 160e6}
MULTIPLIERS = {"1xC": 1, "2xC": 2, "5xC": 5, "10xC": 10}
CHECKPOINTS = 40


@dataclass(frozen=True)
class TaskTruth:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    floor: float
    k: float
    L0: float
    chance: float = 0.25
    n_questions: int = 2000


def draw_truths(rng: np.random.Generator, n_tasks: int = 3) -> dict[str, TaskTruth]:
    """Plausible task parameters around the values real ladders show."""
    alpha_mu, beta_mu = rng.uniform(0.25, 0.4), rng.uniform(0.2, 0.35)
    truths = {}
    for t in range(n_tasks):
        truths[f"task{t}"] = TaskTruth(
            E=rng.uniform(0.3, 0.6),
            A=rng.uniform(0.15, 0.3),
            B=rng.uniform(0.15, 0.3),
            alpha=alpha_mu * np.exp(0.1 * rng.standard_normal()),
            beta=beta_mu * np.exp(0.1 * rng.standard_normal()),
            floor=rng.uniform(0.22, 0.3),
            k=rng.uniform(3.0, 8.0),
            L0=rng.uniform(0.6, 0.9),
        )
    return truths


def true_loss(truth: TaskTruth, n_params, tokens, log_n_ref: float, log_d_ref: float):
    x, y = np.log(n_params) - log_n_ref, np.log(tokens) - log_d_ref
    return truth.E + truth.A * np.exp(-truth.alpha * x) + truth.B * np.exp(-truth.beta * y)


def true_accuracy(truth: TaskTruth, loss, logit_shift: float = 0.0):
    return truth.floor + (1 - truth.floor) * expit(-truth.k * (loss - truth.L0) + logit_shift)


def draw_trends(rng: np.random.Generator, tasks, shared=(-0.05, 0.3), task_sd: float = 0.05) -> dict[str, float]:
    """Per task: how much the accuracy logit at equal task loss rises per e-fold of N. A trend shared by the
    tasks, uniform in ``shared`` (from none, as on the OLMo ladder, to Gemstones' ~0.27), plus each task's own."""
    common = rng.uniform(*shared)
    return {t: common + task_sd * rng.standard_normal() for t in tasks}


def draw_size_effects(
    rng: np.random.Generator,
    sizes,
    tasks,
    loss_sd: float = 0.01,
    acc_sd: float = 0.05,
    trends: dict[str, float] | None = None,
) -> dict[tuple[str, str], tuple[float, float]]:
    """Per (size, task): (relative loss deviation, accuracy logit shift), as the model's per-size effects.

    Every size (a ladder size or a target's own) deviates from the smooth curves by its own amount;
    pass the result to :func:`simulate_ladder` as ``size_effects``. With ``trends`` (per task, see
    :func:`draw_trends`; ``sizes`` then maps each name to its N), a size's accuracy shift is its task's
    trend x ln(N / N_ref) plus its own residual: a size beyond the ladder deviates further, as it does
    on real ladders.
    """
    log_n_ref = reference_point()[0]
    effects = {}
    for s in sizes:
        for t in tasks:
            trend = trends[t] * (np.log(sizes[s]) - log_n_ref) if trends else 0.0
            effects[(s, t)] = (loss_sd * rng.standard_normal(), trend + acc_sd * rng.standard_normal())
    return effects


def reference_point() -> tuple[float, float]:
    """ln N_ref and ln D_ref as bayes.data computes them for the simulated ladder."""
    n = np.array([SIZES[s] for s in SIZES for _ in MULTIPLIERS])
    d = np.array([20 * m * SIZES[s] for s in SIZES for m in MULTIPLIERS.values()])
    return float(np.log(n).mean()), float(np.log(d).mean())


def simulate_ladder(
    truths: dict[str, TaskTruth],
    rng: np.random.Generator,
    loss_noise: float = 0.005,
    acc_jitter: float = 0.003,
    targets: dict[str, tuple[float, float]] | None = None,
    noisy_targets: bool = False,
    size_effects: dict[tuple[str, str], tuple[float, float]] | None = None,
) -> xr.Dataset:
    """A ladder dataset (plus target runs, role 'target') drawn from ``truths``.

    Target runs are noise-free unless ``noisy_targets``: then they are measured like ladder runs, as a
    real held-out model would be (what a predictive interval should cover). ``size_effects`` (see
    :func:`draw_size_effects`; a target's size is its name) shift each size's losses and accuracy logits.
    """
    log_n_ref, log_d_ref = reference_point()
    runs = [
        (f"{s}-{m}", s, m, SIZES[s], 20 * mult * SIZES[s], "ladder") for s in SIZES for m, mult in MULTIPLIERS.items()
    ]
    runs += [(name, name, "target", n, d, "target") for name, (n, d) in (targets or {}).items()]
    tasks = list(truths)
    loss = np.full((len(runs), CHECKPOINTS, len(tasks)), np.nan)
    acc = np.full_like(loss, np.nan)
    tokens = np.zeros((len(runs), CHECKPOINTS))
    meta = []
    final_phase = np.arange(CHECKPOINTS) >= CHECKPOINTS - 5
    for i, (name, size, length, n, d_final, role) in enumerate(runs):
        tokens[i] = d_final * np.arange(1, CHECKPOINTS + 1) / CHECKPOINTS
        noisy = role == "ladder" or noisy_targets
        for j, task in enumerate(tasks):
            truth = truths[task]
            # the last 5 checkpoints sit at the run's final loss (the learning rate has decayed)
            loss_shift, logit_shift = (size_effects or {}).get((size, task), (0.0, 0.0))
            clean = true_loss(truth, n, np.where(final_phase, d_final, tokens[i]), log_n_ref, log_d_ref)
            loss[i, :, j] = clean * np.exp(loss_shift + (loss_noise * rng.standard_normal() if noisy else 0.0))
            p = true_accuracy(truth, loss[i, :, j], logit_shift)
            if noisy:
                p = p + rng.normal(0, np.sqrt(p * (1 - p) / truth.n_questions + acc_jitter**2))
            acc[i, :, j] = np.clip(p, 0, 1)
        multiplier = d_final / (20 * n)
        meta.append(
            dict(
                name=name,
                size=size,
                length=length,
                multiplier=multiplier,
                replicate=0,
                n_params=n,
                role=role,
                source="bayesladder.testing",
                schedule="simulated",
            )
        )
    return schema.build_dataset(
        runs=meta,
        tasks=[dict(name=t, n_questions=truths[t].n_questions, chance=truths[t].chance, source_key=t) for t in tasks],
        task_loss=loss,
        accuracy=acc,
        tokens=tokens,
        producer="bayesladder.testing.simulate_ladder",
    )
