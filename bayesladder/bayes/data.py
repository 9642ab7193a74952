"""The numbers the Bayesian model sees, prepared from the ladder dataset.

Step 1 sees one point per run (mean task loss of the last 5 checkpoints, D of the last), with N and
D on a log scale centred on the ladder: x = ln(N / N_ref), y = ln(D / D_ref), the references being the
geometric means of the ladder's N and final D. Independent reruns of a selected (size, length)
enter as extra points at the same (N, D): they are what tells run-to-run noise apart from a size's
own deviation.

Step 2 sees the checkpoints of the selected runs after the first ceil(10%) are dropped, averaged in
non-overlapping blocks of 10 consecutive checkpoints (a run with fewer than 20 kept checkpoints
keeps each of them; a final-only ladder gives one point per run). (A moving average, as in the paper,
makes overlapping points that are not independent: treated as independent they make the fit
overconfident.)

Each task's losses are also scaled by constants of the data (``loss_scale``: the geometric mean of
its step-1 losses; ``step2_center``/``step2_spread``: mean and SD of its step-2 losses), so that
every task's parameters live on the same O(1) scale.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayesladder import schema
from bayesladder.bayes import curves
from bayesladder.errors import BayesLadderError
from bayesladder.extrapolation import holds_fixed
from bayesladder.ladder import FINAL_CHECKPOINTS, extent, final_only, final_points, step2_checkpoints

BLOCK = 10


@dataclass(frozen=True)
class ModelData:
    tasks: list[str]
    sizes: list[str]  # the ladder's size labels in order of N; index = size effect
    size_x: np.ndarray  # (size,) ln(N / N_ref) of each size
    chance: np.ndarray  # (task,)
    n_questions: np.ndarray  # (task,), inferred where the dataset does not know it
    log_n_ref: float
    log_d_ref: float
    loss_scale: np.ndarray  # (task,)
    step2_center: np.ndarray  # (task,)
    step2_spread: np.ndarray  # (task,)
    # step 1: one row per (run, task)
    s1_task: np.ndarray
    s1_size: np.ndarray
    s1_x: np.ndarray
    s1_y: np.ndarray
    s1_loss: np.ndarray
    # step 2: one row per (block of checkpoints, task)
    s2_task: np.ndarray
    s2_size: np.ndarray
    s2_y: np.ndarray  # mean ln(D / D_ref) of the block (its x is its size's)
    s2_loss: np.ndarray
    s2_acc: np.ndarray
    s2_count: np.ndarray  # checkpoints averaged into each point
    final_count: int  # checkpoints averaged into a run's final value (a target's measured accuracy)
    final_only: bool  # every run evaluated once: step 2 fits the runs' final points
    loss_units: str = "bits/byte"  # what the task loss is measured in (schema.TASK_LOSS_UNITS)

    @property
    def single_length(self) -> bool:
        """Every run trained to the same D (``Extent.one_d``): step 1 has no D term."""
        return holds_fixed(self.s1_y)

    @property
    def size_design(self) -> np.ndarray:
        """(size x 2) design [1, size_x] of what every size's shift shares: the task's level and its trend in ln N
        ([1] alone for a ladder of one size)."""
        design = np.column_stack([np.ones(len(self.sizes)), self.size_x])
        return design if np.linalg.matrix_rank(design) == 2 else design[:, :1]

    @property
    def residual_basis(self) -> np.ndarray:
        """(size x free) orthonormal basis of the size shifts that have no mean and no linear trend in x.

        A size's step-2 residual is drawn in this space: its mean would duplicate the task's level and its trend
        the task's trend, and with them the posterior had correlations of 0.85 that cost the sampler ~70 leapfrog
        steps a draw. (Like a zero-sum constraint, for the trend as well; a ladder of 2 sizes has no residuals.)
        """
        design = self.size_design
        u, _, _ = np.linalg.svd(design, full_matrices=True)
        return u[:, design.shape[1] :]

    @property
    def absorbed_covariance(self) -> np.ndarray:
        """(X'X)^-1 of :attr:`size_design` X: per unit residual variance, the covariance of the part of the sizes'
        residuals that the level and the trend absorb (see ``curves.new_size_shift``)."""
        design = self.size_design
        return np.linalg.inv(design.T @ design)

    @property
    def sizes_repeat(self) -> bool:
        """Some size has several runs: only then can a size's own deviation be told apart from run noise."""
        return bool(self.s1_membership.sum(axis=0).max() > 1)

    @property
    def s1_membership(self) -> np.ndarray:
        """(step-1 points x groups) 0/1 matrix of the (size, task) group of each point."""
        groups = self.s1_size * len(self.tasks) + self.s1_task
        _, index = np.unique(groups, return_inverse=True)
        out = np.zeros((len(groups), index.max() + 1))
        out[np.arange(len(groups)), index] = 1.0
        return out

    @property
    def s1_group_task(self) -> np.ndarray:
        """Task index of each (size, task) group, in the order of :attr:`s1_membership`'s columns."""
        return np.unique(self.s1_size * len(self.tasks) + self.s1_task) % len(self.tasks)

    @property
    def s1_group_size(self) -> np.ndarray:
        return np.unique(self.s1_size * len(self.tasks) + self.s1_task) // len(self.tasks)


def prepare(ds: xr.Dataset, runs: list[str], tasks: list[str], need_loss: bool = True) -> ModelData:
    """The model's numbers for ``tasks`` on ``runs`` (and their reruns). ``need_loss`` False: a design that fits
    accuracy alone (single-step), on datasets with or without a task loss."""
    runs = with_replicates(ds, runs)
    finals = final_points(ds, runs)
    finals = finals[finals["task"].isin(tasks)]
    without_loss = sorted(set(finals.loc[finals["task_loss"].isna(), "task"]))
    if without_loss and need_loss:
        raise BayesLadderError(
            f"task(s) {', '.join(without_loss)} have no task loss at some run's final checkpoints, which the two-step "
            "model needs; leave them out with --tasks, or use --design single-step (accuracy only)"
        )
    primary = finals[finals["task"] == tasks[0]]
    log_n_ref = float(np.log(primary["n_params"]).mean())
    log_d_ref = float(np.log(primary["tokens"]).mean())
    n_of_size = finals.groupby("size")["n_params"].first()
    sizes = sorted(n_of_size.index, key=lambda s: float(n_of_size[s]))
    task_index = {t: i for i, t in enumerate(tasks)}
    size_of_run = {r: str(ds["size"].sel(run=r).values) for r in runs}

    s2 = {"task": [], "size": [], "y": [], "loss": [], "acc": [], "count": []}
    checkpoints = {task: step2_checkpoints(ds, runs, task, need_loss) for task in tasks}
    for run in runs:
        for task in tasks:
            tokens, loss, acc = checkpoints[task][run]
            blocks = step2_blocks(len(loss))
            n_blocks, block = blocks.shape
            if n_blocks == 0:
                continue
            for name, values in (("loss", loss), ("acc", acc), ("y", np.log(tokens) - log_d_ref)):
                s2[name].append(values[blocks].mean(axis=1))
            s2["count"].append(np.full(n_blocks, block))
            s2["task"].append(np.full(n_blocks, task_index[task]))
            s2["size"].append(np.full(n_blocks, sizes.index(size_of_run[run])))
    missing = [t for i, t in enumerate(tasks) if not any((part == i).any() for part in s2["task"])]
    if missing:
        needed = "both a task loss and an accuracy" if need_loss else "an accuracy"
        raise BayesLadderError(f"task(s) {', '.join(missing)} have no checkpoint with {needed}")

    chance = ds["chance"].sel(task=tasks).values.astype(float)
    if np.isnan(chance).any():
        missing = [t for t, c in zip(tasks, chance) if np.isnan(c)]
        raise BayesLadderError(
            f"the dataset has no chance level for task(s) {', '.join(missing)}; add a 'chance' column when importing"
        )
    n_questions = ds["n_questions"].sel(task=tasks).values.astype(float)
    unknown = np.isnan(n_questions)
    if unknown.any():
        n_questions[unknown] = infer_n_questions(ds, [t for t, u in zip(tasks, unknown) if u])
    s1_task = finals["task"].map(task_index).to_numpy()
    s1_loss = finals["task_loss"].to_numpy()
    s2_task, s2_loss = np.concatenate(s2["task"]), np.concatenate(s2["loss"])
    per_task = range(len(tasks))
    with warnings.catch_warnings():  # a task without any loss (single-step design): its loss constants are NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        loss_scale = np.array([np.exp(np.nanmean(np.log(s1_loss[s1_task == t]))) for t in per_task])
        step2_center = np.array([np.nanmean(s2_loss[s2_task == t]) for t in per_task])
    return ModelData(
        tasks=list(tasks),
        sizes=sizes,
        size_x=np.array([np.log(float(n_of_size[s])) for s in sizes]) - log_n_ref,
        chance=chance,
        n_questions=n_questions,
        log_n_ref=log_n_ref,
        log_d_ref=log_d_ref,
        loss_scale=loss_scale,
        step2_center=step2_center,
        step2_spread=np.array([_spread(s2_loss[s2_task == t]) for t in per_task]),
        s1_task=s1_task,
        s1_size=finals["size"].map(sizes.index).to_numpy(),
        s1_x=np.log(finals["n_params"].to_numpy()) - log_n_ref,
        s1_y=np.log(finals["tokens"].to_numpy()) - log_d_ref,
        s1_loss=s1_loss,
        s2_task=s2_task,
        s2_size=np.concatenate(s2["size"]),
        s2_y=np.concatenate(s2["y"]),
        s2_loss=s2_loss,
        s2_acc=np.concatenate(s2["acc"]),
        s2_count=np.concatenate(s2["count"]),
        final_count=1 if final_only(ds, runs) else int(ds.attrs.get("final_checkpoints", FINAL_CHECKPOINTS)),
        final_only=final_only(ds, runs),
        loss_units=schema.loss_units(ds),
    )


def step1_design(ds: xr.Dataset, runs: list[str]) -> tuple[int, int]:
    """(runs, free parameters of step 1's curve per task) of a ladder of ``runs``. With no more runs than
    parameters the curve passes through every run and its run noise cannot be told from it: the sampler meets the
    funnel where that noise goes to 0 (OLMo's 190M and 370M at 1xC and 2xC: 5, 1 and 7 divergent transitions at
    seeds 0, 1 and 2)."""
    return len(runs), curves.power_law_parameters(extent(ds, runs).one_d)


def step2_blocks(count: int) -> np.ndarray:
    """(blocks x checkpoints per block) indices into a run's ``count`` kept step-2 checkpoints: blocks of
    :data:`BLOCK` that end at the last checkpoint, a partial block at the start dropped; a run with fewer than
    2 x BLOCK keeps each checkpoint as its own point."""
    block = BLOCK if count >= 2 * BLOCK else 1  # sparsely evaluated runs keep every checkpoint
    n_blocks = count // block
    return np.arange(count - n_blocks * block, count).reshape(n_blocks, block)


def _spread(losses: np.ndarray) -> float:
    """SD of a task's step-2 losses (1 when they do not vary, so that u = loss - centre)."""
    sd = float(np.nanstd(losses))
    return sd if sd > 0 else 1.0


def with_replicates(ds: xr.Dataset, runs: list[str]) -> list[str]:
    """The selected runs plus every other replicate of the same (size, length)."""
    cells = {(str(ds["size"].sel(run=r).values), str(ds["length"].sel(run=r).values)) for r in runs}
    extra = [
        str(r)
        for r, size, length, role in zip(ds["run"].values, ds["size"].values, ds["length"].values, ds["role"].values)
        if role == "ladder" and (str(size), str(length)) in cells and str(r) not in runs
    ]
    return list(runs) + extra


def infer_n_questions(ds: xr.Dataset, tasks: list[str]) -> np.ndarray:
    """Smallest n for which every observed accuracy of the task is (nearly) a multiple of 1/n.

    Accuracies are proportions of n questions; when the dataset does not record n, this recovers it
    from the values themselves (falls back to 1000 when no n up to 20000 fits).
    """
    out = []
    for task in tasks:
        acc = ds["accuracy"].sel(task=task).values
        acc = np.unique(acc[~np.isnan(acc)])[:50]
        found = 1000.0
        for n in range(2, 20001):
            if np.all(np.abs(acc * n - np.round(acc * n)) < 1e-3):
                found = float(n)
                break
        out.append(found)
    return np.array(out)
