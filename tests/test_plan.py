"""`bayesladder plan`: the ranking where the right answer is known, the greedy sequence, the update's consistency with
what a refit sees, the JSON, bad input, and the report's planning section."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_clean_error, invoke

from bayesladder import testing
from bayesladder.bayes.data import prepare
from bayesladder.bayes.fit import FitConfig, LadderFit, fit_design
from bayesladder.bayes.plan import COLUMNS, plan, resolve_candidates, simulated_run
from bayesladder.bayes.predict import components, predictive_draws
from bayesladder.bayes.preposterior import Preposterior, expected_crps
from bayesladder.bayes.stacking import AXES, Calibration
from bayesladder.combine import add_evaluations
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import LadderSelection
from bayesladder.targets import Target

TARGET = Target("640M-10xC", 640e6, 640e6 * 200)  # 4x the simulated ladder's largest N, 1.4 e-folds beyond it
KAPPA = 0.3  # logits per e-fold of N beyond the ladder: the discrepancy dominates the target's width
FAST = dict(outcomes=16, max_draws=300)
PLAN_ARGS = ("--outcomes", 8, "--max-draws", 100)


@pytest.fixture(scope="session")
def simulated_fit():
    """(dataset, fit) of a simulated ladder (20M-160M x 1-10xC, 3 tasks, sizes deviating from the curves): the
    two-step design, 2 chains x 200 draws, with a discrepancy scale KAPPA set as the nested backtest would."""
    rng = np.random.default_rng(3)
    truths = testing.draw_truths(rng, n_tasks=3)
    effects = testing.draw_size_effects(rng, list(testing.SIZES), list(truths), acc_sd=0.2)
    ds = testing.simulate_ladder(truths, rng, size_effects=effects)
    config = FitConfig(tasks=tuple(truths), selection=LadderSelection(), designs=("two-step",), chains=2, draws=200,
                       tune=200)  # fmt: skip
    design = fit_design(ds, config, "two-step")
    calibration = Calibration(
        (),
        {axis: {"two-step": 1.0} for axis in AXES},
        {"two-step": KAPPA},
        {"two-step": 0.0},
        pd.DataFrame({"design": ["two-step"]}),
    )
    fitted = LadderFit(tree=_tree(design), config=config, data_hash="", calibration=calibration)
    return ds, fitted


def _tree(design):
    import xarray as xr

    tree = xr.DataTree()
    tree[design.design] = design.tree
    return tree


def _candidates(ds, fitted, rows):
    return resolve_candidates(ds, fitted, TARGET, None, table=pd.DataFrame(rows, columns=["size", "length"]))


def test_a_rung_at_the_targets_size_beats_a_rerun_of_the_smallest_cell_per_flop(simulated_fit):
    ds, fitted = simulated_fit
    rungs = _candidates(ds, fitted, [("20M", "1xC"), ("640M=6.4e8", "0.5xC=6.4e9")])
    table = plan(fitted, TARGET, rungs, **FAST).set_index("size")
    rerun, own = table.loc["20M"], table.loc["640M"]
    assert (rerun["kind"], own["kind"]) == ("rerun", "new size")
    assert own["flops"] > 100 * rerun["flops"]
    assert own["gain_per_flop"] > rerun["gain_per_flop"] and own["rank"] == 1
    # the target's own size: its size effects and the discrepancy beyond the ladder fall, and it teaches the model
    # about extrapolation; the rerun of a fitted cell teaches it about noise and leaves the target's width as it was
    assert own["driver"] in ("discrepancy", "size effects") and own["drop_discrepancy"] > 0
    assert own["learns_extrapolation"] > own["learns_noise"]
    assert rerun["learns_noise"] > rerun["learns_extrapolation"]
    assert abs(rerun["gain"]) < 0.02 * own["gain"]
    assert own["width_after"] < 0.5 * own["width_before"]
    assert own["crps_after"] < 0.6 * own["crps_before"]  # the CRPS shown beside falls with the width


def test_the_width_before_is_the_predictions_own(simulated_fit):
    """The update's normal mixture reproduces the 90% interval of the model's predictive draws (within their
    sampling noise; the discrepancy drawn independently of the fresh size effects)."""
    _, fitted = simulated_fit
    design = fitted.designs["two-step"]
    parts = components(design.posterior, design.data, "two-step", TARGET.n_params, TARGET.tokens)
    distance = np.log(TARGET.n_params / fitted.extent().largest_n)
    _, acc = parts.sample(np.random.default_rng(1), KAPPA * distance)
    low, high = np.quantile(acc, [0.05, 0.95], axis=0)
    before = Preposterior(fitted, TARGET, **FAST).evaluate()
    assert before.width == pytest.approx(float((high - low).mean()), rel=0.1)


def test_an_update_that_rests_on_one_draw_gives_a_width_flagged_by_its_ess(simulated_fit):
    """Three large rungs together, two posterior draws: the outcomes leave all weight on one draw (they crashed
    `plan`'s ranking with NaN widths on a Gemstones retrospective). The width is finite and the ESS says why it is
    rough."""
    ds, fitted = simulated_fit
    rungs = _candidates(ds, fitted, [("640M=6.4e8", "10xC=1.28e11"), ("160M", "10xC"), ("2B=2e9", "10xC=4e11")])
    after = Preposterior(fitted, TARGET, outcomes=16, max_draws=2).evaluate(rungs)
    assert np.isfinite(after.widths).all() and 0 < after.width < Preposterior(fitted, TARGET, **FAST).evaluate().width
    assert after.ess.min() == pytest.approx(1.0, abs=1e-3)  # the other draw's weight is ~1e-6, not always 0


def test_a_new_size_nearer_the_target_narrows_its_own_deviation_more(simulated_fit):
    """A planned new size other than the target's tells of the target's deviation from the curves as a new point
    tells a regression's prediction (their shifts share what the fitted level and trend absorbed): the nearer the
    target, the more it narrows the target's size-effect term and its width; a size within the ladder, barely. (Without
    the discrepancy, whose fall with distance would otherwise dominate the widths.)"""
    ds, fitted = simulated_fit
    fitted = replace(fitted, calibration=replace(fitted.calibration, kappa={"two-step": 0.0}))
    pre = Preposterior(fitted, TARGET, **FAST)
    before = pre.evaluate()
    after = {
        size: pre.evaluate(_candidates(ds, fitted, [(size, "1xC")])) for size in ("30M=3e7", "200M=2e8", "500M=5e8")
    }
    size_effects = [after[size].term("size effects") for size in after]
    assert size_effects[0] == pytest.approx(before.term("size effects"), rel=0.02)
    assert size_effects[0] > size_effects[1] > size_effects[2] and size_effects[2] < 0.9 * before.term("size effects")
    assert before.width > after["30M=3e7"].width > after["200M=2e8"].width > after["500M=5e8"].width


def test_the_expected_crps_of_a_normal_is_its_sd_over_root_pi():
    """A forecast scored against actuals drawn from itself: CRPS = sd / sqrt(pi) for a normal (Gneiting and Raftery
    2007), whether given as one component or as two equal ones; a wider normal scores worse in proportion."""
    sd = np.array([0.02, 0.05])[None, None, :]
    mean = np.full((1, 1, 2), 0.6)
    one = expected_crps(mean, sd, np.ones((1, 1, 2)), np.random.default_rng(0), samples=20_000)
    np.testing.assert_allclose(one[0], sd[0, 0] / np.sqrt(np.pi), rtol=0.03)
    two = expected_crps(np.repeat(mean, 2, axis=1), np.repeat(sd, 2, axis=1), np.full((1, 2, 2), 0.5),
                        np.random.default_rng(1), samples=20_000)  # fmt: skip
    np.testing.assert_allclose(two, one, rtol=0.03)


def test_a_budget_gives_a_greedy_sequence_within_it(simulated_fit):
    ds, fitted = simulated_fit
    rungs = _candidates(ds, fitted, [("20M", "1xC"), ("160M", "1xC"), ("320M=3.2e8", "1xC"), ("640M=6.4e8", "1xC")])
    budget = sorted(r.flops for r in rungs)[-1] + sorted(r.flops for r in rungs)[0]
    table = plan(fitted, TARGET, rungs, budget=budget, **FAST)
    assert list(table.columns) == COLUMNS and list(table["rank"]) == [1, 2, 3, 4]
    assert table["gain_per_flop"].is_monotonic_decreasing
    steps = table[table["step"].notna()].sort_values("step")
    assert list(steps["step"]) == list(range(1, len(steps) + 1)) and len(steps) >= 1
    assert (np.diff(steps["cumulative_flops"]) > 0).all() and steps["cumulative_flops"].max() <= budget
    assert (np.diff(steps["width_after_step"]) < 0).all()
    assert steps["width_after_step"].iloc[0] == pytest.approx(table.set_index("step").loc[1, "width_after"])
    again = plan(fitted, TARGET, rungs, budget=budget, **FAST)  # the same seed gives the same plan
    pd.testing.assert_frame_equal(table, again)


def test_a_simulated_outcome_is_what_a_refit_would_see(simulated_fit):
    """The points the update weighs are those `prepare` makes of the outcome written as a run of the dataset."""
    ds, fitted = simulated_fit
    (rung,) = _candidates(ds, fitted, [("320M=3.2e8", "2xC")])
    pre = Preposterior(fitted, TARGET, **FAST)
    outcome = pre.outcome(rung, pre.designs[0])
    extended = add_evaluations(ds, simulated_run(ds, pre, rung, "two-step", 5, "simulated"))
    data = prepare(extended, ["simulated"], list(fitted.config.tasks))
    blocks = outcome.blocks.shape[0]
    for t in range(len(data.tasks)):
        np.testing.assert_allclose(data.s2_acc[data.s2_task == t], outcome.block_acc[5, :, t])
        np.testing.assert_allclose(data.s2_loss[data.s2_task == t], outcome.block_loss[5, :, t])
        assert (data.s2_count[data.s2_task == t] == outcome.blocks.shape[1]).all() and blocks > 1
    np.testing.assert_allclose(data.s1_loss, outcome.final_loss[5])


@pytest.mark.parametrize(
    "sizes, lengths, fragment",
    [
        (["5Q"], ["1xC"], "unknown size '5Q'"),
        (["20M"], ["1yC"], "unknown length '1yC'"),
        (["20M=3e8"], ["1xC"], "size '20M' has N = 2e+07 in the dataset"),
        (["7B=abc"], ["1xC"], "bad size '7B=abc'"),
        (["40M"], ["0xC"], "bad length '0xC'; a multiple of Chinchilla-optimal tokens is positive"),
        (["40M"], ["4xC=-1"], "bad length '4xC=-1'; write LABEL=D.*e.g. 3xC=6e10"),
    ],
)
def test_bad_candidates_are_one_error(simulated_fit, sizes, lengths, fragment):
    ds, fitted = simulated_fit
    with pytest.raises(BayesLadderError, match=fragment.replace("+", r"\+")):
        resolve_candidates(ds, fitted, TARGET, None, sizes, lengths)


def test_lengths_resolve_from_the_dataset(simulated_fit):
    ds, fitted = simulated_fit
    rungs = resolve_candidates(ds, fitted, TARGET, None, ["40M", "2B=2e9"], ["2xC", "3xC"])
    by_name = {(r.size, r.length): r for r in rungs}
    assert by_name[("40M", "2xC")].kind == "rerun" and by_name[("40M", "3xC")].kind == "new length"
    assert by_name[("40M", "3xC")].tokens == pytest.approx(40e6 * 60)  # 3 x 20 tokens per parameter
    assert by_name[("2B", "2xC")].tokens == pytest.approx(2e9 * 40) and by_name[("2B", "2xC")].kind == "new size"


def test_by_default_a_target_trained_as_long_as_the_ladder_is_offered_a_new_size_below_it(simulated_fit):
    # the target's own size costs as much as the target at the ladder's 1xC: without a size between the ladder and
    # the target, as on a ladder of one length, the default would offer reruns alone
    ds, fitted = simulated_fit
    target = Target("640M-1xC", 640e6, 640e6 * 20)
    rungs = resolve_candidates(ds, fitted, target)
    new = [r for r in rungs if r.kind == "new size"]
    assert new and all(160e6 < r.n_params < 640e6 for r in new)
    assert all(r.flops < 6 * target.n_params * target.tokens for r in rungs)
    assert {r.size for r in rungs if r.kind == "rerun"} == set(fitted.sizes)


# ---------------------------------------------------------------- the command, on the session's tiny OLMo fit
@pytest.fixture(scope="session")
def plan_json(fit_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    result = invoke("plan", "--fit", fit_file, "--target", "3B-10xC", "--sizes", "190M,760M,3B", "--lengths",
                    "1xC,2xC", "--budget", "2e21", *PLAN_ARGS, "--json")  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    out.write_text(result.stdout)
    return out, result


def test_plan_json_has_a_record_per_candidate(plan_json):
    path, result = plan_json
    records = json.loads(path.read_text())
    assert len(records) == 6 and [r["rank"] for r in records] == list(range(1, 7))
    for key in ("n_params", "tokens", "flops", "width_before", "width_after", "gain_per_flop", "crps_before",
                "crps_after", "rank"):  # fmt: skip
        assert all(isinstance(r[key], (int, float)) for r in records), key
    assert all(isinstance(r["size"], str) and isinstance(r["length"], str) for r in records)
    assert all(0 < r["crps_after"] and 0 < r["width_after"] < 1 for r in records)
    record = next(r for r in records if (r["size"], r["length"]) == ("760M", "2xC"))
    assert record["flops"] == pytest.approx(6 * record["n_params"] * record["tokens"])
    assert record["gain_per_flop"] == pytest.approx((record["width_before"] - record["width_after"]) / record["flops"])
    kinds = {(r["size"], r["length"]): r["kind"] for r in records}
    assert kinds[("190M", "1xC")] == "rerun" and kinds[("3B", "1xC")] == "new size"
    steps = [r for r in records if r["step"] is not None]
    assert steps and max(r["cumulative_flops"] for r in steps) <= 2e21
    assert "candidate 6/6" in result.stderr  # progress, on stderr


def test_plan_table_for_people(fit_file):
    result = invoke("plan", "--fit", fit_file, "--target", "3B-10xC", "--sizes", "190M,3B", "--lengths", "1xC",
                    *PLAN_ARGS)  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert "ranked by the expected narrowing" in result.stdout and "3B-1xC" in result.stdout
    assert "rank = gain_per_flop" in result.stderr


def test_plan_for_a_target_given_by_n_and_d(fit_file):
    """A target no dataset holds, its own size among the candidates: that rung narrows it most."""
    result = invoke("plan", "--fit", fit_file, "--n", "6.9e9", "--d", "2e12", "--sizes", "190M,7B=6.9e9", "--lengths",
                    "1xC", *PLAN_ARGS, "--json")  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    records = {r["size"]: r for r in json.loads(result.stdout)}
    assert records["7B"]["target"] == "N=6.9e+09,D=2e+12" and records["7B"]["kind"] == "new size"
    assert records["7B"]["tokens"] == pytest.approx(6.9e9 * 20, rel=0.05)  # OLMo's 1xC: 20 tokens per parameter
    assert records["7B"]["gain"] > 10 * abs(records["190M"]["gain"])


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--sizes", "5Q"], ["unknown size '5Q'", "LABEL=N"]),
        (["--budget", "0"], ["--budget must be a positive number"]),
        (["--budget", "-1e20"], ["--budget must be a positive number"]),
        (["--sizes", "190M", "--lengths", "1xC", "--budget", "1e10"], ["no candidate fits in the budget"]),
        (["--target", "nonsense"], ["unknown target 'nonsense'"]),
        (["--outcomes", "1"], ["--outcomes must be at least 2"]),
    ],
)
def test_plan_bad_input_is_one_line(fit_file, extra, fragments):
    args = ["--target", "3B-10xC", *extra] if "--target" not in extra else extra
    result = invoke("plan", "--fit", fit_file, *args, *([] if "--outcomes" in extra else PLAN_ARGS))
    assert_clean_error(result, *fragments)


def test_plan_refuses_a_fit_of_another_dataset(fit_file, olmo_final_only_nc):
    result = invoke("plan", "--fit", fit_file, "--data", olmo_final_only_nc, "--target", "3B-10xC", *PLAN_ARGS)
    assert_clean_error(result, "fitted on a different dataset")


def test_plan_bad_candidates_file_is_one_line(fit_file, tmp_path):
    path = tmp_path / "candidates.csv"
    path.write_text("size,tokens\n3B,1e10\n")
    result = invoke("plan", "--fit", fit_file, "--target", "3B-10xC", "--candidates", path, *PLAN_ARGS)
    assert_clean_error(result, "lacks column(s) length")
    path.write_text("size,length,n_params\n5B,1xC,-3\n")
    result = invoke("plan", "--fit", fit_file, "--target", "3B-10xC", "--candidates", path, *PLAN_ARGS)
    assert_clean_error(result, "line 2: n_params '-3' is not a positive number")


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("size,length\n35k,1xC\n20k,1xC\n35k,1xC\n", "line 4: candidate 35k-1xC repeats line 2"),
        (None, "not a readable CSV file (FileNotFoundError); --candidates takes a CSV with columns size, length"),
    ],
)
def test_a_bad_candidates_file_is_named_before_the_fit_is_read(tmp_path, content, fragment):
    path = tmp_path / "candidates.csv"
    if content is not None:
        path.write_text(content)
    result = invoke("plan", "--fit", tmp_path / "never-read.nc", "--target", "3B-10xC", "--candidates", path)
    assert_clean_error(result, str(path), fragment)


def test_report_adds_the_planning_section(plan_json, fit_file, tmp_path):
    path, _ = plan_json
    out = tmp_path / "report.md"
    result = invoke("report", "--fit", fit_file, "--target", "3B-10xC", "--plan", path, "--format", "md", "-o", out)
    assert result.exit_code == 0, (result.output, result.exception)
    page = out.read_text()
    section = page[page.index("## Which rung to train next") :]
    section = section[: section.index("\n## ")]
    assert "plan chose the sequence marked (step)" in section and "| 3B-1xC |" in section
    figures = [line for line in section.splitlines() if line.startswith("![Expected interval width")]
    assert len(figures) == 1
    assert (tmp_path / figures[0].split("(")[1].rstrip(")")).stat().st_size > 10_000


def test_report_refuses_a_plan_file_without_its_columns(fit_file, tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps([{"size": "3B"}]))
    result = invoke("report", "--fit", fit_file, "--plan", path, "-o", tmp_path / "r.html")
    # the output of another command lacks most columns: a few are named and the rest counted, on one short line
    assert_clean_error(
        result, "lacks column(s) rank, length, kind, n_params and", f"more of its {len(COLUMNS)}", "plan --json"
    )


@pytest.mark.slow
def test_the_update_agrees_with_refits(simulated_fit):
    """For a new size between the ladder and the target, the expected width after it against the mean width of refits
    on its simulated outcomes (the same fixed calibration), within their Monte Carlo error plus 15%.

    With kappa = 0: a refit that keeps kappa > 0 fixed takes the new size's simulated discrepancy for the ladder's
    own scatter (its model gives a ladder size none) and adds the target's again, which the model's predictive does
    not say (a real refit re-runs the nested backtest, and its kappa follows)."""
    ds, fitted = simulated_fit
    fitted = replace(fitted, calibration=replace(fitted.calibration, kappa={"two-step": 0.0}))
    (rung,) = _candidates(ds, fitted, [("320M=3.2e8", "1xC")])
    pre = Preposterior(fitted, TARGET, outcomes=16, max_draws=400)
    expected = pre.evaluate([rung]).width
    widths = []
    for k in range(4):
        extended = add_evaluations(ds, simulated_run(ds, pre, rung, "two-step", k, "simulated"))
        design = fit_design(extended, fitted.config, "two-step")
        refit = replace(fitted, tree=_tree(design))
        _, acc = predictive_draws(refit, TARGET.n_params, TARGET.tokens, None)
        low, high = np.quantile(acc, [0.05, 0.95], axis=0)
        widths.append(float((high - low).mean()))
    print(f"expected {expected:.4f}, refits {np.round(widths, 4)} (mean {np.mean(widths):.4f})")
    assert np.mean(widths) == pytest.approx(expected, rel=0.15, abs=2 * np.std(widths) / 2)
