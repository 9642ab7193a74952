"""Evaluating a checkpoint folder, from this package's trainer or trained elsewhere, into a ladder dataset.

:func:`load` reads a byte-level causal LM (``AutoModelForCausalLM.from_pretrained``), puts it on the GPU when
there is one and takes its context length from its config; :func:`evaluate` scores tasks on it;
:func:`describe` says which run, N and D the checkpoint is (options win over what the package's trainer
wrote beside it); :func:`to_dataset` turns the scores into a one-checkpoint ladder dataset to write or to
add to one (:func:`bayesladder.combine.add_evaluations`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayesladder import schema
from bayesladder.errors import BayesLadderError
from bayesladder.evaluation.scoring import ACCURACY_NORMALISATION, TaskScore, score_task
from bayesladder.evaluation.tasks import Task
from bayesladder.ladder import check_n_and_d

DEFAULT_MAX_LENGTH = 2048  # for a config that does not say how long a context the model takes
PRODUCER = "bayesladder eval"


@dataclass
class LoadedModel:
    model: object
    device: str
    max_length: int


@dataclass(frozen=True)
class CheckpointRun:
    """What a checkpoint is in a ladder: its run and the run's N, the tokens D it has seen."""

    name: str
    n_params: float
    tokens: float
    step: float = np.nan
    size: str | None = None
    multiplier: float | None = None
    role: str = "ladder"
    schedule: str = ""


def load(path: Path, device: str | None = None) -> LoadedModel:
    path = Path(path)
    if not path.exists():
        raise BayesLadderError(f"{path}: no such checkpoint folder")
    if not (path / "config.json").is_file():
        raise BayesLadderError(
            f"{path} is not a checkpoint folder (no config.json); give a folder saved by 'bayesladder train' or "
            "transformers' save_pretrained"
        )
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = AutoModelForCausalLM.from_pretrained(path).to(device)
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BayesLadderError(f"{path}: cannot be loaded as a causal language model ({reason})") from None
    max_length = int(getattr(model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH))
    return LoadedModel(model, device, max_length)


def evaluate(loaded: LoadedModel, tasks: list[Task], batch_size: int = 64) -> list[TaskScore]:
    if batch_size < 1:  # 0 crashed; a negative one scored nothing and reported every choice at log-likelihood 0
        raise BayesLadderError(f"--batch-size must be at least 1 (got {batch_size})")
    if not tasks:
        raise BayesLadderError("no tasks to evaluate: give task files and/or a ladder spec")
    return [score_task(loaded.model, t, loaded.max_length, batch_size, loaded.device) for t in tasks]


def describe(
    path: Path,
    run: str | None = None,
    n_params: float | None = None,
    tokens: float | None = None,
    loaded: LoadedModel | None = None,
) -> CheckpointRun:
    """The checkpoint's run, N and D: given, or from ``run.json`` beside it (this package's trainer writes it:
    a ``final`` or ``branch-STEP`` folder in the run's folder). N defaults to the model's own count
    (transformer blocks plus input embedding, the dataset's default convention)."""
    path = Path(path)
    meta_path = path.parent / "run.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    step = _trained_steps(path, meta)
    if tokens is None and step is not None and "batch_tokens" in meta:
        tokens = step * meta["batch_tokens"]
    if n_params is None:
        n_params = meta.get("n_params")
    if n_params is None and loaded is not None:
        from bayesladder.training.model import count_n

        n_params = count_n(loaded.model)
    run = run or meta.get("name")
    missing = [flag for flag, value in (("--run", run), ("--n", n_params), ("--d", tokens)) if value is None]
    if missing:
        raise BayesLadderError(
            f"{path}: cannot tell its {', '.join(missing)} from the checkpoint (no run.json of bayesladder train "
            f"beside it); give {' and '.join(missing)}"
        )
    check_n_and_d(n_params, tokens)
    return CheckpointRun(
        name=run,
        n_params=float(n_params),
        tokens=float(tokens),
        step=float(step) if step is not None else np.nan,
        size=meta.get("size") if run == meta.get("name") else None,
        multiplier=meta.get("multiplier") if run == meta.get("name") else None,
        role=meta.get("role", "ladder") if run == meta.get("name") else "ladder",
        schedule=meta.get("schedule", "") if run == meta.get("name") else "",
    )


def _trained_steps(path: Path, meta: dict) -> int | None:
    if path.name == "final" and "steps" in meta:
        return int(meta["steps"])
    if path.name.startswith("branch-") and path.name[len("branch-") :].isdigit():
        return int(path.name[len("branch-") :])
    return None


def to_dataset(checkpoint: CheckpointRun, scores: list[TaskScore], source: str):
    """A ladder dataset of one run with one checkpoint: the scores of every task."""
    multiplier = checkpoint.multiplier or checkpoint.tokens / (20 * checkpoint.n_params)
    run = dict(
        name=checkpoint.name,
        size=checkpoint.size or checkpoint.name,
        length=f"{multiplier:.3g}xC",
        multiplier=multiplier,
        replicate=0,
        n_params=checkpoint.n_params,
        role=checkpoint.role,
        source=source,
        schedule=checkpoint.schedule,
    )
    tasks = [dict(name=s.task, n_questions=s.n_questions, chance=s.chance, source_key=s.task) for s in scores]

    def per_task(values):
        return np.array(values, dtype=float)[None, None, :]

    ds = schema.build_dataset(
        runs=[run],
        tasks=tasks,
        task_loss=per_task([s.task_loss for s in scores]),
        accuracy=per_task([s.accuracy for s in scores]),
        tokens=np.array([[checkpoint.tokens]]),
        step=np.array([[checkpoint.step]]),
        accuracy_raw=per_task([s.accuracy_raw for s in scores]),
        producer=PRODUCER,
    )
    ds["accuracy"].attrs["normalisation"] = ACCURACY_NORMALISATION
    return ds
