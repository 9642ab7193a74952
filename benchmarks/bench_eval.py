"""Evaluation throughput (questions/s) of ranked classification on a 4-choice task.

Batched scoring (our evaluator) against a baseline measured in the same run: one forward pass per choice.

    python benchmarks/bench_eval.py [--spec models/micro.toml --size 35k] [--questions 200] [--threads 1]
                                    [--task arc_easy/val_rc_5shot]   (an OLMo task instead of the offline suite)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bayesladder.evaluation import scoring
from bayesladder.evaluation import tasks as T
from bayesladder.training import data, spec
from bayesladder.training.model import build, count_n


def one_at_a_time(model, task, max_len):
    pairs = [(q.context, c) for q in task.questions for c in q.continuations]
    return np.array([scoring.loglikelihoods(model, [p], max_len, batch_size=1)[0] for p in pairs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="models/micro.toml")
    p.add_argument("--size", default="35k")
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--task", default="", help="an OLMo task (e.g. arc_easy/val_rc_5shot) instead of the offline suite")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    s = spec.load(args.spec)
    size = s.sizes[args.size]
    torch.manual_seed(0)
    model = build(size, s).eval()
    if args.task:
        task = T.load_olmo(args.task, limit=args.questions)
    else:
        corpus = data.Corpus.from_text(data.load_text(s.corpus), s.corpus)
        held = corpus.heldout.tobytes().decode("utf-8", errors="ignore")
        task = T.make_suite_task(
            "continue_word", "continuation", held, n_questions=args.questions, context_bytes=48, continuation_bytes=16
        )
    n_choices = len(task.questions[0].continuations)

    t = time.perf_counter()
    batched = scoring.score_task(model, task, s.seq_len, args.batch_size)
    t_batched = time.perf_counter() - t
    t = time.perf_counter()
    single = scoring.summarise(task, one_at_a_time(model, task, s.seq_len))
    t_single = time.perf_counter() - t
    assert abs(single.task_loss - batched.task_loss) < 1e-3, (single, batched)

    nq = len(task.questions)
    print(
        f"model: {type(model).__name__}, N = {count_n(model):,}; task {task.name}: {nq} questions x {n_choices} choices; "
        f"{args.threads} thread(s)"
    )
    print(f"one sequence per forward : {nq / t_single:8.1f} questions/s")
    print(f"batched ({args.batch_size:>3} per forward): {nq / t_batched:8.1f} questions/s")
    print(f"ratio (batched / one at a time): {t_single / t_batched:.2f}")


if __name__ == "__main__":
    main()
