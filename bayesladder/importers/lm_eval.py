"""Importer for EleutherAI lm-evaluation-harness output: one results file per evaluated checkpoint.

lm-eval writes ``results_<date>.json`` (``results``: per task ``"<metric>,<filter>"`` values; ``configs``:
each task's config; ``n-samples``: questions per task; ``config.model_args``: the ``pretrained`` path and
``revision`` of the model) and, when run with ``--log_samples``, ``samples_<task>_<date>.jsonl`` beside it
(one line per question: ``target``, ``arguments`` — the (context, continuation) pair of every choice — and
``filtered_resps`` — their log-likelihoods in nats).

Per task the dataset holds accuracy (``acc_norm`` where the task reports it, else ``acc``; attribute
``accuracy_metric`` says which), the number of questions, and, from the samples, the task loss: bits per
byte of the correct answer, -loglik(gold continuation) / (ln 2 x its UTF-8 bytes), averaged over questions,
and chance, the mean of 1 / number of choices. A ``runs.csv`` maps every evaluated model to its run, N and D.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder.errors import BayesLadderError, BayesLadderWarning
from bayesladder.importers import long_csv
from bayesladder.importers.tables import Problems, numeric_column, read_csv_strict, require_columns

RUNS_REQUIRED = ["pretrained", "run", "n_params", "tokens"]
RUNS_OPTIONAL_TEXT = ("revision", "size", "length", "role")
RUNS_OPTIONAL_NUMBERS = ("replicate", "step")
ACCURACY_METRICS = ("acc_norm", "acc")  # the first one a task reports is its accuracy
TASK_LOSS_DEFINITION = "-loglik(gold continuation) / (ln 2 x its UTF-8 bytes), from lm-eval's logged samples"
DEFAULT_REVISION = "main"  # what lm-eval records when no revision was given


@dataclass
class TaskResult:
    accuracy: float
    metric: str
    n_questions: float
    task_loss: float = math.nan
    chance: float = math.nan


@dataclass
class Evaluation:
    """One results file: the model it evaluated and its tasks."""

    path: Path
    pretrained: str
    revision: str
    date: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)

    @property
    def model(self) -> tuple[str, str]:
        return model_key(self.pretrained, self.revision)


def model_key(pretrained: str, revision: str) -> tuple[str, str]:
    """How a model is matched between results files and runs.csv: normalised path, revision ('main' = none)."""
    revision = revision.strip()
    return os.path.normpath(pretrained.strip()), "" if revision == DEFAULT_REVISION else revision


def import_results(paths: Iterable[str | Path], runs_csv: str | Path, *, final_checkpoints: int | None = None):
    """Read every lm-eval results file under ``paths`` (files or folders) into a ladder dataset.

    Warns (BayesLadderWarning) when there are no logged samples (accuracy only), when a task reports
    neither acc_norm nor acc, and when a model and task appear in several results files (the latest wins).
    """
    runs_csv = Path(runs_csv)
    long_csv.check_options("bits/byte", final_checkpoints)
    runs = read_runs(runs_csv)
    files = find_results(paths)
    evaluations = [read_results(path) for path in files]
    by_model: dict[tuple[str, str], list[Evaluation]] = {}
    for evaluation in evaluations:
        by_model.setdefault(evaluation.model, []).append(evaluation)
    problems = Problems(runs_csv)
    for model, found in by_model.items():
        if model not in runs:
            problems.add(
                f"{found[0].path} evaluated pretrained={found[0].pretrained} revision={found[0].revision or '-'}, "
                "which no row names: add a row with its pretrained path and revision"
            )
    for model, row in runs.items():
        if model not in by_model:
            problems.add(
                f"line {row['line']} (pretrained={model[0]} revision={model[1] or '-'}) matches no lm-eval results file "
                "given: evaluate it, remove the row, or give its results file"
            )
    problems.raise_if_any()
    merged = {model: _merge(found) for model, found in by_model.items()}
    for model, tasks in merged.items():
        if not tasks:
            problems.add(f"{by_model[model][0].path}: no task reports acc_norm or acc, so there is nothing to import")
    problems.raise_if_any()
    frame = pd.DataFrame.from_records([row for model, tasks in merged.items() for row in _rows(runs[model], tasks)])
    ds = long_csv.rows_to_dataset(
        frame,
        problems,
        source=f"lm-eval results via {runs_csv.name}",
        producer=f"bayesladder import lm-eval --runs {runs_csv}",
        n_params_convention=f"as given in {runs_csv.name}",
        final_checkpoints=final_checkpoints,
    )
    return _describe(ds, evaluations)


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """The results files: given directly, or every ``results_*.json`` under a given folder."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.rglob("results_*.json"))
            if not found:
                raise BayesLadderError(f"{path}: no lm-eval results file (results_*.json) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BayesLadderError(f"{path}: no such file or folder; give lm-eval's --output_path folder or files")
    if not files:
        raise BayesLadderError("no lm-eval results given; pass results_*.json files or the folders holding them")
    return files


def read_runs(path: Path) -> dict[tuple[str, str], pd.Series]:
    """runs.csv's rows by model key (with their line numbers), every problem in it reported together."""
    table = read_csv_strict(path)
    require_columns(table, RUNS_REQUIRED, path)
    problems = Problems(path)
    runs = pd.DataFrame({"line": table.index}, index=table.index)
    for column in ("pretrained", "run", *RUNS_OPTIONAL_TEXT):
        if column in table.columns:
            runs[column] = table[column].str.strip()
    for column in ("n_params", "tokens", *RUNS_OPTIONAL_NUMBERS):
        if column in table.columns:
            runs[column] = numeric_column(table, column, problems, allow_empty=column == "step")
    problems.add_rows(table, runs["pretrained"] == "", "pretrained", "must not be empty")
    long_csv.check_run_columns(table, runs, problems)
    models = [model_key(p, r) for p, r in zip(runs["pretrained"], runs.get("revision", [""] * len(runs)))]
    problems.add_rows(table, pd.Series(models).duplicated(), "pretrained", "names a model and revision given before")
    problems.add_rows(table, runs.duplicated(["run", "tokens"]), "tokens", "repeats a (run, tokens) given before")
    problems.raise_if_any()
    return {model: row for model, (_, row) in zip(models, runs.iterrows())}


def read_results(path: Path) -> Evaluation:
    """One lm-eval results file (and its samples files, where they exist)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BayesLadderError(
            f"{path}: not a readable JSON file ({type(exc).__name__}); give lm-eval's results file"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or "config" not in data:
        raise BayesLadderError(f"{path}: not an lm-eval results file (no 'results' and 'config'); give results_*.json")
    args = data["config"].get("model_args") or {}
    if isinstance(args, str):  # older lm-eval: "pretrained=...,revision=..."
        args = dict(part.split("=", 1) for part in args.split(",") if "=" in part)
    if not args.get("pretrained"):
        raise BayesLadderError(f"{path}: config.model_args names no 'pretrained' model; evaluate with --model_args")
    revision = str(args.get("revision") or data["config"].get("model_revision") or "")
    date = path.stem.rsplit("_", 1)[-1]
    evaluation = Evaluation(path, str(args["pretrained"]), revision, date)
    configs = data.get("configs", {})
    for task, metrics in data["results"].items():
        if task not in configs:  # a group's aggregate; its subtasks are imported one by one
            continue
        metric = next((m for m in ACCURACY_METRICS if f"{m},none" in metrics), None)
        if metric is None:
            warnings.warn(
                f"{path}: task '{task}' reports neither acc_norm nor acc; not imported",
                BayesLadderWarning,
                stacklevel=2,
            )
            continue
        n = data.get("n-samples", {}).get(task, {}).get("effective", math.nan)
        result = TaskResult(accuracy=float(metrics[f"{metric},none"]), metric=metric, n_questions=float(n))
        samples = path.with_name(f"samples_{task}_{date}.jsonl")
        if samples.is_file() and configs[task].get("output_type") == "multiple_choice":
            result.task_loss, result.chance = read_samples(samples, configs[task].get("target_delimiter", " "))
        evaluation.tasks[task] = result
    return evaluation


def read_samples(path: Path, delimiter: str) -> tuple[float, float]:
    """(bits per byte of the correct answers, chance) over the questions of one samples file.

    The loss is NaN, with a warning, when some question's correct answer cannot be told (several gold
    answers, or a target that fits both a choice's text and another choice's index).
    """
    losses, chances, undecided = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BayesLadderError(f"{path}: cannot be read ({type(exc).__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            pairs = [(a["arg_0"], a["arg_1"]) for a in sample["arguments"].values()]
            lls = [float(r[0]) for r in sample["filtered_resps"]]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise BayesLadderError(
                f"{path}:{number}: not an lm-eval multiple-choice sample (needs arguments and filtered_resps)"
            ) from None
        if "acc_mutual_info" in sample.get("metrics", []):  # the second half are unconditional scores
            pairs, lls = pairs[: len(pairs) // 2], lls[: len(lls) // 2]
        chances.append(1 / len(pairs))
        gold = gold_index(sample, [c for _, c in pairs], lls, delimiter)
        if gold is None:
            undecided.append(number)
            continue
        context, continuation = pairs[gold]
        scored = context[len(context.rstrip()) :] + continuation  # lm-eval moves a context's trailing spaces
        losses.append(-lls[gold] / (math.log(2) * max(1, len(scored.encode("utf-8")))))
    if undecided:
        warnings.warn(
            f"{path}: the correct answer of line(s) {', '.join(map(str, undecided[:5]))} cannot be told from the "
            "logged sample (several gold answers?); this task has no task loss",
            BayesLadderWarning,
            stacklevel=2,
        )
        return math.nan, float(np.mean(chances))
    if not losses:
        raise BayesLadderError(f"{path}: no samples in the file")
    return float(np.mean(losses)), float(np.mean(chances))


def gold_index(sample: dict, continuations: list[str], lls: list[float], delimiter: str) -> int | None:
    """Which choice is correct. lm-eval logs the target as text: a choice's index or the choice itself.

    When both readings fit different choices, the logged ``acc`` (argmax of the log-likelihoods == gold)
    decides; None when the answer stays unknown.
    """
    target = str(sample.get("target", ""))
    choices = [c[len(delimiter) :] if c.startswith(delimiter) else c for c in continuations]
    candidates = {i for i, c in enumerate(choices) if c == target or c.strip() == target.strip()}
    if target.strip().isdigit() and int(target) < len(choices):
        candidates.add(int(target))
    if len(candidates) > 1 and sample.get("acc") in (0, 1, 0.0, 1.0):
        predicted = int(np.argmax(lls))
        candidates = {c for c in candidates if (c == predicted) == bool(sample["acc"])}
    return candidates.pop() if len(candidates) == 1 else None


def _merge(found: list[Evaluation]) -> dict[str, TaskResult]:
    """The tasks of one model over its results files; a task evaluated twice keeps its latest result."""
    tasks: dict[str, TaskResult] = {}
    for evaluation in sorted(found, key=lambda e: e.date):
        for task, result in evaluation.tasks.items():
            if task in tasks:
                warnings.warn(
                    f"task '{task}' of pretrained={evaluation.pretrained} is in several results files; "
                    f"using the latest, {evaluation.path}",
                    BayesLadderWarning,
                    stacklevel=2,
                )
            tasks[task] = result
    return tasks


def _rows(run: pd.Series, tasks: dict[str, TaskResult]) -> list[dict]:
    """Long-CSV rows (one per task) of one evaluated checkpoint."""
    meta = {k: run[k] for k in ("run", "n_params", "tokens", *RUNS_OPTIONAL_NUMBERS) if k in run.index}
    meta |= {k: run[k] for k in ("size", "length", "role") if k in run.index and run[k] != ""}
    return [
        dict(
            meta,
            task=task,
            task_loss=result.task_loss,
            accuracy=result.accuracy,
            n_questions=result.n_questions,
            chance=result.chance,
        )
        for task, result in tasks.items()
    ]


def _describe(ds: xr.Dataset, evaluations: list[Evaluation]) -> xr.Dataset:
    """Attributes saying which accuracy metric each task is and where the task loss came from."""
    metrics = {}
    for evaluation in evaluations:
        for task, result in evaluation.tasks.items():
            metrics.setdefault(task, set()).add(result.metric)
    ds.attrs["accuracy_metric"] = ", ".join(f"{task}: {'/'.join(sorted(m))}" for task, m in metrics.items())
    if all(math.isnan(r.chance) for e in evaluations for r in e.tasks.values()):  # chance comes from samples
        ds.attrs["task_loss_source"] = "none: lm-eval was run without --log_samples, so the dataset holds accuracy only"
        warnings.warn(
            "no lm-eval samples files (samples_<task>_<date>.jsonl) found: the dataset holds accuracy only; "
            "rerun lm-eval with --log_samples for the task loss",
            BayesLadderWarning,
            stacklevel=2,
        )
    else:
        ds.attrs["task_loss_source"] = TASK_LOSS_DEFINITION
        long_csv.warn_missing_task_loss(ds["task_loss"].to_dataframe().reset_index(), "lm-eval results")
    return ds
