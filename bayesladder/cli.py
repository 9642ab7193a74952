"""The ``bayesladder`` command line: thin commands over the library; errors become one line and exit 1."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from bayesladder.errors import BayesLadderError

app = typer.Typer(
    help="Predict a large model's downstream task scores from a ladder of small models.", no_args_is_help=True
)
import_app = typer.Typer(help="Turn other tools' logs into a ladder dataset (netCDF).", no_args_is_help=True)
app.add_typer(import_app, name="import")

JsonOption = Annotated[bool, typer.Option("--json", help="Print only a JSON list of records.")]
DataOption = Annotated[Path, typer.Option("--data", help="Ladder dataset (netCDF) made by 'bayesladder import'.")]
LadderOption = Annotated[str | None, typer.Option("--ladder", help="Named ladder preset, e.g. 'paper'.")]
SizesOption = Annotated[list[str] | None, typer.Option("--sizes", help="Sizes to fit on (repeat or comma-separate).")]
LengthsOption = Annotated[
    list[str] | None, typer.Option("--lengths", help="Lengths to fit on (repeat or comma-separate).")
]
TasksOption = Annotated[str, typer.Option("--tasks", help="'all' or a comma-separated list of task names.")]


def reports_errors(command):
    """Turn a BayesLadderError into one line on stderr and exit code 1 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except BayesLadderError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


def split_list(values: list[str] | None) -> list[str] | None:
    """Options may be repeated or comma-separated: ['1B,3B', '7B'] -> ['1B', '3B', '7B']."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def resolve_tasks(ds, tasks: str) -> list[str]:
    known = [str(t) for t in ds["task"].values]
    if tasks.strip() == "all":
        return known
    wanted = split_list([tasks]) or []
    if not wanted:
        raise BayesLadderError(f"--tasks names no task; give 'all' or some of {', '.join(known)}")
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise BayesLadderError(f"unknown task(s) {', '.join(unknown)}; the dataset has {', '.join(known)}")
    return wanted


@import_app.command("olmo-ladder")
@reports_errors
def import_olmo_ladder(
    directory: Annotated[Path | None, typer.Argument(help="Folder with the OLMo-ladder CSV files.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Ladder dataset to write.")] = Path("ladder.nc"),
    download: Annotated[
        bool,
        typer.Option("--download", help="Fetch the files from the public OLMo-ladder repository (SHA-256 verified)."),
    ] = False,
) -> None:
    """Import the OLMo-ladder W&B exports (Bhagia et al. 2024)."""
    from bayesladder import schema
    from bayesladder.importers import olmo_ladder

    if download == (directory is not None):
        raise BayesLadderError("give either a folder of OLMo-ladder CSV files or --download")
    ds = olmo_ladder.import_dir(olmo_ladder.download() if download else directory)
    schema.write(ds, output)
    typer.echo(f"wrote {output}: {ds.sizes['run']} runs, {ds.sizes['task']} tasks", err=True)


UnitsOption = Annotated[
    str, typer.Option("--units", help="What task_loss is measured in: bits/byte (the paper's), nats/token or nats.")
]
FinalCheckpointsOption = Annotated[
    int | None,
    typer.Option("--final-checkpoints", help="How many of a run's last checkpoints make its final value (default 5)."),
]


@contextlib.contextmanager
def warnings_on_stderr():
    """The library's warnings (BayesLadderWarning) become 'warning: ...' lines on stderr."""
    from bayesladder.errors import BayesLadderWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BayesLadderWarning)
        yield
    for w in caught:
        if issubclass(w.category, BayesLadderWarning):
            typer.echo(f"warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


@import_app.command("csv")
@reports_errors
def import_csv(
    file: Annotated[Path, typer.Argument(help="Long CSV: one row per run x checkpoint x task.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Ladder dataset to write.")] = Path("ladder.nc"),
    units: UnitsOption = "bits/byte",
    final_checkpoints: FinalCheckpointsOption = None,
) -> None:
    """Import a long CSV (columns run, n_params, tokens, task, task_loss, accuracy; see the README)."""
    from bayesladder import schema
    from bayesladder.importers import long_csv

    with warnings_on_stderr():
        ds = long_csv.import_file(file, units=units, final_checkpoints=final_checkpoints)
    schema.write(ds, output)
    typer.echo(f"wrote {output}: {ds.sizes['run']} runs, {ds.sizes['task']} tasks", err=True)


@import_app.command("lm-eval")
@reports_errors
def import_lm_eval(
    paths: Annotated[
        list[Path], typer.Argument(help="lm-eval results_*.json files, or folders (its --output_path) holding them.")
    ],
    runs: Annotated[
        Path, typer.Option("--runs", help="CSV mapping each evaluated model (pretrained, revision) to run, N, D.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Ladder dataset to write.")] = Path("ladder.nc"),
    final_checkpoints: FinalCheckpointsOption = None,
) -> None:
    """Import EleutherAI lm-evaluation-harness results (and samples, for the task loss) of every checkpoint."""
    from bayesladder import schema
    from bayesladder.importers import lm_eval

    with warnings_on_stderr():
        ds = lm_eval.import_results(paths, runs, final_checkpoints=final_checkpoints)
    schema.write(ds, output)
    typer.echo(f"wrote {output}: {ds.sizes['run']} runs, {ds.sizes['task']} tasks", err=True)


@app.command()
@reports_errors
def baseline(
    data: DataOption = Path("ladder.nc"),
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    tasks: TasksOption = "all",
    target: Annotated[
        str | None, typer.Option("--target", help="Target name (7B-4T, 13B-5T or a run of the dataset).")
    ] = None,
    n: Annotated[float | None, typer.Option("--n", help="Target parameters N.")] = None,
    d: Annotated[float | None, typer.Option("--d", help="Target training tokens D.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The paper's two-step point fit, chained to predict a target's task loss and accuracy."""
    from bayesladder import baseline as paper_method
    from bayesladder import ladder as ladder_runs
    from bayesladder import output, schema

    ds = schema.read(data)
    target_spec = ladder_runs.resolve_target(ds, target, n, d)
    runs = ladder_runs.select_runs(ds, ladder_runs.resolve_selection(ladder, split_list(sizes), split_list(lengths)))
    fits = paper_method.fit(ds, runs, resolve_tasks(ds, tasks))
    table = paper_method.predict(fits, target_spec.n_params, target_spec.tokens)
    table = paper_method.with_actuals(table, ds, target_spec.name)
    output.emit(
        table,
        as_json,
        title=f"Paper method: {target_spec.name} (N={target_spec.n_params:.4g}, D={target_spec.tokens:.4g})",
    )


ChainsOption = Annotated[int, typer.Option("--chains", help="Number of MCMC chains.")]
DrawsOption = Annotated[int, typer.Option("--draws", help="Posterior draws per chain.")]
TuneOption = Annotated[int, typer.Option("--tune", help="Tuning (warm-up) draws per chain.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed.")]
OptionalDataOption = Annotated[
    Path | None, typer.Option("--data", help="Ladder dataset (default: the shipped micro ladder).")
]
FitFileOption = Annotated[Path, typer.Option("--fit", help="Fit file written by 'bayesladder fit'.")]


def _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed):
    from bayesladder import ladder as ladder_runs
    from bayesladder.bayes.fit import FitConfig

    if min(chains, draws, tune) < 1:
        raise BayesLadderError("--chains, --draws and --tune must be at least 1")
    selection = ladder_runs.resolve_selection(ladder, split_list(sizes), split_list(lengths))
    return FitConfig(
        tasks=tuple(resolve_tasks(ds, tasks)), selection=selection, chains=chains, draws=draws, tune=tune, seed=seed
    )


def _report_diagnostics(diag, as_json: bool) -> None:
    """Print the diagnostics; when they fail, say so loudly on stderr and exit with code 2."""
    import pandas as pd

    from bayesladder import output

    keys = ["ok", "max_rhat", "min_ess_bulk", "min_ess_tail", "divergences", "min_bfmi", "max_pareto_k"]
    record = diag.record()
    if as_json:
        output.emit(pd.DataFrame([{k: record[k] for k in keys}]), True)
    else:
        extra = ["tree_depth_saturated", "mean_tree_depth", "elpd_loo", "ppc_loss_coverage90", "ppc_acc_coverage90"]
        output.emit(pd.DataFrame([{k: record[k] for k in keys + extra}]), False, title="Diagnostics")
    if not diag.ok:
        typer.echo(
            f"DIAGNOSTICS FAILED: {'; '.join(diag.failures)}. Do not trust this fit: "
            "sample longer (--tune/--draws) or check the data.",
            err=True,
        )
        raise typer.Exit(2)


@app.command()
@reports_errors
def fit(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    tasks: TasksOption = "all",
    chains: ChainsOption = 4,
    draws: DrawsOption = 1000,
    tune: TuneOption = 1000,
    seed: SeedOption = 0,
    output_path: Annotated[Path, typer.Option("-o", "--output", help="Fit file to write (netCDF).")] = Path("fit.nc"),
    as_json: JsonOption = False,
) -> None:
    """Fit the hierarchical Bayesian two-step model; print its diagnostics (exit 2 if they fail)."""
    from bayesladder import datasets, schema
    from bayesladder.bayes import diagnostics
    from bayesladder.bayes.fit import fit as fit_model

    ds = schema.read(data or datasets.micro_ladder())
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed)
    fitted = fit_model(ds, config, progress=not as_json)
    checked = diagnostics.diagnose(fitted)
    fitted.diagnostics = checked.record()
    fitted.save(output_path)
    typer.echo(
        f"wrote {output_path}: {len(config.tasks)} tasks, {chains} x {draws} draws in {fitted.seconds:.1f} s", err=True
    )
    _report_diagnostics(checked, as_json)


@app.command()
@reports_errors
def predict(
    fit_file: FitFileOption = Path("fit.nc"),
    target: Annotated[
        str | None, typer.Option("--target", help="Target name (7B-4T, 13B-5T or a run of --data).")
    ] = None,
    n: Annotated[float | None, typer.Option("--n", help="Target parameters N.")] = None,
    d: Annotated[float | None, typer.Option("--d", help="Target training tokens D.")] = None,
    data: OptionalDataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Posterior median and 50% / 90% intervals of each task's loss and accuracy at a target."""
    from bayesladder import ladder as ladder_runs
    from bayesladder import output, schema
    from bayesladder.bayes.fit import LadderFit
    from bayesladder.bayes.predict import predict_table

    ds = schema.read(data) if data is not None else None
    fitted = LadderFit.load(fit_file, dataset=ds)
    spec = ladder_runs.resolve_target(ds, target, n, d)
    size = str(ds["size"].sel(run=spec.name).values) if ds is not None and spec.name in ds["run"].values else None
    table = predict_table(fitted, spec.n_params, spec.tokens, size=size)
    output.emit(
        table,
        as_json,
        title=f"Prediction for {spec.name} (N={spec.n_params:.4g}, D={spec.tokens:.4g}); q05-q95 is the 90% interval",
    )


@app.command()
@reports_errors
def diagnose(
    fit_file: FitFileOption = Path("fit.nc"),
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder for rank/trace and PPC figures (PNG).")] = None,
    max_rhat: Annotated[float, typer.Option("--max-rhat")] = 1.01,
    min_ess: Annotated[float, typer.Option("--min-ess")] = 400,
    min_bfmi: Annotated[float, typer.Option("--min-bfmi")] = 0.3,
    as_json: JsonOption = False,
) -> None:
    """R-hat, ESS, divergences, E-BFMI, tree depth, PSIS-LOO and PPC of a fit (exit 2 if any fails)."""
    from bayesladder.bayes import diagnostics
    from bayesladder.bayes.fit import LadderFit

    fitted = LadderFit.load(fit_file)
    thresholds = diagnostics.Thresholds(max_rhat=max_rhat, min_ess=min_ess, min_bfmi=min_bfmi)
    if plots is not None:
        from bayesladder.bayes import plots as fit_plots

        written = fit_plots.write_diagnostic_plots(fitted, plots)
        typer.echo(f"wrote {len(written)} figures to {plots}", err=True)
    _report_diagnostics(diagnostics.diagnose(fitted, thresholds), as_json)


@app.command()
@reports_errors
def backtest(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    holdout_size: Annotated[list[str], typer.Option("--holdout-size", help="Size(s) to hold out and predict.")] = ...,
    tasks: TasksOption = "all",
    chains: ChainsOption = 4,
    draws: DrawsOption = 1000,
    tune: TuneOption = 1000,
    seed: SeedOption = 0,
    subsets: Annotated[
        bool,
        typer.Option(
            "--subsets", help="Refit on smaller ladders (drop sizes/lengths); report compute vs error per subset."
        ),
    ] = False,
    figure: Annotated[
        Path | None, typer.Option("--figure", help="With --subsets: write the error/width vs compute figure (PNG).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fit without the held-out sizes, predict their runs, and score median, interval and CRPS vs the baseline."""
    from bayesladder import datasets, output, schema
    from bayesladder.bayes.backtest import run_backtest

    ds = schema.read(data or datasets.micro_ladder())
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed)
    if subsets:
        from bayesladder.analyses import subsets as ladder_subsets

        summary, _ = ladder_subsets.run_subsets(ds, config, split_list(holdout_size), progress=not as_json)
        if figure is not None:
            figure.write_bytes(ladder_subsets.figure(summary))
        output.emit(
            summary,
            as_json,
            title="Compute vs error: per ladder subset (accuracy; 90% intervals; flops_fraction = ladder 6ND / target 6ND)",
        )
        return
    if figure is not None:
        raise BayesLadderError("--figure needs --subsets")
    _, table, summary = run_backtest(ds, config, split_list(holdout_size), progress=not as_json)
    columns = ["run", "task", "actual_acc", "acc_median", "acc_q05", "acc_q95", "covered", "crps", "baseline_acc"]
    if as_json:
        output.emit(table[columns], True)
        return
    output.emit(
        table[columns + ["error", "baseline_error"]], False, title="Backtest: held-out runs (accuracy; 90% interval)"
    )
    output.emit(summary, False, title="Summary per held-out run")


@app.command()
@reports_errors
def report(
    fit_file: FitFileOption = Path("fit.nc"),
    data: OptionalDataOption = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Target(s): runs of --data or 7B-4T/13B-5T (default: the dataset's target runs, else the sizes outside the fit).",
        ),
    ] = None,
    output_path: Annotated[Path, typer.Option("-o", "--output", help="Report file to write.")] = Path("report.html"),
    fmt: Annotated[
        str,
        typer.Option("--format", help="html (one self-contained file) or md (Markdown, PNGs in a folder beside it)."),
    ] = "html",
    variance_run: Annotated[
        str | None, typer.Option("--variance-run", help="Add the checkpoint-variance section for this run.")
    ] = None,
    last: Annotated[int, typer.Option("--last", help="Checkpoints for the variance section.")] = 10,
    subsets_json: Annotated[
        Path | None,
        typer.Option("--subsets", help="Add the compute-vs-error section from 'backtest --subsets --json' output."),
    ] = None,
    compare_json: Annotated[
        Path | None, typer.Option("--compare", help="Add the design-comparison section from 'compare --json' output.")
    ] = None,
) -> None:
    """A report of a fit: predictions with intervals, step 1/2 and chained figures, diagnostics, priors, provenance."""
    from bayesladder import datasets, schema
    from bayesladder import report as reports
    from bayesladder.bayes.fit import LadderFit

    if fmt not in ("html", "md"):
        raise BayesLadderError(f"unknown --format '{fmt}'; use html or md")
    data_path = data or datasets.micro_ladder()
    ds = schema.read(data_path)
    fitted = LadderFit.load(fit_file, dataset=ds)
    variance_table = None
    if variance_run is not None:
        from bayesladder.analyses.variance import variance as checkpoint_variance

        variance_table = checkpoint_variance(ds, variance_run, last)
    subsets_table = _read_records(subsets_json) if subsets_json is not None else None
    compare_table = _read_records(compare_json) if compare_json is not None else None
    built = reports.build(fitted, ds, data_path, split_list(target), variance_table, subsets_table, compare_table)
    written = reports.write(built, output_path, fmt)
    extra = f" and {len(written) - 1} figures" if len(written) > 1 else ""
    typer.echo(
        f"wrote {written[0]}{extra}" + (f" (WARNING: {len(built.banner)} failed diagnostics)" if built.banner else ""),
        err=True,
    )


def _read_records(path: Path):
    """A JSON list of records (what --json prints) as a DataFrame."""
    import json

    import pandas as pd

    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BayesLadderError(
            f"{path}: not a readable JSON file ({type(exc).__name__}); write it with --json"
        ) from None
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise BayesLadderError(f"{path}: expected a non-empty JSON list of records, as --json prints")
    return pd.DataFrame.from_records(records)


@app.command()
@reports_errors
def variance(
    data: OptionalDataOption = None,
    run: Annotated[str, typer.Option("--run", help="Run whose last checkpoints to measure, e.g. 1B-10xC.")] = ...,
    last: Annotated[int, typer.Option("--last", help="Number of final checkpoints.")] = 10,
    backtest_json: Annotated[
        Path | None, typer.Option("--backtest", help="Relate to prediction error: rows from 'backtest --json'.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Per task: SD and coefficient of variation of task loss and accuracy over a run's last checkpoints; noisy tasks flagged."""
    from bayesladder import datasets, output, schema
    from bayesladder.analyses.variance import rule_text
    from bayesladder.analyses.variance import variance as checkpoint_variance

    ds = schema.read(data or datasets.micro_ladder())
    table = checkpoint_variance(ds, run, last)
    if backtest_json is not None:
        from bayesladder.analyses.variance import with_errors

        table = with_errors(table, _read_records(backtest_json))
    output.emit(table, as_json, title=f"Checkpoint variance of {run}, last {last} checkpoints ({rule_text()})")


@app.command()
@reports_errors
def compare(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    holdout_size: Annotated[list[str], typer.Option("--holdout-size", help="Size(s) to hold out and predict.")] = ...,
    tasks: TasksOption = "all",
    designs: Annotated[
        list[str] | None,
        typer.Option(
            "--designs",
            help="Designs to compare (default: all): two-step, flops-step1, single-step, c4-intermediate, baseline.",
        ),
    ] = None,
    valset: Annotated[
        str, typer.Option("--valset", help="Validation set whose loss is the c4-intermediate design's feature.")
    ] = "c4_en",
    chains: ChainsOption = 4,
    draws: DrawsOption = 1000,
    tune: TuneOption = 1000,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Backtest alternative designs (single-step, FLOPs step 1, validation-loss intermediate, baseline) on the same held-out runs; rank them."""
    from bayesladder import datasets, output, schema
    from bayesladder.analyses.designs import compare as compare_designs

    ds = schema.read(data or datasets.micro_ladder())
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed)
    ranking, _ = compare_designs(ds, config, split_list(holdout_size), split_list(designs), valset)
    output.emit(
        ranking,
        as_json,
        title="Designs ranked by backtest MAE (accuracy; coverage of 90% intervals; elpd_loo only where the observations coincide)",
    )


def _set_threads(threads: int | None) -> None:
    import os

    import torch

    threads = threads or int(os.environ.get("BAYESLADDER_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)


@app.command()
@reports_errors
def train(
    spec_file: Annotated[Path, typer.Option("--spec", help="Ladder spec (TOML), e.g. models/micro.toml.")],
    rung: Annotated[
        str | None, typer.Option("--rung", help="One rung, SIZE-MULT, e.g. 35k-5xC (with what it branches from).")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every rung and target of the ladder.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, evaluations and ladder.nc.")] = Path(
        "ladder_out"
    ),
    corpus: Annotated[
        list[Path] | None, typer.Option("--corpus", help="Text file(s) to train on instead of the spec's corpus.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads (default: $BAYESLADDER_THREADS or torch's).")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train a ladder (or one rung) and write its ladder dataset OUT/ladder.nc as checkpoints are evaluated.

    Data-parallel on several GPUs (or CPU processes): the same command under torchrun --nproc_per_node N."""
    import os

    from bayesladder.training import runner, spec

    if all_runs == (rung is not None):
        raise BayesLadderError("give either --rung SIZE-MULT or --all")
    ladder_spec = spec.load(spec_file)
    _set_threads(threads)
    path = runner.train(ladder_spec, out, rung, [str(p) for p in corpus] if corpus else None, progress=progress)
    if os.environ.get("RANK", "0") != "0":
        return
    if ladder_spec.recipe.schedule == "wsd":
        used, separate = spec.tokens_saved(ladder_spec)
        typer.echo(
            f"warmup-stable-decay: the ladder's runs take {used:,} training tokens against {separate:,} for "
            f"separate cosine runs ({1 - used / separate:.0%} saved)",
            err=True,
        )
    typer.echo(f"wrote {path}", err=True)


@app.command("eval")
@reports_errors
def evaluate(
    checkpoint: Annotated[
        Path, typer.Argument(help="A checkpoint folder (AutoModelForCausalLM.from_pretrained), byte-level.")
    ],
    task: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            help="Task: a plain JSONL file, an OLMo requests.jsonl.gz (or its folder, or 'arc_easy/val_rc_5shot'). Repeatable.",
        ),
    ] = None,
    spec_path: Annotated[
        Path | None,
        typer.Option("--spec", help="Also run this ladder spec's tasks (offline suite from its held-out text)."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many questions per file task.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")] = 64,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    output_path: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Ladder dataset to write, or to add this checkpoint to if it exists."),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", help="With -o: the checkpoint's run (default: from bayesladder train's run.json)."),
    ] = None,
    n: Annotated[
        float | None, typer.Option("--n", help="With -o: the run's parameters N (default: run.json, else counted).")
    ] = None,
    d: Annotated[
        float | None, typer.Option("--d", help="With -o: tokens D the checkpoint was trained on (default: run.json).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a checkpoint on multiple-choice tasks: task loss (bits/byte), accuracy (len-norm and raw).

    With -o, also write the scores as a ladder dataset, or add them to an existing one."""
    import pandas as pd

    from bayesladder import output, schema
    from bayesladder.evaluation import checkpoints
    from bayesladder.evaluation import tasks as task_formats

    if output_path is None and any(v is not None for v in (run, n, d)):
        raise BayesLadderError("--run, --n and --d describe the checkpoint in the dataset: give -o too")
    existing = schema.read(output_path) if output_path is not None and output_path.exists() else None
    chosen = [task_formats.load_any(t, limit=limit) for t in task or []]
    if spec_path is not None:
        from bayesladder.training import runner, spec

        _, _, suite = runner.prepare(spec.load(spec_path), None)
        chosen += suite
    if not chosen:
        raise BayesLadderError("no tasks: give --task FILE (repeatable) and/or --spec SPEC")
    _set_threads(threads)
    loaded = checkpoints.load(checkpoint)
    identity = checkpoints.describe(checkpoint, run, n, d, loaded) if output_path is not None else None
    scores = checkpoints.evaluate(loaded, chosen, batch_size)
    output.emit(pd.DataFrame([s.as_dict() for s in scores]), as_json, title=f"{checkpoint}")
    if output_path is not None:
        from bayesladder.combine import add_evaluations

        ds = checkpoints.to_dataset(identity, scores, source=f"bayesladder eval {checkpoint}")
        schema.write(ds if existing is None else add_evaluations(existing, ds), output_path)
        verb = "added to" if existing is not None else "wrote"
        typer.echo(f"{verb} {output_path}: run {identity.name}, D={identity.tokens:.4g}", err=True)


def main() -> None:
    app(prog_name="bayesladder")


if __name__ == "__main__":
    sys.exit(main())
