"""What a newcomer meets: one-line errors (typer's own included), exit code 2 only for failed diagnostics, the
default dataset rule, what `fit` says, warnings about untrusted fits and far extrapolation, tables that fit 80
columns, diagnostic figures for any number of tasks, and the report's figures (legends, markers in frame)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from cli_helpers import FIT_TASKS, TINY, assert_clean_error, invoke

from bayesladder import datasets, extrapolation, ladder, schema
from bayesladder.bayes.fit import LadderFit
from bayesladder.targets import default_targets

# --- errors: one line, exit 1; exit 2 only for failed diagnostics ------------------------------------


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["fit", "--draws", "lots"], ["--draws", "integer", "bayesladder fit --help"]),
        (["variance"], ["Missing option '--run'"]),
        (["fitt"], ["No such command 'fitt'", "fit"]),
        (["fit", "--drawz", "3"], ["No such option: --drawz"]),
        (["import", "csv"], ["Missing argument"]),
        (["diagnose", "--max-rhat", "high"], ["--max-rhat"]),
    ],
)
def test_parse_errors_are_one_line_with_exit_1(args, fragments):
    assert_clean_error(invoke(*args), *fragments)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--max-rhat", "nan"], ["--max-rhat must be a finite number >= 1", "got nan"]),
        (["--max-rhat", "0.99"], ["--max-rhat must be a finite number >= 1"]),
        (["--min-ess", "-1", "--min-bfmi", "inf"], ["--min-ess must be a finite number >= 0", "--min-bfmi"]),
    ],
)
def test_diagnose_refuses_thresholds_no_fit_can_meet_or_every_fit_passes(tmp_path, args, fragments):
    assert_clean_error(invoke("diagnose", "--fit", tmp_path / "not-read.nc", *args), *fragments)


def test_no_command_prints_the_help_and_exits_0():
    result = invoke()
    assert result.exit_code == 0 and "fit" in result.stdout and "predict" in result.stdout


def test_a_folder_given_as_a_file_says_it_is_a_folder(tmp_path):
    folder = tmp_path / "somewhere"
    folder.mkdir()
    assert_clean_error(invoke("predict", "--fit", folder, "--target", "13B-5T"), "somewhere", "is a directory")
    assert_clean_error(invoke("baseline", "--data", folder, "--target", "13B-5T"), "somewhere", "is a directory")
    with pytest.raises(Exception, match="is a folder"):  # the library says so too, to a notebook user
        schema.read(folder)
    with pytest.raises(Exception, match="is a folder"):
        LadderFit.load(folder)


# --- fit: what it says, overwriting, progress lines ---------------------------------------------------


def test_a_fit_given_as_the_dataset_or_a_dataset_as_the_fit_says_which_it_is(fit_file, olmo_ladder_nc):
    """It used to list every variable a dataset lacks, or say 'not a bayesladder fit file (KeyError)'."""
    assert_clean_error(
        invoke("baseline", "--data", fit_file, "--target", "13B-5T"), f"{fit_file} is a fit file", "go to --fit"
    )
    assert_clean_error(
        invoke("predict", "--fit", olmo_ladder_nc, "--target", "13B-5T"),
        f"{olmo_ladder_nc} is a ladder dataset, not a fit file",
        f"bayesladder fit --data {olmo_ladder_nc}",
    )


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path, olmo_ladder_nc):
    """An output below a file (or anywhere unwritable) fails at once, before the fit is read or made; it used to
    fail after the work (a report built, figures drawn, a fit sampled), with a puzzling 'File exists'."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    missing_fit = tmp_path / "never-read.nc"
    for args, output in (
        (["report", "--fit", missing_fit, "-o"], a_file / "report.html"),
        (["diagnose", "--fit", missing_fit, "--plots"], a_file / "plots"),
        (["fit", "--data", olmo_ladder_nc, "--tasks", "mmlu", "-o"], a_file / "fit.nc"),
    ):
        assert_clean_error(invoke(*args, output), str(output), f"{a_file} is a file, not a folder")
    assert sorted(tmp_path.iterdir()) == [a_file]
    figures = tmp_path / "r_figures"  # where a Markdown report r.md puts its figures
    figures.write_text("not a folder")
    result = invoke("report", "--fit", missing_fit, "--format", "md", "-o", tmp_path / "r.md")
    assert_clean_error(result, f"{figures} is a file", "move the file or choose another -o")


def test_check_writable_probes_without_leaving_anything(tmp_path):
    from bayesladder.errors import BayesLadderError
    from bayesladder.files import check_writable

    new = tmp_path / "new" / "deeper" / "out.nc"
    assert check_writable(new) == new  # folders that do not exist yet are created by the write itself
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BayesLadderError, match="is a folder; give a file name"):
        check_writable(tmp_path)


def test_fit_says_what_it_fitted_what_the_diagnostics_mean_and_what_to_run_next(tiny_fit, olmo_ladder_nc):
    path, result, _ = tiny_fit
    err = result.stderr
    assert f"fitting two-step and single-step to {olmo_ladder_nc}: 16 runs (sizes 190M, 370M, 760M, 1B;" in err
    assert "lengths 1xC, 2xC, 5xC, 10xC) and 4 independent reruns of them" in err
    assert f"2 tasks ({', '.join(FIT_TASKS)}); 2 chains x 100 draws" in err
    assert "s] nested backtest: fitting two-step on sizes 190M, 370M" in err  # a stage line, stderr no terminal
    assert "s] fitting single-step on the full ladder" in err
    assert "s] nested backtest: fitting single-step on lengths 1xC, 2xC" in err
    stacked = "designs stacked by the nested backtest (sizes 190M, 370M -> 760M, 1B; lengths 1xC, 2xC -> 5xC, 10xC)"
    assert f"{stacked}: two-step" in err
    assert "s] checking the diagnostics" in err
    assert "DIAGNOSTICS FAILED" in err and "cannot be trusted" in err
    assert f"next: bayesladder predict --fit {path} --target 3B-10xC" in err  # the run furthest out
    assert result.exit_code == 2


def test_shipped_micro_ladder_is_named_as_such():
    assert datasets.describe(datasets.micro_ladder()).startswith("the shipped micro ladder (")


def test_shipped_micro_ladder_is_a_meaningful_default():
    """Enough questions that binomial noise is at most 2 points, sizes spread out, a target well beyond them."""
    ds = schema.read(datasets.micro_ladder())
    assert float(np.sqrt(0.25 / ds["n_questions"].min())) <= 0.02
    ladder_n = ds["n_params"].values[(ds["role"] == "ladder").values]
    [target_n] = ds["n_params"].values[(ds["role"] == "target").values]
    assert len(set(ladder_n)) >= 5 and ladder_n.max() / ladder_n.min() > 9
    assert target_n / ladder_n.max() > 4


def test_fit_refuses_a_ladder_of_one_size_before_sampling(olmo_ladder_nc, tmp_path):
    """OLMo's 1B at its five lengths: how loss falls with N would be the priors' (sampled, 4 divergences)."""
    result = invoke("fit", "--data", olmo_ladder_nc, "--sizes", "1B", "--tasks", "mmlu", "-o", tmp_path / "fit.nc")
    assert_clean_error(result, "in ", "ladder.nc are all of one size (1B, N = 1.28e+09)", "at least 2 sizes", "--sizes")
    assert not (tmp_path / "fit.nc").exists()


def test_fit_refuses_to_overwrite_without_force(olmo_ladder_nc, tmp_path):
    existing = tmp_path / "fit.nc"
    existing.write_text("a previous fit")
    args = ("fit", "--data", olmo_ladder_nc, "--tasks", "mmlu", "-o", existing)
    assert_clean_error(invoke(*args), "fit.nc exists", "--force")
    assert existing.read_text() == "a previous fit"
    assert_clean_error(invoke("fit", "--data", olmo_ladder_nc, "-o", tmp_path), "is a folder")


# --- warnings: untrusted fits, far extrapolation -----------------------------------------------------


def test_extrapolation_factors_and_threshold():
    def ladder(n, d):  # two runs: the largest rung (n, d) and one smaller in both
        return extrapolation.Extent((n / 2, n), (d / 2, d))

    inside = extrapolation.beyond(ladder(1.28e9, 2.56e11), 13.2e9, 5.0e12)  # the paper's 13B-5T from its 1B rung
    assert inside.n_factor == pytest.approx(10.31, rel=1e-3) and inside.d_factor == pytest.approx(19.53, rel=1e-3)
    # not far out, but trained on 379 tokens per parameter where the ladder's runs had 200: told, with what to run
    assert not inside.far and inside.tokens_per_param_factor == pytest.approx(1.894, rel=1e-3)
    said = inside.warning("13B-5T")
    assert said.startswith("13B-5T is trained on 1.89x the most tokens per parameter") and "backtest --nested" in said
    assert "far outside" not in said
    as_trained = extrapolation.beyond(ladder(1.28e9, 2.56e11), 13.2e9, 13.2e9 * 200)  # the ladder's 200 per parameter
    assert not as_trained.longer_trained and as_trained.warning("13B-1T") is None
    far = extrapolation.beyond(ladder(1e5, 2e7), 13e9, 5e12)
    assert far.far and "130,000x the largest rung in N" in far.warning("13B")
    assert (
        extrapolation.beyond(ladder(1e5, 2e7), 4e5, 1e7).describe()
        == "4x the largest rung in N, within the ladder in D"
    )
    edge = extrapolation.FAR_FACTOR
    assert (
        not extrapolation.beyond(ladder(1, 1), edge, 1).far and extrapolation.beyond(ladder(1, 1), edge * 1.01, 1).far
    )


def test_a_target_at_another_d_than_a_one_length_ladder_is_flagged_however_near(gemstones_nc):
    """Every Gemstones run was trained to 350B tokens: nothing in the ladder says how task loss changes with D, so the
    paper's fit chained to another D is flagged (its D term was fitted to a constant), and the same D is not."""
    args = ("baseline", "--data", gemstones_nc, "--tasks", "mmlu,hellaswag", "--n", "2e9", "--json")
    same = invoke(*args, "--d", "3.5e11")
    assert same.exit_code == 0 and "warning" not in same.stderr
    longer = invoke(*args, "--d", "5e11")
    assert longer.exit_code == 0, (longer.output, longer.exception)
    [line] = longer.stderr.strip().splitlines()
    assert (
        line.startswith("warning: N=2e+09,D=5e+11 lies off the ladder in D") and "1.43x the ladder's one value" in line
    )
    assert "trained to one D" in line and "add runs of other lengths" in line
    off = extrapolation.beyond(extrapolation.Extent((1e8, 2e8), (3.5e11, 3.5e11)), 1e8, 3.4e11)
    assert off.far and off.off_one_d and off.record()["far_outside_ladder"] is True


def test_a_one_length_ladder_is_by_default_predicted_at_its_own_d(gemstones_ds):
    """What fit suggests and report predicts without --target: on Gemstones (every run to 350B tokens, no target
    runs) the paper's 7B and 13B at 350B, not at their 4T and 5T tokens, which its scaling law cannot reach."""
    extent = ladder.extent(gemstones_ds, list(map(str, gemstones_ds["run"].values)))
    fitted = SimpleNamespace(config=SimpleNamespace(selection=ladder.LadderSelection()), extent=lambda: extent)
    fitted.sizes = list(map(str, gemstones_ds["size"].values))
    targets = default_targets(gemstones_ds, fitted)
    assert [t.name for t in targets] == ["N=6.89e+09,D=3.5e+11", "N=1.32e+10,D=3.5e+11"]
    assert not any(extrapolation.beyond(extent, t.n_params, t.tokens).off_one_d for t in targets)
    fitted.sizes = fitted.sizes[:-3]  # the ~1B sizes unseen: they are what is predicted
    assert [t.name for t in default_targets(gemstones_ds, fitted)] == list(map(str, gemstones_ds["run"].values[-3:]))


def test_fit_of_a_one_length_ladder_says_so_and_suggests_a_target_at_its_d(gemstones_nc, tmp_path):
    out = tmp_path / "fit.nc"
    result = invoke("fit", "--data", gemstones_nc, "--tasks", "mmlu", "--designs", "two-step", *TINY, "-o", out)
    assert result.exit_code in (0, 2), (result.output, result.exception)  # a tiny fit may fail its diagnostics
    assert "every run was trained to one D (3.5e+11 tokens): step 1 has no D term" in result.stderr
    [stacked] = [line for line in result.stderr.splitlines() if line.startswith("designs stacked")]
    no_length_split = (
        " in N); no length split (the ladder has too few lengths for one), so a target beyond the ladder in tokens per "
        "parameter takes these weights and no kappa for that distance;"
    )
    assert no_length_split in stacked and "in tokens per parameter)" not in stacked  # no kappa of a split it lacks
    [suggested] = [line for line in result.stderr.splitlines() if line.startswith("next: ")]
    assert suggested.endswith("--n 1.32e+10 --d 3.5e+11")  # 13B at 350B, not 13B-5T
    predicted = invoke(*suggested.removeprefix("next: bayesladder ").split(), "--json")
    assert predicted.exit_code == 0 and "off the ladder" not in predicted.stderr
    assert all(r["off_one_d"] is False and r["n_factor"] > 12 for r in json.loads(predicted.stdout))
    [report_line] = [line for line in result.stderr.splitlines() if line.startswith("  or: ")]
    report = tmp_path / "report.html"
    reported = invoke(*report_line.removeprefix("  or: bayesladder ").replace("report.html", str(report)).split())
    assert reported.exit_code == 0, (reported.output, reported.exception)  # its default targets are not runs
    assert "N=6.89e+09,D=3.5e+11" in report.read_text() and "N=1.32e+10,D=3.5e+11" in report.read_text()


def test_predict_warns_of_a_failed_fit_and_of_a_target_far_outside_the_ladder(fit_file):
    result = invoke("predict", "--fit", fit_file, "--n", 1e13, "--d", 1e15, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("warning:") and "failed its diagnostics" in line for line in lines)
    [far] = [line for line in lines if "far outside the ladder" in line]
    assert "7,816x the largest rung in N" in far and "3,908x the largest rung in D" in far
    for record in json.loads(result.stdout):
        assert record["diagnostics_ok"] is False and record["far_outside_ladder"] is True
        assert record["n_factor"] == pytest.approx(1e13 / 1279395840.0)
    near = invoke("predict", "--fit", fit_file, "--target", "13B-5T", "--json")
    assert "far outside" not in near.stderr and all(r["far_outside_ladder"] is False for r in json.loads(near.stdout))
    assert "warning: 13B-5T is trained on 1.89x the most tokens per parameter of the ladder's runs" in near.stderr


def test_predict_says_when_a_fit_never_recorded_its_diagnostics(edited_fit):
    old = edited_fit(lambda tree: tree.attrs.pop("diagnostics"))
    result = invoke("predict", "--fit", old, "--target", "13B-5T", "--json")
    assert result.exit_code == 0 and "does not record its diagnostics" in result.stderr
    assert all(r["diagnostics_ok"] is None for r in json.loads(result.stdout))


def test_predict_table_fits_80_columns(fit_file):
    result = invoke("predict", "--fit", fit_file, "--target", "13B-5T")
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    for task in FIT_TASKS:  # one unwrapped row per task: median and both intervals, accuracy in points
        [row] = [line for line in lines if line.startswith(task)]
        assert len(row.split()) == 6, row
    assert "10.3x the largest rung in N" in result.stdout


def _rows(stdout: str, first: str) -> list[list[str]]:
    """The table rows of a command's stdout that start with ``first``, split into cells; every line checked to
    fit 80 columns."""
    lines = stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    return [line.split() for line in lines if line.startswith(first)]


def test_baseline_variance_and_compare_tables_show_accuracy_in_points_in_80_columns(olmo_ladder_nc):
    """Every table shows accuracy as predict's does (points, one unwrapped row per item); --json keeps fractions."""
    common = ("--data", olmo_ladder_nc, "--ladder", "paper", "--tasks", "hellaswag,openbookqa")
    args = ("baseline", *common, "--target", "3B-5xC")
    [[_, loss, acc, actual_loss, actual, error]] = _rows(invoke(*args).stdout, "hellaswag")
    [record] = [r for r in json.loads(invoke(*args, "--json").stdout) if r["task"] == "hellaswag"]
    assert float(acc) == pytest.approx(100 * record["accuracy"], abs=0.05)
    assert float(actual) == pytest.approx(100 * record["actual_accuracy"], abs=0.05)
    assert float(error) == pytest.approx(100 * record["accuracy_error"], abs=0.05)
    assert float(loss) == pytest.approx(record["loss"], abs=5e-4) and float(actual_loss) > 0

    args = ("variance", "--data", olmo_ladder_nc, "--run", "1B-10xC")
    [[*_, noisy]] = _rows(invoke(*args).stdout, "openbookqa")  # the task the paper's analysis flags
    [record] = [r for r in json.loads(invoke(*args, "--json").stdout) if r["task"] == "openbookqa"]
    assert noisy == "yes" and record["noisy"] is True

    args = ("compare", *common, "--holdout-size", "3B", "--designs", "baseline")
    [[rank, design, mae, *_]] = _rows(invoke(*args).stdout, "   1")
    [record] = json.loads(invoke(*args, "--json").stdout)
    assert (rank, design) == ("1", "baseline") and float(mae) == pytest.approx(100 * record["mae"], abs=0.05)


def test_no_command_writes_over_a_file_it_reads(fit_file, olmo_ladder_nc, long_csv_file, tmp_path):
    """`report -o fit.nc` replaced the fit with the report; each such output is refused, the input left as it was."""
    fit, data = shutil.copy(fit_file, tmp_path / "fit.nc"), shutil.copy(olmo_ladder_nc, tmp_path / "ladder.nc")
    before = {path: path.read_bytes() for path in (fit, data, long_csv_file)}
    cases = [
        (("report", "--fit", fit, "-o", fit), "is the fit file this command reads"),
        (("report", "--fit", fit, "--data", data, "-o", data), "is the dataset this command reads"),
        (("fit", "--data", data, "--tasks", "mmlu", "--force", "-o", data), "is the dataset this command reads"),
        (("import", "csv", long_csv_file, "-o", long_csv_file), "is the CSV file this command reads"),
        (("backtest", "--data", data, "--holdout-size", "3B", "--subsets", "--figure", data), "is the dataset"),
    ]
    for args, fragment in cases:
        assert_clean_error(invoke(*args), fragment, "write the output to another file")
    assert all(path.read_bytes() == content for path, content in before.items())


# --- the default dataset ----------------------------------------------------------------------------


def test_predict_uses_the_fits_own_dataset_for_a_run_and_says_so(fit_file, olmo_ladder_nc):
    result = invoke("predict", "--fit", fit_file, "--target", "1B-10xC", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"using the dataset the fit was made on: {olmo_ladder_nc}" in result.stderr
    assert [r["task"] for r in json.loads(result.stdout)] == FIT_TASKS


def test_a_moved_or_changed_dataset_is_one_line_saying_to_pass_data(edited_fit, tmp_path):
    moved = edited_fit(lambda tree: tree.attrs.update(dataset_path=str(tmp_path / "gone" / "ladder.nc")), "m.nc")
    assert_clean_error(invoke("predict", "--fit", moved, "--target", "1B-10xC"), "no longer there", "--data")
    assert_clean_error(invoke("report", "--fit", moved, "-o", tmp_path / "r.html"), "no longer there", "--data")
    assert invoke("predict", "--fit", moved, "--target", "13B-5T").exit_code == 0  # a known target needs no data
    other = shutil.copy(datasets.micro_ladder(), tmp_path / "ladder.nc")
    changed = edited_fit(lambda tree: tree.attrs.update(dataset_path=str(other)), "c.nc")
    assert_clean_error(invoke("predict", "--fit", changed, "--target", "1B-10xC"), "has changed", "--data")
    unrecorded = edited_fit(lambda tree: tree.attrs.update(dataset_path=""), "u.nc")
    assert_clean_error(invoke("report", "--fit", unrecorded), "does not record the dataset", "--data")
    assert not (tmp_path / "r.html").exists()


def test_commands_without_a_fit_default_to_the_shipped_micro_ladder():
    result = invoke("baseline", "--target", "13B-5T", "--tasks", "cloze", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    [record] = json.loads(result.stdout)
    assert record["task"] == "cloze"


# --- diagnose --plots for any number of tasks ---------------------------------------------------------


def test_plot_groups_do_not_grow_with_the_number_of_tasks(loaded_fit):
    """One figure per task: twelve tasks give twelve task figures of the same size as two tasks give."""
    from bayesladder.bayes.plots import parameter_groups

    posterior = loaded_fit.posterior
    many = xr.concat(
        [posterior.assign_coords(task=[f"{t}-{k}" for t in posterior["task"].values]) for k in range(6)],
        "task",
        data_vars="minimal",
    )
    few, lots = parameter_groups(posterior), parameter_groups(many)
    assert len(lots) == 1 + 12 and next(iter(lots)) == "shared"
    panels = {len(variables) for variables, _ in few.values()}
    assert {len(variables) for variables, _ in lots.values()} == panels
    assert lots["task-mmlu-5"][1] == {"task": "mmlu-5"}


def test_diagnose_plots_leave_no_folder_behind_when_drawing_fails(fit_file, tmp_path, monkeypatch):
    from bayesladder.bayes import plots

    def broken(*args, **kwargs):
        raise RuntimeError("matplotlib failed")

    monkeypatch.setattr(plots.az, "plot_rank_dist", broken)
    folder = tmp_path / "figures"
    result = invoke("diagnose", "--fit", fit_file, "--plots", folder)
    assert isinstance(result.exception, RuntimeError)
    assert not folder.exists()


# --- the report's figures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_figures(fit_file, olmo_ladder_ds):
    """Every matplotlib figure the report draws for 3B-10xC and 7B-4T, captured before it becomes a PNG."""
    from bayesladder import report
    from bayesladder.report import figures

    drawn = []
    original = figures.png
    figures.png = lambda fig: drawn.append(fig) or b"png"
    try:
        report.build(LadderFit.load(fit_file), olmo_ladder_ds, "ladder.nc", targets=["3B-10xC", "7B-4T"])
    finally:
        figures.png = original
    return drawn


SIZES_BY_N = ["190M", "370M", "760M", "1B"]


def _inside(ax) -> bool:
    """Every marker lies wholly inside the frame (its centre at least its radius from every edge, in pixels) and
    every interval bar within the axis limits: nothing is hidden or clipped by the frame."""
    from matplotlib.collections import LineCollection, PathCollection

    ax.figure.canvas.draw()
    frame = ax.get_window_extent()
    markers = []  # (x, y, radius in pixels)
    for c in ax.collections:
        if isinstance(c, PathCollection):
            radius = np.sqrt(c.get_sizes().max()) * ax.figure.dpi / 72 / 2
            markers += [(*ax.transData.transform(xy), radius) for xy in c.get_offsets()]
    for line in ax.lines:
        if line.get_marker() not in ("None", "", None):
            radius = line.get_markersize() * ax.figure.dpi / 72 / 2
            markers += [(*ax.transData.transform(xy), radius) for xy in line.get_xydata()]
    for x, y, r in markers:
        if not (frame.x0 + r <= x <= frame.x1 - r and frame.y0 + r <= y <= frame.y1 - r):
            return False
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    bars = [np.concatenate(c.get_segments()) for c in ax.collections if isinstance(c, LineCollection)]
    xy = np.concatenate(bars) if bars else np.empty((0, 2))
    return bool(np.all((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)))


def test_chained_figure_legend_and_markers(report_figures):
    [chained] = [f for f in report_figures if f._suptitle and "Chained" in f._suptitle.get_text()]
    labels = [t.get_text() for t in chained.legends[0].get_texts()]
    assert labels[:4] == [f"ladder {s}" for s in SIZES_BY_N]
    assert {"3B-10xC predicted", "7B-4T predicted", "paper's point fit", "actual"} <= set(labels)
    visible = [ax for ax in chained.axes if ax.get_visible()]
    assert len(visible) == len(FIT_TASKS) and all(_inside(ax) for ax in visible)


def test_step2_legends_list_sizes_in_order_of_n(report_figures):
    step2 = [f for f in report_figures if f.axes and f.axes[0].get_title().endswith("step 2")]
    assert len(step2) == len(FIT_TASKS)
    for fig in step2:
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert labels[:4] == SIZES_BY_N and "3B-10xC predicted" in labels and "3B-10xC actual" in labels
        assert _inside(fig.axes[0])


def test_variance_reads_the_backtest_json_object(olmo_ladder_nc, tmp_path):
    """`variance --backtest` takes what `backtest --json` prints: {"rows": [...], "summary": [...]}."""
    rows = [{"run": "3B-10xC", "task": "boolq", "actual_acc": 0.70, "acc_median": 0.66}]
    backtest = tmp_path / "backtest.json"
    backtest.write_text(json.dumps({"rows": rows, "summary": [{"run": "all", "mae": 0.04}]}))
    result = invoke("variance", "--data", olmo_ladder_nc, "--run", "1B-10xC", "--backtest", backtest, "--json")
    assert result.exit_code == 0, result.output
    by_task = {r["task"]: r for r in json.loads(result.stdout)}
    assert by_task["boolq"]["abs_error"] == pytest.approx(0.04)
