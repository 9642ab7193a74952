"""The long-CSV importer: one row per run x checkpoint x task; every bad input names line and column."""

from __future__ import annotations

import numpy as np
import pytest

from bayesladder import schema
from bayesladder.errors import BayesLadderError
from bayesladder.importers import long_csv


def test_a_good_file_imports(long_csv_file):
    ds = long_csv.import_file(long_csv_file)
    assert schema.validate(ds) == []
    assert ds["run"].values.tolist() == ["s-1xC", "m-1xC"]
    assert ds["task"].values.tolist() == ["alpha", "beta"]
    # checkpoints are ordered by tokens even though the file is not
    np.testing.assert_array_equal(ds["tokens"].values, [[0.5e9, 1e9, 2e9]] * 2)
    np.testing.assert_array_equal(ds["step"].values[0], [500, 1000, 2000])
    loss = ds["task_loss"].sel(run="s-1xC", task="alpha").values
    np.testing.assert_allclose(loss, [1.5 * (1 + 0.5e9 / t) / 2 for t in (0.5e9, 1e9, 2e9)], rtol=1e-6)
    assert (np.diff(loss) < 0).all()
    np.testing.assert_allclose(
        ds["accuracy"].sel(run="m-1xC", task="beta").values[0], 0.3 + 0.1 / (0.9 * 0.9), rtol=1e-5
    )
    np.testing.assert_allclose(ds["flops"].sel(run="m-1xC").values, 6 * 3e8 * np.array([0.5e9, 1e9, 2e9]))


def test_run_and_task_metadata(long_csv_file):
    ds = long_csv.import_file(long_csv_file)
    assert ds["n_params"].values.tolist() == [1e8, 3e8]
    assert ds["size"].values.tolist() == ["s", "m"]
    assert ds["length"].values.tolist() == ["1xC", "1xC"]
    assert ds["multiplier"].values.tolist() == [1.0, 1.0]
    assert ds["replicate"].values.tolist() == [0, 0]
    assert ds["role"].values.tolist() == ["ladder", "ladder"]
    assert ds["source"].values.tolist() == ["ladder.csv"] * 2
    assert ds["source_key"].values.tolist() == ["alpha", "beta"]
    assert np.isnan(ds["chance"].values).all() and np.isnan(ds["n_questions"].values).all()
    assert "ladder.csv" in ds.attrs["producer"]


def test_only_the_required_columns(make_long_csv):
    path = make_long_csv(header=["run", "n_params", "tokens", "task", "task_loss", "accuracy"])
    ds = long_csv.import_file(path)
    assert ds["size"].values.tolist() == ["s-1xC", "m-1xC"]  # defaults to the run name
    assert ds["replicate"].values.tolist() == [0, 0]
    assert ds["role"].values.tolist() == ["ladder", "ladder"]
    # default length: tokens of the last checkpoint / (20 N)
    assert ds["length"].values.tolist() == ["1xC", "0.333xC"]
    assert ds["multiplier"].values.tolist() == pytest.approx([1.0, 2e9 / (20 * 3e8)], rel=1e-12)
    assert "step" not in ds


def test_task_metadata_columns_and_ragged_runs(make_long_csv):
    def edit(rows):
        for row in rows:
            row["n_questions"], row["chance"] = ("500", "0.25") if row["task"] == "alpha" else ("", "")
        rows[:] = [r for r in rows if not (r["run"] == "m-1xC" and r["tokens"] == "2e+09")]  # m has 2 checkpoints
        rows[0]["accuracy"] = ""  # not evaluated

    path = make_long_csv(edit, extra_columns=["n_questions", "chance"])
    ds = long_csv.import_file(path)
    assert ds["n_questions"].values[0] == 500 and ds["chance"].values[0] == 0.25
    assert np.isnan(ds["chance"].values[1])
    assert schema.n_checkpoints(ds).values.tolist() == [3, 2]
    assert np.isnan(ds["tokens"].sel(run="m-1xC").values[2])
    assert np.isnan(ds["accuracy"].sel(run="s-1xC", task="alpha").values[2])  # row 0 is s-1xC's 2e9 checkpoint


def test_target_role_and_replicates(make_long_csv):
    def edit(rows):
        for row in rows:
            if row["run"] == "m-1xC":
                row["role"], row["replicate"] = "target", "2"

    ds = long_csv.import_file(make_long_csv(edit))
    assert ds["role"].values.tolist() == ["ladder", "target"]
    assert ds["replicate"].values.tolist() == [0, 2]


@pytest.mark.parametrize(
    "edit, header, expected",
    [
        (
            None,
            ["run", "n_params", "task", "task_loss", "accuracy"],
            r"missing column\(s\) 'tokens'; add them to the header",
        ),
        (lambda rows: rows[4].update(tokens="lots"), None, r"line 6, column 'tokens': non-numeric value 'lots'"),
        (lambda rows: rows[2].update(n_params=""), None, r"line 4, column 'n_params': an empty cell"),
        (lambda rows: rows[7].update(n_params="0"), None, r"line 9, column 'n_params': must be a positive"),
        (lambda rows: rows[3].update(tokens="-5e9"), None, r"line 5, column 'tokens': must be a positive"),
        (lambda rows: rows[3].update(tokens="inf"), None, r"line 5, column 'tokens': must be a positive"),
        (lambda rows: rows[10].update(accuracy="1.2"), None, r"line 12, column 'accuracy': must lie in \[0, 1\]"),
        (lambda rows: rows[1].update(accuracy="-0.01"), None, r"line 3, column 'accuracy': must lie in \[0, 1\]"),
        (lambda rows: rows[5].update(task_loss="-1"), None, r"line 7, column 'task_loss': must be non-negative"),
        (lambda rows: rows[6].update(role="teacher"), None, r"line 8, column 'role': must be one of ladder, target"),
        (lambda rows: rows[6].update(replicate=""), None, r"line 8, column 'replicate': an empty cell"),
        (lambda rows: rows[6].update(replicate="0.5"), None, r"line 8, column 'replicate': must be a whole number"),
        (lambda rows: rows[9].update(run=" "), None, r"line 11, column 'run': must not be empty"),
        (lambda rows: rows.append(dict(rows[0])), None, r"line 14, column 'tokens': repeats a \(run, tokens, task\)"),
        (lambda rows: rows[0].update(n_params="2e8"), None, r"run 's-1xC' has more than one n_params"),
        (lambda rows: rows[0].update(n_params="100000001"), None, r"more than one n_params \(100000001, 100000000\)"),
    ],
)
def test_bad_rows_name_line_and_column(make_long_csv, edit, header, expected):
    path = make_long_csv(edit, header)
    with pytest.raises(BayesLadderError, match=expected) as info:
        long_csv.import_file(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_file_separated_by_semicolons_says_so(make_long_csv):
    path = make_long_csv()
    path.write_text(path.read_text().replace(",", ";"))
    with pytest.raises(BayesLadderError, match=r"missing column.*; separate the columns with commas, not ';'"):
        long_csv.import_file(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(BayesLadderError, match=r"empty\.csv: the file is empty"):
        long_csv.import_file(path)
    path.write_text("\n  \n")
    with pytest.raises(BayesLadderError, match="the file is empty"):
        long_csv.import_file(path)


def test_header_only_file(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("run,n_params,tokens,task,task_loss,accuracy\n")
    with pytest.raises(BayesLadderError, match=r"header\.csv: has a header but no data rows"):
        long_csv.import_file(path)


def test_binary_file(tmp_path):
    path = tmp_path / "model.csv"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(BayesLadderError, match=r"model\.csv: not a CSV file"):
        long_csv.import_file(path)


def test_ragged_and_non_utf8_files(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text('run,n_params,tokens,task,task_loss,accuracy\na,1e8,1e9,t,1.0,"0.5\n')
    with pytest.raises(BayesLadderError, match=r"ragged\.csv: not a well-formed CSV file"):
        long_csv.import_file(path)
    path = tmp_path / "latin1.csv"
    path.write_bytes("run,n_params,tokens,task,task_loss,accuracy\nré,1e8,1e9,t,1.0,0.5\n".encode("latin-1"))
    with pytest.raises(BayesLadderError, match=r"latin1\.csv: not a well-formed CSV file"):
        long_csv.import_file(path)


def test_a_json_file_is_a_clear_error(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"run": "a", "tokens": 1}\n')
    with pytest.raises(BayesLadderError, match=r"results\.json: has a header but no data rows"):
        long_csv.import_file(path)
    path.write_text('[\n  {"run": "a",\n   "tokens": 1}\n]\n')
    with pytest.raises(BayesLadderError, match=r"results\.json, line 2: 2 cells but the header has 1 columns"):
        long_csv.import_file(path)


def test_rows_with_extra_or_missing_cells_are_refused(make_long_csv):
    path = make_long_csv()
    lines = path.read_text().splitlines()
    lines[3] += ",0.5"  # an extra cell pandas would silently take as an index column
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BayesLadderError, match=r"ladder\.csv, line 4: 12 cells but the header has 11 columns"):
        long_csv.import_file(path)
    lines[3] = lines[3].rsplit(",", 2)[0]  # two cells short: pandas would pad them with empty cells
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BayesLadderError, match=r"line 4: 10 cells but the header has 11 columns"):
        long_csv.import_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(BayesLadderError, match="cannot be read"):
        long_csv.import_file(tmp_path / "nope.csv")


# ---------------------------------------------------------------- every problem at once, right line numbers


def test_line_numbers_are_right_after_blank_lines(make_long_csv):
    path = make_long_csv(lambda rows: rows[4].update(tokens="lots"))  # line 6 of the file as written
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + ["", ""] + lines[2:]) + "\n")  # two blank lines before line 3
    with pytest.raises(BayesLadderError, match=r"line 8, column 'tokens': non-numeric value 'lots'"):
        long_csv.import_file(path)


def test_every_bad_row_and_column_is_reported_in_one_error(make_long_csv):
    def edit(rows):
        rows[1]["accuracy"] = "1.5"
        rows[3]["tokens"] = "-1"
        rows[5]["tokens"] = "0"
        rows[7]["n_params"] = "many"
        rows[8]["role"] = "teacher"

    with pytest.raises(BayesLadderError) as info:
        long_csv.import_file(make_long_csv(edit))
    message = str(info.value)
    for fragment in (
        "line 3, column 'accuracy': must lie in [0, 1]",
        "lines 5 and 7, column 'tokens': must be a positive",
        "line 9, column 'n_params': non-numeric value 'many'",
        "line 10, column 'role': must be one of ladder, target",
    ):
        assert fragment in message
    assert "\n" not in message


def test_every_inconsistent_run_and_task_is_reported(make_long_csv):
    def edit(rows):
        for row in rows:
            row["n_questions"] = "100" if row["tokens"] == "1e+09" else "200"
        rows[0]["n_params"] = "2e8"
        rows[6]["size"] = "xl"

    with pytest.raises(BayesLadderError) as info:
        long_csv.import_file(make_long_csv(edit, extra_columns=["n_questions"]))
    message = str(info.value)
    assert "run 's-1xC' has more than one n_params (2e+08, 1e+08)" in message
    assert "run 'm-1xC' has more than one size (xl, m)" in message
    assert "task 'alpha' has more than one n_questions" in message and "task 'beta' has more than one" in message


# ---------------------------------------------------------------- validation losses, units, final checkpoints


def with_val_loss(rows):
    """Every row carries its checkpoint's c4 validation loss; one extra row has only a validation loss."""
    for row in rows:
        row["val_loss"], row["val_set"] = f"{3 + 1e9 / float(row['tokens']):.4f}", "c4"
    rows.append(dict(rows[0], tokens="4e9", task="", task_loss="", accuracy="", val_loss="2.9", step="4000"))


def test_val_loss_column_gives_the_validation_loss_design_its_feature(make_long_csv):
    from bayesladder.analyses.designs import swap_intermediate

    ds = long_csv.import_file(make_long_csv(with_val_loss, extra_columns=["val_loss", "val_set"]))
    assert ds["valset"].values.tolist() == ["c4"]
    np.testing.assert_allclose(ds["val_loss"].sel(run="s-1xC", valset="c4").values, [5, 4, 3.5, 2.9])
    # the validation-only row adds a checkpoint without task results
    assert np.isnan(ds["task_loss"].sel(run="s-1xC").values[3]).all()
    np.testing.assert_allclose(ds["val_loss"].sel(run="m-1xC", valset="c4").values[:3], [5, 4, 3.5])
    swapped = swap_intermediate(ds, "c4")  # what 'compare --designs c4-intermediate --valset c4' fits on
    np.testing.assert_allclose(swapped["task_loss"].sel(run="m-1xC", task="beta").values[:3], [5, 4, 3.5])


@pytest.mark.parametrize(
    "edit, header_extra, expected",
    [
        (with_val_loss, ["val_loss"], r"missing column\(s\) 'val_set'"),
        (
            lambda rows: (with_val_loss(rows), rows[2].update(val_set="")),
            ["val_loss", "val_set"],
            r"line 4, column 'val_set': must name the set",
        ),
        (
            lambda rows: (with_val_loss(rows), rows[1].update(val_loss="7")),
            ["val_loss", "val_set"],
            r"lines 2 and 3, column 'val_loss': differs between rows",
        ),
        (lambda rows: rows[3].update(task=""), [], r"line 5, column 'task': must not be empty"),
    ],
)
def test_bad_validation_losses(make_long_csv, edit, header_extra, expected):
    with pytest.raises(BayesLadderError, match=expected):
        long_csv.import_file(make_long_csv(edit, extra_columns=header_extra))


def test_units_and_final_checkpoints_are_stored(long_csv_file):
    from bayesladder import ladder

    ds = long_csv.import_file(long_csv_file, units="nats/token", final_checkpoints=2)
    assert ds.attrs["task_loss_units"] == ds["task_loss"].attrs["units"] == "nats/token"
    assert "per token" in ds["task_loss"].attrs["long_name"]
    assert ds.attrs["final_checkpoints"] == 2
    finals = ladder.final_points(ds, ["s-1xC"]).set_index("task")
    loss = ds["task_loss"].sel(run="s-1xC", task="alpha").values
    assert finals.loc["alpha", "task_loss"] == pytest.approx(loss[1:].mean())  # the last 2 of 3 checkpoints
    default = long_csv.import_file(long_csv_file)
    assert default["task_loss"].attrs["units"] == "bits/byte" and "final_checkpoints" not in default.attrs


def test_bad_options(long_csv_file):
    with pytest.raises(BayesLadderError, match="unknown task-loss units 'bits'; use one of bits/byte, nats/token"):
        long_csv.import_file(long_csv_file, units="bits")
    with pytest.raises(BayesLadderError, match="final checkpoints must be at least 1"):
        long_csv.import_file(long_csv_file, final_checkpoints=0)


# ---------------------------------------------------------------- warnings


def test_nan_cells_and_tasks_without_loss_are_warned_about(make_long_csv):
    from bayesladder.errors import BayesLadderWarning

    def edit(rows):
        rows[0]["accuracy"] = "NaN"
        rows[2]["accuracy"] = "nan"
        for row in rows:
            if row["task"] == "beta":
                row["task_loss"] = ""

    with pytest.warns(BayesLadderWarning) as caught:
        ds = long_csv.import_file(make_long_csv(edit))
    messages = [str(w.message) for w in caught]
    assert any("lines 2 and 4, column 'accuracy': NaN read as 'not evaluated'" in m for m in messages)
    assert any("no task loss for task(s) beta" in m for m in messages)
    assert np.isnan(ds["task_loss"].sel(task="beta").values).all()


def test_the_gemstones_ladder_imports_with_its_units(tmp_path):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "gemstones" / "gemstones.csv"
    if not path.is_file():
        pytest.skip("shared Gemstones data not present")
    ds = long_csv.import_file(path, units="nats", final_checkpoints=1)
    assert schema.validate(ds) == []
    assert ds.sizes["run"] == 19 and ds.sizes["task"] == 9
    assert ds["task_loss"].attrs["units"] == "nats" and ds.attrs["final_checkpoints"] == 1
    assert (schema.n_checkpoints(ds) == 35).all()
