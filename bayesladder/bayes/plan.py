"""``bayesladder plan``: which rung to train next, ranked by how much it narrows the target's prediction per FLOP.

A candidate rung is a size (one of the dataset's, or a new one with its N) at a length (one of the dataset's, a
multiple like ``3xC``, or a number of tokens); a cell the fit already holds is a rerun. Each is scored by the
expected narrowing of the target's 90% accuracy interval (its width averaged over the fitted tasks, in accuracy
units) once the rung is trained and the model updated on it (``bayes.preposterior``), divided by the rung's training
compute 6ND: ``gain_per_flop``, which alone sets the rank. Beside it are the target's expected CRPS before and after
(``crps_before``, ``crps_after``: the whole predictive's spread, where the width sees two quantiles; not ranked on)
and the expected drop of each term of the target's predictive variance, which says *why* a rung helps: ``parameters`` (the curves and the trend in N), ``size effects`` (the
target size's own deviation), ``discrepancy`` (kappa x e-folds of N and of tokens per parameter beyond the ladder) and ``noise`` (measurement).

With a budget, rungs are chosen greedily: each step takes the candidate with the best gain per FLOP given the rungs
already chosen (their outcomes simulated jointly with its own), until none fits in what is left or none narrows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from bayesladder import schema
from bayesladder.bayes.preposterior import (
    LEARNS,
    MAX_DRAWS,
    OUTCOMES,
    SAME_SIZE,
    TERMS,
    Evaluation,
    Preposterior,
    Rung,
)
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import final_points, select_runs
from bayesladder.targets import Target

COLUMNS = ["rank", "size", "length", "kind", "n_params", "tokens", "flops", "width_before", "width_after",
           "width_after_se", "crps_before", "crps_after", "gain", "gain_per_flop", "driver", *(f"drop_{t.replace(' ', '_')}" for t in TERMS),
           *(f"learns_{kind}" for kind in LEARNS), "ess", "step", "cumulative_flops", "width_after_step",
           "target"]  # fmt: skip
MULTIPLE = re.compile(r"^(\d+(?:\.\d+)?)xC$")  # a length as a multiple of the dataset's 1xC tokens per parameter
FEW_DRAWS = 50  # effective draws below which an update is flagged as rough


# ---------------------------------------------------------------- candidates
def resolve_candidates(
    ds: xr.Dataset,
    fitted,
    target: Target,
    target_size: str | None = None,
    sizes: list[str] | None = None,
    lengths: list[str] | None = None,
    table: pd.DataFrame | None = None,
) -> list[Rung]:
    """The candidate rungs: the rows of ``table`` (columns size, length and, for what ``ds`` does not know, n_params
    and tokens), or ``sizes`` x ``lengths``. Sizes are labels of ``ds`` or ``LABEL=N``; lengths are labels of
    ``ds``, multiples like ``3xC``, or ``LABEL=D``. Without either, the default: the fit's sizes, the dataset's
    other sizes below the target's N, a new size midway between the fit's largest and the target where the dataset
    has none between them, and the target's own size, at the fit's lengths, each cheaper than the target."""
    fit_runs = select_runs(ds, fitted.config.selection)
    fit_lengths = list(dict.fromkeys(map(str, ds["length"].sel(run=fit_runs).values)))
    pairs: list[tuple[str, str, float | None, float | None]]
    if table is not None and (sizes or lengths):
        raise BayesLadderError("give either --candidates FILE or --sizes/--lengths, not both")
    if table is not None:
        pairs = [(str(r["size"]), str(r["length"]), _optional(r, "n_params"), _optional(r, "tokens"))
                 for r in table.to_dict(orient="records")]  # fmt: skip
        explicit = True
    elif sizes or lengths:
        pairs = [(s, v, None, None) for s in sizes or fitted.sizes for v in lengths or fit_lengths]
        explicit = True
    else:
        own = target_size or _label(target.n_params)
        ladder = {str(s): float(n) for s, n in zip(ds["size"].values, ds["n_params"].values)}
        below = [s for s, n in ladder.items() if s not in fitted.sizes and n < target.n_params * (1 - SAME_SIZE)]
        chosen = list(dict.fromkeys([*fitted.sizes, *below, *_midway(fitted, ladder, below, target.n_params)]))
        if own not in chosen:
            chosen.append(own if own in ladder else f"{own}={target.n_params:.6g}")
        pairs = [(s, v, None, None) for s in chosen for v in fit_lengths]
        explicit = False
    finals = final_points(ds, list(map(str, ds["run"].values))).drop_duplicates("run").set_index("run")
    sizes = {str(s): float(n) for s, n in zip(ds["size"].values, ds["n_params"].values)}
    sizes |= {s: float(np.exp(x + fitted.data.log_n_ref)) for s, x in zip(fitted.sizes, fitted.data.size_x)}
    new = {}  # sizes given with their N (LABEL=N, or an n_params column) serve every row that names them
    for size, _, given, _ in pairs:
        label, n = _split(size, given, "size")
        if n is not None:
            if label in sizes and abs(np.log(n / sizes[label])) > SAME_SIZE:
                raise BayesLadderError(
                    f"size '{label}' has N = {sizes[label]:.4g} in the dataset, not {n:.4g}; give the new size "
                    "another label"
                )
            if abs(np.log(n / new.setdefault(label, n))) > SAME_SIZE:
                raise BayesLadderError(f"size '{label}' is given two parameter counts; give each size one N")
    sizes |= new
    rungs = [_rung(ds, finals, fitted, sizes, size, length, d) for size, length, _, d in pairs]
    _check_labels(rungs)
    if not explicit:
        rungs = [r for r in rungs if r.flops < 6.0 * target.n_params * target.tokens]
    if not rungs:
        raise BayesLadderError("no candidate rung: give --sizes/--lengths or --candidates")
    return rungs


def _midway(fitted, ladder: dict[str, float], below: list[str], target_n: float) -> list[str]:
    """A new size (``LABEL=N``) at the geometric middle of the fit's largest N and the target's, where no size of the
    dataset lies between them: without it a ladder of one length, whose target's own size costs as much as the
    target at every fitted length, would be offered reruns alone."""
    largest = float(np.exp(np.max(fitted.data.size_x) + fitted.data.log_n_ref))
    if target_n <= largest * np.exp(2 * SAME_SIZE) or any(ladder[s] > largest for s in below):
        return []
    n_params = float(np.sqrt(largest * target_n))
    label = _label(n_params)
    return [] if label in ladder else [f"{label}={n_params:.6g}"]


def read_candidates(path: str | Path) -> pd.DataFrame:
    """A candidates CSV: columns size and length, optionally n_params and tokens (needed for what the dataset
    does not know)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BayesLadderError(
            f"{path}: not a readable CSV file ({type(exc).__name__}); --candidates takes a CSV with columns size, "
            "length and optionally n_params, tokens"
        ) from None
    missing = [c for c in ("size", "length") if c not in table.columns]
    if missing:
        raise BayesLadderError(
            f"{path}: lacks column(s) {', '.join(missing)}; a candidates file has columns size, length and "
            "optionally n_params, tokens"
        )
    if table.empty:
        raise BayesLadderError(f"{path}: has no candidate rows")
    first = {}
    for line, (size, length) in enumerate(zip(table["size"], table["length"]), start=2):
        if first.setdefault((size.strip(), length.strip()), line) != line:
            raise BayesLadderError(
                f"{path}, line {line}: candidate {size}-{length} repeats line {first[(size.strip(), length.strip())]}; "
                "list each candidate once"
            )
    for column in ("n_params", "tokens"):
        if column in table.columns:
            for line, value in enumerate(table[column], start=2):
                if value.strip() and not _positive(value):
                    raise BayesLadderError(f"{path}, line {line}: {column} '{value}' is not a positive number")
    return table


def _optional(row: dict, column: str) -> float | None:
    value = str(row.get(column, "")).strip()
    return float(value) if value else None


def _positive(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


def _label(n_params: float) -> str:
    """A size label from N: 3.2e9 -> '3.2B', 7.6e8 -> '760M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n_params >= scale:
            return f"{n_params / scale:.3g}{unit}"
    return f"{n_params:.3g}"


def _rung(ds, finals, fitted, sizes: dict[str, float], size: str, length: str, tokens: float | None) -> Rung:
    """One candidate, its N (``sizes``) and D from the dataset where not given, evaluated on the schedule of the
    ladder's run most like it."""
    size = size.split("=", 1)[0].strip()
    length, tokens = _split(length, tokens, "length")
    if size not in sizes:
        raise BayesLadderError(
            f"unknown size '{size}'; the dataset has {', '.join(sorted(sizes, key=sizes.get))}; give a new size with "
            "its parameter count as LABEL=N (e.g. 7B=6.9e9)"
        )
    n_params = sizes[size]
    if tokens is None:
        tokens = _tokens(finals, size, length, n_params)
    reference = _reference(finals, size, length, n_params, tokens)
    checkpoints, profile = _schedule(ds, reference, list(fitted.config.tasks), tokens)
    return Rung(size, length, n_params, float(tokens), checkpoints, profile, _kind(fitted.data, n_params, tokens))


def _split(text: str, value: float | None, what: str) -> tuple[str, float | None]:
    """'LABEL=NUMBER' -> (LABEL, NUMBER); a plain label keeps ``value``."""
    if "=" not in text:
        return text.strip(), value
    label, number = (part.strip() for part in text.split("=", 1))
    if not label or not _positive(number):
        unit, example = ("N", "2B=2e9") if what == "size" else ("D (tokens)", "3xC=6e10")
        raise BayesLadderError(f"bad {what} '{text}'; write LABEL={unit} with a positive number, e.g. {example}")
    return label, float(number)


def _tokens(finals: pd.DataFrame, size: str, length: str, n_params: float) -> float:
    """D of a length for a size: the dataset's run of that cell, else N x the length's tokens per parameter."""
    cell = finals[(finals["size"] == size) & (finals["length"] == length)]
    if len(cell):
        return float(cell["tokens"].iloc[0])
    same = finals[finals["length"] == length]
    if len(same):
        return n_params * float((same["tokens"] / same["n_params"]).median())
    multiple = MULTIPLE.match(length)
    if multiple and float(multiple.group(1)) <= 0:
        raise BayesLadderError(f"bad length '{length}'; a multiple of Chinchilla-optimal tokens is positive, e.g. 3xC")
    known = finals[finals["length"].str.match(MULTIPLE)]
    if multiple and len(known):
        factor = known["length"].str.extract(MULTIPLE)[0].astype(float)
        return n_params * float(multiple.group(1)) * float((known["tokens"] / known["n_params"] / factor).median())
    lengths = ", ".join(dict.fromkeys(finals["length"]))
    raise BayesLadderError(
        f"unknown length '{length}'; the dataset has {lengths}; give a multiple like 3xC or the tokens as LABEL=D "
        "(e.g. 3xC=6e10)"
    )


def _reference(finals: pd.DataFrame, size: str, length: str, n_params: float, tokens: float) -> str:
    """The dataset's run most like a candidate: its own cell's run, else the nearest in tokens per parameter, then N."""
    cell = finals[(finals["size"] == size) & (finals["length"] == length)]
    if len(cell):
        return str(cell.index[0])
    ratio = np.abs(np.log(finals["tokens"] / finals["n_params"]) - np.log(tokens / n_params))
    distance = np.round(ratio, 2) * 100 + np.abs(np.log(finals["n_params"] / n_params))
    return str(distance.idxmin())


def _schedule(ds: xr.Dataset, run: str, tasks: list[str], tokens: float) -> tuple[np.ndarray, np.ndarray]:
    """A reference run's checkpoints scaled to ``tokens``, and its task loss relative to its final value per task
    (interpolated in ln D where a checkpoint lacks it; 1 for a task without any)."""
    r = ds.sel(run=run)
    present = np.flatnonzero(r["tokens"].notnull().values)
    own = r["tokens"].values[present]
    window = int(ds.attrs.get("final_checkpoints", 5))
    profile = np.ones((len(present), len(tasks)))
    for t, task in enumerate(tasks):
        loss = r["task_loss"].sel(task=task).values[present]
        known = ~np.isnan(loss)
        if known.sum() == 0:
            continue
        filled = np.interp(np.log(own), np.log(own[known]), loss[known])
        profile[:, t] = filled / filled[-window:].mean()
    profile[-window:] = 1.0  # the final checkpoints sit at the run's final loss
    return own / own[-1] * tokens, profile


def _kind(data, n_params: float, tokens: float) -> str:
    x, y = np.log(n_params) - data.log_n_ref, np.log(tokens) - data.log_d_ref
    if np.any((np.abs(data.s1_x - x) < SAME_SIZE) & (np.abs(data.s1_y - y) < SAME_SIZE)):
        return "rerun"
    return "new length" if np.any(np.abs(data.size_x - x) < SAME_SIZE) else "new size"


def _check_labels(rungs: list[Rung]) -> None:
    seen = set()
    for r in rungs:
        if (r.size, r.length) in seen:
            raise BayesLadderError(f"candidate {r.size}-{r.length} is given twice; list each candidate once")
        seen.add((r.size, r.length))


# ---------------------------------------------------------------- ranking and the greedy sequence
def check_budget(budget: float | None, candidates: list[Rung] | None = None) -> None:
    """A budget is a positive number of FLOPs, and the cheapest candidate fits in it."""
    if budget is None:
        return
    if not (math.isfinite(budget) and budget > 0):
        raise BayesLadderError(f"--budget must be a positive number of training FLOPs, e.g. 1e21 (got {budget:g})")
    cheapest = min(candidates or [], key=lambda r: r.flops, default=None)
    if cheapest is not None and cheapest.flops > budget:
        raise BayesLadderError(
            f"no candidate fits in the budget of {budget:.3g} FLOPs; the cheapest, {cheapest.name}, takes "
            f"{cheapest.flops:.3g}"
        )


def check_sampling(outcomes: int, max_draws: int) -> None:
    """Simulated outcomes and posterior draws an evaluation needs: at least 2 of each."""
    for name, value in (("--outcomes", outcomes), ("--max-draws", max_draws)):
        if value < 2:
            raise BayesLadderError(f"{name} must be at least 2 (got {value})")


def plan(
    fitted,
    target: Target,
    candidates: list[Rung],
    target_size: str | None = None,
    budget: float | None = None,
    outcomes: int = OUTCOMES,
    max_draws: int = MAX_DRAWS,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Every candidate ranked by ``gain_per_flop`` (:data:`COLUMNS`); with ``budget``, the greedy sequence in
    ``step``, ``cumulative_flops`` and ``width_after_step`` (expected width after the rungs up to that step)."""
    if not candidates:
        raise BayesLadderError("no candidate rung to plan")
    check_sampling(outcomes, max_draws)
    check_budget(budget, candidates)
    progress = progress or (lambda text: None)
    progress(
        f"evaluating {len(candidates)} candidate rungs for {target.name}: {outcomes} simulated outcomes each, up to "
        f"{max_draws} posterior draws per design"
    )
    pre = Preposterior(fitted, target, target_size, outcomes=outcomes, max_draws=max_draws, seed=seed)
    before = pre.evaluate()
    evaluations = {}
    for i, rung in enumerate(candidates, start=1):
        evaluations[rung] = pre.evaluate([rung])
        progress(f"candidate {i}/{len(candidates)}: {rung.name}")
    table = pd.DataFrame.from_records([_record(rung, before, evaluations[rung], target) for rung in candidates])
    table["rank"] = table["gain_per_flop"].rank(ascending=False, method="first").astype(int)
    table["step"] = pd.Series([None] * len(table), dtype=object)
    table["cumulative_flops"] = np.nan
    table["width_after_step"] = np.nan
    if budget is not None:
        for step, (rung, spent, width) in enumerate(_greedy(pre, candidates, budget, evaluations, progress), start=1):
            row = candidates.index(rung)
            table.loc[row, ["step", "cumulative_flops", "width_after_step"]] = [step, spent, width]
    return table.sort_values("rank")[COLUMNS].reset_index(drop=True)


def _record(rung: Rung, before: Evaluation, after: Evaluation, target: Target) -> dict:
    drops = {name: before.term(name) - after.term(name) for name in TERMS}
    gain = before.width - after.width
    return dict(
        size=rung.size,
        length=rung.length,
        kind=rung.kind,
        n_params=rung.n_params,
        tokens=rung.tokens,
        flops=rung.flops,
        width_before=before.width,
        width_after=after.width,
        width_after_se=after.width_se,
        crps_before=before.expected_crps,
        crps_after=after.expected_crps,
        gain=gain,
        gain_per_flop=gain / rung.flops,
        driver=max(drops, key=drops.get) if max(drops.values()) > 0 else "none",
        **{f"drop_{name.replace(' ', '_')}": value for name, value in drops.items()},
        **{f"learns_{kind}": after.learns(kind) for kind in LEARNS},
        ess=float(np.median(after.ess)),
        target=target.name,
    )


def _greedy(pre: Preposterior, candidates: list[Rung], budget: float, first: dict, progress):
    """(rung, FLOPs spent, expected width after) per step of the greedy sequence."""
    chosen: list[Rung] = []
    spent, width = 0.0, pre.evaluate().width
    evaluations = first
    while True:
        fits = [r for r in candidates if r not in chosen and spent + r.flops <= budget]
        if not fits:
            return
        if chosen:
            progress(f"greedy step {len(chosen) + 1}: {len(fits)} candidates given {', '.join(r.name for r in chosen)}")
            evaluations = {r: pre.evaluate([*chosen, r]) for r in fits}
        best = max(fits, key=lambda r: (width - evaluations[r].width) / r.flops)
        if evaluations[best].width >= width:
            return
        chosen.append(best)
        spent, width = spent + best.flops, evaluations[best].width
        yield best, spent, width


# ---------------------------------------------------------------- checking the update against refits
def simulated_run(ds: xr.Dataset, pre: Preposterior, rung: Rung, design: str, outcome: int, name: str) -> xr.Dataset:
    """One simulated outcome of ``rung`` (the ``outcome``-th of ``design``'s predictive) as a one-run ladder dataset
    to add to ``ds`` (``combine.add_evaluations``) and refit: every checkpoint's task loss, and each block's
    accuracy on each of its checkpoints, so that the refit sees exactly the points the update weighed (checkpoints
    before the first block, which step 2 drops, repeat the first block's)."""
    drawn = pre.outcome(rung, next(d for d in pre.designs if d.name == design))
    tasks = list(pre.data.tasks)
    n_checkpoints = len(rung.checkpoints)
    block_of = np.zeros(n_checkpoints, dtype=int)
    for b, members in enumerate(drawn.blocks):
        block_of[members] = b
    block_of[: drawn.blocks[0, 0]] = 0
    same_cell = (ds["size"] == rung.size) & (ds["length"] == rung.length)
    multiplier = (
        float(ds["multiplier"].values[same_cell.values][0])
        if bool(same_cell.any())
        else rung.tokens / rung.n_params / _tokens_per_multiple(ds)
    )
    meta = dict(
        name=name,
        size=rung.size,
        length=rung.length,
        multiplier=multiplier,
        replicate=int(ds["replicate"].values[same_cell.values].max()) + 1 if bool(same_cell.any()) else 0,
        n_params=rung.n_params,
        role="ladder",
        source=f"bayesladder.bayes.plan.simulated_run ({design}, outcome {outcome})",
        schedule="simulated",
    )
    loss = np.full((1, n_checkpoints, len(tasks)), np.nan)
    if drawn.checkpoint_loss is not None:
        loss[0] = drawn.checkpoint_loss[outcome]
    accuracy = drawn.block_acc[outcome][block_of][None]
    task_rows = [
        dict(name=t, n_questions=float(ds["n_questions"].sel(task=t)), chance=float(ds["chance"].sel(task=t)))
        for t in tasks
    ]
    return schema.build_dataset(
        runs=[meta],
        tasks=task_rows,
        task_loss=loss,
        accuracy=accuracy,
        tokens=np.asarray(rung.checkpoints, dtype=float)[None],
        producer="bayesladder.bayes.plan.simulated_run",
        task_loss_units=str(ds["task_loss"].attrs.get("units", "bits/byte")),
    )


def _tokens_per_multiple(ds: xr.Dataset) -> float:
    """The dataset's tokens per parameter per unit of its length multiplier (20 for Chinchilla's 1xC)."""
    finals = ds["tokens"].max("checkpoint") / ds["n_params"] / ds["multiplier"]
    return float(np.nanmedian(finals.values))


# ---------------------------------------------------------------- for people
def describe(table: pd.DataFrame) -> str:
    """What the columns of a plan mean (a note printed beside the table)."""
    kinds = {kind: ", ".join(names) for kind, names in LEARNS.items()}
    return (
        f"rank = gain_per_flop: the expected narrowing of the target's 90% accuracy interval (mean over the fitted "
        f"tasks; {100 * table['width_before'].iloc[0]:.2f} points wide now) per training FLOP (6ND), the model updated "
        "on outcomes simulated from its posterior predictive; driver = the term of the target's predictive variance "
        f"that falls most ({', '.join(TERMS)}); crps_before/crps_after (JSON) = the target's expected CRPS, shown "
        "beside, not ranked on; learns = expected drop of the posterior SD of the noise parameters "
        f"({kinds['noise']}) / of those that carry the prediction beyond the ladder ({kinds['extrapolation']})"
    )


def title(table: pd.DataFrame, target: Target) -> str:
    unit = _flops_unit(table)
    return (
        f"Candidate rungs for {target.name}, ranked by the expected narrowing of its 90% accuracy interval per FLOP "
        f"(width now {100 * table['width_before'].iloc[0]:.2f} points; widths and gains in points, gain per {unit:.0e} "
        "FLOPs; learns: noise / extrapolation)"
    )


def readable(table: pd.DataFrame) -> pd.DataFrame:
    """The plan for people: accuracy widths in points, one column per idea (80 columns wide)."""
    unit = _flops_unit(table)
    shown = pd.DataFrame(
        {
            "rank": table["rank"],
            "rung": [f"{s}-{v}" for s, v in zip(table["size"], table["length"])],
            "kind": table["kind"],
            "FLOPs": table["flops"].map("{:.2g}".format),
            "width": table["width_after"].map(lambda v: f"{100 * v:.2f}"),
            "gain": table["gain"].map(lambda v: f"{100 * v:+.2f}"),
            f"/{unit:.0e}": (table["gain_per_flop"] * unit * 100).map("{:.3g}".format),
            "driver": table["driver"],
            "learns": [f"{a:.0%}/{b:.0%}" for a, b in zip(table["learns_noise"], table["learns_extrapolation"])],
        }
    )
    if table["step"].notna().any():
        shown["step"] = ["" if v is None or pd.isna(v) else str(int(v)) for v in table["step"]]
    return shown


def _flops_unit(table: pd.DataFrame) -> float:
    """A power of ten near the candidates' typical FLOPs, to state gains per FLOP in readable numbers."""
    return float(10 ** np.floor(np.log10(table["flops"].median())))


def figure(table: pd.DataFrame) -> bytes:
    """Expected width of the target's interval after each candidate against its FLOPs (by kind), the width now, and
    the greedy sequence where there is one (expected width after each step against the FLOPs spent so far)."""
    from bayesladder import plotting

    fig = plotting.figure(9, 5)
    ax = fig.subplots()
    styles = {"rerun": ("o", "tab:grey"), "new length": ("s", "tab:blue"), "new size": ("^", "tab:orange")}
    for kind, (marker, color) in styles.items():
        rows = table[table["kind"] == kind]
        if len(rows):
            ax.scatter(rows["flops"], 100 * rows["width_after"], marker=marker, color=color, label=f"{kind} (alone)")
    for row in table.itertuples():
        ax.annotate(f"{row.size}-{row.length}", (row.flops, 100 * row.width_after), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")  # fmt: skip
    ax.axhline(100 * table["width_before"].iloc[0], color="k", linestyle="--", linewidth=1, label="width now")
    steps = table[table["step"].notna()].sort_values("step")
    if len(steps):
        ax.plot(steps["cumulative_flops"], 100 * steps["width_after_step"], "D-", color="tab:red",
                label="chosen sequence (FLOPs spent so far)")  # fmt: skip
        for row in steps.itertuples():
            ax.annotate(str(int(row.step)), (row.cumulative_flops, 100 * row.width_after_step), fontsize=9,
                        color="tab:red", xytext=(-4, -13), textcoords="offset points")  # fmt: skip
            ax.scatter([row.flops], [100 * row.width_after], s=160, facecolors="none", edgecolors="tab:red")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs (6ND)")
    ax.set_ylabel("expected 90% interval width (points, mean over tasks)")
    ax.set_title(f"Which rung to train next for {table['target'].iloc[0]}")
    ax.legend(fontsize=8)
    return plotting.png(fig)
