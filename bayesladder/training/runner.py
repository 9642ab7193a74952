"""Train a ladder (or one rung) and keep its ladder dataset up to date.

``train(spec, out)`` checks every input first (rung, corpus, tasks, and the checkpoints in ``out`` that runs would
continue from) so that a bad one leaves no output, then trains the runs in order and rewrites ``out/ladder.nc``
(validated, atomic) after every evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from bayesladder import schema
from bayesladder.errors import BayesLadderError
from bayesladder.evaluation import tasks as task_formats
from bayesladder.files import check_writable
from bayesladder.training import checkpoint, data
from bayesladder.training.spec import LadderSpec, TaskSpec, plan, select, tokens_saved

PRODUCER = "bayesladder train"


def build_tasks(spec: LadderSpec, corpus: data.Corpus, base: Path | None = None) -> list:
    heldout = corpus.heldout.tobytes().decode("utf-8", errors="ignore")
    train_text = corpus.train[:2_000_000].tobytes().decode("utf-8", errors="ignore")
    return [make_task(t, heldout, train_text, spec.recipe.seed, base) for t in spec.eval.tasks]


def make_task(t: TaskSpec, heldout: str, train_text: str, seed: int, base: Path | None = None):
    if t.kind in ("continuation", "cloze"):
        return task_formats.make_suite_task(
            t.name,
            t.kind,
            heldout,
            train_text,
            n_questions=t.n_questions,
            context_bytes=t.context_bytes,
            continuation_bytes=t.continuation_bytes,
            distractors=t.distractors,
            boundary=t.boundary,
            n_choices=t.n_choices,
            seed=seed,
        )
    path = t.path
    if base is not None and not Path(path).is_absolute() and (base / path).exists():
        path = str(base / path)
    if t.kind == "olmo":
        return task_formats.load_olmo(path, t.name, t.n_questions)
    return task_formats.load_jsonl(path, t.name, t.n_questions)


def prepare(spec: LadderSpec, rung: str | None, corpus_paths: list[str] | None = None):
    """The runs to train, the corpus and the evaluation tasks; every problem of these inputs raises here."""
    runs = select(spec, rung)
    base = Path(spec.path).parent if spec.path else None
    text = data.load_text(spec.corpus, corpus_paths, base)
    corpus = data.Corpus.from_text(text, spec.corpus)
    if min(len(corpus.train), len(corpus.heldout)) <= spec.seq_len + 1:
        raise BayesLadderError(
            f"the corpus is too small: its training and held-out parts must each be longer than "
            f"seq_len = {spec.seq_len} bytes"
        )
    tasks = build_tasks(spec, corpus, base)
    return runs, corpus, tasks


def train(
    spec: LadderSpec,
    out: Path,
    rung: str | None = None,
    corpus_paths: list[str] | None = None,
    progress: bool = True,
    device: str | None = None,
) -> Path:
    """Train the runs of ``rung`` (with the run it branches from), or of the whole ladder when it is None, into
    ``out``, resuming interrupted ones; return the path of the ladder dataset. Under ``torchrun`` every process
    calls it (data-parallel). Bad input raises :class:`BayesLadderError` before anything is written."""
    import torch

    from bayesladder.training.loop import Env, check_checkpoints, train_run

    if out.exists() and not out.is_dir():
        raise BayesLadderError(f"output folder {out} is a file; give a folder")
    check_writable(out / "ladder.nc")  # below a file, or without write access: before any training
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    runs, corpus, tasks = prepare(spec, rung, corpus_paths)
    env = Env(spec, out, corpus, tasks, device, rank, world, progress)
    for run in runs:
        check_checkpoints(run, env)
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
    env.on_eval = lambda: write_dataset(spec, out, tasks)
    try:
        for run in runs:
            train_run(run, env)
            if rank == 0:
                print(f"finished {run.name}", flush=True)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()
    if rank == 0:
        write_dataset(spec, out, tasks)
    return out / "ladder.nc"


def collect(spec: LadderSpec, out: Path) -> list[tuple[dict, list[dict]]]:
    """(run.json, evals) of every planned run that has at least one evaluation, in plan order."""
    found = []
    for run in plan(spec):
        rdir = out / "runs" / run.name
        meta = checkpoint.read_json(rdir / "run.json")
        evals = checkpoint.read_json(rdir / "evals.json", [])
        if meta and evals:
            found.append((meta, evals))
    return found


def write_dataset(spec: LadderSpec, out: Path, tasks: list) -> Path | None:
    found = collect(spec, out)
    if not found:
        return None
    return schema.write(to_dataset(spec, found, tasks), out / "ladder.nc")


def to_dataset(spec: LadderSpec, found, tasks: list):
    names = [t.name for t in tasks]
    n_ck = max(len(e) for _, e in found)
    shape = (len(found), n_ck, len(names))
    loss, acc, acc_raw = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    tokens, step, val = np.full(shape[:2], np.nan), np.full(shape[:2], np.nan), np.full((*shape[:2], 1), np.nan)
    runs = []
    for i, (meta, evals) in enumerate(found):
        for j, rec in enumerate(evals):
            tokens[i, j], step[i, j] = rec["tokens"], rec["step"]
            val[i, j, 0] = rec.get("val_loss", np.nan)
            for k, name in enumerate(names):
                s = rec["tasks"].get(name)
                if s:
                    loss[i, j, k], acc[i, j, k], acc_raw[i, j, k] = s["task_loss"], s["accuracy"], s["accuracy_raw"]
        runs.append(
            {
                "name": meta["name"],
                "size": meta["size"],
                "length": f"{meta['multiplier']:g}xC",
                "multiplier": meta["multiplier"],
                "replicate": 0,
                "n_params": meta["n_params"],
                "role": meta["role"],
                "source": f"{PRODUCER} {spec.name}",
                "schedule": meta["schedule"],
            }
        )
    task_meta = [
        {"name": t.name, "n_questions": len(t.questions), "chance": t.chance, "source_key": t.source_key} for t in tasks
    ]
    ds = schema.build_dataset(
        runs=runs,
        tasks=task_meta,
        task_loss=loss,
        accuracy=acc,
        tokens=tokens,
        step=step,
        val_loss=val,
        valsets=["heldout"],
        producer=PRODUCER,
    )
    ds["accuracy_raw"] = (("run", "checkpoint", "task"), acc_raw)
    ds["accuracy_raw"].attrs.update(long_name="ranked-classification accuracy without length normalisation", units="1")
    ds["accuracy"].attrs["normalisation"] = "per character (OLMo len_norm)"
    ds["val_loss"].attrs["units"] = "nats/byte"
    used, separate = tokens_saved(spec)
    # Evaluations come every `every_xc` of 20N tokens, too sparse for the paper's "mean of the last 5
    # checkpoints": a run's final value is its last checkpoint (taken at the end of its decay).
    ds.attrs.update(
        ladder_spec=spec.name,
        ladder_schedule=spec.recipe.schedule,
        tokens_used=float(used),
        tokens_separate_cosine=float(separate),
        final_checkpoints=1,
    )
    return ds
