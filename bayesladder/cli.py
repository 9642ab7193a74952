"""The ``bayesladder`` command line: thin commands over the library; errors become one line and exit 1."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from bayesladder.errors import BayesLadderError

app = typer.Typer(help="Predict a large model's downstream task scores from a ladder of small models.", no_args_is_help=True)
import_app = typer.Typer(help="Turn other tools' logs into a ladder dataset (netCDF).", no_args_is_help=True)
app.add_typer(import_app, name="import")

JsonOption = Annotated[bool, typer.Option("--json", help="Print only a JSON list of records.")]
DataOption = Annotated[Path, typer.Option("--data", help="Ladder dataset (netCDF) made by 'bayesladder import'.")]
LadderOption = Annotated[Optional[str], typer.Option("--ladder", help="Named ladder preset, e.g. 'paper'.")]
SizesOption = Annotated[Optional[list[str]], typer.Option("--sizes", help="Sizes to fit on (repeat or comma-separate).")]
LengthsOption = Annotated[Optional[list[str]], typer.Option("--lengths", help="Lengths to fit on (repeat or comma-separate).")]
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
    directory: Annotated[Optional[Path], typer.Argument(help="Folder with the OLMo-ladder CSV files.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Ladder dataset to write.")] = Path("ladder.nc"),
    download: Annotated[bool, typer.Option("--download", help="Fetch the files from the public OLMo-ladder repository (SHA-256 verified).")] = False,
) -> None:
    """Import the OLMo-ladder W&B exports (Bhagia et al. 2024)."""
    from bayesladder import schema
    from bayesladder.importers import olmo_ladder

    if download == (directory is not None):
        raise BayesLadderError("give either a folder of OLMo-ladder CSV files or --download")
    ds = olmo_ladder.import_dir(olmo_ladder.download() if download else directory)
    schema.write(ds, output)
    typer.echo(f"wrote {output}: {ds.sizes['run']} runs, {ds.sizes['task']} tasks", err=True)


@import_app.command("csv")
@reports_errors
def import_csv(
    file: Annotated[Path, typer.Argument(help="Long CSV: one row per run x checkpoint x task.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Ladder dataset to write.")] = Path("ladder.nc"),
) -> None:
    """Import a long CSV (columns run, n_params, tokens, task, task_loss, accuracy; see the README)."""
    from bayesladder import schema
    from bayesladder.importers import long_csv

    ds = long_csv.import_file(file)
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
    target: Annotated[Optional[str], typer.Option("--target", help="Target name (7B-4T, 13B-5T or a run of the dataset).")] = None,
    n: Annotated[Optional[float], typer.Option("--n", help="Target parameters N.")] = None,
    d: Annotated[Optional[float], typer.Option("--d", help="Target training tokens D.")] = None,
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
    actual = ladder_runs.actual_final(ds, target_spec.name)
    if actual is not None:
        table["actual_loss"] = actual.loc[table["task"], "task_loss"].values
        table["actual_accuracy"] = actual.loc[table["task"], "accuracy"].values
        table["loss_error"] = table["loss"] - table["actual_loss"]
        table["accuracy_error"] = table["accuracy"] - table["actual_accuracy"]
    output.emit(table, as_json, title=f"Paper method: {target_spec.name} (N={target_spec.n_params:.4g}, D={target_spec.tokens:.4g})")


def _set_threads(threads: Optional[int]) -> None:
    import os

    import torch

    threads = threads or int(os.environ.get("BAYESLADDER_THREADS", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)


@app.command()
@reports_errors
def train(
    ladder: Annotated[Path, typer.Option("--ladder", help="Ladder spec (TOML), e.g. models/micro.toml.")],
    rung: Annotated[Optional[str], typer.Option("--rung", help="One rung, SIZE-MULT, e.g. 35k-5xC (with what it branches from).")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every rung and target of the ladder.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for checkpoints, evaluations and ladder.nc.")] = Path("ladder_out"),
    corpus: Annotated[Optional[list[Path]], typer.Option("--corpus", help="Text file(s) to train on instead of the spec's corpus.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads (default: $BAYESLADDER_THREADS or torch's).")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train a ladder (or one rung) and write its ladder dataset OUT/ladder.nc as checkpoints are evaluated.

    Data-parallel on several GPUs (or CPU processes): the same command under torchrun --nproc_per_node N."""
    import os

    from bayesladder.training import runner, spec

    if all_runs == (rung is not None):
        raise BayesLadderError("give either --rung SIZE-MULT or --all")
    ladder_spec = spec.load(ladder)
    runner.prepare(ladder_spec, rung, [str(p) for p in corpus] if corpus else None)  # bad input fails before any output
    _set_threads(threads)
    path = runner.train(ladder_spec, out, rung, [str(p) for p in corpus] if corpus else None, progress=progress)
    if os.environ.get("RANK", "0") != "0":
        return
    if ladder_spec.recipe.schedule == "wsd":
        used, separate = spec.tokens_saved(ladder_spec)
        typer.echo(f"warmup-stable-decay: the ladder's runs take {used:,} training tokens against {separate:,} for "
                   f"separate cosine runs ({1 - used / separate:.0%} saved)", err=True)
    typer.echo(f"wrote {path}", err=True)


@app.command("eval")
@reports_errors
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint folder (AutoModelForCausalLM.from_pretrained), byte-level.")],
    task: Annotated[Optional[list[str]], typer.Option("--task", help="Task: a plain JSONL file, an OLMo requests.jsonl.gz (or its folder, or 'arc_easy/val_rc_5shot'). Repeatable.")] = None,
    ladder: Annotated[Optional[Path], typer.Option("--ladder", help="Also run this ladder spec's tasks (offline suite from its held-out text).")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many questions per file task.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Sequences per forward pass.")] = 64,
    threads: Annotated[Optional[int], typer.Option("--threads", help="torch CPU threads.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a checkpoint on multiple-choice tasks: task loss (bits/byte), accuracy (len-norm and raw)."""
    import pandas as pd

    from bayesladder import output
    from bayesladder.evaluation import tasks as task_formats
    from bayesladder.training import runner, spec

    if not (checkpoint / "config.json").is_file():
        raise BayesLadderError(f"{checkpoint} is not a checkpoint folder (no config.json)")
    chosen = [task_formats.load_any(t, limit=limit) for t in task or []]
    if ladder is not None:
        ladder_spec = spec.load(ladder)
        _, _, suite = runner.prepare(ladder_spec, None)
        chosen += suite
    if not chosen:
        raise BayesLadderError("no tasks: give --task FILE (repeatable) and/or --ladder SPEC")
    _set_threads(threads)
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from bayesladder.evaluation.scoring import score_task

    hf_logging.disable_progress_bar()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(checkpoint).to(device)
    max_len = int(getattr(model.config, "max_position_embeddings", 2048))
    rows = [score_task(model, t, max_len, batch_size, device).as_dict() for t in chosen]
    output.emit(pd.DataFrame(rows), as_json, title=f"{checkpoint}")


def main() -> None:
    app(prog_name="bayesladder")


if __name__ == "__main__":
    sys.exit(main())
