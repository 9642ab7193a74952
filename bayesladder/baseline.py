"""The paper's method (Bhagia et al. 2024) as a point-fit baseline: two least-squares steps, chained.

Step 1: L(N, D) = exp(a - alpha ln N) + exp(b - beta ln D) + E on one point per run, Huber loss on
log residuals. Step 2: Acc(L) = A / (1 + exp(-k (L - L0))) + B on every (smoothed) checkpoint plus
the anchor (L = 0, Acc = 1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import curve_fit, minimize

from bayesladder.errors import BayesLadderError
from bayesladder.ladder import (
    STEP2_DROP_FRACTION,
    actual_final,
    check_sizes,
    check_tasks,
    final_points,
    step2_checkpoints,
    trailing_moving_average,
)

HUBER_DELTA = 1e-3
STEP1_START = (3.0, 6.0, 0.1, 0.2, 1.0)  # a, b, alpha, beta, E
STEP2_START = (-1.0, 0.9, 3.0, 1.0)  # A, L0, k, B
STEP2_BOUNDS = ([-1.0, 0.0, 0.0, 0.0], [0.0, np.inf, np.inf, 1.0])
SMOOTHING_WINDOW = 5


class BaselineFitError(BayesLadderError):
    """The paper's least-squares fit did not converge on this ladder."""


@dataclass(frozen=True)
class TaskFit:
    step1: tuple[float, ...]  # a, b, alpha, beta, E
    step2: tuple[float, ...]  # A, L0, k, B

    def loss(self, n_params, tokens):
        return power_law(np.log(n_params), np.log(tokens), *self.step1)

    def accuracy(self, loss):
        return sigmoid(loss, *self.step2)


def power_law(log_n, log_d, a, b, alpha, beta, e):
    return np.exp(a - alpha * log_n) + np.exp(b - beta * log_d) + e


def sigmoid(loss, a, l0, k, b):
    return a / (1 + np.exp(-k * (loss - l0))) + b


def fit_step1(n_params: np.ndarray, tokens: np.ndarray, loss: np.ndarray) -> tuple[float, ...]:
    """Huber (delta 1e-3) on log residuals, L-BFGS-B from the paper's start, all parameters >= 0."""
    log_n, log_d, log_y = np.log(n_params), np.log(tokens), np.log(loss)

    def objective(p):
        a, b, alpha, beta, e = p
        term_n = np.exp(a - alpha * log_n)
        term_d = np.exp(b - beta * log_d)
        pred = term_n + term_d + e
        r = np.log(pred) - log_y
        small = np.abs(r) <= HUBER_DELTA
        value = np.where(small, 0.5 * r**2, HUBER_DELTA * (np.abs(r) - 0.5 * HUBER_DELTA)).sum()
        dr = np.where(small, r, HUBER_DELTA * np.sign(r)) / pred
        grad = np.array(
            [
                (dr * term_n).sum(),
                (dr * term_d).sum(),
                (dr * -log_n * term_n).sum(),
                (dr * -log_d * term_d).sum(),
                dr.sum(),
            ]
        )
        return value, grad

    result = minimize(
        objective,
        STEP1_START,
        jac=True,
        method="L-BFGS-B",
        bounds=[(0, None)] * 5,
        options={"maxiter": 1_000_000, "ftol": 0.0, "gtol": 0.0},
    )
    return tuple(float(v) for v in result.x)


def step2_points(ds: xr.Dataset, runs: list[str], task: str) -> tuple[np.ndarray, np.ndarray]:
    """Every kept checkpoint of ``runs``, smoothed by a trailing 5-point moving average per run."""
    losses, accs = [], []
    for _, loss, acc in step2_checkpoints(ds, runs, task).values():
        losses.append(trailing_moving_average(loss, SMOOTHING_WINDOW))
        accs.append(trailing_moving_average(acc, SMOOTHING_WINDOW))
    return np.concatenate([[], *losses]), np.concatenate([[], *accs])


def fit_step2(loss: np.ndarray, accuracy: np.ndarray) -> tuple[float, ...]:
    """Least squares with the anchor point (L = 0, Acc = 1) appended."""
    x = np.append(loss, 0.0)
    y = np.append(accuracy, 1.0)
    params, _ = curve_fit(sigmoid, x, y, p0=STEP2_START, bounds=STEP2_BOUNDS, maxfev=1_000_000)
    return tuple(float(v) for v in params)


def fit(ds: xr.Dataset, runs: list[str], tasks: list[str]) -> dict[str, TaskFit]:
    """Both steps for every task, on the given ladder runs.

    A task the method cannot fit (no task loss, fewer points than a step has parameters) is refused: one
    BayesLadderError names every such task and what it lacks, rather than a curve fitted to nothing.
    """
    check_tasks(ds, tasks)
    check_sizes(ds, runs)
    finals = final_points(ds, runs)
    finals = finals[np.isfinite(finals["task_loss"])]
    fits, problems = {}, []
    with _single_threaded_blas():
        for task in tasks:
            points = finals[finals["task"] == task]
            step2 = step2_points(ds, runs, task)
            problem = _unfittable(task, len(points), len(step2[0]))
            if problem:
                problems.append(problem)
                continue
            step1 = fit_step1(points["n_params"].values, points["tokens"].values, points["task_loss"].values)
            try:
                step2_fit = fit_step2(*step2)
            except RuntimeError as exc:  # curve_fit: "Optimal parameters not found: ..."
                raise BaselineFitError(f"step 2 of task {task}: {exc}") from None
            fits[task] = TaskFit(step1, step2_fit)
    if problems:
        raise BayesLadderError(f"the paper's method cannot fit {'; '.join(problems)}")
    return fits


def _unfittable(task: str, step1_points: int, step2_points: int) -> str | None:
    """What task lacks for the paper's method, or None when both steps have enough points."""
    if step1_points == 0:
        return f"task '{task}': no task loss in the ladder runs (only accuracy; the method predicts through task loss)"
    if step1_points < len(STEP1_START):
        return (
            f"task '{task}': step 1 has {step1_points} runs with a task loss, fewer than its "
            f"{len(STEP1_START)} parameters (add runs)"
        )
    if step2_points < len(STEP2_START):
        return (
            f"task '{task}': step 2 has {step2_points} checkpoints with task loss and accuracy after each run's "
            f"first {STEP2_DROP_FRACTION:.0%}, fewer than its {len(STEP2_START)} parameters (add runs or evaluations)"
        )
    return None


def with_actuals(table: pd.DataFrame, ds: xr.Dataset, target: str) -> pd.DataFrame:
    """``table`` (from :func:`predict`) with the target's actual final values and the errors, when the
    target is a run of ``ds``; unchanged otherwise."""
    actual = actual_final(ds, target)
    if actual is None:
        return table
    table = table.copy()
    table["actual_loss"] = actual.loc[table["task"], "task_loss"].values
    table["actual_accuracy"] = actual.loc[table["task"], "accuracy"].values
    table["loss_error"] = table["loss"] - table["actual_loss"]
    table["accuracy_error"] = table["accuracy"] - table["actual_accuracy"]
    return table


def _single_threaded_blas():
    """The fits are tiny: multi-threaded BLAS only adds overhead (10x slower on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits  # installed with pymc
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def predict(fits: dict[str, TaskFit], n_params: float, tokens: float) -> pd.DataFrame:
    """Chained prediction per task: task loss from step 1, accuracy from step 2 at that loss."""
    rows = []
    for task, f in fits.items():
        loss = float(f.loss(n_params, tokens))
        rows.append(dict(task=task, loss=loss, accuracy=float(f.accuracy(loss))))
    return pd.DataFrame.from_records(rows)
