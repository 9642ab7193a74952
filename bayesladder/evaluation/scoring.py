"""Ranked classification: batched log-likelihoods of every choice's continuation given its context.

For byte-level models a text is its UTF-8 bytes. Per question: task loss = -log2 p(gold continuation) / its
UTF-8 bytes (bits per byte); accuracy picks the choice with the highest log-likelihood per character (OLMo's
``len_norm``), raw accuracy the highest log-likelihood. Task loss and accuracies are averaged over questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayesladder.evaluation.tasks import Task

ACCURACY_NORMALISATION = "per character (OLMo len_norm)"


@dataclass(frozen=True)
class TaskScore:
    task: str
    task_loss: float
    accuracy: float  # len_norm (per character)
    accuracy_raw: float
    n_questions: int
    chance: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def loglikelihoods(model, pairs: list[tuple[str, str]], max_len: int, batch_size: int = 64, device: str = "cpu"):
    """log p(continuation | context) in nats for each (context, continuation); contexts cut from the left."""
    import torch

    encoded = []
    for context, continuation in pairs:
        cont = encode(continuation)[: max_len - 1]
        ctx = encode(context)[-(max_len - len(cont)) :] if context else []
        if not ctx:  # nothing to condition on: a newline stands in for the start of text
            ctx = [10]
        encoded.append((ctx, cont))
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    out = np.zeros(len(encoded))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            seqs = [encoded[i][0] + encoded[i][1] for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                ids[r, : len(s)] = torch.tensor(s)
            logits = model(input_ids=ids.to(device)).logits
            for r, i in enumerate(idx):
                n_ctx, n_cont = len(encoded[i][0]), len(encoded[i][1])
                targets = torch.tensor(encoded[i][1], device=logits.device)
                # only the positions that predict the continuation (keeps memory small for large vocabularies)
                logp = torch.log_softmax(logits[r, n_ctx - 1 : n_ctx - 1 + n_cont].float(), dim=-1)
                out[i] = logp.gather(1, targets[:, None]).sum().item()
    model.train(was_training)
    return out


def score_task(model, task: Task, max_len: int, batch_size: int = 64, device: str = "cpu") -> TaskScore:
    pairs = [(q.context, c) for q in task.questions for c in q.continuations]
    ll = loglikelihoods(model, pairs, max_len, batch_size, device)
    return summarise(task, ll)


def summarise(task: Task, ll: np.ndarray) -> TaskScore:
    """Task loss and accuracies from the log-likelihoods (nats) of every choice, in question order."""
    losses, hits, hits_raw, k = [], [], [], 0
    for q in task.questions:
        n = len(q.continuations)
        lq = ll[k : k + n]
        k += n
        gold = q.continuations[q.gold]
        losses.append(-lq[q.gold] / math.log(2) / max(1, len(gold.encode("utf-8"))))
        per_char = lq / np.array([max(1, len(c)) for c in q.continuations])
        hits.append(int(np.argmax(per_char)) == q.gold)
        hits_raw.append(int(np.argmax(lq)) == q.gold)
    return TaskScore(
        task.name,
        float(np.mean(losses)),
        float(np.mean(hits)),
        float(np.mean(hits_raw)),
        len(task.questions),
        task.chance,
    )
