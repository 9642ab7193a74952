"""Benchmark of ``bayesladder plan``: retrospective validation on real ladders, and its update against refits.

    python benchmarks/bench_plan.py olmo        # OLMo ladder: 190M-370M x 1-10xC, choose among the 760M and 1B cells
    python benchmarks/bench_plan.py gemstones   # Gemstones: the 6 smallest models, choose among 6 more and the 4 ~500M (target: a 1B)
    python benchmarks/bench_plan.py refits      # the preposterior update against refits on simulated outcomes
    python benchmarks/bench_plan.py timing      # how long plan takes for 10 candidates

**Retrospective** (olmo, gemstones): start from a small ladder; under a FLOP budget, let each strategy add real runs
of the dataset one at a time, refitting after each: ``plan`` (the candidate with the best expected narrowing per FLOP
of the target's 90% interval, from a plan of the current fit), largest-first (most FLOPs first), cheapest-first, and
a random order (each takes, in its order, every candidate that still fits in the budget). After each step the
target's prediction is scored against its real value: MAE of the median and mean width of the 90% interval over
the tasks (points), and how many of them it covers. For ``plan`` the width it expected beside the width the refit
gave.

**Refits** (refits): on the OLMo paper ladder (190M-1B), for a few candidates, the width of the 3B-10xC prediction
that the preposterior update expects, against the mean over refits on its own simulated outcomes (each added to the
ladder as a run, the whole fit redone, nested calibration included).

Fits use 4 chains x 1000 draws (``--chains/--draws/--tune`` to change); ``--budget`` and ``--max-steps`` shorten the
retrospective, ``--candidates`` and ``--repeats`` the refits. Run under ``nice``, one at a time.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayesladder.bayes.backtest import prediction_rows, refit_checks, summarise
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.bayes.plan import plan, resolve_candidates, simulated_run
from bayesladder.bayes.predict import predictive_draws
from bayesladder.bayes.preposterior import Preposterior
from bayesladder.combine import add_evaluations
from bayesladder.importers import long_csv, olmo_ladder
from bayesladder.ladder import LadderSelection, resolve_target

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OLMO_TASKS = ("mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa", "openbookqa")
GEMSTONES_TASKS = ("arc_challenge", "arc_easy", "csqa", "hellaswag", "mmlu", "openbookqa", "piqa", "socialiqa")
STRATEGIES = ("plan", "largest-first", "cheapest-first", "random")


def olmo():
    ds = olmo_ladder.import_dir(SHARED / "olmo-ladder" / "raw")
    lengths = ("1xC", "2xC", "5xC", "10xC")
    start = [
        r for r in map(str, ds["run"].values) if r.split("-")[0] in ("190M", "370M") and r.split("-")[1] in lengths
    ]
    pool = [f"{s}-{v}" for s in ("760M", "1B") for v in lengths]
    return dict(name="OLMo ladder", ds=ds, tasks=OLMO_TASKS, start=start, pool=pool, target="3B-10xC",
                scored=[f"3B-{v}" for v in lengths], budget=2e21)  # fmt: skip


def gemstones():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = long_csv.import_file(SHARED / "gemstones" / "gemstones.csv", units="nats", final_checkpoints=1)
    by_n = sorted(map(str, ds["run"].values), key=lambda r: float(ds["n_params"].sel(run=r)))
    small, middle, large = by_n[:12], by_n[12:16], by_n[16:]
    return dict(name="Gemstones", ds=ds, tasks=GEMSTONES_TASKS, start=small[:6], pool=small[6:] + middle,
                target=large[-1], scored=large, budget=2.4e21)  # fmt: skip


class Refits:
    """Fits of the ladder made of the start runs and those added, each made once."""

    def __init__(self, ds, tasks, sampler: dict):
        self.ds, self.tasks, self.sampler, self.cache = ds, tasks, sampler, {}

    def __call__(self, runs: list[str]):
        key = frozenset(runs)
        if key not in self.cache:
            started = time.perf_counter()
            sub = self.ds.sel(run=sorted(runs))
            config = FitConfig(tasks=self.tasks, selection=LadderSelection(), **self.sampler)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fitted = fit(sub, config)
                checks = refit_checks(fitted)
            self.cache[key] = (fitted, checks)
            print(f"  refit on {len(runs)} runs: {time.perf_counter() - started:.0f} s, max R-hat "
                  f"{checks['max_rhat']:.3f}, {checks['divergences']} divergences", flush=True)  # fmt: skip
        return self.cache[key]


def scores(fitted, ds, tasks, runs: list[str], target: str) -> dict:
    """MAE, mean 90% width and coverage of the target, and MAE and width over every scored run (points)."""

    def predict(spec, size):
        return predictive_draws(fitted, spec.n_params, spec.tokens, size)

    rows = prediction_rows(ds, runs, list(tasks), predict)
    summary = summarise(rows).set_index("run")
    own, every = summary.loc[target], summary.loc["all"]
    return dict(mae=100 * own["mae"], width=100 * own["mean_width"], covered=f"{own['covered']:.0f}/{own['n']:.0f}",
                mae_all=100 * every["mae"], width_all=100 * every["mean_width"],
                covered_all=f"{every['covered']:.0f}/{every['n']:.0f}")  # fmt: skip


def flops(ds, run: str) -> float:
    spec = resolve_target(ds, run, None, None)
    return 6.0 * spec.n_params * spec.tokens


def retrospective(
    setup: dict, sampler: dict, seed: int, budget: float | None = None, max_steps: int | None = None
) -> pd.DataFrame:
    ds, tasks, budget = setup["ds"], setup["tasks"], budget or setup["budget"]
    target = resolve_target(ds, setup["target"], None, None)
    target_size = str(ds["size"].sel(run=target.name).values)
    refit = Refits(ds, tasks, sampler)
    cost = {run: flops(ds, run) for run in setup["pool"]}
    print(f"{setup['name']}: start {len(setup['start'])} runs, {len(cost)} candidates "
          f"({', '.join(setup['pool'])}), budget {budget:.2g} FLOPs, target {target.name}", flush=True)  # fmt: skip
    orders = {
        "largest-first": sorted(cost, key=lambda r: -cost[r]),
        "cheapest-first": sorted(cost, key=lambda r: cost[r]),
        "random": list(np.random.default_rng(seed).permutation(sorted(cost))),
    }
    rows = []
    for strategy in STRATEGIES:
        print(f"strategy {strategy}", flush=True)
        added, spent, expected = [], 0.0, np.nan
        while True:
            fitted, checks = refit([*setup["start"], *added])
            model_width = 100 * Preposterior(fitted, target, target_size, seed=seed).evaluate().width
            rows.append(dict(strategy=strategy, step=len(added), added=added[-1] if added else "-", flops=spent,
                             expected_width=expected, model_width=model_width,
                             **scores(fitted, ds, tasks, setup["scored"], target.name),
                             max_rhat=checks["max_rhat"], divergences=checks["divergences"]))  # fmt: skip
            print("  " + json.dumps(rows[-1], default=str), flush=True)
            left = [r for r in cost if r not in added and spent + cost[r] <= budget]
            if not left or len(added) == max_steps:
                break
            if strategy == "plan":
                table = pd.DataFrame({"size": [str(ds["size"].sel(run=r).values) for r in left],
                                      "length": [str(ds["length"].sel(run=r).values) for r in left]})  # fmt: skip
                rungs = resolve_candidates(ds, fitted, target, target_size, table=table)
                started = time.perf_counter()
                ranked = plan(fitted, target, rungs, target_size, seed=seed)
                best = ranked.iloc[0]
                print(f"  plan of {len(left)} candidates: {time.perf_counter() - started:.0f} s; best "
                      f"{best['size']}-{best['length']} (gain {100 * best['gain']:.2f} points)", flush=True)  # fmt: skip
                if best["gain"] <= 0:
                    break
                chosen = next(r for r in left if r == f"{best['size']}-{best['length']}")
                expected = 100 * best["width_after"]
            else:
                chosen = next(r for r in orders[strategy] if r in left)
            added.append(chosen)
            spent += cost[chosen]
    return pd.DataFrame.from_records(rows)


def refit_check(sampler: dict, seed: int, repeats: int, candidates: list[str]) -> pd.DataFrame:
    """The update's expected width against refits on simulated outcomes (see the module docstring)."""
    ds = olmo_ladder.import_dir(SHARED / "olmo-ladder" / "raw")
    lengths = ("1xC", "2xC", "5xC", "10xC")
    runs = [r for r in map(str, ds["run"].values) if not r.startswith("3B") and r.split("-")[1] in lengths]
    refit = Refits(ds, OLMO_TASKS, sampler)
    base = ds.sel(run=runs)
    fitted, _ = refit(runs)
    target = resolve_target(ds, "3B-10xC", None, None)
    pre = Preposterior(fitted, target, "3B", seed=seed)
    table = pd.DataFrame([c.split(":", 1) for c in candidates], columns=["size", "length"])
    rungs = resolve_candidates(ds, fitted, target, "3B", table=table)
    before = pre.evaluate()
    # outcomes of each design's predictive, in proportion to the stacking weights (as the update draws them)
    weights = np.array([d.weight for d in pre.designs])
    counts = np.floor(weights / weights.sum() * repeats).astype(int)
    counts[np.argmax(weights)] += repeats - counts.sum()
    worlds = [d.name for d, count in zip(pre.designs, counts) for _ in range(count)]
    rows = []
    for rung in rungs:
        expected = pre.evaluate([rung])
        widths = []
        for k, world in enumerate(worlds):
            extended = add_evaluations(base, simulated_run(base, pre, rung, world, k, "simulated"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                config = FitConfig(tasks=OLMO_TASKS, selection=LadderSelection(), **sampler)
                refitted = fit(extended, config)
            widths.append(100 * Preposterior(refitted, target, "3B", seed=seed).evaluate().width)
            print(f"  {rung.name} outcome {k} ({world}): refit width {widths[-1]:.2f}", flush=True)
        rows.append(dict(candidate=rung.name, kind=rung.kind, width_before=100 * before.width,
                         expected_width=100 * expected.width, expected_se=100 * expected.width_se,
                         refit_width=float(np.mean(widths)),
                         refit_se=float(np.std(widths, ddof=1) / np.sqrt(len(widths))), refits=len(widths)))  # fmt: skip
        print("  " + json.dumps(rows[-1]), flush=True)
    return pd.DataFrame.from_records(rows)


def timing(seed: int) -> None:
    """plan on the OLMo paper ladder's fit for 10 candidates (the fit itself not counted)."""
    ds = olmo_ladder.import_dir(SHARED / "olmo-ladder" / "raw")
    runs = [r for r in map(str, ds["run"].values) if r.split("-")[0] in ("190M", "370M", "760M", "1B")]
    runs = [r for r in runs if r.split("-")[1] in ("1xC", "2xC", "5xC", "10xC")]
    fitted, _ = Refits(ds, OLMO_TASKS, {})(runs)
    target = resolve_target(ds, "13B-5T", None, None)
    rungs = resolve_candidates(
        ds, fitted, target, None, ["190M", "1B", "3B", "7B=6.9e9", "13B=1.32e10"], ["1xC", "2xC"]
    )
    started = time.perf_counter()
    plan(fitted, target, rungs, None, seed=seed)
    ranked_seconds = time.perf_counter() - started
    started = time.perf_counter()
    plan(fitted, target, rungs, None, budget=5e21, seed=seed)
    print(f"plan of {len(rungs)} candidates for 13B-5T: {ranked_seconds:.0f} s to rank; "
          f"{time.perf_counter() - started:.0f} s with --budget 5e21")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("olmo", "gemstones", "refits", "timing"))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=4, help="refits per candidate (refits)")
    parser.add_argument(
        "--candidates", default="3B:1xC,760M:0.5xC,190M:1xC", help="SIZE:LENGTH,... to check against refits (refits)"
    )
    parser.add_argument("--budget", type=float, default=None, help="FLOPs each strategy may spend (olmo, gemstones)")
    parser.add_argument("--max-steps", type=int, default=None, help="runs each strategy adds at most (olmo, gemstones)")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    sampler = dict(chains=args.chains, draws=args.draws, tune=args.tune, seed=args.seed)
    pd.set_option("display.width", 200)
    if args.what == "timing":
        timing(args.seed)
        return
    if args.what == "refits":
        table = refit_check(sampler, args.seed, args.repeats, args.candidates.split(","))
    else:
        table = retrospective(
            olmo() if args.what == "olmo" else gemstones(), sampler, args.seed, args.budget, args.max_steps
        )
    print(table.round(2).to_string(index=False))
    if args.json is not None:
        schema_free = table.to_dict(orient="records")
        args.json.write_text(json.dumps(schema_free, default=str, indent=1))


if __name__ == "__main__":
    main()
