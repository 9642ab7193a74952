"""Compiling a block's model with nutpie, and compiling a fit's later models ahead in a second process.

numba compiles each model's log density into PyTensor's cache on disk: the operations every model of a block shares,
once per machine, and each model's own function of its data, once per dataset, runs and tasks. The first fit after
installing spends most of its time there (the OLMo paper ladder's two-step model: about 30 s of 50), and the first
fit of a new dataset 3 to 4 s a model, nine models in a default fit; all of it on one core while the other waits. Where
the cache lacks a model that a fit will sample, a child process compiles it meanwhile, so that this process loads its
code from the cache. The child only fills the cache: the draws are the same with or without it (numba compiles
without fast-math, :data:`NUMBA_FASTMATH`), and a child that fails costs nothing but the time it would have saved.
Once a model has been compiled on a machine, later fits of it start no child.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import xarray as xr

from bayesladder.bayes.data import ModelData, prepare
from bayesladder.bayes.priors import Prior, to_json

# numba compiles each model without fast-math: with PyTensor's default fast-math flags a seed's draws depended on
# whether numba compiled the model's operations afresh or loaded them from PyTensor's cache, so the first fit after
# installing drew differently from every later one (OLMo paper ladder, 8 tasks, two-step, seed 0: min bulk ESS 1508
# with a fresh cache, 1955 with a warm one); without it the draws are the same either way (2045 both)
NUMBA_FASTMATH = False

_ACTIVE: contextvars.ContextVar[_Child | None] = contextvars.ContextVar("compiling_ahead", default=None)


@dataclass(frozen=True)
class Job:
    """One block of the model of some runs and tasks of a dataset: a model a fit samples, compiles and caches."""

    dataset: str  # the dataset's content hash (schema.content_hash)
    runs: tuple[str, ...]
    tasks: tuple[str, ...]
    need_loss: bool  # as ``data.prepare`` takes it
    block: str

    def data(self, ds: xr.Dataset) -> ModelData:
        return prepare(ds, list(self.runs), list(self.tasks), need_loss=self.need_loss)


def compile_block(data: ModelData, job: Job, priors: Mapping[str, Prior]):
    """The job's model, compiled by nutpie (numba, without fast-math), and marked as in the cache."""
    import nutpie
    import pytensor

    from bayesladder.bayes.model import build_model

    with pytensor.config.change_flags(numba__fastmath=NUMBA_FASTMATH):
        compiled = nutpie.compile_pymc_model(build_model(data, priors, blocks=(job.block,)))
    marker = _marker(job, priors)
    with contextlib.suppress(OSError):  # an unwritable cache: later fits compile ahead again, as this one did
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return compiled


def uncompiled(jobs: Sequence[Job], priors: Mapping[str, Prior]) -> list[Job]:
    """Those of ``jobs`` whose code the cache lacks, each once: no fit on this machine has compiled them yet."""
    return [job for job in dict.fromkeys(jobs) if not _marker(job, priors).exists()]


def _marker(job: Job, priors: Mapping[str, Prior]) -> Path:
    """A file in PyTensor's cache folder saying the job's model is in the cache, for these priors and these versions
    of the packages that make it (so a purged cache, or an upgrade, compiles ahead again)."""
    import numba
    import pytensor

    from bayesladder import __version__

    versions = f"{__version__}-pytensor{pytensor.__version__}-numba{numba.__version__}-fm{NUMBA_FASTMATH:d}"
    key = hashlib.sha256(repr((job, to_json(priors), versions)).encode()).hexdigest()[:16]
    return Path(pytensor.config.base_compiledir) / "bayesladder" / f"{job.block}-{key}"


class _Child:
    """The process compiling the jobs, in order; it prints each job's index once compiled."""

    def __init__(self, ds: xr.Dataset, jobs: Sequence[Job], priors: Mapping[str, Prior]):
        import pytensor

        flags = [os.environ.get("PYTENSOR_FLAGS", ""), f"base_compiledir={pytensor.config.base_compiledir}"]
        env = {
            **os.environ,
            "PYTENSOR_FLAGS": ",".join(filter(None, flags)),
            "PYTHONPATH": os.pathsep.join(filter(None, sys.path)),
        }
        self.jobs = list(jobs)
        self.pending = set(self.jobs)
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        with contextlib.suppress(OSError):  # a child gone already has compiled nothing
            self.process.stdin.write(pickle.dumps((ds, self.jobs, dict(priors))))
            self.process.stdin.close()

    def wait_for(self, job: Job) -> None:
        while job in self.pending and (line := self.process.stdout.readline()):
            self.pending.discard(self.jobs[int(line)])
        self.pending.discard(job)  # compiled, or the child ended without it

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()


@contextlib.contextmanager
def compiling_ahead(ds: xr.Dataset, jobs: Sequence[Job], priors: Mapping[str, Prior]) -> Iterator[None]:
    """Compile in a child process, for as long as the context lasts and in their order, those of ``jobs`` (models of
    ``ds``, in the order the caller samples them) that the cache lacks, but the first, which the caller compiles at
    once itself; unless an enclosing context (a fit's, around its designs') already does."""
    if _ACTIVE.get() is not None or not (jobs := uncompiled(jobs[1:], priors)):
        yield
        return
    child = _Child(ds, jobs, priors)
    token = _ACTIVE.set(child)
    try:
        yield
    finally:
        _ACTIVE.reset(token)
        child.stop()


def wait_for(job: Job) -> None:
    """Until the child compiling ahead, if any, has compiled ``job`` (or ended): call before compiling it here."""
    if (child := _ACTIVE.get()) is not None:
        child.wait_for(job)


def _compile(ds: xr.Dataset, jobs: Sequence[Job], priors: Mapping[str, Prior]) -> None:
    prepared = {}  # the blocks of a design share their data
    for index, job in enumerate(jobs):
        inputs = (job.runs, job.tasks, job.need_loss)
        if inputs not in prepared:
            prepared[inputs] = job.data(ds)
        compile_block(prepared[inputs], job, priors)
        print(index, flush=True)


if __name__ == "__main__":
    _compile(*pickle.load(sys.stdin.buffer))
