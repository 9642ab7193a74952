"""`bayesladder backtest --subsets`: smaller ladders, their compute as a fraction of the target's, and scores."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_helpers import assert_clean_error, invoke
from typer.testing import CliRunner

from bayesladder.analyses.subsets import COLUMNS, ladder_subsets, run_flops
from bayesladder.bayes.fit import FitConfig
from bayesladder.cli import app
from bayesladder.ladder import PRESETS, LadderSelection

runner = CliRunner()


def test_subsets_of_the_paper_ladder(olmo_ladder_ds):
    config = FitConfig(tasks=("hellaswag",), selection=PRESETS["paper"])
    subsets = {s.name: s for s in ladder_subsets(olmo_ladder_ds, config, ["3B"])}
    assert next(iter(subsets)) == "full ladder"
    assert subsets["full ladder"].sizes == ("190M", "370M", "760M", "1B")
    assert subsets["full ladder"].lengths == ("1xC", "2xC", "5xC", "10xC")
    assert subsets["drop largest size"].sizes == ("190M", "370M", "760M")
    assert subsets["drop 2 largest sizes"].sizes == ("190M", "370M")
    assert subsets["drop smallest size"].sizes == ("370M", "760M", "1B")
    assert subsets["drop 2 longest lengths"].lengths == ("1xC", "2xC")
    assert len(subsets) == 7


def test_subsets_skip_ladders_with_one_size_or_length(olmo_ladder_ds):
    config = FitConfig(
        tasks=("hellaswag",), selection=LadderSelection(sizes=("760M", "1B"), lengths=("1xC", "2xC", "5xC"))
    )
    names = [s.name for s in ladder_subsets(olmo_ladder_ds, config, ["3B"])]
    assert names == ["full ladder", "drop longest length"]


def test_run_flops_is_6nd_of_the_last_checkpoint(olmo_ladder_ds):
    r = olmo_ladder_ds.sel(run="1B-10xC")
    tokens = r["tokens"].values[int(r["tokens"].notnull().sum()) - 1]
    assert run_flops(olmo_ladder_ds, ["1B-10xC"]) == pytest.approx(6 * float(r["n_params"]) * tokens)
    assert run_flops(olmo_ladder_ds, ["1B-10xC", "1B-1xC"]) > run_flops(olmo_ladder_ds, ["1B-10xC"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--holdout-size", "9B", "--subsets"], "unknown held-out size(s) 9B"),
        (["--holdout-size", "3B", "--figure", "x.png"], "--figure needs --subsets"),
        (["--holdout-size", "3B", "--sizes", "760M,1B", "--lengths", "1xC", "--subsets"], "too small for subsets"),
    ],
)
def test_backtest_subsets_bad_input_is_one_line(olmo_ladder_nc, args, fragment):
    assert_clean_error(invoke("backtest", "--data", olmo_ladder_nc, "--tasks", "hellaswag", *args), fragment)


def test_the_subsets_table_shows_points_and_flags_a_failed_refit_in_80_columns(olmo_ladder_ds, capsys):
    from bayesladder import output
    from bayesladder.cli import show_subsets

    names = [s.name for s in ladder_subsets(olmo_ladder_ds, FitConfig(("mmlu",), LadderSelection()), ["3B"])]
    summary = pd.DataFrame({column: [0.0] * len(names) for column in COLUMNS} | {"subset": names}).assign(
        mae=0.0123, coverage=0.875, flops_fraction=0.0042, refit_ok=[False] + [True] * (len(names) - 1)
    )
    output.table(show_subsets(summary), title="subsets")
    text = capsys.readouterr().out
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text  # nothing cut
    [full] = [line.split() for line in text.splitlines() if line.startswith("full ladder")]
    assert full[2:] == ["0.42%", "1.2", "88%", "0.0", "0.0", "FAILED"]


@pytest.mark.slow
def test_backtest_subsets_json_and_figure(olmo_ladder_nc, tmp_path):
    """5 tiny refits (1 task, 1 chain x 50 draws): about 2 minutes."""
    figure = tmp_path / "subsets.png"
    result = runner.invoke(
        app,
        [
            "backtest",
            "--data",
            str(olmo_ladder_nc),
            "--sizes",
            "370M,760M,1B",
            "--lengths",
            "1xC,2xC,5xC",
            "--holdout-size",
            "3B",
            "--tasks",
            "hellaswag",
            "--chains",
            "1",
            "--draws",
            "50",
            "--tune",
            "50",
            "--subsets",
            "--figure",
            str(figure),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["subset"] for r in records] == [
        "full ladder",
        "drop largest size",
        "drop smallest size",
        "drop longest length",
        "drop largest size and longest length",
    ]
    assert all(list(r) == COLUMNS for r in records)
    full = records[0]
    assert full["n_runs"] == 12 and full["n"] == 3  # 9 runs + 3 reruns of 1xC; 3 held-out 3B runs x 1 task
    assert 0 < records[-1]["flops_fraction"] < full["flops_fraction"] < 1
    assert all(0 <= r["coverage"] <= 1 and r["mae"] >= 0 and r["mean_width"] > 0 for r in records)
    assert figure.read_bytes()[:4] == b"\x89PNG"
