"""`bayesladder variance`: per-task SD and CV over a run's last checkpoints, noisy tasks, bad input."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
from cli_helpers import assert_clean_error, invoke

from bayesladder.analyses.variance import COLUMNS, variance


def boolq_accuracy_of_the_last_10_checkpoints(olmo_data) -> list[float]:
    """Straight from the W&B export of 1B-10xC (163 rows)."""
    with open(olmo_data / "raw" / "1B-10xC.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 163
    return [float(row["eval/downstream/boolq_val_rc_5shot_acc"]) for row in rows[-10:]]


def test_variance_json_on_the_olmo_ladder(olmo_ladder_nc, olmo_ladder_ds, olmo_data):
    result = invoke("variance", "--data", olmo_ladder_nc, "--run", "1B-10xC", "--last", "10", "--json")
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert len(records) == olmo_ladder_ds.sizes["task"]
    assert all(list(r) == COLUMNS for r in records)
    by_task = {r["task"]: r for r in records}
    assert all(r["n"] == 10 and r["run"] == "1B-10xC" for r in records)
    # the sample SD and its ratio to the mean, of the run's raw boolq accuracies
    acc = boolq_accuracy_of_the_last_10_checkpoints(olmo_data)
    assert by_task["boolq"]["acc_sd"] == pytest.approx(statistics.stdev(acc))
    assert by_task["boolq"]["acc_cv"] == pytest.approx(statistics.stdev(acc) / statistics.fmean(acc))
    # the rule (accuracy CV > 2% or loss CV > 1%) flags the two tasks the paper finds noisy on this run
    assert sorted(t for t, r in by_task.items() if r["noisy"]) == ["boolq", "openbookqa"]


def test_variance_thresholds_are_arguments(olmo_ladder_ds):
    assert variance(olmo_ladder_ds, "1B-10xC", 10, acc_cv=1.0, loss_cv=1.0)["noisy"].sum() == 0
    assert variance(olmo_ladder_ds, "1B-10xC", 10, acc_cv=0.0, loss_cv=0.0)["noisy"].all()


def test_variance_table_output(olmo_ladder_nc):
    result = invoke("variance", "--data", olmo_ladder_nc, "--run", "3B-10xC", "--last", "5")
    assert result.exit_code == 0 and "noisy" in result.output and "hellaswag" in result.output


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--run", "9B-10xC"], "unknown run '9B-10xC'"),
        (["--run", "1B-10xC", "--last", "164"], "--last 164 is more than the 163 checkpoints run '1B-10xC' has"),
        (["--run", "1B-10xC", "--last", "1"], "--last must be at least 2"),
    ],
)
def test_variance_bad_input_is_one_line(olmo_ladder_nc, args, fragment):
    assert_clean_error(invoke("variance", "--data", olmo_ladder_nc, *args), fragment)


def test_variance_relates_to_backtest_errors(olmo_ladder_nc, olmo_data, tmp_path):
    rows = [
        {"run": "3B-10xC", "task": "boolq", "actual_acc": 0.70, "acc_median": 0.66, "acc_q05": 0.6, "acc_q95": 0.7},
        {"run": "3B-5xC", "task": "boolq", "actual_acc": 0.68, "acc_median": 0.70, "acc_q05": 0.6, "acc_q95": 0.7},
    ]
    backtest = tmp_path / "backtest.json"
    backtest.write_text(json.dumps(rows))
    result = invoke("variance", "--data", olmo_ladder_nc, "--run", "1B-10xC", "--backtest", backtest, "--json")
    assert result.exit_code == 0, result.output
    by_task = {r["task"]: r for r in json.loads(result.output)}
    assert by_task["boolq"]["abs_error"] == pytest.approx(0.03)  # mean of |0.66 - 0.70| and |0.70 - 0.68|
    sd = statistics.stdev(boolq_accuracy_of_the_last_10_checkpoints(olmo_data))
    assert by_task["boolq"]["error_over_sd"] == pytest.approx(0.03 / sd)
    assert by_task["mmlu"]["abs_error"] is None  # no backtest row for it
    backtest.write_text(json.dumps([{"task": "boolq"}]))
    result = invoke("variance", "--data", olmo_ladder_nc, "--run", "1B-10xC", "--backtest", backtest)
    assert_clean_error(result, f"{backtest} lacks column(s) acc_median, actual_acc")
