"""Checkpoints: a folder with the model in safetensors and its byte-level tokenizer (``from_pretrained`` of
transformers and lm-evaluation-harness load it as it is), ``state.pt`` (optimizer state and step) and
``training.json``, the record of what the run was started with (its plan, size, recipe, corpus and precision), as
nanoGPT keeps its model arguments in a checkpoint. A run continues only from a checkpoint whose record equals its
own. Written to a temporary folder, then renamed into place."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

from bayesladder.errors import BayesLadderError
from bayesladder.training import tokenizer

RECORD = "training.json"


def save(path: Path, model, optimizer=None, step: int = 0, record: dict | None = None) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save(tmp, model.config.max_position_embeddings)
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(), "step": step}, tmp / "state.pt")
        if record is not None:
            (tmp / RECORD).write_text(json.dumps(record, indent=1))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_record(path: Path, expected: dict) -> None:
    """Refuse to continue from the checkpoint ``path`` unless it was written under ``expected`` (a run record);
    the error names every differing key with its old and new value."""
    try:
        stored = json.loads((path / RECORD).read_text())
    except FileNotFoundError:
        raise BayesLadderError(
            f"checkpoint {path} has no {RECORD} (written by an older bayesladder), so it cannot be checked against "
            f"the spec; delete {path.parent} to train this run again, or train into a new output folder"
        ) from None
    except (OSError, ValueError) as exc:
        raise BayesLadderError(
            f"checkpoint {path}: unreadable {RECORD} ({exc}); delete {path.parent} to train that run again"
        ) from None
    changes = differences(stored, json.loads(json.dumps(expected)))
    if changes:
        raise BayesLadderError(
            f"checkpoint {path} was written under a different spec: {', '.join(changes)}; train with the spec it "
            "was started with, or into a new output folder"
        )


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'key: old -> new' for every (nested, dotted) key whose value differs between two records."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changes


def load_into(path: Path, model, optimizer=None) -> int:
    """Load weights (and optimizer state) saved by :func:`save` into ``model``; return the step. A checkpoint that
    cannot be read or does not fit the model is a :class:`BayesLadderError`."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
        # save_pretrained may drop tied duplicates; nothing else may be missing
        missing = [m for m in missing if "lm_head" not in m]
        if unexpected or missing:
            raise ValueError(f"missing weights {missing}, unexpected weights {unexpected}")
        if optimizer is None:
            return 0
        blob = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        return int(blob["step"])
    # what safetensors and torch.load raise on truncated, foreign or garbage files
    except (
        OSError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        struct.error,
        pickle.UnpicklingError,
        SafetensorError,
    ) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise BayesLadderError(
            f"checkpoint {path} is damaged or does not match the model ({type(exc).__name__}: {detail}); "
            f"delete {path.parent} to train that run again"
        ) from None


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise BayesLadderError(
            f"{path} is not valid JSON ({exc}); delete {path.parent} to train that run again"
        ) from None
