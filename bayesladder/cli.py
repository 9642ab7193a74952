"""The ``bayesladder`` command line: thin commands over the library.

Results go to stdout (a table, or with --json only JSON); notes, warnings and a line per stage of long work go
to stderr. Every error (bad input, and typer's own: a bad option value, a missing option, an unknown command) is
one line ``error: ...`` on stderr with exit code 1; exit code 2 means "the fit's diagnostics failed".
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import Abort, TyperException

from bayesladder.bayes.diagnostics import Thresholds
from bayesladder.bayes.fit import FitConfig
from bayesladder.bayes.stacking import AXES, DIRECTIONS, NO_SPLIT, describe_weights
from bayesladder.errors import BayesLadderError
from bayesladder.files import atomic_write_bytes, check_not_read, check_writable

EXIT_DIAGNOSTICS_FAILED = 2


class OneLineErrors(TyperGroup):
    """Typer's usage errors as one line ``error: ...`` and exit code 1, like every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _Clock.started = time.monotonic()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # 'bayesladder' alone: its help was printed; no error
                code = 0
            else:
                ctx = getattr(exc, "ctx", None)
                hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
                typer.echo(f"error: {' '.join(exc.format_message().split()).rstrip('.')}{hint}", err=True)
                code = 1
        except Abort:
            typer.echo("error: aborted", err=True)
            code = 1
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=OneLineErrors,
    help="Predict a large model's downstream task scores from a ladder of small models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
import_app = typer.Typer(help="Turn other tools' logs into a ladder dataset (netCDF).", no_args_is_help=True)
app.add_typer(import_app, name="import")

JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON (every column of the table).")]
OptionalDataOption = Annotated[
    Path | None,
    typer.Option("--data", dir_okay=False, help="Ladder dataset (netCDF; default: the shipped micro ladder)."),
]
FitDataOption = Annotated[
    Path | None,
    typer.Option("--data", dir_okay=False, help="Ladder dataset (default: the one the fit was made on)."),
]
FitFileOption = Annotated[Path, typer.Option("--fit", dir_okay=False, help="Fit file written by 'bayesladder fit'.")]
LadderOption = Annotated[str | None, typer.Option("--ladder", help="Named ladder preset, e.g. 'paper'.")]
SizesOption = Annotated[list[str] | None, typer.Option("--sizes", help="Sizes to fit on (repeat or comma-separate).")]
LengthsOption = Annotated[
    list[str] | None, typer.Option("--lengths", help="Lengths to fit on (repeat or comma-separate).")
]
TasksOption = Annotated[str, typer.Option("--tasks", help="'all' or a comma-separated list of task names.")]
ChainsOption = Annotated[int, typer.Option("--chains", help="Number of MCMC chains.")]
DrawsOption = Annotated[int, typer.Option("--draws", help="Posterior draws per chain.")]
TuneOption = Annotated[int, typer.Option("--tune", help="Tuning (warm-up) draws per chain.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed.")]
FitTargetOption = Annotated[
    str | None, typer.Option("--target", help="Target name (7B-4T, 13B-5T or a run of the fit's dataset).")
]
TargetNOption = Annotated[float | None, typer.Option("--n", help="Target parameters N.")]
TargetDOption = Annotated[float | None, typer.Option("--d", help="Target training tokens D.")]


class _Clock:
    """When the command started: stage lines show the seconds since."""

    started = time.monotonic()


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


def note(text: str) -> None:
    """A line for people on stderr (stdout holds only results)."""
    typer.echo(text, err=True)


def warn(text: str) -> None:
    note(f"warning: {text}")


def stage(text: str) -> None:
    """One line per stage of long work, on stderr whether or not it is a terminal."""
    note(f"[{time.monotonic() - _Clock.started:4.0f} s] {text}")


@contextlib.contextmanager
def stage_once_started(text: str, after: float = 2.0):
    """The stage line of library work that checks its own input first: printed once the work has run for
    ``after`` seconds, so that bad input still gets its one-line error alone."""
    timer = threading.Timer(after, stage, args=(text,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def split_list(values: list[str] | None) -> list[str] | None:
    """Options may be repeated or comma-separated: ['1B,3B', '7B'] -> ['1B', '3B', '7B']."""
    if not values:
        return None
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def parse_tasks(ds, tasks: str) -> list[str]:
    """'all' = every task of the dataset; else the comma-separated names (the library checks them)."""
    if tasks.strip() == "all":
        return [str(t) for t in ds["task"].values]
    return split_list([tasks]) or []


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
    check_not_read(output, {"CSV file": file})
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
    for path in paths:
        check_not_read(output, {"lm-eval results file": path})
    schema.write(ds, output)
    typer.echo(f"wrote {output}: {ds.sizes['run']} runs, {ds.sizes['task']} tasks", err=True)


@app.command()
@reports_errors
def baseline(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    tasks: TasksOption = "all",
    target: Annotated[
        str | None, typer.Option("--target", help="Target name (7B-4T, 13B-5T or a run of the dataset).")
    ] = None,
    n: TargetNOption = None,
    d: TargetDOption = None,
    as_json: JsonOption = False,
) -> None:
    """The paper's two-step point fit, chained to predict a target's task loss and accuracy."""
    from bayesladder import baseline as paper_method
    from bayesladder import datasets, output, schema
    from bayesladder import ladder as ladder_runs

    ds = schema.read(data or datasets.micro_ladder())
    target_spec = ladder_runs.resolve_target(ds, target, n, d)
    runs = ladder_runs.select_runs(ds, ladder_runs.resolve_selection(ladder, split_list(sizes), split_list(lengths)))
    fits = paper_method.fit(ds, runs, parse_tasks(ds, tasks))
    table = paper_method.predict(fits, target_spec.n_params, target_spec.tokens)
    table = paper_method.with_actuals(table, ds, target_spec.name)
    beyond = _extrapolation(ladder_runs.extent(ds, runs), target_spec)
    output.emit(
        table,
        as_json,
        title=f"Paper method: {target_spec.name} (N={target_spec.n_params:.4g}, D={target_spec.tokens:.4g}: "
        f"{beyond.describe()}); accuracy in points",
        view=show_baseline,
    )


def show_baseline(table):
    """The paper's prediction for people: accuracy in points, with the actual values and errors of a run."""
    from bayesladder import output

    shown = table[["task"]].assign(
        loss=table["loss"].map("{:.3f}".format), accuracy=table["accuracy"].map(output.points)
    )
    if "actual_accuracy" in table:
        shown = shown.assign(
            **{"actual loss": table["actual_loss"].map("{:.3f}".format)},
            actual=table["actual_accuracy"].map(output.points),
            error=table["accuracy_error"].map(output.signed_points),
        )
    return shown


def _extrapolation(extent, spec):
    """How far the target ``spec`` lies beyond a ladder of ``extent``, warned about when it lies far out."""
    from bayesladder import extrapolation

    beyond = extrapolation.beyond(extent, spec.n_params, spec.tokens)
    if said := beyond.warning(spec.name):
        warn(said)
    return beyond


def _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed, designs=None) -> FitConfig:
    """The options as a FitConfig, checked against the dataset by the library."""
    from bayesladder import ladder as ladder_runs

    selection = ladder_runs.resolve_selection(ladder, split_list(sizes), split_list(lengths))
    config = FitConfig(
        tasks=tuple(parse_tasks(ds, tasks)),
        selection=selection,
        designs=tuple(split_list(designs) or FitConfig.designs),
        chains=chains,
        draws=draws,
        tune=tune,
        seed=seed,
    )
    config.check(ds)
    return config


DesignsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--designs",
        help="Designs to fit and stack by the nested backtest (default: two-step,single-step; one design: no stacking).",
    ),
]


def describe_calibration(fitted) -> str:
    """One line: the designs' weights per direction and discrepancy scales, and the nested backtests they came from."""
    calibration = fitted.calibration
    kappa = {"size": calibration.kappa, "length": calibration.kappa_d}
    split_axes = [split.axis for split in calibration.splits]
    shown = split_axes or list(AXES)

    def weights(d: str) -> str:
        by_axis = {axis: calibration.weights[axis][d] for axis in shown}
        if len(set(by_axis.values())) == 1:
            return f"{by_axis[shown[0]]:.2f}"
        return ", ".join(f"{w:.2f} {DIRECTIONS[axis]}" for axis, w in by_axis.items())

    parts = ", ".join(
        f"{d} {weights(d)} (kappa {', '.join(f'{kappa[axis][d]:.2f} {DIRECTIONS[axis]}' for axis in shown)})"
        for d in fitted.config.designs
    )
    if not calibration.splits:
        return f"designs mixed in equal parts: {parts} ({NO_SPLIT})"
    left_out = calibration.left_out()
    missing = next((axis for axis in AXES if axis not in split_axes), None)
    return (
        f"designs stacked by the nested backtest ({'; '.join(split.describe() for split in calibration.splits)}"
        + (f"; without {', '.join(left_out)}, whose nested fits failed their checks" if left_out else "")
        + f"): {parts}; "
        + (
            f"no {missing} split (the ladder has too few {missing}s for one), so a target beyond the ladder "
            f"{DIRECTIONS[missing]} takes these weights and no kappa for that distance; "
            if missing
            else "a target mixes each direction's weights by its e-folds beyond the ladder in it; "
        )
        + "kappa = added logit SD per e-fold beyond the ladder"
    )


def _report_diagnostics(diag, thresholds: Thresholds, as_json: bool) -> None:
    """Print the diagnostics (JSON: the whole record) and say what they mean; exit 2 when they fail."""
    import pandas as pd

    from bayesladder import output
    from bayesladder.bayes.diagnostics import checks

    rows = checks(diag, thresholds)
    if as_json:
        output.emit(pd.DataFrame([diag.record()]), True)
    else:
        for row in rows:  # one column of counts and measures
            v = row["value"]
            row["value"] = str(v) if isinstance(v, int) else f"{v:.4g}"
        output.table(pd.DataFrame(rows), title="Diagnostics")
    if not diag.ok:
        note(
            f"DIAGNOSTICS FAILED: {'; '.join(diag.failures)}. The sampler did not explore the posterior reliably, "
            "so this fit's numbers cannot be trusted: low ESS or high R-hat call for longer sampling "
            "(--tune/--draws); divergences and saturated tree depth point at the model or the data. Where a "
            "failure names a task (log_k[boolq]), the ladder may not pin that task down (accuracy flat at its "
            "floor on the ladder's sizes): fit without it (--tasks)."
        )
        raise typer.Exit(EXIT_DIAGNOSTICS_FAILED)
    passed = ", ".join(f"{r['check']} {r['rule']}" for r in rows if r["status"] == "pass")
    note(
        f"diagnostics: all convergence checks pass ({passed}): the sampler explored the posterior, so the "
        "intervals reflect the model and the data rather than sampling noise."
    )


def _refuse_overwrite(path: Path, force: bool) -> None:
    check_writable(path, example="fit.nc")
    if path.exists() and not force:
        raise BayesLadderError(f"{path} exists; pass --force to overwrite it, or choose another name with -o")


def _describe_runs(ds, runs: list[str]) -> str:
    """'16 runs (sizes 11k, 20k, 35k, 54k; lengths 1xC, 2xC, 5xC, 10xC)', sizes by N, lengths by tokens."""
    chosen = ds.sel(run=runs)
    sizes = sorted(
        set(map(str, chosen["size"].values)), key=lambda s: float(chosen["n_params"].where(chosen["size"] == s).max())
    )
    lengths = sorted(
        set(map(str, chosen["length"].values)),
        key=lambda v: float(chosen["multiplier"].where(chosen["length"] == v).max()),
    )
    return f"{len(runs)} runs (sizes {', '.join(sizes)}; lengths {', '.join(lengths)})"


def _diagnose(fitted, thresholds: Thresholds):
    """The fit's diagnostics; PSIS's warning about high Pareto k is not repeated: the table reports it."""
    import warnings

    from bayesladder.bayes import diagnostics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return diagnostics.diagnose(fitted, thresholds)


def _trust(fitted, fit_file: Path) -> bool | None:
    """Warn on stderr when the fit failed its diagnostics or never recorded them; returns their verdict."""
    if fitted.diagnostics is None:
        warn(
            f"{fit_file} does not record its diagnostics (an older fit); check them: bayesladder diagnose --fit {fit_file}"
        )
        return None
    if not fitted.diagnostics["ok"]:
        warn(
            f"{fit_file} failed its diagnostics ({'; '.join(fitted.diagnostics['failures'])}): do not trust these "
            f"numbers (see bayesladder diagnose --fit {fit_file})"
        )
    return bool(fitted.diagnostics["ok"])


def _load_fit(fit_file: Path, data: Path | None, needs_data: bool = True):
    """(fit, dataset path, dataset, note) for a command that reads a fit. The dataset is --data (checked against
    the fit's hash) or, when ``needs_data``, the fit's own; the note says which file that was."""
    from bayesladder import datasets, schema
    from bayesladder.bayes.fit import LadderFit

    if data is not None:
        ds = schema.read(data)
        return LadderFit.load(fit_file, dataset=ds), data, ds, None
    fitted = LadderFit.load(fit_file)
    if not needs_data:
        return fitted, None, None, None
    path, ds = datasets.of_fit(fitted.dataset_path, fitted.data_hash, fit_file)
    used = f"using the dataset the fit was made on: {datasets.describe(path)} (pass --data to choose another)"
    return fitted, path, ds, used


@app.command()
@reports_errors
def fit(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    tasks: TasksOption = "all",
    chains: ChainsOption = FitConfig.chains,
    draws: DrawsOption = FitConfig.draws,
    tune: TuneOption = FitConfig.tune,
    seed: SeedOption = FitConfig.seed,
    designs: DesignsOption = None,
    output_path: Annotated[Path, typer.Option("-o", "--output", help="Fit file to write (netCDF).")] = Path("fit.nc"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite the fit file if it exists.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fit the hierarchical Bayesian models (two-step and single-step, stacked by the ladder's nested backtest);
    print the diagnostics (exit 2 if they fail)."""
    from bayesladder import datasets, schema
    from bayesladder import ladder as ladder_runs
    from bayesladder.bayes.data import with_replicates
    from bayesladder.bayes.fit import fit as fit_model
    from bayesladder.targets import KNOWN_TARGETS, default_targets

    data_path = data or datasets.micro_ladder()
    ds = schema.read(data_path)
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed, designs)
    _refuse_overwrite(output_path, force)
    check_not_read(output_path, {"dataset": data_path})
    runs = ladder_runs.select_runs(ds, config.selection)
    reruns = len(with_replicates(ds, runs)) - len(runs)
    note(
        f"fitting {' and '.join(config.designs)} to {datasets.describe(data_path)}: {_describe_runs(ds, runs)}"
        + (f" and {reruns} independent reruns of them" if reruns else "")
        + f", {len(config.tasks)} tasks ({', '.join(config.tasks)}); {chains} chains x {draws} draws after {tune} "
        "tuning draws per model"
    )
    warning = config.step1_warning(ds)
    if warning is not None:
        warn(warning)
    fitted = fit_model(ds, config, progress=stage)
    for text in fitted.sampling_notes():
        warn(text)
    if fitted.data.final_only:
        note("every run was evaluated once (a final-only ladder): step 2 was fitted on the runs' final points")
    if fitted.data.single_length:
        note(
            f"every run was trained to one D ({fitted.extent().largest_d:.3g} tokens): step 1 has no D term, so "
            "predictions hold at that D (predict, plan and report flag a target at another)"
        )
    note(describe_calibration(fitted))
    stage("checking the diagnostics (R-hat, ESS, divergences, E-BFMI, tree depth, PSIS-LOO, PPC)")
    thresholds = Thresholds()
    checked = _diagnose(fitted, thresholds)
    fitted.diagnostics = checked.record()
    fitted.save(output_path)
    note(f"wrote {output_path} ({fitted.seconds:.0f} s to compile and sample every model)")
    target = max(default_targets(ds, fitted), key=lambda t: t.n_params * t.tokens)  # the one furthest out
    named = target.name in ds["run"].values or target.name in KNOWN_TARGETS
    option = f"--target {target.name}" if named else f"--n {target.n_params:.3g} --d {target.tokens:.3g}"
    note(
        f"next: bayesladder predict --fit {output_path} {option}\n"
        f"  or: bayesladder report --fit {output_path} -o report.html"
    )
    _report_diagnostics(checked, thresholds, as_json)


@app.command()
@reports_errors
def predict(
    fit_file: FitFileOption = Path("fit.nc"),
    target: FitTargetOption = None,
    n: TargetNOption = None,
    d: TargetDOption = None,
    data: FitDataOption = None,
    as_json: JsonOption = False,
) -> None:
    """Posterior median and 50% / 90% intervals of each task's loss and accuracy at a target."""
    from bayesladder import ladder as ladder_runs
    from bayesladder import output
    from bayesladder.bayes.predict import predict_table
    from bayesladder.targets import KNOWN_TARGETS

    a_run = target is not None and target not in KNOWN_TARGETS  # only a run of a dataset needs one
    fitted, _, ds, used = _load_fit(fit_file, data, needs_data=a_run)
    spec = ladder_runs.resolve_target(ds, target, n, d)
    size = str(ds["size"].sel(run=spec.name).values) if ds is not None and spec.name in ds["run"].values else None
    table = predict_table(fitted, spec.n_params, spec.tokens, size=size)
    if used:
        note(used)
    ok = _trust(fitted, fit_file)
    beyond = _extrapolation(fitted.extent(), spec)
    note(describe_calibration(fitted))
    weights = fitted.weights_at(spec.n_params, spec.tokens)
    note(f"designs' weights for {spec.name}: {describe_weights(weights)}")
    if as_json:
        columns = {f"weight_{d}": w for d, w in weights.items()}
        output.emit(table.assign(target=spec.name, **beyond.record(), diagnostics_ok=ok, **columns), True)
        return
    shown = table[["task"]].assign(
        loss=table["loss_median"].map("{:.3f}".format),
        **{"loss 90%": [output.number_range(a, b) for a, b in zip(table["loss_q05"], table["loss_q95"])]},
        accuracy=table["acc_median"].map(output.points),
        **{"acc 50%": [output.point_range(a, b) for a, b in zip(table["acc_q25"], table["acc_q75"])]},
        **{"acc 90%": [output.point_range(a, b) for a, b in zip(table["acc_q05"], table["acc_q95"])]},
    )
    where = "" if target is None else f"N={spec.n_params:.3g}, D={spec.tokens:.3g}: "  # --n/--d: named by them
    output.table(
        shown,
        title=(
            f"Prediction for {spec.name} ({where}{beyond.describe()}): "
            f"median and 50% / 90% intervals; loss in {fitted.data.loss_units}, accuracy in points"
        ),
    )


@app.command()
@reports_errors
def plan(
    fit_file: FitFileOption = Path("fit.nc"),
    target: FitTargetOption = None,
    n: TargetNOption = None,
    d: TargetDOption = None,
    data: FitDataOption = None,
    candidates_file: Annotated[
        Path | None,
        typer.Option(
            "--candidates", dir_okay=False, help="CSV of candidate rungs: columns size, length [, n_params, tokens]."
        ),
    ] = None,
    sizes: Annotated[
        list[str] | None,
        typer.Option("--sizes", help="Candidate sizes: the dataset's labels, or LABEL=N for a new size (e.g. 2B=2e9)."),
    ] = None,
    lengths: Annotated[
        list[str] | None,
        typer.Option("--lengths", help="Candidate lengths: the dataset's labels, multiples like 3xC, or LABEL=D."),
    ] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", help="Training FLOPs (6ND) to spend: a greedy sequence of rungs.")
    ] = None,
    outcomes: Annotated[int, typer.Option("--outcomes", help="Simulated outcomes per candidate.")] = 64,
    max_draws: Annotated[int, typer.Option("--max-draws", help="Posterior draws used per design.")] = 2000,
    seed: SeedOption = 0,
    as_json: JsonOption = False,
) -> None:
    """Rank candidate rungs by the expected narrowing of the target's 90% accuracy interval per training FLOP."""
    from bayesladder import ladder as ladder_runs
    from bayesladder import output
    from bayesladder.bayes import plan as planning

    planning.check_budget(budget)
    planning.check_sampling(outcomes, max_draws)
    table = planning.read_candidates(candidates_file) if candidates_file is not None else None
    fitted, _, ds, used = _load_fit(fit_file, data)
    spec = ladder_runs.resolve_target(ds, target, n, d)
    size = str(ds["size"].sel(run=spec.name).values) if spec.name in ds["run"].values else None
    rungs = planning.resolve_candidates(ds, fitted, spec, size, split_list(sizes), split_list(lengths), table)
    planning.check_budget(budget, rungs)
    if used:
        note(used)
    ok = _trust(fitted, fit_file)
    _extrapolation(fitted.extent(), spec)
    ranked = planning.plan(fitted, spec, rungs, size, budget, outcomes, max_draws, seed, progress=stage)
    rough = ranked[ranked["ess"] < planning.FEW_DRAWS]
    few = [f"{size}-{length}" for size, length in zip(rough["size"], rough["length"])]
    if few:
        warn(
            f"the update on {', '.join(few)} rests on fewer than {planning.FEW_DRAWS} effective posterior draws: "
            "their width_after is rough; refit with more draws (fit --draws) or raise --max-draws"
        )
    note(planning.describe(ranked))
    if as_json:
        output.emit(ranked.assign(diagnostics_ok=ok), True)
        return
    output.table(planning.readable(ranked), title=planning.title(ranked, spec))


@app.command()
@reports_errors
def diagnose(
    fit_file: FitFileOption = Path("fit.nc"),
    plots: Annotated[
        Path | None, typer.Option("--plots", file_okay=False, help="Folder for rank and PPC figures (PNG).")
    ] = None,
    max_rhat: Annotated[float, typer.Option("--max-rhat", help="Largest acceptable R-hat.")] = Thresholds.max_rhat,
    min_ess: Annotated[float, typer.Option("--min-ess", help="Smallest acceptable ESS.")] = Thresholds.min_ess,
    min_bfmi: Annotated[float, typer.Option("--min-bfmi", help="Smallest acceptable E-BFMI.")] = Thresholds.min_bfmi,
    as_json: JsonOption = False,
) -> None:
    """R-hat, ESS, divergences, E-BFMI, tree depth, PSIS-LOO and PPC of a fit (exit 2 if any check fails)."""
    from bayesladder.bayes.fit import LadderFit

    thresholds = Thresholds(max_rhat=max_rhat, min_ess=min_ess, min_bfmi=min_bfmi)
    if plots is not None:
        from bayesladder.bayes.plots import check_folder

        check_folder(plots)
    fitted = LadderFit.load(fit_file)
    for text in fitted.sampling_notes():
        warn(text)
    stage("computing the diagnostics (R-hat, ESS, divergences, E-BFMI, tree depth, PSIS-LOO, PPC)")
    checked = _diagnose(fitted, thresholds)
    if plots is not None:
        from bayesladder.bayes import plots as fit_plots

        stage(f"drawing the figures into {plots}")
        written = fit_plots.write_diagnostic_plots(fitted, plots)
        note(f"wrote {len(written)} figures to {plots}: {', '.join(p.name for p in written)}")
    _report_diagnostics(checked, thresholds, as_json)


@app.command()
@reports_errors
def backtest(
    data: OptionalDataOption = None,
    ladder: LadderOption = None,
    sizes: SizesOption = None,
    lengths: LengthsOption = None,
    holdout_size: Annotated[
        list[str] | None, typer.Option("--holdout-size", help="Size(s) to hold out and predict.")
    ] = None,
    tasks: TasksOption = "all",
    chains: ChainsOption = FitConfig.chains,
    draws: DrawsOption = FitConfig.draws,
    tune: TuneOption = FitConfig.tune,
    seed: SeedOption = FitConfig.seed,
    designs: DesignsOption = None,
    nested: Annotated[
        bool,
        typer.Option(
            "--nested",
            help="The ladder's own nested backtests: fit on the smallest sizes (shortest lengths), predict the "
            "larger (longer) ones, for every cut; coverage and error against the distance extrapolated.",
        ),
    ] = False,
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
    """Fit without the held-out sizes, predict their runs, and score median, interval and CRPS vs the baseline.

    --json prints {"rows": [one per held-out run and task], "summary": [one per held-out run, then "all"]}; with
    --nested, {"rows": [...], "summary": [one per axis and distance bin, then "all"], "refits": [one per split]}."""
    from bayesladder import datasets, extrapolation, output, schema
    from bayesladder.bayes import backtest as backtests

    ds = schema.read(data or datasets.micro_ladder())
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed, designs)
    if nested:
        if holdout_size or subsets or figure is not None:
            raise BayesLadderError(
                "--nested holds out the ladder's own sizes and lengths; drop --holdout-size/--subsets"
            )
        rows, summary, refits = backtests.nested(ds, config, progress=stage)
        for refit in refits.itertuples():
            if not refit.diagnostics_ok:
                warn(f"the refit of {refit.split} failed its diagnostics ({refit.failures}): do not trust its rows")
        if as_json:
            output.emit_json({"rows": rows, "summary": summary, "refits": refits})
            return
        show_nested(summary, refits)
        return
    if not holdout_size:
        raise BayesLadderError("give --holdout-size SIZE (the sizes to predict), or --nested")
    if figure is not None and subsets:
        check_writable(figure, example="subsets.png")
        check_not_read(figure, {"dataset": data})
    if subsets:
        from bayesladder.analyses import subsets as ladder_subsets

        with stage_once_started("refitting on each ladder subset and scoring the held-out runs"):
            summary, _ = ladder_subsets.run_subsets(ds, config, split_list(holdout_size), progress=stage)
        if figure is not None:
            atomic_write_bytes(figure, ladder_subsets.figure(summary))
        output.emit(
            summary,
            as_json,
            title="Compute vs error: per ladder subset (accuracy in points; coverage and width of 90% intervals; "
            "FLOPs = the subset's 6ND as a share of the target's; paper = the paper's fit's MAE; --json adds CRPS, "
            "each subset's runs and each refit's R-hat and divergences)",
            view=show_subsets,
        )
        return
    if figure is not None:
        raise BayesLadderError("--figure needs --subsets")
    fitted, table, summary = backtests.run_backtest(ds, config, split_list(holdout_size), progress=stage)
    note(describe_calibration(fitted))
    if not summary["diagnostics_ok"].iloc[-1]:
        warn(f"the backtest's fit failed its diagnostics ({summary['failures'].iloc[-1]}): do not trust these scores")
    for run, record in table.drop_duplicates("run").set_index("run").iterrows():
        if said := extrapolation.Extrapolation.from_record(record).warning(run):
            warn(said)
    if as_json:
        output.emit_json({"rows": table, "summary": summary})
        return
    show_backtest(table, summary)


def show_subsets(summary):
    """The ladder subsets' backtest for people: accuracy in points, 80 columns wide (CRPS, the runs' count and the
    refits' checks are in --json; a failed refit is flagged)."""
    from bayesladder import output

    return summary[["subset"]].assign(
        FLOPs=summary["flops_fraction"].map(lambda f: f"{100 * f:.2g}%"),
        MAE=summary["mae"].map(output.points),
        cover=summary["coverage"].map("{:.0%}".format),
        width=summary["mean_width"].map(output.points),
        paper=summary["baseline_mae"].map(output.points),
        ok=summary["refit_ok"].map(output.verdict),
    )


def show_nested(summary, refits) -> None:
    """The nested backtests for people: coverage and error per axis and distance bin, then each refit."""
    from bayesladder import output

    shown = summary[["bin", "n"]].assign(
        MAE=summary["mae"].map(output.points),
        bias=summary["bias"].map(output.signed_points),
        covered=[f"{c}/{n}" for c, n in zip(summary["covered"], summary["n"])],
        width=summary["mean_width"].map(output.points),
        **{"paper MAE": summary["baseline_mae"].map(output.points)},
    )
    output.table(
        shown,
        title="Nested backtests: held-out runs by axis and e-folds beyond the fitted part (points; 90% intervals)",
    )
    output.table(
        refits[["split", "max_rhat", "divergences", "diagnostics_ok"]],
        title="Each nested refit's checks (a failed refit's rows are not to be trusted)",
    )


def show_backtest(table, summary) -> None:
    """The backtest's two tables for people: accuracy in points, fewer columns than --json (80 columns wide)."""
    from bayesladder import output

    shown = table[["run", "task"]].assign(
        actual=table["actual_acc"].map(output.points),
        **{
            "median [90%]": [
                f"{output.points(m)} [{output.point_range(a, b)}]"
                for m, a, b in zip(table["acc_median"], table["acc_q05"], table["acc_q95"])
            ]
        },
        error=table["error"].map(output.signed_points),
        **{"paper error": table["baseline_error"].map(output.signed_points)},
    )
    output.table(shown, title="Backtest of the held-out runs (accuracy in points; error = median - actual)")
    shown = summary[["run", "n"]].assign(
        MAE=summary["mae"].map(output.points),
        covered=[f"{c}/{n}" for c, n in zip(summary["covered"], summary["n"])],
        width=summary["mean_width"].map(output.points),
        CRPS=summary["mean_crps"].map(output.points),
        **{"paper MAE": summary["baseline_mae"].map(output.points)},
    )
    designs = [c.removeprefix("weight_") for c in summary if c.startswith("weight_")]
    shown["weights"] = ["/".join(f"{w:.2f}" for w in row) for row in summary[[f"weight_{d}" for d in designs]].values]
    output.table(
        shown,
        title=f"Summary (in points; coverage and width of the 90% intervals; weights of {', '.join(designs)}; the "
        f"fit's max R-hat {summary['max_rhat'].max():.3f})",
    )


@app.command()
@reports_errors
def report(
    fit_file: FitFileOption = Path("fit.nc"),
    data: FitDataOption = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Target(s): runs of the dataset or 7B-4T/13B-5T (default: the dataset's target runs, else the sizes outside the fit).",
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
    plan_json: Annotated[
        Path | None, typer.Option("--plan", help="Add the planning section from 'plan --json' output.")
    ] = None,
) -> None:
    """A report of a fit: predictions with intervals, step 1/2 and chained figures, diagnostics, priors, provenance."""
    from bayesladder import report as reports

    reports.check_destination(output_path, fmt)
    fitted, data_path, ds, used = _load_fit(fit_file, data)
    inputs = {"fit file": fit_file, "dataset": data_path, "--subsets file": subsets_json}
    check_not_read(output_path, inputs | {"--compare file": compare_json, "--plan file": plan_json})
    variance_table = None
    if variance_run is not None:
        from bayesladder.analyses.variance import variance as checkpoint_variance

        variance_table = checkpoint_variance(ds, variance_run, last)
    subsets_table = _read_records(subsets_json) if subsets_json is not None else None
    compare_table = _read_records(compare_json) if compare_json is not None else None
    plan_table = _read_records(plan_json) if plan_json is not None else None
    pending = [used] if used else []

    def progress(text: str) -> None:  # called once every input is checked: the dataset note comes first
        while pending:
            note(pending.pop())
        stage(text)

    built = reports.build(
        fitted, ds, data_path, split_list(target), variance_table, subsets_table, compare_table, plan_table,
        progress=progress,
    )  # fmt: skip
    written = reports.write(built, output_path, fmt)
    for line in built.banner:
        warn(line)
    extra = f" and {len(written) - 1} figures" if len(written) > 1 else ""
    note(f"wrote {written[0]}{extra}")


def _read_records(path: Path, key: str | None = None):
    """A JSON list of records (what --json prints; with ``key``, also that list inside a JSON object)."""
    import json

    import pandas as pd

    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BayesLadderError(
            f"{path}: not a readable JSON file ({type(exc).__name__}); write it with --json"
        ) from None
    if key is not None and isinstance(records, dict) and key in records:
        records = records[key]
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise BayesLadderError(f"{path}: expected a non-empty JSON list of records, as --json prints")
    frame = pd.DataFrame.from_records(records)
    frame.attrs["source"] = str(path)  # the library's checks of its columns name the file
    return frame


@app.command()
@reports_errors
def variance(
    data: OptionalDataOption = None,
    run: Annotated[str, typer.Option("--run", help="Run whose last checkpoints to measure, e.g. 1B-10xC.")] = ...,
    last: Annotated[int, typer.Option("--last", help="Number of final checkpoints.")] = 10,
    backtest_json: Annotated[
        Path | None, typer.Option("--backtest", help="Relate to prediction error: the output of 'backtest --json'.")
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

        table = with_errors(table, _read_records(backtest_json, key="rows"))
    output.emit(
        table,
        as_json,
        title=f"Checkpoint variance of {run}, last {last} checkpoints: accuracy in points, CV = SD / mean "
        f"({rule_text()})",
        view=show_variance,
    )


def show_variance(table):
    """The checkpoint variance for people: accuracy in points, CVs in percent, a backtest's errors if given."""
    from bayesladder import output

    def percent(value):
        return f"{100 * value:.1f}%"

    shown = table[["task", "n"]].assign(
        loss=table["loss_mean"].map("{:.3f}".format),
        **{"loss SD": table["loss_sd"].map("{:.4f}".format), "loss CV": table["loss_cv"].map(percent)},
        accuracy=table["acc_mean"].map(output.points),
        **{"acc SD": table["acc_sd"].map(output.points), "acc CV": table["acc_cv"].map(percent)},
        noisy=table["noisy"].map({True: "yes", False: ""}),
    )
    if "abs_error" in table:
        shown = shown.assign(
            **{
                "|error|": table["abs_error"].map(output.points),
                "error/SD": table["error_over_sd"].map("{:.2f}".format),
            }
        )
    return shown


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
            help="Designs to compare (default: all): default (what 'fit' does), two-step, flops-step1, single-step, "
            "c4-intermediate, baseline.",
        ),
    ] = None,
    valset: Annotated[
        str | None,
        typer.Option(
            "--valset",
            help="Validation set whose loss is the c4-intermediate design's feature (default: c4_en, or the "
            "dataset's only one).",
        ),
    ] = None,
    chains: ChainsOption = FitConfig.chains,
    draws: DrawsOption = FitConfig.draws,
    tune: TuneOption = FitConfig.tune,
    seed: SeedOption = FitConfig.seed,
    as_json: JsonOption = False,
) -> None:
    """Backtest alternative designs (single-step, FLOPs step 1, validation-loss intermediate, baseline) on the same held-out runs; rank them."""
    from bayesladder import datasets, output, schema
    from bayesladder.analyses.designs import compare as compare_designs

    ds = schema.read(data or datasets.micro_ladder())
    config = _fit_config(ds, tasks, ladder, sizes, lengths, chains, draws, tune, seed)
    ranking, _ = compare_designs(ds, config, split_list(holdout_size), split_list(designs), valset, progress=stage)
    for row in ranking.itertuples():
        if row.refit_ok is False:
            warn(f"the refit of design {row.design} failed its diagnostics: do not trust its row")
    output.emit(
        ranking,
        as_json,
        view=show_compare,
        title="Designs ranked by backtest MAE (accuracy in points; coverage and width of 90% intervals; each "
        "refit's checks; --json adds elpd_loo, where the observations coincide, and describes each design)",
    )


def show_compare(ranking):
    """The design ranking for people: accuracy in points, each refit's checks, 80 columns wide (elpd_loo, defined
    for few designs, and the descriptions are in --json)."""
    from bayesladder import output

    def optional(values, form):
        return values.map(lambda v: "-" if v is None or v != v else form.format(v))

    return ranking[["rank", "design"]].assign(
        MAE=ranking["mae"].map(output.points),
        bias=ranking["bias"].map(output.signed_points),
        cover=ranking["coverage"].map("{:.0%}".format),
        width=ranking["mean_width"].map(output.points),
        CRPS=ranking["mean_crps"].map(output.points),
        **{"R-hat": optional(ranking["max_rhat"], "{:.3f}"), "div": optional(ranking["divergences"], "{:.0f}")},
        ok=ranking["refit_ok"].map(output.verdict),
        secs=optional(ranking["fit_seconds"], "{:.0f}"),
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
        int | None,
        typer.Option("--threads", min=1, help="torch CPU threads (default: $BAYESLADDER_THREADS or torch's)."),
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
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads.")] = None,
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
    if output_path is not None:
        check_writable(output_path, example="ladder.nc")
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
    title = f"{checkpoint}: task loss in bits per byte; accuracy (length-normalised) and raw accuracy in points"
    output.emit(pd.DataFrame([s.as_dict() for s in scores]), as_json, title=title, view=show_scores)
    if output_path is not None:
        from bayesladder.combine import add_evaluations

        ds = checkpoints.to_dataset(identity, scores, source=f"bayesladder eval {checkpoint}")
        schema.write(ds if existing is None else add_evaluations(existing, ds), output_path)
        verb = "added to" if existing is not None else "wrote"
        typer.echo(f"{verb} {output_path}: run {identity.name}, D={identity.tokens:.4g}", err=True)


def show_scores(table):
    """A checkpoint's scores for people: accuracy in points."""
    from bayesladder import output

    return table[["task"]].assign(
        **{"task loss": table["task_loss"].map("{:.4f}".format)},
        accuracy=table["accuracy"].map(output.points),
        raw=table["accuracy_raw"].map(output.points),
        chance=table["chance"].map(output.points),
        questions=table["n_questions"],
    )


def main() -> None:
    app(prog_name="bayesladder")


if __name__ == "__main__":
    sys.exit(main())
