"""The Bayesian model's commands with tiny draws: fit / predict / diagnose / backtest through the CLI,
JSON shapes, the fit file, refusal of mismatching fits, exit codes, and CRPS / summaries as plain maths.

One fit (2 tasks, 2 chains x 100 draws on the OLMo paper ladder) is made once per session and shared;
it cannot pass the default diagnostics at that size, which is itself what the exit-code tests check.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from cli_helpers import FIT_TASKS, TINY, assert_clean_error, invoke

import bayesladder
from bayesladder import schema
from bayesladder.bayes import diagnostics
from bayesladder.bayes.fit import DesignFit, FitConfig, LadderFit, stuck_chains
from bayesladder.bayes.predict import crps, predictive_draws, summarise
from bayesladder.errors import BayesLadderError
from bayesladder.ladder import PRESETS, actual_final, resolve_target

TASKS = FIT_TASKS
PREDICT_KEYS = [
    "task",
    "loss_median",
    "loss_q05",
    "loss_q25",
    "loss_q75",
    "loss_q95",
    "acc_median",
    "acc_q05",
    "acc_q25",
    "acc_q75",
    "acc_q95",
]
DIAGNOSE_KEYS = [  # diagnose --json: every field of the diagnostics record
    "ok",
    "max_rhat",
    "worst_rhat_parameter",
    "min_ess_bulk",
    "min_ess_tail",
    "divergences",
    "min_bfmi",
    "max_pareto_k",
    "tree_depth_saturated",
    "mean_tree_depth",
    "elpd_loo",
    "ppc_loss_coverage90",
    "ppc_acc_coverage90",
    "nested_max_rhat",
    "nested_worst_rhat_parameter",
    "nested_min_ess",
    "nested_divergences",
    "failures",
]
EXTRAPOLATION_FLAGS = ["n_factor", "d_factor", "tokens_per_param_factor", "off_one_d", "far_outside_ladder"]
PREDICT_FLAGS = ["target", *EXTRAPOLATION_FLAGS, "diagnostics_ok", "weight_two-step", "weight_single-step"]
BACKTEST_KEYS = ["run", "task", "actual_acc", "acc_median", "acc_q05", "acc_q95", "covered", "crps", "baseline_acc"]
BACKTEST_FLAGS = [*EXTRAPOLATION_FLAGS, "diagnostics_ok"]
SUMMARY_KEYS = [
    "run",
    "n",
    "mae",
    "bias",
    "covered",
    "coverage",
    "mean_width",
    "mean_crps",
    "baseline_mae",
    "max_rhat",
    "divergences",
    "diagnostics_ok",
    "failures",
]
LOOSE = ("--max-rhat", 10, "--min-ess", 1, "--min-bfmi", 0)


def records(result) -> list[dict]:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return json.loads(result.stdout)


# --- fit: exit code, loud failure, the file ---------------------------------------------------------


def test_fit_with_tiny_draws_fails_diagnostics_loudly_but_writes_the_file(tiny_fit):
    path, result, _ = tiny_fit
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "DIAGNOSTICS FAILED" in result.stderr
    assert "ESS" in result.stderr  # 2 x 100 draws cannot reach an ESS of 400
    assert "Traceback" not in result.output
    assert f"wrote {path}" in result.stderr
    [record] = records(result)  # --json: stdout holds only the diagnostics record
    assert list(record) == DIAGNOSE_KEYS
    assert record["ok"] is False and any("ESS" in f for f in record["failures"])
    assert path.is_file()


def test_fit_file_is_a_datatree_with_config_hash_and_version(fit_file, olmo_ladder_ds):
    tree = xr.load_datatree(fit_file, engine="h5netcdf")
    assert set(tree.children) == {"two-step", "single-step"}  # one group per design, both stacked
    for design in tree.children.values():
        assert {"posterior", "sample_stats", "observed_data", "constant_data"} <= set(design.children)
    attrs = tree.attrs
    assert {"fit_config", "model_key", "data_hash", "bayesladder_version", "calibration"} <= set(attrs)
    calibration = json.loads(attrs["calibration"])
    assert calibration["splits"] == [
        {"axis": "size", "fitted": ["190M", "370M"], "held_out": ["760M", "1B"]},
        {"axis": "length", "fitted": ["1xC", "2xC"], "held_out": ["5xC", "10xC"]},
    ]
    assert set(calibration["weights"]) == {"size", "length"}  # a set of weights per direction of extrapolation
    assert all(sum(weights.values()) == pytest.approx(1.0) for weights in calibration["weights"].values())
    assert all(k >= 0 for k in [*calibration["kappa"].values(), *calibration["kappa_d"].values()])
    assert attrs["bayesladder_version"] == bayesladder.__version__
    assert attrs["data_hash"] == schema.content_hash(olmo_ladder_ds)
    config = json.loads(attrs["fit_config"])
    assert config["tasks"] == TASKS
    assert (config["chains"], config["draws"], config["tune"]) == (2, 100, 100)
    assert tuple(config["selection"]["sizes"]) == PRESETS["paper"].sizes
    key = json.loads(attrs["model_key"])
    assert key["tasks"] == TASKS and "priors" in key and "model" in key
    posterior = tree["two-step"]["posterior"]
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (2, 100)
    assert list(posterior["task"].values) == TASKS
    for name in ("alpha", "beta", "E", "A", "B", "floor", "k", "trend", "level"):
        assert posterior[name].dims == ("chain", "draw", "task"), name
    assert list(tree["two-step"]["sample_stats"]["block"].values) == ["loss", "accuracy"]
    assert "diverging" in tree["two-step"]["sample_stats"]
    assert set(tree["two-step"]["observed_data"].data_vars) == {"log_loss", "accuracy"}


def test_a_chain_is_stuck_only_when_its_step_size_collapsed(loaded_fit):
    """The tiny fit's chains adapted alike: none is resampled; one whose warmup ended at a hundredth of the others'
    step size (OLMo's full ladder, single-step, seed 1: 0.0005 against 0.073) is."""
    for design in loaded_fit.designs.values():
        assert design.resampled == []  # the file records what was sampled again: nothing here
        for block in design.sample_stats["block"].values:
            step = design.sample_stats["step_size"].sel(block=block).mean("draw").values
            assert stuck_chains(step) == []
            assert stuck_chains(np.append(step, step.min() / 100)) == [len(step)]


def test_fit_says_which_blocks_it_sampled_again_in_the_nested_backtest_too(olmo_ladder_nc, tmp_path, monkeypatch):
    """Every block's chain 0 taken as stuck: the nested backtests' fits (sizes, lengths) and the full one are each
    sampled once more, and fit says so for each (the nested ones used to resample silently); the fit file keeps it."""
    monkeypatch.setattr("bayesladder.bayes.fit.stuck_chains", lambda step_sizes: [0])
    out = tmp_path / "fit.nc"
    args = ("--data", olmo_ladder_nc, "--ladder", "paper", "--tasks", "piqa", "--designs", "single-step", *TINY)
    result = invoke("fit", *args, "-o", out)
    assert result.exit_code in (0, 2), (result.output, result.exception)  # a tiny fit may fail its diagnostics
    warned = [line for line in result.stderr.splitlines() if "got stuck in warmup" in line]
    expected = [" nested backtest (size), single-step", " nested backtest (length), single-step", " single-step"]
    assert [line.split(":")[1] for line in warned] == expected
    assert all("the direct block's chain(s) 0" in line and "(seed 10000)" in line for line in warned)
    assert LadderFit.load(out).resampled() == [line.removeprefix("warning: ") for line in warned]


def test_a_block_that_diverged_is_sampled_again_at_a_higher_acceptance_target(olmo_ladder_ds, monkeypatch):
    """Every run below DIVERGENCE_TARGET_ACCEPT reported as diverging once: the block is sampled again at it, the
    draws kept are the second run's (no divergence), and the fit says so."""
    import nutpie

    from bayesladder.bayes.fit import DIVERGENCE_TARGET_ACCEPT, fit_design

    real, accepts = nutpie.sample, []

    def sample(*args, target_accept, **kwargs):
        accepts.append(target_accept)
        tree = real(*args, target_accept=target_accept, **kwargs)
        if target_accept < DIVERGENCE_TARGET_ACCEPT:
            tree["sample_stats"]["diverging"].values[0, -1] = True  # the last draw: kept by the thinning
        return tree

    monkeypatch.setattr(nutpie, "sample", sample)
    config = FitConfig(tasks=("piqa",), selection=PRESETS["paper"], designs=("single-step",), chains=2, draws=50,
                       tune=50)  # fmt: skip
    design = fit_design(olmo_ladder_ds, config, "single-step")
    assert accepts == [0.95, DIVERGENCE_TARGET_ACCEPT]
    assert int(design.sample_stats["diverging"].sum()) == 0
    assert design.resampled == [
        f"the direct block had 1 divergent transition(s) at target_accept 0.95: sampled again at {DIVERGENCE_TARGET_ACCEPT:g}"
    ]


def test_the_failing_tasks_are_those_whose_own_parameters_fail(loaded_fit):
    """The tiny fit's draws: no task fails a lenient rule, every task (in the fit's order) an impossible ESS."""
    design = loaded_fit.primary
    assert diagnostics.failing_tasks(design, diagnostics.Thresholds(max_rhat=100.0, min_ess=0.0)) == ()
    assert diagnostics.failing_tasks(design, diagnostics.Thresholds(min_ess=1e9)) == tuple(TASKS)


def test_a_task_that_fails_the_nested_fit_is_left_out_of_the_calibration(gemstones_nc, tmp_path, monkeypatch):
    """Nested fits whose checks fail are fitted again without the task that one of them names; passing, they set the
    weights and kappa from the other task, and fit, diagnose and the fit file say so. (The checks are forced: any
    fit with piqa fails, any without it passes, and only the two-step design names piqa, as only its R-hat would.
    Gemstones has one nested split, by size: its one length has none.)"""
    real = diagnostics.convergence
    monkeypatch.setattr(diagnostics, "convergence", lambda design: {**real(design), "tasks": design.data.tasks})
    monkeypatch.setattr(
        diagnostics,
        "sampler_failures",
        lambda check, _: ["3 divergent transitions"] if "piqa" in check.get("tasks", ()) else [],
    )
    monkeypatch.setattr(
        diagnostics, "failing_tasks", lambda design, _: ("piqa",) if design.design == "two-step" else ()
    )
    out = tmp_path / "fit.nc"
    result = invoke("fit", "--data", gemstones_nc, "--tasks", "hellaswag,piqa", *TINY, "-o", out)
    assert result.exit_code in (0, 2), (result.output, result.exception)  # the full fit's own checks are real
    fitted = LadderFit.load(out)
    notes = fitted.sampling_notes()
    assert notes == [
        f"nested backtest (size), {design}: fitted with piqa it failed its checks (3 divergent transitions) and "
        "passed without, so the stacking weights and kappa leave it out (the full ladder's fit keeps every task): a "
        "task the fitted part cannot pin down (at its floor there, say)"
        for design in ("two-step", "single-step")
    ]
    assert all(f"warning: {note}" in result.stderr.splitlines() for note in notes)
    assert (
        "-> 768x45, 1280x15, 1792x7, 1024x28, 1280x36, 2560x8, 1792x18; without piqa, whose nested fits"
        in result.stderr
    )
    scores = fitted.calibration.scores
    # hellaswag's final accuracy at the 7 held-out sizes' runs, for each design
    assert scores["n"].tolist() == [7, 7]
    assert scores["left_out"].tolist() == [["piqa"]] * 2 and fitted.config.tasks == ("hellaswag", "piqa")
    assert f"warning: {notes[0]}" in invoke("diagnose", "--fit", out).stderr.splitlines()


def test_loaded_fit_round_trips_its_config(fit_file, loaded_fit):
    config = loaded_fit.config
    assert config.tasks == tuple(TASKS)
    assert config.selection == PRESETS["paper"]
    assert LadderFit.load(fit_file, expect=config).config == config
    other = FitConfig(tasks=("mmlu",), selection=config.selection)
    with pytest.raises(BayesLadderError, match="different configuration"):
        LadderFit.load(fit_file, expect=other)


# --- predict -----------------------------------------------------------------------------------------


def assert_prediction_table(rows, tasks=TASKS):
    assert [r["task"] for r in rows] == tasks
    for r in rows:
        assert list(r) == PREDICT_KEYS + PREDICT_FLAGS
        for prefix in ("loss", "acc"):
            q = [r[f"{prefix}_{label}"] for label in ("q05", "q25", "median", "q75", "q95")]
            assert all(math.isfinite(v) for v in q), r
            assert q == sorted(q), (prefix, r)
            assert q[0] < q[-1], (prefix, r)  # a real interval, not a point
        assert r["loss_q05"] > 0
        assert 0 <= r["acc_q05"] and r["acc_q95"] <= 1


def test_predict_named_target_json(fit_file):
    result = invoke("predict", "--fit", fit_file, "--target", "13B-5T", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    assert_prediction_table(records(result))


def test_predict_weights_a_target_by_the_nested_split_of_its_direction(fit_file):
    """A target bigger than the ladder at its tokens per parameter takes the size split's weights; one of a ladder
    size trained longer per parameter than any rung, the length split's; both are in the JSON and said on stderr."""
    by_split = LadderFit.load(fit_file).calibration.weights
    bigger = invoke("predict", "--fit", fit_file, "--n", 3e9, "--d", 3e9 * 100, "--json")  # 100 tokens per parameter
    longer = invoke("predict", "--fit", fit_file, "--n", 5e8, "--d", 5e8 * 600, "--json")  # the ladder: 20-200
    for result, split in ((bigger, "size"), (longer, "length")):
        assert result.exit_code == 0, (result.output, result.exception)
        for row in records(result):
            assert {d: row[f"weight_{d}"] for d in by_split[split]} == pytest.approx(by_split[split])
        said = [line for line in result.stderr.splitlines() if "designs' weights for" in line]
        assert len(said) == 1 and said[0].endswith(", ".join(f"{d} {w:.2f}" for d, w in by_split[split].items()))
    assert by_split["size"] != by_split["length"]  # else the test could not tell them apart


def test_predict_by_n_and_d_and_more_parameters_mean_lower_loss(fit_file):
    small = invoke("predict", "--fit", fit_file, "--n", 1e9, "--d", 1e11, "--json")
    large = invoke("predict", "--fit", fit_file, "--n", 1e10, "--d", 1e11, "--json")
    for result in (small, large):
        assert result.exit_code == 0, (result.output, result.exception)
        assert_prediction_table(records(result))
    # same seed, same noise draws: each draw's loss falls with N, so every quantile does
    for s, big in zip(records(small), records(large)):
        for label in ("q05", "median", "q95"):
            assert big[f"loss_{label}"] < s[f"loss_{label}"], (s["task"], label)


def test_predict_text_output_names_the_target(fit_file):
    result = invoke("predict", "--fit", fit_file, "--target", "7B-4T")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "7B-4T" in result.stdout and "mmlu" in result.stdout


def test_predict_titles_a_target_given_by_n_and_d_by_them_once(fit_file):
    named = invoke("predict", "--fit", fit_file, "--target", "7B-4T")
    anonymous = invoke("predict", "--fit", fit_file, "--n", 1e10, "--d", 1e11)
    for result in (named, anonymous):
        assert result.exit_code == 0, (result.output, result.exception)
    title = " ".join(anonymous.stdout.split())  # the table wraps its title
    assert title.startswith("Prediction for N=1e+10,D=1e+11 (") and title.count("1e+1") == 2
    assert " ".join(named.stdout.split()).startswith("Prediction for 7B-4T (N=6.89e+09, D=3.95e+12: ")


def test_predict_a_ladder_run_with_its_dataset(fit_file, olmo_ladder_nc, olmo_ladder_ds):
    """A run of the fitted dataset is predicted with its own learned size effect; the interval is sane."""
    result = invoke("predict", "--fit", fit_file, "--data", olmo_ladder_nc, "--target", "1B-10xC", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    rows = records(result)
    assert_prediction_table(rows)
    actual = actual_final(olmo_ladder_ds, "1B-10xC")
    for r in rows:  # a fitted point: the loss prediction sits close to what the run got
        assert abs(r["loss_median"] / actual.loc[r["task"], "task_loss"] - 1) < 0.05, r


def test_predictive_draws_shapes_and_size_effects(loaded_fit):
    n_draws = 2 * 100
    kwargs = {"n_params": 1.2e9, "tokens": 2.4e10}
    loss, acc = predictive_draws(loaded_fit, **kwargs)
    assert loss.shape == acc.shape == (n_draws, len(TASKS))
    assert np.all(loss > 0) and np.all((acc >= 0) & (acc <= 1))
    same = predictive_draws(loaded_fit, **kwargs)
    np.testing.assert_array_equal(loss, same[0])  # seeded
    # a ladder size uses its learned size effect instead of a fresh draw
    known, _ = predictive_draws(loaded_fit, size="1B", **kwargs)
    assert not np.allclose(known, loss)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--target", "no-such-model"), ("unknown target", "no-such-model")),
        ((), ("give a target",)),
        (("--n", 1e9), ("give a target",)),
        (("--n", -1, "--d", 1e10), ("positive",)),
    ],
)
def test_predict_bad_target_is_one_line(fit_file, args, fragments):
    assert_clean_error(invoke("predict", "--fit", fit_file, *args, "--json"), *fragments)


# --- refusal of files that are not this fit ----------------------------------------------------------


def test_predict_refuses_a_fit_made_on_another_dataset(fit_file, long_csv_file, tmp_path):
    from bayesladder.importers import long_csv

    other = schema.write(long_csv.import_file(long_csv_file), tmp_path / "other.nc")
    assert_clean_error(invoke("predict", "--fit", fit_file, "--data", other, "--target", "13B-5T"), "different dataset")


def test_predict_refuses_a_simulated_dataset(fit_file, tmp_path):
    from bayesladder import testing

    rng = np.random.default_rng(0)
    other = schema.write(testing.simulate_ladder(testing.draw_truths(rng, 2), rng), tmp_path / "sim.nc")
    assert_clean_error(
        invoke("predict", "--fit", fit_file, "--data", other, "--n", 1e9, "--d", 1e10), "different dataset"
    )


def test_refuses_a_fit_whose_model_key_was_altered(edited_fit):
    def other_tasks(tree):
        key = json.loads(tree.attrs["model_key"])
        key["tasks"] = ["mmlu"]
        tree.attrs["model_key"] = json.dumps(key, sort_keys=True)

    def other_model(tree):
        key = json.loads(tree.attrs["model_key"])
        key["model"] = "two-step-v0"
        tree.attrs["model_key"] = json.dumps(key, sort_keys=True)

    def garbage(tree):
        tree.attrs["model_key"] = "not a key"

    for edit, fragment in ((other_tasks, "refit"), (other_model, "two-step-v0"), (garbage, "refit")):
        path = edited_fit(edit, name=f"{edit.__name__}.nc")
        assert_clean_error(invoke("predict", "--fit", path, "--target", "13B-5T"), path.name, fragment)
        assert_clean_error(invoke("diagnose", "--fit", path), path.name)


def test_refuses_files_that_are_not_fits(olmo_ladder_nc, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a fit\n")
    for path, fragment in ((olmo_ladder_nc, "is a ladder dataset, not a fit file"), (text, "not a bayesladder fit")):
        assert_clean_error(invoke("predict", "--fit", path, "--target", "13B-5T"), path.name, fragment)
        assert_clean_error(invoke("diagnose", "--fit", path), path.name, fragment)
    assert_clean_error(
        invoke("predict", "--fit", tmp_path / "missing.nc", "--target", "13B-5T"), "missing.nc", "no such fit"
    )


# --- diagnose ----------------------------------------------------------------------------------------


def test_diagnose_default_thresholds_fail_with_exit_2(fit_file):
    result = invoke("diagnose", "--fit", fit_file, "--json")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "DIAGNOSTICS FAILED" in result.stderr
    [record] = records(result)
    assert list(record) == DIAGNOSE_KEYS
    assert record["ok"] is False
    assert record["max_rhat"] >= 1.0 and record["min_ess_bulk"] > 0 and record["min_ess_tail"] > 0
    assert isinstance(record["divergences"], int) and record["divergences"] >= 0
    assert record["min_bfmi"] > 0 and math.isfinite(record["max_pareto_k"])


def test_diagnose_loosened_thresholds_pass_unless_the_sampler_diverged(fit_file, loaded_fit):
    """R-hat, ESS and E-BFMI can be loosened from the CLI; divergences and tree-depth saturation cannot."""
    result = invoke("diagnose", "--fit", fit_file, "--json", *LOOSE)
    [record] = records(result)
    full = diagnostics.diagnose(loaded_fit, diagnostics.Thresholds(max_rhat=10, min_ess=1, min_bfmi=0))
    unloosenable = full.divergences > 0 or full.tree_depth_saturated > 0
    assert record["ok"] is (not unloosenable)
    assert result.exit_code == (2 if unloosenable else 0), (result.output, full)
    assert ("DIAGNOSTICS FAILED" in result.stderr) is unloosenable


def test_diagnose_fails_on_a_divergence_whatever_the_loosened_thresholds(edited_fit):
    def diverge(tree):
        stats = tree["single-step"]["sample_stats"].to_dataset()
        diverging = stats["diverging"].values.copy()
        diverging[0, 0, 0] = True
        tree["single-step"]["sample_stats"] = xr.DataTree(stats.assign(diverging=(stats["diverging"].dims, diverging)))

    result = invoke("diagnose", "--fit", edited_fit(diverge), "--json", *LOOSE)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "divergent" in result.stderr and "DIAGNOSTICS FAILED" in result.stderr
    [record] = records(result)
    assert record["divergences"] >= 1 and record["ok"] is False


def test_diagnose_text_output_and_plots(fit_file, tmp_path):
    folder = tmp_path / "plots"
    result = invoke("diagnose", "--fit", fit_file, "--plots", folder)
    assert result.exit_code == 2, (result.output, result.exception)  # the tiny fit fails its ESS check
    assert "Diagnostics" in result.stdout and "max R-hat" in result.stdout and "FAIL" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())  # the table fits an 80-column terminal
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(["ppc.png", "rank-shared.png", *(f"rank-task-{t}.png" for t in TASKS)])
    for name in pngs:
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert "drawing the figures" in result.stderr  # a stage line, though stderr is not a terminal


def test_diagnose_library_returns_all_failures_and_does_not_print(loaded_fit, capsys):
    strict = diagnostics.diagnose(loaded_fit)
    assert not strict.ok and strict.failures
    assert any("R-hat" in f for f in strict.failures) and any("ESS" in f for f in strict.failures)
    assert capsys.readouterr().out == ""
    record = strict.record()
    assert set(DIAGNOSE_KEYS) <= set(record)
    assert 0 <= record["ppc_loss_coverage90"] <= 1 and 0 <= record["ppc_acc_coverage90"] <= 1


def test_a_failed_r_hat_names_the_parameter_to_look_at(loaded_fit):
    """'R-hat 1.043 > 1.01 (two-step: log_k[boolq])' (OLMo's 190M-760M with every task: boolq, flat at its floor,
    leaves the sigmoid's steepness free) tells a user which task the ladder cannot pin down."""
    import arviz as az

    strict = diagnostics.diagnose(loaded_fit)
    [failure] = [f for f in strict.failures if f.startswith("R-hat")]
    assert failure.endswith(f"({strict.worst_rhat_parameter})")
    design, entry = strict.worst_rhat_parameter.split(": ")
    name, _, task = entry.rstrip("]").partition("[")  # which parameter is worst depends on the draws
    rhat = az.rhat(loaded_fit.designs[design].posterior[[name]])[name]
    assert float(rhat.sel(task=task) if task else rhat) == pytest.approx(strict.max_rhat)


def test_a_fit_of_one_chain_has_no_r_hat_and_names_no_parameter(loaded_fit):
    """compare and backtest --subsets refit with one chain: R-hat is undefined there, and naming a parameter for it
    crashed them ('All-NaN slice')."""
    design = loaded_fit.designs["two-step"]
    one_chain = DesignFit("two-step", design.tree.isel(chain=[0], missing_dims="ignore"))
    checked = diagnostics.convergence(one_chain)
    assert math.isnan(checked["max_rhat"]) and checked["worst_rhat_parameter"] == ""


def test_nested_fits_of_one_chain_have_no_r_hat_and_diagnose_names_no_parameter(loaded_fit):
    """compare and backtest --subsets refit with one chain, nested backtest included: every nested R-hat is NaN,
    and finding the worst one crashed them under pandas 3 ('Encountered all NA values')."""
    from dataclasses import replace

    scores = loaded_fit.calibration.scores.assign(max_rhat=float("nan"))
    one_chain = replace(loaded_fit, calibration=replace(loaded_fit.calibration, scores=scores))
    checked = diagnostics.diagnose(one_chain)
    assert math.isnan(checked.nested_max_rhat) and checked.nested_worst_rhat_parameter == ""


# --- backtest ----------------------------------------------------------------------------------------

BACKTEST_LENGTHS = ["1xC", "2xC", "5xC", "10xC"]


@pytest.fixture(scope="session")
def tiny_backtest(olmo_ladder_nc):
    return invoke(
        "backtest",
        "--data",
        olmo_ladder_nc,
        "--sizes",
        "190M,370M,760M",
        "--lengths",
        ",".join(BACKTEST_LENGTHS),
        "--holdout-size",
        "1B",
        "--tasks",
        "mmlu",
        "--designs",
        "two-step",  # one design: its nested backtest sets kappa only (two fits, not four)
        *TINY,
        "--json",
    )


def test_backtest_json_shape_and_held_out_runs(tiny_backtest, olmo_ladder_ds):
    result = tiny_backtest
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    assert list(out) == ["rows", "summary"]
    rows = out["rows"]
    expected_runs = {
        str(r)
        for r, size, length, rep in zip(*(olmo_ladder_ds[v].values for v in ("run", "size", "length", "replicate")))
        if size == "1B" and length in BACKTEST_LENGTHS and rep == 0
    }
    assert len(expected_runs) == 4
    assert {r["run"] for r in rows} == expected_runs
    assert len(rows) == len(expected_runs)  # one task
    for r in rows:
        assert set(BACKTEST_KEYS + BACKTEST_FLAGS + ["error", "baseline_error"]) <= set(r)
        assert r["task"] == "mmlu"
        assert r["acc_q05"] <= r["acc_median"] <= r["acc_q95"]
        assert 0 <= r["acc_q05"] and r["acc_q95"] <= 1
        assert r["covered"] is (r["acc_q05"] <= r["actual_acc"] <= r["acc_q95"])
        assert r["crps"] >= 0 and math.isfinite(r["baseline_acc"])
        actual = actual_final(olmo_ladder_ds, r["run"])
        assert r["actual_acc"] == pytest.approx(float(actual.loc["mmlu", "accuracy"]))
        # 1B is one size step beyond 760M: 1.7x in N, within the ladder's D for 1xC-5xC
        assert 1.5 < r["n_factor"] < 2 and r["far_outside_ladder"] is False
    summary = out["summary"]
    assert [s["run"] for s in summary] == [*dict.fromkeys(r["run"] for r in rows), "all"]
    for s in summary:
        assert list(s) == [*SUMMARY_KEYS, "weight_two-step"] and s["weight_two-step"] == 1.0
    overall = summary[-1]
    assert overall["n"] == len(rows)
    assert overall["mae"] == pytest.approx(np.mean([abs(r["error"]) for r in rows]))
    assert overall["baseline_mae"] == pytest.approx(np.mean([abs(r["baseline_error"]) for r in rows]))
    assert overall["coverage"] == pytest.approx(np.mean([r["covered"] for r in rows]))
    # 2 x 100 draws cannot pass the default diagnostics: every record says so, and stderr warns
    assert overall["diagnostics_ok"] is False and all(r["diagnostics_ok"] is False for r in rows)
    assert overall["max_rhat"] > 1.0
    assert "failed its diagnostics" in result.stderr
    assert "s] fitting two-step on the full ladder" in result.stderr  # a stage line


def test_backtest_text_tables_fit_80_columns(tiny_backtest, capsys):
    """The backtest's tables, from the same rows: accuracy in points, every line within an 80-column terminal."""
    from bayesladder.cli import show_backtest

    out = json.loads(tiny_backtest.stdout)
    show_backtest(pd.DataFrame(out["rows"]), pd.DataFrame(out["summary"]))
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for header in ("actual", "median [90%]", "paper error", "MAE", "covered", "CRPS", "paper MAE"):
        assert header in text, header
    for r in out["rows"]:  # one unwrapped line per row, accuracy in points
        [line] = [line for line in lines if r["run"] in line and "mmlu" in line]
        assert f"{100 * r['actual_acc']:.1f}" in line and f"{100 * r['acc_median']:.1f}" in line


def test_backtest_nested_scores_every_cut_of_sizes_and_lengths(olmo_ladder_nc, olmo_ladder_ds, capsys):
    """`backtest --nested` on 3 sizes x 3 lengths: one cut of each axis; each held-out run scored beside the paper's
    fit, at its distance beyond the part fitted; the summary per axis and distance bin, and each refit's checks.
    (It crashed on the paper fit's columns before any of this was printed.)"""
    from bayesladder.cli import show_nested

    result = invoke("backtest", "--data", olmo_ladder_nc, "--sizes", "190M,370M,760M", "--lengths", "1xC,2xC,5xC",
                    "--tasks", "mmlu", "--designs", "two-step", "--nested", *TINY, "--json")  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    out = json.loads(result.stdout)
    rows, summary, refits = (pd.DataFrame(out[key]) for key in ("rows", "summary", "refits"))
    assert list(refits["split"]) == ["sizes 190M-370M -> 760M", "lengths 1xC-2xC -> 5xC"]
    by_axis = {axis: group.set_index("run") for axis, group in rows.groupby("axis")}
    assert sorted(by_axis["size"].index) == ["760M-1xC", "760M-2xC", "760M-5xC"]
    assert sorted(by_axis["length"].index) == ["190M-5xC", "370M-5xC", "760M-5xC"]
    n_params = dict(zip(map(str, olmo_ladder_ds["size"].values), olmo_ladder_ds["n_params"].values))
    assert by_axis["size"]["distance"].to_numpy() == pytest.approx(np.log(n_params["760M"] / n_params["370M"]))
    tokens = {run: resolve_target(olmo_ladder_ds, run, None, None).tokens for run in ("760M-2xC", "760M-5xC")}
    assert by_axis["length"].loc["760M-5xC", "distance"] == pytest.approx(
        np.log(tokens["760M-5xC"] / tokens["760M-2xC"])
    )
    assert rows["baseline_error"].notna().all() and rows["covered"].isin([True, False]).all()
    assert summary["bin"].iloc[-1] == "all" and summary["n"].iloc[-1] == 6
    assert summary["baseline_mae"].iloc[-1] == pytest.approx(rows["baseline_error"].abs().mean())
    assert list(summary["bin"].iloc[:-1]) == list(dict.fromkeys(rows["bin"]))
    assert "failed its diagnostics" in result.stderr  # 2 x 100 draws: every refit is flagged
    show_nested(summary, refits)
    text = capsys.readouterr().out
    assert "paper MAE" in text and "sizes 190M-370M -> 760M" in text


def test_the_nested_summary_lists_each_axis_nearest_bin_first():
    """The summary's rows run from the nearest extrapolation to the farthest on each axis, sizes first (on the micro
    ladder they came in the order the splits first met them: "size 0.5-1", "size 1-2", "size < 0.5")."""
    from bayesladder.bayes.backtest import distance_summary

    axis, distance = ["length", "size", "size", "size", "length"], [1.2, 0.7, 1.5, 0.3, 0.2]
    bins = ["length 1-2", "size 0.5-1", "size 1-2", "size < 0.5", "length < 0.5"]
    table = pd.DataFrame(dict(axis=axis, distance=distance, bin=bins, actual_acc=0.5, error=0.01, covered=True,
                              acc_q05=0.4, acc_q95=0.6, crps=0.01, baseline_error=0.02))  # fmt: skip
    summary = distance_summary(table)
    assert list(summary["bin"]) == ["size < 0.5", "size 0.5-1", "size 1-2", "length < 0.5", "length 1-2", "all"]


@pytest.mark.parametrize(
    "holdout, fragments",
    [("1B", ("also in the ladder",)), ("9B", ("unknown held-out size", "9B"))],
)
def test_backtest_bad_holdout_is_one_line(olmo_ladder_nc, holdout, fragments):
    args = ("--data", olmo_ladder_nc, "--ladder", "paper", "--holdout-size", holdout, "--tasks", "mmlu", *TINY)
    assert_clean_error(invoke("backtest", *args, "--json"), *fragments)


# --- CRPS and summaries as plain maths ---------------------------------------------------------------


def crps_brute_force(draws, actual):
    draws = np.asarray(draws, dtype=float)
    return np.mean(np.abs(draws - actual)) - 0.5 * np.mean(np.abs(draws[:, None] - draws[None, :]))


@pytest.mark.parametrize("seed", range(5))
def test_crps_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    draws = rng.normal(0.4, 0.05, size=rng.integers(1, 300))
    for actual in (0.1, 0.4, float(draws[0]), 0.9):
        assert crps(draws, actual) == pytest.approx(crps_brute_force(draws, actual), abs=1e-12)
    assert crps(rng.permutation(draws), 0.3) == pytest.approx(crps(draws, 0.3), abs=1e-12)  # order-free


def test_crps_known_values():
    assert crps(np.full(10, 0.5), 0.7) == pytest.approx(0.2)  # a point forecast: the absolute error
    # a normal ensemble approaches the closed form sigma * (z (2 Phi(z) - 1) + 2 phi(z) - 1 / sqrt(pi))
    from scipy import stats

    draws = stats.norm.ppf((np.arange(20000) + 0.5) / 20000)
    z = 0.8
    closed = z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi)
    assert crps(draws, z) == pytest.approx(closed, abs=1e-3)
    assert crps(draws, z) >= 0


def test_summarise_columns_and_ordered_quantiles():
    rng = np.random.default_rng(1)
    loss = rng.lognormal(0, 0.2, size=(500, 3))
    acc = rng.beta(4, 6, size=(500, 3))
    table = summarise(["a", "b", "c"], loss, acc)
    assert list(table.columns) == PREDICT_KEYS
    assert list(table["task"]) == ["a", "b", "c"]
    for prefix, draws in (("loss", loss), ("acc", acc)):
        q = table[[f"{prefix}_{label}" for label in ("q05", "q25", "median", "q75", "q95")]].to_numpy()
        assert np.all(np.diff(q, axis=1) >= 0)
        np.testing.assert_allclose(table[f"{prefix}_median"], np.median(draws, axis=0))
        np.testing.assert_allclose(q[:, 0], np.quantile(draws, 0.05, axis=0))


@pytest.mark.slow
def test_a_seed_draws_the_same_whether_the_model_is_compiled_afresh_or_loaded_from_the_cache(olmo_ladder_nc, tmp_path):
    """The first fit after installing compiles every model into an empty cache, later fits load them: with numba's
    fast-math flags the same seed drew differently in the two (``compilation.NUMBA_FASTMATH``). The first run compiles
    its accuracy block ahead, in a child process (``compilation``). Under a minute."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np; from bayesladder import schema; from bayesladder.ladder import PRESETS; "
        "from bayesladder.bayes.fit import FitConfig, fit_design; ds = schema.read(sys.argv[2]); "
        "config = FitConfig(('mmlu', 'hellaswag', 'piqa'), PRESETS['paper'], chains=2, draws=100, tune=100); "
        "posterior = fit_design(ds, config, 'two-step').tree['posterior']; "
        "np.save(sys.argv[1], np.stack([posterior[name].values for name in ('E', 'k')]))"
    )
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'cache'}"}
    for name in ("fresh", "cached"):  # the second run finds what the first compiled (its accuracy block, ahead)
        subprocess.run([sys.executable, "-c", script, tmp_path / f"{name}.npy", olmo_ladder_nc], env=env, check=True)
        marked = {path.name.split("-")[0] for path in (tmp_path / "cache" / "bayesladder").iterdir()}
        assert marked == {"loss", "accuracy"}  # so the second run compiled nothing ahead
    np.testing.assert_array_equal(np.load(tmp_path / "fresh.npy"), np.load(tmp_path / "cached.npy"))
