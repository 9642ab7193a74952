"""Which runs a fit uses, and the points it fits: final values per run (step 1), checkpoints (step 2).

The rules follow the paper: a run's final task loss and accuracy are the mean of its last 5
checkpoints (a dataset evaluated too sparsely for that says how many in its ``final_checkpoints``
attribute), with D of its last checkpoint; step 2 drops the first ceil(10%) of each run's
checkpoints (warmup, near-chance accuracies). A run evaluated once (a final-only ladder) keeps that
evaluation: step 2 then fits the runs' final points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder.errors import BayesLadderError
from bayesladder.extrapolation import Extent
from bayesladder.targets import KNOWN_TARGETS, Target

FINAL_CHECKPOINTS = 5
STEP2_DROP_FRACTION = 0.10


@dataclass(frozen=True)
class LadderSelection:
    """Ladder runs chosen by size and length labels (None = all), first replicate only by default."""

    sizes: tuple[str, ...] | None = None
    lengths: tuple[str, ...] | None = None
    replicates: tuple[int, ...] = field(default=(0,))

    def describe(self) -> str:
        sizes = ",".join(self.sizes) if self.sizes else "all"
        lengths = ",".join(self.lengths) if self.lengths else "all"
        return f"sizes={sizes} lengths={lengths} replicates={','.join(map(str, self.replicates))}"


PRESETS = {
    "paper": LadderSelection(sizes=("190M", "370M", "760M", "1B"), lengths=("1xC", "2xC", "5xC", "10xC")),
}


def resolve_selection(ladder: str | None, sizes: list[str] | None, lengths: list[str] | None) -> LadderSelection:
    """A preset by name, or an explicit selection; mixing both is refused."""
    if ladder is not None and (sizes or lengths):
        raise BayesLadderError("give either --ladder or --sizes/--lengths, not both")
    if ladder is not None:
        if ladder not in PRESETS:
            raise BayesLadderError(f"unknown ladder preset '{ladder}'; known presets: {', '.join(sorted(PRESETS))}")
        return PRESETS[ladder]
    return LadderSelection(sizes=tuple(sizes) if sizes else None, lengths=tuple(lengths) if lengths else None)


def check_tasks(ds: xr.Dataset, tasks: list[str] | tuple[str, ...]) -> None:
    """Every name is a task of ``ds`` (one error listing the unknown ones and the known)."""
    known = [str(t) for t in ds["task"].values]
    if not tasks:
        raise BayesLadderError(f"no task given (--tasks); give 'all' or some of {', '.join(known)}")
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise BayesLadderError(f"unknown task(s) {', '.join(unknown)}; the dataset has {', '.join(known)}")


def select_runs(ds: xr.Dataset, selection: LadderSelection) -> list[str]:
    """Names of the ladder runs in ``ds`` matching ``selection``; unknown labels are an error."""
    preset = next((name for name, chosen in PRESETS.items() if chosen == selection), None)
    for label, wanted in (("size", selection.sizes), ("length", selection.lengths)):
        known = set(map(str, ds[label].values))
        unknown = sorted(set(wanted or ()) - known)
        if unknown:
            source = f"the ladder preset '{preset}'" if preset else f"--{label}s"
            raise BayesLadderError(
                f"unknown {label}(s) {', '.join(unknown)} (from {source}); {ds.encoding.get('source', 'the dataset')} "
                f"has {', '.join(sorted(known))}: choose from these with --{label}s"
            )
    keep = (ds["role"] == "ladder") & ds["replicate"].isin(list(selection.replicates))
    if selection.sizes:
        keep &= ds["size"].isin(list(selection.sizes))
    if selection.lengths:
        keep &= ds["length"].isin(list(selection.lengths))
    runs = [str(r) for r in ds["run"].values[keep.values]]
    if not runs:
        raise BayesLadderError(f"no ladder run matches {selection.describe()}")
    return runs


def extent(ds: xr.Dataset, runs: list[str]) -> Extent:
    """The N and final D of ``runs``."""
    targets = run_targets(ds, runs)
    return Extent(tuple(t.n_params for t in targets), tuple(t.tokens for t in targets))


def check_sizes(ds: xr.Dataset, runs: list[str]) -> None:
    """A scaling law in N needs runs of at least two N: a ladder of one size is refused (its fit of how loss falls
    with N would be the priors' or arbitrary; OLMo's 1B alone, 5 lengths: 4 divergent transitions)."""
    ladder = extent(ds, runs)
    if ladder.one_n:
        sizes = ", ".join(dict.fromkeys(str(ds["size"].sel(run=r).values) for r in runs))
        raise BayesLadderError(
            f"the ladder's runs in {ds.encoding.get('source', 'the dataset')} are all of one size ({sizes}, N = "
            f"{ladder.n_params[0]:.3g}): a scaling law needs at least 2 sizes to say how loss and accuracy change "
            "with N; select more with --sizes"
        )


def final_points(ds: xr.Dataset, runs: list[str]) -> pd.DataFrame:
    """One row per (run, task): N, D of the last checkpoint, mean loss and accuracy of the last 5."""
    records = []
    window = int(ds.attrs.get("final_checkpoints", FINAL_CHECKPOINTS))
    for run in runs:
        r = ds.sel(run=run)
        present = np.flatnonzero(r["tokens"].notnull().values)
        last = present[-window:]
        for task in ds["task"].values:
            records.append(
                dict(
                    run=run,
                    task=str(task),
                    size=str(r["size"].values),
                    length=str(r["length"].values),
                    n_params=float(r["n_params"]),
                    tokens=float(r["tokens"].values[present[-1]]),
                    task_loss=_mean_of_known(r["task_loss"].sel(task=task).values[last]),
                    accuracy=_mean_of_known(r["accuracy"].sel(task=task).values[last]),
                )
            )
    return pd.DataFrame.from_records(records)


def _mean_of_known(values: np.ndarray) -> float:
    """Mean of the evaluated (non-NaN) values; NaN, without numpy's warning, when there are none."""
    known = values[~np.isnan(values)]
    return float(known.mean()) if known.size else np.nan


def step2_checkpoints(
    ds: xr.Dataset, runs: list[str], task: str, need_loss: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per run of ``runs`` (in their order): (tokens, task loss, accuracy) of its checkpoints after the first
    ceil(10%) are dropped (none of one); only those with an accuracy, and a task loss unless ``need_loss`` is False.

    An evaluation that several runs of a size hold counts once, in the run with the most checkpoints: the branches
    of a warmup-stable-decay ladder hold the stable-phase checkpoints they start from, and counted in every branch
    these identical values would weigh as independent measurements. (Same size, tokens, loss and accuracy: distinct
    runs do not give bit-identical evaluations.)
    """
    chosen = ds.sel(run=runs)  # one selection, then plain arrays: selecting run by run took most of a fit's set-up
    all_tokens = chosen["tokens"].values
    all_loss, all_acc = (chosen[name].sel(task=task).values for name in ("task_loss", "accuracy"))
    size_of = dict(zip(runs, map(str, chosen["size"].values)))
    row = {run: i for i, run in enumerate(runs)}
    longest_first = sorted(runs, key=lambda run: -int((~np.isnan(all_tokens[row[run]])).sum()))
    seen, out = set(), {}
    for run in longest_first:
        i = row[run]
        present = np.flatnonzero(~np.isnan(all_tokens[i]))
        tokens, loss, acc = all_tokens[i, present], all_loss[i, present], all_acc[i, present]
        keys = [(size_of[run], *np.nan_to_num(v, nan=-1.0)) for v in zip(tokens, loss, acc)]
        ok = ~(np.isnan(loss) & need_loss | np.isnan(acc)) & np.array([key not in seen for key in keys], dtype=bool)
        seen.update(keys)
        ok[: step2_kept(len(present)).start] = False
        out[run] = (tokens[ok], loss[ok], acc[ok])
    return {run: out[run] for run in runs}


def step2_kept(count: int) -> slice:
    """Which of a run's ``count`` evaluated checkpoints step 2 keeps: all but the first ceil(10%) (none of one)."""
    return slice(math.ceil(STEP2_DROP_FRACTION * count) if count > 1 else 0, None)


def final_only(ds: xr.Dataset, runs: list[str]) -> bool:
    """Whether every run was evaluated once: step 2 then sees only the runs' final points."""
    return bool((ds["tokens"].sel(run=runs).notnull().sum("checkpoint") <= 1).all())


def trailing_moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and up to ``window - 1`` before it (partial windows at the start)."""
    cumulative = np.cumsum(np.asarray(values, dtype=float))
    out = cumulative.copy()
    out[window:] = cumulative[window:] - cumulative[:-window]
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return out / counts


def resolve_target(ds: xr.Dataset | None, name: str | None, n_params: float | None, tokens: float | None) -> Target:
    """A target by name (a run in the dataset, or a known target) or by explicit N and D."""
    if name is None:
        if n_params is None or tokens is None:
            raise BayesLadderError("give a target: --target NAME, or both --n and --d")
        check_n_and_d(n_params, tokens)
        return Target.at(n_params, tokens)
    if n_params is not None or tokens is not None:
        raise BayesLadderError(f"give either --target {name} or --n and --d, not both: they name two targets")
    if ds is not None and name in ds["run"].values:
        r = ds.sel(run=name)
        last = np.flatnonzero(r["tokens"].notnull().values)[-1]
        return Target(name, float(r["n_params"]), float(r["tokens"].values[last]))
    if name in KNOWN_TARGETS:
        return KNOWN_TARGETS[name]
    runs = list(map(str, ds["run"].values)) if ds is not None else []
    listed = f"({', '.join(runs[:6])}{', ...' if len(runs) > 6 else ''})" if runs else "(pass --data)"
    raise BayesLadderError(
        f"unknown target '{name}'; use a known target ({', '.join(KNOWN_TARGETS)}), a run of the dataset {listed} or --n/--d"
    )


def run_targets(ds: xr.Dataset, runs: list[str]) -> list[Target]:
    """Runs of the dataset as targets: their N and final D."""
    return [resolve_target(ds, run, None, None) for run in runs]


def check_n_and_d(n_params: float, tokens: float) -> None:
    """A target's or a checkpoint's N and D, as given with --n and --d: positive finite numbers."""
    if not all(math.isfinite(v) and v > 0 for v in (n_params, tokens)):
        raise BayesLadderError(
            f"--n and --d must be positive finite numbers: parameters and training tokens, e.g. --n 7e9 --d 2e12 "
            f"(got --n {n_params:g} --d {tokens:g})"
        )


def actual_final(ds: xr.Dataset, run: str) -> pd.DataFrame | None:
    """A run's own final values (mean of its last min(5, rows) checkpoints), if it is in the dataset."""
    if run not in ds["run"].values:
        return None
    return final_points(ds, [run]).set_index("task")[["task_loss", "accuracy"]]
