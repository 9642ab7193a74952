"""Fit time on the OLMo paper ladder (8 tasks, 4 chains x 1000 draws, compile included), beside the paper's point
fit measured in the same run: the two-step model alone, then the default fit (its nested backtest, two-step and
single-step), each with its diagnostics.

    python benchmarks/bench_fit.py [--data ladder.nc] [--seed 0] [--cold]

--cold compiles into a fresh PyTensor cache (a first fit on a new machine); by default the cache of earlier runs
is used, as for every fit after a user's first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

TASKS = ("mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa", "openbookqa")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "olmo-ladder" / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cold", action="store_true")
    args = parser.parse_args()
    if args.cold:  # before pytensor is imported
        os.environ["PYTENSOR_FLAGS"] = f"base_compiledir={tempfile.mkdtemp()}"

    from bayesladder import baseline, ladder, schema
    from bayesladder.bayes.diagnostics import convergence, diagnose
    from bayesladder.bayes.fit import FitConfig, fit, fit_design
    from bayesladder.bayes.stacking import AXES, describe_weights
    from bayesladder.importers import olmo_ladder

    if args.data is None:
        args.data = Path(tempfile.mkdtemp()) / "olmo.nc"
        schema.write(olmo_ladder.import_dir(SHARED), args.data)
    ds = schema.read(args.data)
    selection = ladder.PRESETS["paper"]
    runs = ladder.select_runs(ds, selection)
    config = FitConfig(tasks=TASKS, selection=selection, seed=args.seed)

    start = time.perf_counter()
    baseline.fit(ds, runs, list(TASKS))
    baseline_seconds = time.perf_counter() - start

    start = time.perf_counter()
    two_step = fit_design(ds, config, "two-step")
    two_step_seconds = time.perf_counter() - start
    check = convergence(two_step)

    def progress(text):
        print(f"  [{time.perf_counter() - start:5.1f} s] {text}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    fitted = fit(ds, config, progress=progress)
    default_seconds = time.perf_counter() - start
    full = diagnose(fitted)

    print(
        f"paper's point fit: {baseline_seconds:.2f} s (seed {args.seed}, compile cache {'cold' if args.cold else 'warm'})"
    )
    print(
        f"two-step model alone: {two_step_seconds:.1f} s ({two_step_seconds / baseline_seconds:.0f}x the point fit); "
        f"max R-hat {check['max_rhat']:.4f}, min ESS {min(check['min_ess_bulk'], check['min_ess_tail']):.0f}, "
        f"{check['divergences']} divergences"
    )
    print(
        f"default fit (nested backtest + two-step + single-step): {default_seconds:.1f} s "
        f"({default_seconds / baseline_seconds:.0f}x the point fit); ok={full.ok} max R-hat {full.max_rhat:.4f} "
        f"min ESS {min(full.min_ess_bulk, full.min_ess_tail):.0f} divergences {full.divergences}; nested: max R-hat "
        f"{full.nested_max_rhat:.4f} min ESS {full.nested_min_ess:.0f} divergences {full.nested_divergences}"
        + (f"; FAILED: {'; '.join(full.failures)}" if full.failures else "")
    )
    calibration = fitted.calibration
    weights = "; ".join(f"{axis} split: {describe_weights(calibration.weights[axis])}" for axis in AXES)
    kappa = ", ".join(f"{d} {calibration.kappa[d]:.3f} / {calibration.kappa_d[d]:.3f}" for d in calibration.kappa)
    print(f"stacking weights: {weights}; kappa in N / in tokens per parameter: {kappa}")


if __name__ == "__main__":
    main()
