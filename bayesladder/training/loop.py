"""The training loop for one run (nanoGPT-sized): set the LR, micro-steps, clip, step, evaluate and checkpoint.

A run resumes from ``runs/<name>/last`` if it exists (same weights as an uninterrupted run: batches and the LR
are pure functions of the step). A warmup-stable-decay branch starts from its parent's checkpoint at its
branch point. Under ``torchrun`` the same code runs data-parallel (DDP): each process takes its rows of every
global batch and rank 0 evaluates and writes.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bayesladder.errors import BayesLadderError
from bayesladder.training import checkpoint, data, schedule
from bayesladder.training.model import build, count_n
from bayesladder.training.spec import TOKENS_PER_PARAM_1XC, LadderSpec, RunPlan, n_params, peak_lr, plan


@dataclass
class Env:
    """What every run of a ladder shares: spec, output folder, data, tasks, device and process group."""

    spec: LadderSpec
    out: Path
    corpus: data.Corpus
    tasks: list = field(default_factory=list)
    device: str = "cpu"
    rank: int = 0
    world: int = 1
    progress: bool = True
    on_eval: Callable[[], None] | None = None  # called (rank 0) after every evaluation, e.g. to write the dataset

    def run_dir(self, name: str) -> Path:
        return self.out / "runs" / name


def use_bf16(spec: LadderSpec, n: int, device: str) -> bool:
    """bf16 autocast: as the spec says; ``auto`` means always on CUDA, and on a CPU with native bf16 (AVX512-BF16
    or AMX) from ``bf16_min_params`` up (on an AVX2-only CPU bf16 is emulated and many times slower)."""
    r = spec.recipe
    if r.dtype == "auto":
        return device.startswith("cuda") or (n >= r.bf16_min_params and cpu_has_native_bf16())
    return r.dtype == "bf16"


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_record(run: RunPlan, env: Env) -> dict:
    """What a run's weights depend on, stored in each of its checkpoints: its plan (multiplier, steps, batch,
    schedule, branch points), its model (architecture and size), the recipe (LR rule, warmup, optimizer, seed,
    dtype, ...), the corpus it reads and the precision it runs in."""
    spec = env.spec
    size = spec.sizes[run.size]
    return {
        "run": asdict(run),
        "model": {"architecture": spec.architecture, "vocab_size": spec.vocab_size, "seq_len": spec.seq_len},
        "size": asdict(size),
        "recipe": asdict(spec.recipe),
        "corpus_sha256": env.corpus.sha256,
        "bf16": use_bf16(spec, n_params(size, spec), env.device),
    }


def check_checkpoints(run: RunPlan, env: Env) -> dict:
    """Refuse every checkpoint ``run`` would continue from (its final and last ones, its parent's branch point)
    that was written under a different record than ``env`` gives it; return the run's record."""
    record = run_record(run, env)
    rdir = env.run_dir(run.name)
    for name in ("final", "last"):
        if (rdir / name).is_dir():
            checkpoint.check_record(rdir / name, record)
    if run.parent and (branch := branch_checkpoint(run, env)).is_dir():
        parent = next(r for r in plan(env.spec) if r.name == run.parent)
        checkpoint.check_record(branch, run_record(parent, env))
    return record


def branch_checkpoint(run: RunPlan, env: Env) -> Path:
    """The parent's checkpoint a warmup-stable-decay branch starts from."""
    return env.run_dir(run.parent) / f"branch-{run.start_step}"


def lr_at(run: RunPlan, spec: LadderSpec, step: int) -> float:
    size = spec.sizes[run.size]
    r = spec.recipe
    n = n_params(size, spec)
    warmup = max(r.min_warmup_steps, math.ceil(r.warmup_tokens_per_param * n / size.batch_tokens))
    warmup = min(warmup, max(1, run.steps // 2))
    peak = peak_lr(size, spec)
    if run.schedule == "wsd":
        return schedule.wsd(step, run.steps, warmup, peak, run.decay_start, r.min_lr_ratio)
    return schedule.cosine(step, run.steps, warmup, peak, r.min_lr_ratio)


def eval_steps(run: RunPlan, spec: LadderSpec) -> list[int]:
    """Steps evaluated in this run: every ``every_xc`` x 20N tokens after its start, and its last step."""
    size = spec.sizes[run.size]
    every = spec.eval.every_xc * TOKENS_PER_PARAM_1XC * n_params(size, spec)
    steps = {run.steps}
    k = 1
    while (s := math.ceil(k * every / run.batch_tokens)) < run.steps:
        if s > run.start_step:
            steps.add(s)
        k += 1
    return sorted(steps)


def make_optimizer(model, spec: LadderSpec, lr: float):
    import torch

    r = spec.recipe
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": r.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(r.beta1, r.beta2), eps=1e-8)


def evaluate(model, env: Env, step: int, tokens: int) -> dict:
    import torch

    from bayesladder.evaluation.scoring import score_task

    spec = env.spec
    record = {"step": step, "tokens": tokens, "tasks": {}}
    for task in env.tasks:
        record["tasks"][task.name] = score_task(model, task, spec.seq_len, spec.eval.batch_size, env.device).as_dict()
    # held-out language-modelling loss (nats per byte) on a fixed set of windows
    x, y = data.batch(env.corpus.heldout, 0, 12345, 32, spec.seq_len)
    chunk = max(1, int(2.5e8 // (spec.seq_len * spec.vocab_size)))  # rows per forward: logits of about 1 GB at most
    total = 0.0
    model.eval()
    with torch.no_grad():
        for xb, yb in zip(x.split(chunk), y.split(chunk)):
            logits = model(input_ids=xb.to(env.device)).logits.float()
            total += torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), yb.to(env.device).flatten(), reduction="sum"
            ).item()
    record["val_loss"] = total / y.numel()
    model.train()
    return record


def train_run(run: RunPlan, env: Env, stop_after: int | None = None) -> list[dict]:
    """Train (or resume, or skip if finished) one run; return its evaluation records."""
    import torch

    spec, r = env.spec, env.spec.recipe
    size = spec.sizes[run.size]
    rdir = env.run_dir(run.name)
    record = check_checkpoints(run, env)
    evals_path = rdir / "evals.json"
    evals = checkpoint.read_json(evals_path, [])
    if (rdir / "final" / "model.safetensors").is_file() and evals and evals[-1]["step"] == run.steps:
        return evals

    # -------------------------------------------------------------- model, optimizer, starting point
    torch.manual_seed(r.seed)
    model = build(size, spec, env.device)
    n = count_n(model)
    optimizer = make_optimizer(model, spec, lr_at(run, spec, 0))
    step = 0
    if (rdir / "last" / "state.pt").is_file():
        step = checkpoint.load_into(rdir / "last", model, optimizer)
        evals = [e for e in evals if e["step"] <= step]
    elif run.parent:
        branch = branch_checkpoint(run, env)
        if not branch.is_dir():
            raise BayesLadderError(
                f"{run.name} starts from {branch}, which is missing; delete {branch.parent} to train {run.parent} "
                "and its branches again"
            )
        step = checkpoint.load_into(branch, model, optimizer)
        evals = [e for e in checkpoint.read_json(branch.parent / "evals.json", []) if e["step"] <= run.start_step]
    else:
        evals = []
    bf16 = record["bf16"]
    wrapped = model
    if env.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(
            model, device_ids=[int(os.environ.get("LOCAL_RANK", "0"))] if env.device.startswith("cuda") else None
        )
    if r.compile:
        wrapped = compile_model(wrapped, fullgraph=env.world == 1)

    rows = size.batch_tokens // spec.seq_len
    per_rank = math.ceil(rows / env.world)
    micro = size.micro_batch_rows or per_rank
    device_type = "cuda" if env.device.startswith("cuda") else "cpu"
    todo = set(eval_steps(run, spec))
    branch_points = set(run.branch_points)
    meta = {
        "name": run.name,
        "size": run.size,
        "multiplier": run.multiplier,
        "role": run.role,
        "schedule": run.schedule,
        "n_params": n,
        "steps": run.steps,
        "batch_tokens": run.batch_tokens,
        "bf16": bf16,
        "compile": r.compile,
        "peak_lr": peak_lr(size, spec),
    }
    if env.rank == 0:
        checkpoint.write_json(rdir / "run.json", meta)
    bar = None
    if env.progress and env.rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=run.steps * run.batch_tokens,
            initial=step * run.batch_tokens,
            unit="tok",
            unit_scale=True,
            desc=run.name,
            dynamic_ncols=True,
            smoothing=0.1,
            mininterval=1.0,
        )
    model.train()
    while step < run.steps:
        # -------------------------------------------------------------- set the LR
        lr = lr_at(run, spec, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # -------------------------------------------------------------- micro-steps, clip, step
        x, y = data.batch(env.corpus.train, step, r.seed, rows, spec.seq_len, env.rank, env.world)
        loss_sum = train_step(
            wrapped,
            model,
            optimizer,
            x.to(env.device),
            y.to(env.device),
            micro,
            bf16,
            device_type,
            r.grad_clip,
            ddp=env.world > 1,
        )
        step += 1
        if bar is not None:
            bar.update(run.batch_tokens)
            bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.2e}", refresh=False)
        # -------------------------------------------------------------- evaluate and checkpoint
        if step in branch_points and env.rank == 0:
            checkpoint.save(rdir / f"branch-{step}", model, optimizer, step, record)
        if step in todo:
            if env.rank == 0:
                evals.append(evaluate(model, env, step, step * run.batch_tokens))
                checkpoint.save(rdir / "last", model, optimizer, step, record)
                checkpoint.write_json(evals_path, evals)
                if env.on_eval is not None:
                    env.on_eval()
            if env.world > 1:
                torch.distributed.barrier()
        if stop_after is not None and step >= stop_after:
            break
    if bar is not None:
        bar.close()
    if step >= run.steps and env.rank == 0:
        checkpoint.save(rdir / "final", model, record=record)
        shutil.rmtree(rdir / "last", ignore_errors=True)
    return evals


def compile_model(module, fullgraph: bool = True):
    """torch.compile for fixed-shape training: one whole graph (no graph breaks), static shapes."""
    import torch

    return torch.compile(module, fullgraph=fullgraph, dynamic=False)


def train_step(
    wrapped, model, optimizer, x, y, micro: int, bf16: bool, device_type: str, grad_clip: float, ddp: bool = False
) -> float:
    """One optimizer step on the batch (x, y) in micro-batches of ``micro`` rows; returns the mean loss."""
    import torch
    import torch.nn.functional as F

    chunks = list(zip(x.split(micro), y.split(micro)))
    loss_sum = 0.0
    for i, (xb, yb) in enumerate(chunks):
        ctx = wrapped.no_sync() if (ddp and i < len(chunks) - 1) else contextlib.nullcontext()
        with ctx, torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            logits = wrapped(input_ids=xb).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), yb.flatten()) * (len(xb) / len(x))
        loss.backward()
        loss_sum += loss.detach()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss_sum)
