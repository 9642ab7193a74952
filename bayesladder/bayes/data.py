"""The numbers the Bayesian model sees, prepared from the ladder dataset.

Step 1 sees one point per run (mean task loss of the last 5 checkpoints, D of the last), with N and
D on a standardised log scale: x = ln(N / N_ref), y = ln(D / D_ref), the references being the
geometric means of the ladder's N and final D. Independent reruns of a selected (size, length)
enter as extra points at the same (N, D): they are what tells run-to-run noise apart.

Step 2 sees the checkpoints of the selected runs after the first ceil(10%) are dropped, averaged in
non-overlapping blocks of 10 consecutive checkpoints (a run with fewer than 20 kept checkpoints
keeps each of them). (A moving average, as in the paper, makes
overlapping points that are not independent: treated as independent they make the fit overconfident.)

Each task's losses are also scaled by constants of the data (``loss_scale``: the geometric mean of
its step-1 losses; ``step2_center``/``step2_spread``: mean and SD of its step-2 losses), so that
every task's parameters live on the same O(1) scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from bayesladder.errors import BayesLadderError
from bayesladder.ladder import FINAL_CHECKPOINTS, final_points, step2_checkpoints

BLOCK = 10


@dataclass(frozen=True)
class ModelData:
    tasks: list[str]
    sizes: list[str]  # the ladder's size labels; index = size effect
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
    s2_loss: np.ndarray
    s2_acc: np.ndarray
    s2_count: np.ndarray  # checkpoints averaged into each point
    final_count: int  # checkpoints averaged into a run's final value (a target's measured accuracy)


def prepare(ds: xr.Dataset, runs: list[str], tasks: list[str]) -> ModelData:
    runs = with_replicates(ds, runs)
    finals = final_points(ds, runs)
    finals = finals[finals["task"].isin(tasks) & finals["task_loss"].notna()]
    primary = finals[finals["run"].isin(runs) & (finals["task"] == tasks[0])]
    log_n_ref = float(np.log(primary["n_params"]).mean())
    log_d_ref = float(np.log(primary["tokens"]).mean())
    sizes = sorted(set(finals["size"]), key=lambda s: float(finals.loc[finals["size"] == s, "n_params"].iloc[0]))
    task_index = {t: i for i, t in enumerate(tasks)}
    size_of_run = {r: str(ds["size"].sel(run=r).values) for r in runs}

    s2 = {"task": [], "size": [], "loss": [], "acc": [], "count": []}
    for run in runs:
        for task in tasks:
            _, loss, acc = step2_checkpoints(ds, run, task)
            block = BLOCK if len(loss) >= 2 * BLOCK else 1  # sparsely evaluated runs keep every checkpoint
            n_blocks = len(loss) // block
            if n_blocks == 0:
                continue
            # blocks end at the last checkpoint; a partial block at the start is dropped
            start = len(loss) - n_blocks * block
            s2["loss"].append(loss[start:].reshape(n_blocks, block).mean(axis=1))
            s2["acc"].append(acc[start:].reshape(n_blocks, block).mean(axis=1))
            s2["count"].append(np.full(n_blocks, block))
            s2["task"].append(np.full(n_blocks, task_index[task]))
            s2["size"].append(np.full(n_blocks, sizes.index(size_of_run[run])))

    chance = ds["chance"].sel(task=tasks).values.astype(float)
    if np.isnan(chance).any():
        missing = [t for t, c in zip(tasks, chance) if np.isnan(c)]
        raise BayesLadderError(
            f"the dataset has no chance level for task(s) {', '.join(missing)}; add a 'chance' column when importing"
        )
    n_questions = ds["n_questions"].sel(task=tasks).values.astype(float)
    s1_task = finals["task"].map(task_index).to_numpy()
    s1_loss = finals["task_loss"].to_numpy()
    s2_task, s2_loss = np.concatenate(s2["task"]), np.concatenate(s2["loss"])
    per_task = range(len(tasks))
    return ModelData(
        tasks=list(tasks),
        sizes=sizes,
        chance=chance,
        n_questions=np.where(np.isnan(n_questions), infer_n_questions(ds, tasks), n_questions),
        log_n_ref=log_n_ref,
        log_d_ref=log_d_ref,
        loss_scale=np.array([np.exp(np.log(s1_loss[s1_task == t]).mean()) for t in per_task]),
        step2_center=np.array([s2_loss[s2_task == t].mean() for t in per_task]),
        step2_spread=np.array([s2_loss[s2_task == t].std() for t in per_task]),
        s1_task=s1_task,
        s1_size=finals["size"].map(sizes.index).to_numpy(),
        s1_x=np.log(finals["n_params"].to_numpy()) - log_n_ref,
        s1_y=np.log(finals["tokens"].to_numpy()) - log_d_ref,
        s1_loss=s1_loss,
        s2_task=s2_task,
        s2_size=np.concatenate(s2["size"]),
        s2_loss=s2_loss,
        s2_acc=np.concatenate(s2["acc"]),
        s2_count=np.concatenate(s2["count"]),
        final_count=int(ds.attrs.get("final_checkpoints", FINAL_CHECKPOINTS)),
    )


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
