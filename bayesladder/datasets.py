"""Datasets shipped with the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bayesladder.errors import BayesLadderError


def micro_ladder() -> Path:
    """The micro ladder trained by ``examples/micro_ladder`` (the default dataset of ``fit``)."""
    path = Path(str(resources.files("bayesladder") / "data" / "micro_ladder.nc"))
    if not path.is_file():
        raise BayesLadderError(f"the shipped dataset {path} is missing; reinstall bayesladder or pass --data")
    return path
