"""Compiling a block's model with nutpie, and compiling a fit's later blocks ahead in a second process.

numba compiles each block's log density into PyTensor's cache on disk, and the first fit after installing spends
most of its time there (the OLMo paper ladder's two-step model: about 30 s of 50), on one core while the other
waits. Where the cache holds no code for a block yet, a child process compiles it meanwhile, so that this
process loads it from the cache. The child only fills the cache: the draws are the same with or without it (numba
compiles without fast-math, :data:`NUMBA_FASTMATH`), and a child that fails costs nothing but the time it would have
saved. Once a block has been compiled on a machine, later fits start no child.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from bayesladder.bayes.data import ModelData
from bayesladder.bayes.priors import Prior

# numba compiles each model without fast-math: with PyTensor's default fast-math flags a seed's draws depended on
# whether numba compiled the model's operations afresh or loaded them from PyTensor's cache, so the first fit after
# installing drew differently from every later one (OLMo paper ladder, 8 tasks, two-step, seed 0: min bulk ESS 1508
# with a fresh cache, 1955 with a warm one); without it the draws are the same either way (2045 both)
NUMBA_FASTMATH = False

Job = tuple[ModelData, str]  # a block of the model of that data
_ACTIVE: contextvars.ContextVar[_Child | None] = contextvars.ContextVar("compiling_ahead", default=None)


def compile_block(data: ModelData, block: str, priors: Mapping[str, Prior]):
    """One block's model, compiled by nutpie (numba, without fast-math), and marked as in the cache."""
    import nutpie
    import pytensor

    from bayesladder.bayes.model import build_model

    with pytensor.config.change_flags(numba__fastmath=NUMBA_FASTMATH):
        compiled = nutpie.compile_pymc_model(build_model(data, priors, blocks=(block,)))
    marker = _marker(block)
    with contextlib.suppress(OSError):  # an unwritable cache: later fits compile ahead again, as this one did
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return compiled


def uncompiled(blocks: Sequence[str]) -> list[str]:
    """Those of ``blocks`` whose code the cache lacks: no fit on this machine has compiled them yet."""
    return [block for block in blocks if not _marker(block).exists()]


def _marker(block: str) -> Path:
    """A file in PyTensor's cache folder saying this block's code is in the cache, for these versions of the
    packages that make it (so a purged cache, or an upgrade, compiles ahead again)."""
    import numba
    import pytensor

    from bayesladder import __version__

    versions = f"{__version__}-pytensor{pytensor.__version__}-numba{numba.__version__}-fm{NUMBA_FASTMATH:d}"
    return Path(pytensor.config.base_compiledir) / "bayesladder" / f"{block}-{versions}"


class _Child:
    """The process compiling the jobs; it prints each block's name once compiled."""

    def __init__(self, jobs: Sequence[Job], priors: Mapping[str, Prior]):
        import pytensor

        flags = [os.environ.get("PYTENSOR_FLAGS", ""), f"base_compiledir={pytensor.config.base_compiledir}"]
        env = {
            **os.environ,
            "PYTENSOR_FLAGS": ",".join(filter(None, flags)),
            "PYTHONPATH": os.pathsep.join(filter(None, sys.path)),
        }
        self.pending = {block for _, block in jobs}
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        with contextlib.suppress(OSError):  # a child gone already has compiled nothing
            self.process.stdin.write(pickle.dumps((list(jobs), dict(priors))))
            self.process.stdin.close()

    def wait_for(self, block: str) -> None:
        while block in self.pending and (line := self.process.stdout.readline()):
            self.pending.discard(line.decode().strip())
        self.pending.discard(block)  # compiled, or the child ended without it

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def compiling_ahead(jobs: Sequence[Job], priors: Mapping[str, Prior]) -> Iterator[None]:
    """Compile in a child process, for as long as the context lasts, those of ``jobs`` whose block the cache lacks;
    unless an enclosing context (a fit's, around its designs') already does."""
    missing = set(uncompiled([block for _, block in jobs]))
    jobs = [(data, block) for data, block in jobs if block in missing]
    if not jobs or _ACTIVE.get() is not None:
        yield
        return
    child = _Child(jobs, priors)
    token = _ACTIVE.set(child)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        child.stop()


def wait_for(block: str) -> None:
    """Until the child compiling ahead, if any, has compiled ``block`` (or ended): call before compiling it here."""
    if (child := _ACTIVE.get()) is not None:
        child.wait_for(block)


def _compile(jobs: Sequence[Job], priors: Mapping[str, Prior]) -> None:
    for data, block in jobs:
        compile_block(data, block, priors)
        print(block, flush=True)


if __name__ == "__main__":
    _compile(*pickle.load(sys.stdin.buffer))
