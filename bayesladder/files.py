"""Writing files atomically: into a temp file beside the target, renamed over it once complete, so that a
reader never sees a partial file and a failure leaves the previous file (or none) in place."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bayesladder.errors import BayesLadderError


def check_writable(path: str | os.PathLike, example: str = "out") -> Path:
    """Refuse an output file that cannot be written, before the work that makes it: a folder, a path below a file,
    a location without write access (probed with a temporary file in its nearest existing folder, removed at
    once). Folders that do not exist yet are fine: writing creates them."""
    path = Path(path)
    if path.is_dir():
        raise BayesLadderError(f"{path} is a folder; give a file name for the output, e.g. {path / example}")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BayesLadderError(f"{path}: cannot be written ({existing} is a file, not a folder); choose another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise BayesLadderError(
            f"{path}: cannot be written ({exc.strerror or exc} in {existing}); choose a writable location"
        ) from None
    return path


def check_not_read(path: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an output file that is one of the files the command reads (``inputs``: what each is called, e.g.
    {"fit file": ...}): writing it would replace what was read (a report written over its own fit file)."""
    path = Path(path)
    for what, given in inputs.items():
        if given is not None and path.exists() and Path(given).exists() and path.samefile(given):
            raise BayesLadderError(f"{path} is the {what} this command reads; write the output to another file")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], example: str = "out") -> Path:
    """Call ``write(temp_path)``, then rename the temp file to ``path``; OSErrors become one BayesLadderError."""
    path = check_writable(path, example)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise BayesLadderError(
            f"{path}: cannot be written ({exc.strerror or exc}); choose a writable location"
        ) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise BayesLadderError(
            f"{path}: cannot be written ({exc.strerror or exc}); choose a writable location"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), example=Path(path).name)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), example=Path(path).name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
