"""The ladder dataset: every evaluated checkpoint of every run, per task.

Every producer (importers, the evaluator) builds it with :func:`build_dataset` and writes it with
:func:`write`; every consumer (fits, reports) reads it with :func:`read`. Checkpoints of a run are
stored along the ``checkpoint`` dimension in training order and padded with NaN after the run's
last evaluation, so runs with different evaluation cadences share one array.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from bayesladder import __version__
from bayesladder.errors import BayesLadderError
from bayesladder.files import atomic_write

ROLES = ("ladder", "target")
# What a task loss can be measured in (the paper's is bits per byte); a dataset says which in the
# task_loss variable's units and its attribute task_loss_units.
TASK_LOSS_UNITS = {
    "bits/byte": "task loss: -log2 p(correct continuation) per UTF-8 byte",
    "nats/token": "task loss: -ln p(correct continuation) per token",
    "nats": "task loss: -ln p(correct continuation), summed over its tokens",
}
N_PARAMS_CONVENTION_DEFAULT = "all transformer-block parameters plus the input embedding matrix"


@dataclass(frozen=True)
class Field:
    dims: tuple[str, ...]
    kind: str  # "f" float, "i" integer, "U" string
    long_name: str
    units: str
    required: bool = True


FIELDS: dict[str, Field] = {
    "task_loss": Field(
        ("run", "checkpoint", "task"), "f", "task loss: -log2 p(correct continuation) per UTF-8 byte", "bits/byte"
    ),
    "accuracy": Field(("run", "checkpoint", "task"), "f", "ranked-classification accuracy", "1"),
    "accuracy_raw": Field(
        ("run", "checkpoint", "task"),
        "f",
        "ranked-classification accuracy without length normalisation",
        "1",
        required=False,
    ),
    "tokens": Field(("run", "checkpoint"), "f", "training tokens seen at the checkpoint (D)", "tokens"),
    "flops": Field(("run", "checkpoint"), "f", "training compute at the checkpoint, 6 N D", "FLOPs"),
    "step": Field(("run", "checkpoint"), "f", "optimizer step of the checkpoint", "1", required=False),
    "val_loss": Field(
        ("run", "checkpoint", "valset"), "f", "validation-set language-modelling loss", "nats/token", required=False
    ),
    "size": Field(("run",), "U", "model size label", ""),
    "length": Field(("run",), "U", "training length label, a multiple of Chinchilla-optimal tokens", ""),
    "multiplier": Field(("run",), "f", "training tokens as a multiple of 20 N", "1"),
    "replicate": Field(("run",), "i", "replicate index of an independent rerun of the same recipe", "1"),
    "n_params": Field(("run",), "f", "model parameters N", "parameters"),
    "role": Field(("run",), "U", "ladder rung or prediction target", ""),
    "source": Field(("run",), "U", "where the run's results came from", ""),
    "schedule": Field(("run",), "U", "learning-rate schedule of the run", ""),
    "n_questions": Field(("task",), "f", "number of questions in the task (NaN if unknown)", "questions"),
    "chance": Field(("task",), "f", "chance-level accuracy (NaN if unknown)", "1"),
    "source_key": Field(("task",), "U", "the task's name in the source logs", ""),
}


def build_dataset(
    *,
    runs: list[dict],
    tasks: list[dict],
    task_loss: np.ndarray,
    accuracy: np.ndarray,
    tokens: np.ndarray,
    step: np.ndarray | None = None,
    accuracy_raw: np.ndarray | None = None,
    val_loss: np.ndarray | None = None,
    valsets: list[str] | None = None,
    producer: str,
    n_params_convention: str = N_PARAMS_CONVENTION_DEFAULT,
    task_loss_units: str = "bits/byte",
) -> xr.Dataset:
    """Assemble a ladder dataset from plain arrays (NaN-padded along checkpoints).

    ``runs``: dicts with name, size, length, multiplier, replicate, n_params, role, source, schedule.
    ``tasks``: dicts with name, n_questions, chance, source_key.
    ``task_loss_units``: one of :data:`TASK_LOSS_UNITS`.
    """
    check_task_loss_units(task_loss_units)
    n_params = np.array([r["n_params"] for r in runs], dtype=float)
    tokens = np.asarray(tokens, dtype=float)
    data = {
        "task_loss": task_loss,
        "accuracy": accuracy,
        "tokens": tokens,
        "flops": 6.0 * n_params[:, None] * tokens,
        "size": [r["size"] for r in runs],
        "length": [r["length"] for r in runs],
        "multiplier": [float(r["multiplier"]) for r in runs],
        "replicate": [int(r["replicate"]) for r in runs],
        "n_params": n_params,
        "role": [r["role"] for r in runs],
        "source": [r.get("source", "") for r in runs],
        "schedule": [r.get("schedule", "") for r in runs],
        "n_questions": [float(t.get("n_questions", np.nan)) for t in tasks],
        "chance": [float(t.get("chance", np.nan)) for t in tasks],
        "source_key": [t.get("source_key", t["name"]) for t in tasks],
    }
    if step is not None:
        data["step"] = step
    if accuracy_raw is not None:
        data["accuracy_raw"] = accuracy_raw
    if val_loss is not None:
        data["val_loss"] = val_loss
    coords = {
        "run": [r["name"] for r in runs],
        "checkpoint": np.arange(tokens.shape[1]),
        "task": [t["name"] for t in tasks],
    }
    if val_loss is not None:
        coords["valset"] = list(valsets)
    ds = xr.Dataset({name: (FIELDS[name].dims, np.asarray(value)) for name, value in data.items()}, coords=coords)
    for name, field in FIELDS.items():
        if name in ds:
            ds[name].attrs.update(long_name=field.long_name, units=field.units)
    ds["task_loss"].attrs.update(long_name=TASK_LOSS_UNITS[task_loss_units], units=task_loss_units)
    ds["run"].attrs.update(long_name="run name", units="")
    ds["checkpoint"].attrs.update(long_name="evaluation index within the run, in training order", units="1")
    ds["task"].attrs.update(long_name="task name", units="")
    if "valset" in ds.coords:
        ds["valset"].attrs.update(long_name="validation set", units="")
    ds.attrs.update(
        producer=producer,
        bayesladder_version=__version__,
        n_params_convention=n_params_convention,
        task_loss_units=task_loss_units,
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    return ds


def check_task_loss_units(units: str) -> None:
    if units not in TASK_LOSS_UNITS:
        raise BayesLadderError(f"unknown task-loss units '{units}'; use one of {', '.join(TASK_LOSS_UNITS)}")


def validate(ds: xr.Dataset) -> list[str]:
    """Every problem that makes ``ds`` unusable as a ladder dataset; empty when it is fine.

    A variable that is missing or malformed is reported once, and the value checks that need it are
    skipped; every other check still runs, so one call lists every problem.
    """
    problems = []
    sound = set()
    for name, field in FIELDS.items():
        if name not in ds.variables:
            if field.required:
                problems.append(f"variable '{name}' is missing")
            continue
        var = ds[name]
        if var.dims != field.dims:
            problems.append(f"variable '{name}' has dims {var.dims}, expected {field.dims}")
        elif var.dtype.kind not in _compatible_kinds(field.kind):
            problems.append(f"variable '{name}' has dtype {var.dtype}, expected {_kind_label(field.kind)}")
        else:
            sound.add(name)
    for dim in ("run", "task"):
        if dim not in ds.dims:
            continue
        labels = [str(v) for v in ds[dim].values]
        if len(labels) == 0:
            problems.append(f"dimension '{dim}' is empty")
        duplicates = sorted({v for v in labels if labels.count(v) > 1})
        if duplicates:
            problems.append(f"duplicate {dim} names: {', '.join(duplicates)}")
    if "n_params" in sound:
        n_params = ds["n_params"].values
        for run in ds["run"].values[~(np.isfinite(n_params) & (n_params > 0))]:
            problems.append(f"run '{run}': n_params must be a positive number")
    if "role" in sound:
        bad_roles = sorted(set(map(str, ds["role"].values)) - set(ROLES))
        if bad_roles:
            problems.append(f"unknown role(s) {bad_roles}; use one of {list(ROLES)}")
    if "tokens" in sound:
        tokens = ds["tokens"].values
        for i, run in enumerate(ds["run"].values):
            present = ~np.isnan(tokens[i])
            if not present.any():
                problems.append(f"run '{run}' has no evaluated checkpoint")
                continue
            if not present[: present.sum()].all():
                problems.append(f"run '{run}': checkpoints must be packed at the start (NaN only after the last one)")
            d = tokens[i][present]
            if ((d <= 0) | ~np.isfinite(d)).any():
                problems.append(f"run '{run}': tokens must be positive finite numbers")
            if (np.diff(d) < 0).any():
                problems.append(f"run '{run}': tokens must not decrease from one checkpoint to the next")
    if "accuracy" in sound:
        acc = ds["accuracy"].values
        if np.nanmin(acc, initial=0.0) < 0 or np.nanmax(acc, initial=1.0) > 1:
            problems.append("accuracy must lie in [0, 1]")
    if "task_loss" in sound:
        loss = ds["task_loss"].values
        if np.nanmin(loss, initial=0.0) < 0 or np.isinf(loss).any():
            problems.append("task_loss must be non-negative and finite")
    if "chance" in sound:
        chance = ds["chance"].values
        bad_chance = ~np.isnan(chance) & ((chance <= 0) | (chance >= 1))
        for task in ds["task"].values[bad_chance]:
            problems.append(f"task '{task}': chance must lie strictly between 0 and 1")
    final = ds.attrs.get("final_checkpoints")
    if final is not None and not (np.ndim(final) == 0 and float(final) >= 1 and float(final) == int(final)):
        problems.append("attribute 'final_checkpoints' must be a whole number >= 1")
    if "n_questions" in sound:
        nq = ds["n_questions"].values
        for task in ds["task"].values[~np.isnan(nq) & (nq < 1)]:
            problems.append(f"task '{task}': n_questions must be at least 1")
    return problems


def validate_or_raise(ds: xr.Dataset, where: str) -> None:
    problems = validate(ds)
    if problems:
        raise BayesLadderError(
            f"{where} is not a valid ladder dataset: {'; '.join(problems)}. "
            "Re-create it with 'bayesladder import' (see 'bayesladder import --help')."
        )


def write(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Validate, then write atomically: a temp file beside the target, renamed over it when complete."""
    path = Path(path)
    validate_or_raise(ds, "the dataset to write")
    atomic_write_netcdf(ds, path)
    return path


def atomic_write_netcdf(obj, path: Path) -> None:
    """Write an xarray Dataset or DataTree to ``path`` so that readers never see a partial file."""
    atomic_write(path, lambda tmp: obj.to_netcdf(tmp, engine="h5netcdf"), example="out.nc")


def read(path: str | os.PathLike) -> xr.Dataset:
    """Load and validate a ladder dataset; any problem becomes one BayesLadderError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise BayesLadderError(
            f"{path} is a folder, not a ladder dataset; give its .nc file (made by 'bayesladder import')"
        )
    if not path.is_file():
        raise BayesLadderError(f"{path}: no such file; create one with 'bayesladder import'")
    try:
        ds = xr.load_dataset(path, engine="h5netcdf")
    except (OSError, ValueError, KeyError, TypeError) as exc:  # h5py/xarray: a non-netCDF file
        raise BayesLadderError(
            f"{path}: not a readable netCDF file ({type(exc).__name__}); create one with 'bayesladder import'"
        ) from None
    if "model_key" in ds.attrs:
        raise BayesLadderError(
            f"{path} is a fit file (written by 'bayesladder fit'), not a ladder dataset; fit files go to --fit, "
            "and --data (or eval's -o) takes the ladder dataset"
        )
    validate_or_raise(ds, str(path))
    return ds


def loss_units(ds: xr.Dataset) -> str:
    """What the dataset's task loss is measured in (one of :data:`TASK_LOSS_UNITS`)."""
    return str(ds["task_loss"].attrs.get("units", "bits/byte"))


def content_hash(ds: xr.Dataset) -> str:
    """A short hash of the numbers and labels a fit depends on (not of file bytes or timestamps)."""
    h = hashlib.sha256()
    for name in sorted(ds.variables):
        values = np.asarray(ds[name].values)
        h.update(name.encode())
        h.update(values.astype(str).tobytes() if values.dtype.kind in "OUS" else np.ascontiguousarray(values).tobytes())
    return h.hexdigest()[:16]


def n_checkpoints(ds: xr.Dataset) -> xr.DataArray:
    """Number of evaluated checkpoints of each run."""
    return ds["tokens"].notnull().sum("checkpoint")


def _compatible_kinds(kind: str) -> str:
    return {"f": "fiu", "i": "iu", "U": "UOS"}[kind]


def _kind_label(kind: str) -> str:
    return {"f": "a number", "i": "an integer", "U": "text"}[kind]
