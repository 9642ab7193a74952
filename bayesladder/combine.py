"""Adding evaluations to a ladder dataset: new runs, new checkpoints of known runs, new tasks.

``add_evaluations(ds, new)`` keeps every checkpoint of ``ds`` and adds those of ``new`` in token order; a
checkpoint of ``new`` at the same run and tokens as one of ``ds`` replaces it. A run in both must have the
same N. Run and task metadata come from ``ds`` where it has them, from ``new`` otherwise.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

from bayesladder.errors import BayesLadderError


def add_evaluations(ds: xr.Dataset, new: xr.Dataset) -> xr.Dataset:
    _check_compatible(ds, new)
    runs = _union(ds["run"].values, new["run"].values)
    tasks = _union(ds["task"].values, new["task"].values)
    valsets = _union(*(x["valset"].values for x in (ds, new) if "valset" in x.dims))
    # per run: (tokens, source dataset, checkpoint index), new ones last so they win on equal tokens
    order = {}
    for run in runs:
        points = {}
        for source in (ds, new):
            if run in source["run"].values:
                tokens = source["tokens"].sel(run=run).values
                for i in np.flatnonzero(~np.isnan(tokens)):
                    points[float(tokens[i])] = (source, int(i))
        order[run] = [points[t] for t in sorted(points)]
    width = max(len(p) for p in order.values())
    coords = {"run": runs, "checkpoint": np.arange(width), "task": tasks}
    if valsets:
        coords["valset"] = valsets
    out = xr.Dataset(coords=coords)
    for name in _union(ds.data_vars, new.data_vars):
        template = ds[name] if name in ds else new[name]
        if "checkpoint" in template.dims:
            out[name] = _per_checkpoint(name, template, order, coords, width)
        elif template.dims in (("run",), ("task",)):
            dim = template.dims[0]
            out[name] = xr.DataArray(
                [_first_known(name, dim, label, ds, new) for label in coords[dim]], dims=(dim,), attrs=template.attrs
            )
    for coord in coords:
        out[coord].attrs.update((ds[coord] if coord in ds.coords else new[coord]).attrs)
    out.attrs.update(ds.attrs)
    out.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return out


def _check_compatible(ds: xr.Dataset, new: xr.Dataset) -> None:
    shared = [r for r in map(str, new["run"].values) if r in ds["run"].values]
    differing = [r for r in shared if float(ds["n_params"].sel(run=r)) != float(new["n_params"].sel(run=r))]
    if differing:
        raise BayesLadderError(
            f"run(s) {', '.join(differing)} already in the dataset with another N (n_params); "
            "give the new evaluation another run name or the same N"
        )
    for name in ("task_loss", "val_loss"):
        units = [x[name].attrs.get("units") for x in (ds, new) if name in x]
        if len(set(units)) > 1:
            raise BayesLadderError(f"the dataset's {name} is in {units[0]}, the new evaluation's in {units[1]}")


def _union(*label_lists) -> list[str]:
    return list(dict.fromkeys(str(v) for labels in label_lists for v in labels))


def _per_checkpoint(name: str, template: xr.DataArray, order: dict, coords: dict, width: int) -> xr.DataArray:
    trailing = [d for d in template.dims if d not in ("run", "checkpoint")]
    shape = (len(coords["run"]), width, *(len(coords[d]) for d in trailing))
    values = np.full(shape, np.nan)
    for r, run in enumerate(coords["run"]):
        for c, (source, i) in enumerate(order[run]):
            if name in source:
                point = source[name].sel(run=run).isel(checkpoint=i)
                if trailing:
                    point = point.reindex({d: coords[d] for d in trailing})
                values[r, c] = point.values
    return xr.DataArray(values, dims=("run", "checkpoint", *trailing), attrs=template.attrs)


def _first_known(name: str, dim: str, label: str, ds: xr.Dataset, new: xr.Dataset):
    """The value for ``label`` from ``ds``, or from ``new`` where ``ds`` lacks it (or has NaN)."""
    values = [x[name].sel({dim: label}).item() for x in (ds, new) if name in x and label in x[dim].values]
    known = [v for v in values if not (isinstance(v, float) and np.isnan(v))]
    if known or values:
        return (known or values)[0]
    return "" if (ds[name] if name in ds else new[name]).dtype.kind in "OUS" else np.nan
