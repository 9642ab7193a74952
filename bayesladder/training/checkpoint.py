"""Checkpoints: a folder with the model in safetensors and its byte-level tokenizer (``from_pretrained`` of
transformers and lm-evaluation-harness load it as it is) and ``state.pt`` (optimizer state and step).
Written to a temporary folder, then renamed into place."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from bayesladder.training import tokenizer


def save(path: Path, model, optimizer=None, step: int = 0, extra: dict | None = None) -> None:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save(tmp, model.config.max_position_embeddings)
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(), "step": step, **(extra or {})}, tmp / "state.pt")
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


def load_into(path: Path, model, optimizer=None) -> int:
    """Load weights (and optimizer state) saved by :func:`save` into ``model``; return the step."""
    import torch
    from safetensors.torch import load_file

    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # save_pretrained may drop tied duplicates; nothing else may be missing
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"checkpoint {path} does not match the model: missing {missing}, unexpected {unexpected}")
    if optimizer is None:
        return 0
    blob = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    return int(blob["step"])


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default
