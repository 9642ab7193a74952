"""Training throughput: our loop's step against a plain fp32 eager loop of the same transformers model.

Both loops train the same model (same initial weights) on the same batches; everything is measured in this
one run, after warm-up steps (which include torch.compile's compile time, reported separately), alternating
the two loops in rounds and timing by process CPU time, so that other jobs on a shared machine bias neither.

    python benchmarks/bench_train.py [--size 54k --spec models/micro.toml] [--steps 15] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from bayesladder.training import data, loop, spec
from bayesladder.training.model import build, count_n


def plain_step(model, opt, x, y):
    logits = model(input_ids=x).logits
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    return loss.item()


def timed(step_fn, batches, warmup):
    """CPU time of this process for the steps after ``warmup`` (on a shared machine wall time also counts the
    time other jobs hold the core; with one torch thread, process CPU time is the time the loop computed)."""
    for x, y in batches[:warmup]:
        step_fn(x, y)
    t = time.process_time()
    for x, y in batches[warmup:]:
        step_fn(x, y)
    return time.process_time() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="models/micro.toml")
    p.add_argument("--size", default="", help="a size of the ladder spec (default: a built-in ~1M-parameter model)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of --steps steps per loop")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    s = spec.load(args.spec)
    size = s.sizes[args.size] if args.size else spec.SizeSpec("1M", 128, 6, 4, 352, 4096)
    s = spec.LadderSpec(
        **{**s.__dict__, "recipe": spec.Recipe(**{**s.recipe.__dict__, "dtype": "auto", "compile": args.compile})}
    )
    torch.manual_seed(0)
    base = build(size, s)
    n = count_n(base)
    rows = size.batch_tokens // s.seq_len
    corpus = data.Corpus.from_text(data.load_text(s.corpus), s.corpus)
    batches = [data.batch(corpus.train, i, 0, rows, s.seq_len) for i in range(args.warmup + args.steps)]
    tokens = args.steps * rows * s.seq_len

    # plain: fp32, eager, default AdamW
    plain = copy.deepcopy(base)
    opt = torch.optim.AdamW(plain.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)

    # ours: the loop's own step, model and optimizer set up as train_run sets them up
    ours = copy.deepcopy(base)
    opt2 = loop.make_optimizer(ours, s, 1e-3)
    bf16 = loop.use_bf16(s, n, "cpu")
    wrapped = loop.compile_model(ours) if args.compile else ours
    t0 = time.perf_counter()
    loop.train_step(wrapped, ours, opt2, *batches[0], rows, bf16, "cpu", 1.0)
    first = time.perf_counter() - t0

    # alternate the two loops over the same batches, so that a change in background load hits both alike
    t_plain = t_ours = 0.0
    for r in range(args.rounds):
        t_plain += timed(lambda x, y: plain_step(plain, opt, x, y), batches, args.warmup if r == 0 else 0)
        t_ours += timed(
            lambda x, y: loop.train_step(wrapped, ours, opt2, x, y, rows, bf16, "cpu", 1.0),
            batches,
            args.warmup if r == 0 else 0,
        )
    tokens *= args.rounds

    flops = 6 * n * tokens
    print(
        f"model: {type(base).__name__}, N = {n:,} ({size.d_model}d x {size.n_layers}L), batch {rows} x {s.seq_len}, "
        f"{args.threads} thread(s), bf16 autocast: {bf16}, compile: {args.compile} (first step {first:.1f} s)"
    )
    print(f"plain fp32 eager : {tokens / t_plain:10.0f} tokens/s  {flops / t_plain / 1e9:6.2f} GFLOP/s (6N per token)")
    print(f"bayesladder loop : {tokens / t_ours:10.0f} tokens/s  {flops / t_ours / 1e9:6.2f} GFLOP/s (6N per token)")
    print(f"ratio (ours / plain): {t_plain / t_ours:.2f}")


if __name__ == "__main__":
    main()
