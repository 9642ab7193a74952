"""The paper's method as the baseline: it reproduces the published 13B-5T predictions and the 3B table."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from bayesladder import baseline, ladder, schema
from bayesladder.errors import BayesLadderError
from bayesladder.targets import KNOWN_TARGETS

SOURCE_TASK = {
    "mmlu_avg_test_5shot": "mmlu",
    "hellaswag_val_5shot": "hellaswag",
    "arc_challenge_test_5shot": "arc_challenge",
    "arc_easy_test_5shot": "arc_easy",
    "piqa_val_5shot": "piqa",
    "csqa_val_5shot": "csqa",
    "socialiqa_val_5shot": "socialiqa",
    "openbookqa_test_5shot": "openbookqa",
    "boolq_val_5shot": "boolq",
    "winogrande_val_5shot": "winogrande",
}
PUBLISHED_13B_5T = dict(
    mmlu=0.5127,
    hellaswag=0.8530,
    arc_challenge=0.5267,
    arc_easy=0.7724,
    piqa=0.8208,
    csqa=0.7761,
    socialiqa=0.5995,
    openbookqa=0.4486,
)


@pytest.fixture(scope="module")
def paper_fits(olmo_ladder_ds):
    runs = ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection("paper", None, None))
    return baseline.fit(olmo_ladder_ds, runs, list(SOURCE_TASK.values()))


@pytest.fixture(scope="module")
def paper_3b_table(olmo_data):
    with open(olmo_data / "paper_method_3b.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 50
    return rows


def test_paper_preset_is_the_16_runs(olmo_ladder_ds):
    runs = ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection("paper", None, None))
    expected = {f"{s}-{x}" for s in ("190M", "370M", "760M", "1B") for x in ("1xC", "2xC", "5xC", "10xC")}
    assert set(runs) == expected and len(runs) == 16


def test_reproduces_the_published_13b_5t_predictions(paper_fits):
    target = KNOWN_TARGETS["13B-5T"]
    table = baseline.predict(paper_fits, target.n_params, target.tokens).set_index("task")
    for task, published in PUBLISHED_13B_5T.items():
        assert table.loc[task, "accuracy"] == pytest.approx(published, abs=1e-3), task


def test_reproduces_every_row_of_the_3b_leave_out_table(paper_fits, paper_3b_table):
    for row in paper_3b_table:
        task = SOURCE_TASK[row["task"]]
        pred = baseline.predict({task: paper_fits[task]}, float(row["n"]), float(row["d"])).iloc[0]
        where = f"{row['target']} {task}"
        assert pred["loss"] == pytest.approx(float(row["pred_bpb"]), abs=1e-3), where
        assert pred["accuracy"] == pytest.approx(float(row["pred_acc"]), abs=1e-3), where
        # step 2 alone, from the true final loss
        assert paper_fits[task].accuracy(float(row["actual_bpb"])) == pytest.approx(
            float(row["step2_only_pred_acc"]), abs=1e-3
        ), where


def test_actual_final_values_of_the_3b_runs(olmo_ladder_ds, paper_3b_table):
    """Mean of the last 5 checkpoints, and N and D of the run's last checkpoint, as in the paper's table."""
    for row in paper_3b_table:
        task = SOURCE_TASK[row["task"]]
        actual = ladder.actual_final(olmo_ladder_ds, row["target"]).loc[task]
        assert actual["task_loss"] == pytest.approx(float(row["actual_bpb"]), rel=1e-9)
        assert actual["accuracy"] == pytest.approx(float(row["actual_acc"]), rel=1e-9)
        target = ladder.resolve_target(olmo_ladder_ds, row["target"], None, None)
        assert (target.n_params, target.tokens) == (float(row["n"]), float(row["d"]))


def test_fitted_parameters_respect_the_bounds(paper_fits):
    for task, f in paper_fits.items():
        assert min(f.step1) >= 0, task
        a, l0, k, b = f.step2
        assert -1 <= a <= 0 and l0 >= 0 and k >= 0 and 0 <= b <= 1, task


# ---------------------------------------------------------------- the pieces, by hand


def test_trailing_moving_average_by_hand():
    out = ladder.trailing_moving_average(np.array([1.0, 2, 3, 4, 5, 6, 7]), 5)
    np.testing.assert_allclose(out, [1, 1.5, 2, 2.5, 3, 4, 5])
    np.testing.assert_allclose(ladder.trailing_moving_average(np.array([4.0, 2.0]), 5), [4, 3])
    np.testing.assert_allclose(ladder.trailing_moving_average(np.array([1.0, 5, 3]), 1), [1, 5, 3])


def tiny_dataset(n_checkpoints: list[int]):
    """One task, runs with the given numbers of checkpoints; loss = 10 + index, accuracy = index / 100."""
    width = max(n_checkpoints)
    tokens = np.full((len(n_checkpoints), width), np.nan)
    loss = np.full((len(n_checkpoints), width, 1), np.nan)
    for i, n in enumerate(n_checkpoints):
        tokens[i, :n] = np.arange(1, n + 1) * 1e9
        loss[i, :n, 0] = 10 + np.arange(n)
    runs = [
        dict(name=f"r{n}", size=f"s{i}", length="1xC", multiplier=1, replicate=0, n_params=1e8, role="ladder")
        for i, n in enumerate(n_checkpoints)
    ]
    return schema.build_dataset(
        runs=runs, tasks=[dict(name="t")], task_loss=loss, accuracy=(loss - 10) / 100, tokens=tokens, producer="test"
    )


@pytest.mark.parametrize("n, dropped", [(1, 0), (2, 1), (9, 1), (10, 1), (11, 2), (20, 2), (30, 3), (37, 4), (163, 17)])
def test_step2_drops_the_first_ceil_ten_percent_but_keeps_a_single_evaluation(n, dropped):
    tokens, loss, acc = ladder.step2_checkpoints(tiny_dataset([n]), [f"r{n}"], "t")[f"r{n}"]
    np.testing.assert_array_equal(loss, 10 + np.arange(dropped, n))
    np.testing.assert_array_equal(tokens, np.arange(dropped + 1, n + 1) * 1e9)
    np.testing.assert_allclose(acc, np.arange(dropped, n) / 100)


def test_step2_points_smooth_each_run_separately():
    ds = tiny_dataset([11, 4])
    loss, acc = baseline.step2_points(ds, ["r11", "r4"], "t")
    # r11: losses 10..20, drop 2, then 12..20 smoothed over up to 5 trailing points;
    # r4: losses 10..13, drop 1, then 11..13 smoothed, not mixed with r11's
    expected = [12, 12.5, 13, 13.5, 14, 15, 16, 17, 18] + [11, 11.5, 12]
    np.testing.assert_allclose(loss, expected)
    np.testing.assert_allclose(acc, (np.array(expected) - 10) / 100, atol=1e-12)


def test_final_points_use_the_last_five_checkpoints():
    ds = tiny_dataset([7, 3])
    finals = ladder.final_points(ds, ["r7", "r3"]).set_index("run")
    assert finals.loc["r7", "task_loss"] == pytest.approx(np.mean([12, 13, 14, 15, 16]))
    assert finals.loc["r7", "tokens"] == 7e9
    assert finals.loc["r3", "task_loss"] == pytest.approx(11)  # min(5, rows) checkpoints
    assert finals.loc["r3", "accuracy"] == pytest.approx(0.01)


def paper_task_loss(n, d):
    """The paper's step 1 with known parameters: L(N, D) = A / N^alpha + B / D^beta + E."""
    return 54.6 / n**0.25 + 1096.6 / d**0.3 + 0.6


def test_step1_recovers_a_known_power_law():
    n, d = np.meshgrid([1e8, 3e8, 1e9, 3e9], [2e9, 1e10, 5e10, 2e11])
    fits = {"t": baseline.TaskFit(baseline.fit_step1(n.ravel(), d.ravel(), paper_task_loss(n, d).ravel()), None)}
    predicted = fits["t"].loss(1e11, 1e13)
    assert predicted == pytest.approx(paper_task_loss(1e11, 1e13), rel=1e-3)


def test_step2_recovers_a_known_sigmoid():
    def paper_accuracy(loss):  # the paper's step 2: a / (1 + exp(-k (L - L0))) + b; accuracy(0) = 0.9994
        return -0.75 / (1 + np.exp(-6.0 * (loss - 1.2))) + 1.0

    loss = np.linspace(0.5, 3.0, 60)
    fitted = baseline.TaskFit(None, baseline.fit_step2(loss, paper_accuracy(loss)))
    np.testing.assert_allclose(fitted.accuracy(loss), paper_accuracy(loss), atol=5e-3)


def test_selection_errors(olmo_ladder_ds):
    with pytest.raises(BayesLadderError, match="unknown ladder preset 'tiny'; known presets: paper"):
        ladder.resolve_selection("tiny", None, None)
    with pytest.raises(BayesLadderError, match="not both"):
        ladder.resolve_selection("paper", ["1B"], None)
    with pytest.raises(BayesLadderError, match=r"unknown size\(s\) 7B"):
        ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection(None, ["1B", "7B"], None))
    with pytest.raises(BayesLadderError, match=r"unknown length\(s\) 3xC"):
        ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection(None, None, ["3xC"]))
    runs = ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection(None, ["3B"], ["1xC", "0.5xC"]))
    assert sorted(runs) == ["3B-0.5xC", "3B-1xC"]  # first replicate only


def test_target_resolution(olmo_ladder_ds, olmo_data):
    published = json.loads((olmo_data / "ladder.json").read_text())["targets"]
    for name in ("7B-4T", "13B-5T"):
        target = ladder.resolve_target(olmo_ladder_ds, name, None, None)
        assert (target.name, target.n_params, target.tokens) == (name, published[name]["N"], published[name]["D"])
    explicit = ladder.resolve_target(None, None, 7e9, 2e12)
    assert (explicit.n_params, explicit.tokens) == (7e9, 2e12)
    with pytest.raises(BayesLadderError, match="unknown target '70B-15T'"):
        ladder.resolve_target(olmo_ladder_ds, "70B-15T", None, None)
    with pytest.raises(BayesLadderError, match="must be positive"):
        ladder.resolve_target(None, None, 7e9, 0)
    with pytest.raises(BayesLadderError, match="give a target"):
        ladder.resolve_target(None, None, 7e9, None)


# ---------------------------------------------------------------- what the method cannot fit is refused


def test_a_final_only_ladder_fits_step_2_on_the_runs_final_points(olmo_final_only_ds, olmo_ladder_ds):
    runs = ladder.select_runs(olmo_final_only_ds, ladder.resolve_selection("paper", None, None))
    assert len(runs) == 16 and olmo_final_only_ds.sizes["checkpoint"] == 1
    loss, acc = baseline.step2_points(olmo_final_only_ds, runs, "piqa")
    finals = ladder.final_points(olmo_ladder_ds, runs).set_index(["run", "task"])
    expected = [olmo_ladder_ds["accuracy"].sel(run=r, task="piqa").dropna("checkpoint").values[-1] for r in runs]
    np.testing.assert_allclose(acc, expected)  # one point per run: its last evaluation
    assert len(loss) == 16 and finals.loc[(runs[0], "piqa"), "task_loss"] > 0
    fits = baseline.fit(olmo_final_only_ds, runs, ["piqa", "mmlu"])
    prediction = baseline.predict(fits, 13.2e9, 5e12).set_index("task")
    assert (0.3 < prediction["accuracy"]).all() and (prediction["accuracy"] < 0.99).all()  # no sigmoid on the anchor


def test_step_1_on_fewer_runs_than_parameters_is_refused(olmo_ladder_ds):
    runs = ladder.select_runs(olmo_ladder_ds, ladder.resolve_selection(None, ["190M", "370M"], ["1xC", "2xC"]))
    with pytest.raises(BayesLadderError, match=r"task 'piqa': step 1 has 4 runs with a task loss, fewer than its 5"):
        baseline.fit(olmo_ladder_ds, runs, ["piqa"])


def test_a_task_without_task_loss_is_refused(olmo_ladder_ds):
    ds = olmo_ladder_ds.copy(deep=True)
    ds["task_loss"].loc[dict(task="boolq")] = np.nan
    runs = ladder.select_runs(ds, ladder.resolve_selection("paper", None, None))
    with pytest.raises(BayesLadderError, match=r"cannot fit task 'boolq': no task loss in the ladder runs"):
        baseline.fit(ds, runs, ["piqa", "boolq"])
    assert set(baseline.fit(ds, runs, ["piqa"])) == {"piqa"}


def test_runs_missing_some_task_losses_fit_on_the_others(olmo_ladder_ds):
    ds = olmo_ladder_ds.copy(deep=True)
    ds["task_loss"].loc[dict(task="piqa", run="190M-1xC")] = np.nan  # one run lacks the loss entirely
    runs = ladder.select_runs(ds, ladder.resolve_selection("paper", None, None))
    fitted = baseline.fit(ds, runs, ["piqa"])["piqa"]
    assert np.isfinite(fitted.step1).all() and 0.5 < fitted.accuracy(fitted.loss(1e9, 1e11)) < 0.9
