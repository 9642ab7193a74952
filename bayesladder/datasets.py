"""Which ladder dataset a command reads when it is not given one.

One rule: a command that reads a fit uses the dataset that fit was made on (its recorded path, checked by
content hash); any other command uses the micro ladder shipped with the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import xarray as xr

from bayesladder import schema
from bayesladder.errors import BayesLadderError


def micro_ladder() -> Path:
    """The micro ladder trained by ``examples/micro_ladder`` (the default dataset of every command)."""
    path = Path(str(resources.files("bayesladder") / "data" / "micro_ladder.nc"))
    if not path.is_file():
        raise BayesLadderError(f"the shipped dataset {path} is missing; reinstall bayesladder or pass --data")
    return path


def describe(path: str | Path) -> str:
    """'the shipped micro ladder (PATH)' for the packaged dataset, else the path."""
    path = Path(path)
    shipped = Path(str(resources.files("bayesladder") / "data" / "micro_ladder.nc"))
    return f"the shipped micro ladder ({path})" if path.resolve() == shipped.resolve() else str(path)


def of_fit(dataset_path: str, data_hash: str, fit_file: str | Path) -> tuple[Path, xr.Dataset]:
    """The dataset a fit was made on: the file it records (or the shipped micro ladder, when that is the one a
    fit made elsewhere recorded), read and checked against the fit's content hash."""
    if not dataset_path:
        raise BayesLadderError(
            f"{fit_file} does not record the dataset it was fitted on (an older fit file); pass it with --data"
        )
    path = Path(dataset_path)
    if not path.is_file():
        shipped = micro_ladder()
        if path.name == shipped.name and schema.content_hash(schema.read(shipped)) == data_hash:
            path = shipped
        else:
            raise BayesLadderError(
                f"{fit_file} was fitted on {path}, which is no longer there; pass that dataset with --data"
            )
    ds = schema.read(path)
    if schema.content_hash(ds) != data_hash:
        raise BayesLadderError(
            f"{path} has changed since {fit_file} was fitted on it; pass the dataset it was fitted on with --data, "
            "or refit"
        )
    return path, ds
