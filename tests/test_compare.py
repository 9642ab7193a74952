"""`bayesladder compare`: alternative designs backtested on the same held-out runs, ranked."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import assert_clean_error, invoke
from typer.testing import CliRunner

from bayesladder import datasets, schema
from bayesladder.analyses.designs import COLUMNS, DESIGNS, resolve_valset, swap_intermediate
from bayesladder.cli import app
from bayesladder.errors import BayesLadderError

runner = CliRunner()


def test_swap_intermediate_puts_the_validation_loss_in_every_task(olmo_ladder_ds):
    swapped = swap_intermediate(olmo_ladder_ds, "c4_en")
    c4 = olmo_ladder_ds["val_loss"].sel(valset="c4_en").values
    for task in ("mmlu", "boolq"):
        np.testing.assert_array_equal(swapped["task_loss"].sel(task=task).values, c4)
    np.testing.assert_array_equal(swapped["accuracy"].values, olmo_ladder_ds["accuracy"].values)
    assert "task_loss" in olmo_ladder_ds and not np.array_equal(
        olmo_ladder_ds["task_loss"].sel(task="mmlu").values, c4, equal_nan=True
    )


def test_the_default_validation_set_is_the_papers_else_the_datasets_only_one(olmo_ladder_ds):
    """'compare' with its defaults on the shipped micro ladder (one validation set, 'heldout') used to fail:
    'unknown validation set c4_en'."""
    assert resolve_valset(olmo_ladder_ds) == "c4_en"
    assert resolve_valset(schema.read(datasets.micro_ladder())) == "heldout"
    with pytest.raises(BayesLadderError, match="leave it out: --designs default,two-step,flops-step1,single-step,"):
        resolve_valset(olmo_ladder_ds.drop_vars(["val_loss", "valset"]))


def test_compare_baseline_only_json_shape(olmo_ladder_nc):
    result = runner.invoke(
        app,
        [
            "compare",
            "--data",
            str(olmo_ladder_nc),
            "--ladder",
            "paper",
            "--holdout-size",
            "3B",
            "--tasks",
            "hellaswag,arc_easy",
            "--designs",
            "baseline",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert list(record) == COLUMNS
    assert record["design"] == "baseline" and record["rank"] == 1
    assert record["n"] == 8  # 3B at 1xC, 2xC, 5xC, 10xC x 2 tasks
    assert (
        record["coverage"] == 0
        and record["mean_width"] == 0
        and record["elpd_loo"] is None
        and record["max_rhat"] is None
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--designs", "nope"], "unknown design(s) nope"),
        (["--valset", "nope"], "unknown validation set 'nope'"),
        (["--holdout-size", "9B"], "unknown held-out size(s) 9B"),
        # it fitted the baseline on every size, the held-out ones included, and scored that (exit 0)
        (["--holdout-size", "190M,370M,760M,1B,3B", "--designs", "baseline"], "holds out every ladder size"),
    ],
)
def test_compare_bad_input_is_one_line(olmo_ladder_nc, args, fragment):
    if "--holdout-size" not in args:
        args = [*args, "--holdout-size", "3B"]
    assert_clean_error(invoke("compare", "--data", olmo_ladder_nc, "--tasks", "hellaswag", *args), fragment)


@pytest.mark.slow
def test_compare_every_design(olmo_ladder_nc):
    """Four tiny fits (2 tasks, 1 chain x 50 draws) and the baseline: about 3 minutes."""
    result = runner.invoke(
        app,
        [
            "compare",
            "--data",
            str(olmo_ladder_nc),
            "--sizes",
            "370M,760M,1B",
            "--lengths",
            "1xC,2xC,5xC",
            "--holdout-size",
            "3B",
            "--tasks",
            "hellaswag,arc_easy",
            "--chains",
            "1",
            "--draws",
            "50",
            "--tune",
            "50",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert sorted(r["design"] for r in records) == sorted(DESIGNS)
    assert [r["rank"] for r in records] == list(range(1, len(DESIGNS) + 1))
    assert [r["mae"] for r in records] == sorted(r["mae"] for r in records)
    by = {r["design"]: r for r in records}
    assert all(r["n"] == 6 for r in records)  # 3 held-out runs x 2 tasks
    assert by["two-step"]["elpd_loo"] is not None and by["flops-step1"]["elpd_loo"] is not None
    assert by["single-step"]["elpd_loo"] is None and by["c4-intermediate"]["elpd_loo"] is None
    assert all(by[d]["mean_width"] > 0 for d in DESIGNS if d != "baseline")
