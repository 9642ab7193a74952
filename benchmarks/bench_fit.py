"""Benchmark of the Bayesian fit on the OLMo ladder, against the paper's point fit in the same run.

Fits the `paper` ladder on the 8 main tasks (4 chains x 1000 draws, compile included), checks the
diagnostics, and runs the 3B backtest (fit on 190M-1B, predict every 3B run at 1x-10xC); prints the
fit wall time beside the baseline's, and the backtest's MAE / coverage / CRPS beside the paper
method's MAE.

    python benchmarks/bench_fit.py [--data ladder.nc]   (default: imports ../shared/data/olmo-ladder/raw)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bayesladder import baseline, ladder, schema
from bayesladder.bayes.backtest import score, summarise
from bayesladder.bayes.diagnostics import diagnose
from bayesladder.bayes.fit import FitConfig, fit
from bayesladder.importers import olmo_ladder

TASKS = ("mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa", "csqa", "socialiqa", "openbookqa")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "olmo-ladder" / "raw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    if args.data is None:
        args.data = Path(tempfile.mkdtemp()) / "olmo.nc"
        schema.write(olmo_ladder.import_dir(SHARED), args.data)
    ds = schema.read(args.data)
    selection = ladder.PRESETS["paper"]
    runs = ladder.select_runs(ds, selection)

    start = time.perf_counter()
    baseline.fit(ds, runs, list(TASKS))
    baseline_seconds = time.perf_counter() - start

    fitted = fit(ds, FitConfig(tasks=TASKS, selection=selection))
    diagnostics = diagnose(fitted)
    print(
        f"fit wall time (8 tasks, 4 x 1000 draws, compile included): {fitted.seconds:.1f} s; "
        f"baseline point fit: {baseline_seconds:.2f} s; ratio {fitted.seconds / baseline_seconds:.0f}x"
    )
    print(
        f"diagnostics ok={diagnostics.ok} max_rhat={diagnostics.max_rhat:.3f} min_ess_bulk={diagnostics.min_ess_bulk:.0f} "
        f"min_ess_tail={diagnostics.min_ess_tail:.0f} divergences={diagnostics.divergences} "
        f"min_bfmi={diagnostics.min_bfmi:.2f} max_pareto_k={diagnostics.max_pareto_k:.2f} "
        f"mean_tree_depth={diagnostics.mean_tree_depth:.2f} {'; '.join(diagnostics.failures)}"
    )

    held_out = [f"3B-{length}" for length in selection.lengths]
    summary = summarise(score(fitted, ds, held_out))
    for row in summary.itertuples():
        print(
            f"{row.run:8s} MAE {100 * row.mae:.2f} pts  covered {row.covered}/{row.n}  width {100 * row.mean_width:.2f} pts  "
            f"CRPS {100 * row.mean_crps:.2f}  baseline MAE {100 * row.baseline_mae:.2f}  "
            f"ratio MAE/baseline {row.mae / row.baseline_mae:.2f}"
        )


if __name__ == "__main__":
    main()
