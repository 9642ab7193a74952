"""A final-only ladder (one evaluation per run, as many public ladders record) through every Bayesian command:
the OLMo paper ladder reduced to each run's last checkpoint. Step 2 then fits the runs' final points."""

from __future__ import annotations

import json

import pytest
from cli_helpers import TINY, invoke

from bayesladder.bayes.fit import LadderFit

TASKS = "piqa,arc_easy"


@pytest.fixture(scope="module")
def final_only_fit(olmo_final_only_nc, tmp_path_factory):
    path = tmp_path_factory.mktemp("final-only") / "fit.nc"
    # the two-step design alone: the single-step design's final-only path is backtested below
    args = ("--data", olmo_final_only_nc, "--ladder", "paper", "--tasks", TASKS, "--designs", "two-step")
    result = invoke("fit", *args, *TINY, "-o", path)
    return path, result


def test_fit_says_step_2_uses_the_final_points_and_records_it(final_only_fit):
    path, result = final_only_fit
    assert result.exit_code == 2, (result.output, result.exception)  # 2 x 100 draws cannot reach an ESS of 400
    assert path.is_file()
    assert "(a final-only ladder): step 2 was fitted on the runs' final points" in result.stderr
    fitted = LadderFit.load(path)
    data = fitted.designs["two-step"].data
    # one step-2 point per run and task (the 16 runs and the 4 reruns of their 1xC cells); a final value is one
    # evaluation, not the mean of five
    assert data.final_only and len(data.s2_acc) == (16 + 4) * 2 and data.final_count == 1


def test_predict_and_report_on_a_final_only_fit(final_only_fit, olmo_final_only_nc, tmp_path):
    path, _ = final_only_fit
    result = invoke("predict", "--fit", path, "--target", "3B-10xC", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = json.loads(result.stdout)
    assert [r["task"] for r in rows] == TASKS.split(",")
    assert all(0 < r["acc_q05"] < r["acc_median"] < r["acc_q95"] < 1 for r in rows)
    out = tmp_path / "report.html"
    result = invoke("report", "--fit", path, "--target", "3B-10xC", "-o", out)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "a final-only ladder: step 2 is fitted on the runs&#39; final points" in out.read_text()


def test_backtest_and_compare_on_a_final_only_ladder(olmo_final_only_nc):
    common = ("--data", olmo_final_only_nc, "--ladder", "paper", "--holdout-size", "3B", "--tasks", "piqa", *TINY)
    result = invoke("backtest", *common, "--designs", "single-step", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 4 and all(r["actual_acc"] > 0.6 for r in rows)  # 3B at 1xC-10xC, piqa
    result = invoke("compare", *common, "--designs", "baseline", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    [record] = json.loads(result.stdout)
    assert record["design"] == "baseline" and record["n"] == 4
