"""The command line through typer's CliRunner: imports write readable files, --json prints only records,
and every bad input is one 'error: ...' line, exit code 1, no traceback and no output file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_helpers import assert_clean_error, invoke

from bayesladder import schema


def test_import_olmo_ladder_writes_a_readable_file(olmo_data, olmo_ladder_ds, tmp_path):
    out = tmp_path / "sub" / "ladder.nc"
    result = invoke("import", "olmo-ladder", olmo_data / "raw", "-o", out)
    assert result.exit_code == 0, result.output
    assert "30 runs, 10 tasks" in result.stderr
    ds = schema.read(out)
    assert schema.content_hash(ds) == schema.content_hash(olmo_ladder_ds)
    assert [p.name for p in out.parent.iterdir()] == ["ladder.nc"]  # no temp file left


def test_import_olmo_ladder_needs_a_folder_or_download(tmp_path):
    assert_clean_error(invoke("import", "olmo-ladder", "-o", tmp_path / "x.nc"), "--download")
    assert_clean_error(
        invoke("import", "olmo-ladder", tmp_path / "missing", "-o", tmp_path / "x.nc"), "missing", "no such folder"
    )
    assert not (tmp_path / "x.nc").exists()


def test_import_olmo_ladder_bad_file_leaves_no_output(olmo_data, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(olmo_data / "raw" / "190M-1xC.csv", runs)
    lines = (olmo_data / "raw" / "370M-1xC.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",x", 1)
    (runs / "370M-1xC.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ladder.nc"
    assert_clean_error(invoke("import", "olmo-ladder", runs, "-o", out), "370M-1xC.csv", "line 6")
    assert not out.exists()


def test_import_olmo_ladder_download_rejects_a_corrupted_file(offline_upstream, tmp_path):
    upstream, _ = offline_upstream
    (upstream / "1B-2xC.csv").write_text("_step\n1\n")
    out = tmp_path / "ladder.nc"
    assert_clean_error(invoke("import", "olmo-ladder", "--download", "-o", out), "1B-2xC.csv", "hash")
    assert not out.exists()
    assert (tmp_path / "user-cache" / "bayesladder" / "olmo-ladder" / "190M-0.5xC.csv").is_file()  # the user cache
    assert not (tmp_path / "user-cache" / "bayesladder" / "olmo-ladder" / "1B-2xC.csv").exists()


def test_import_csv_writes_a_readable_file(long_csv_file, tmp_path):
    out = tmp_path / "out.nc"
    result = invoke("import", "csv", long_csv_file, "-o", out)
    assert result.exit_code == 0, result.output
    ds = schema.read(out)
    assert ds["run"].values.tolist() == ["s-1xC", "m-1xC"]
    np.testing.assert_array_equal(ds["tokens"].values[0], [0.5e9, 1e9, 2e9])


def test_import_csv_keeps_the_previous_file_on_error(make_long_csv, tmp_path):
    out = tmp_path / "out.nc"
    assert invoke("import", "csv", make_long_csv(), "-o", out).exit_code == 0
    before = out.read_bytes()
    bad = make_long_csv(lambda rows: rows[2].update(accuracy="high"), name="bad.csv")
    assert_clean_error(invoke("import", "csv", bad, "-o", out), "bad.csv", "line 4", "'accuracy'")
    assert out.read_bytes() == before


def _empty(tmp_path):
    (tmp_path / "in.csv").write_text("")


def _header_only(tmp_path):
    (tmp_path / "in.csv").write_text("run,n_params,tokens,task,task_loss,accuracy\n")


def _binary(tmp_path):
    (tmp_path / "in.csv").write_bytes(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" * 50)


@pytest.mark.parametrize(
    "edit, header, fragments",
    [
        (None, ["run", "n_params", "tokens", "task", "accuracy"], ["in.csv", "missing column(s) 'task_loss'"]),
        (lambda rows: rows[3].update(task_loss="n/a"), None, ["in.csv", "line 5", "'task_loss'", "non-numeric"]),
        (lambda rows: rows[1].update(n_params="-1e8"), None, ["in.csv", "line 3", "'n_params'", "positive"]),
        (lambda rows: rows[6].update(tokens="0"), None, ["in.csv", "line 8", "'tokens'", "positive"]),
        (lambda rows: rows[0].update(accuracy="1.5"), None, ["in.csv", "line 2", "'accuracy'"]),
        (_empty, None, ["in.csv", "empty"]),
        (_header_only, None, ["in.csv", "no data rows"]),
        (_binary, None, ["in.csv", "not a CSV file"]),
    ],
    ids=["missing-column", "non-numeric", "n-params", "tokens", "accuracy", "empty", "header-only", "binary"],
)
def test_import_csv_bad_input(make_long_csv, tmp_path, edit, header, fragments):
    if edit in (_empty, _header_only, _binary):
        edit(tmp_path)
        path = tmp_path / "in.csv"
    else:
        path = make_long_csv(edit, header, name="in.csv")
    out = tmp_path / "out.nc"
    assert_clean_error(invoke("import", "csv", path, "-o", out), *fragments)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_import_csv_to_a_folder_is_a_clean_error(long_csv_file, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    assert_clean_error(invoke("import", "csv", long_csv_file, "-o", folder), "results", "folder")
    assert list(folder.iterdir()) == []


def test_baseline_json_prints_only_records(olmo_ladder_nc):
    result = invoke(
        "baseline",
        "--data",
        olmo_ladder_nc,
        "--ladder",
        "paper",
        "--target",
        "13B-5T",
        "--tasks",
        "hellaswag,piqa",
        "--json",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["task"] for r in records] == ["hellaswag", "piqa"]
    assert all(set(r) == {"task", "loss", "accuracy"} for r in records)
    assert records[0]["accuracy"] == pytest.approx(0.8530, abs=1e-3)
    assert records[1]["accuracy"] == pytest.approx(0.8208, abs=1e-3)


def test_baseline_json_with_a_dataset_run_as_target_adds_actuals(olmo_ladder_nc):
    result = invoke(
        "baseline",
        "--data",
        olmo_ladder_nc,
        "--sizes",
        "190M,370M",
        "--sizes",
        "760M",
        "--lengths",
        "2xC,5xC,10xC",
        "--target",
        "1B-5xC",
        "--tasks",
        "arc_easy",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert set(record) == {"task", "loss", "accuracy", "actual_loss", "actual_accuracy", "loss_error", "accuracy_error"}
    assert record["loss_error"] == pytest.approx(record["loss"] - record["actual_loss"])
    assert record["accuracy_error"] == pytest.approx(record["accuracy"] - record["actual_accuracy"])
    assert 0.5 < record["actual_accuracy"] < 0.8


def test_baseline_table_and_explicit_target(olmo_ladder_nc):
    result = invoke(
        "baseline",
        "--data",
        olmo_ladder_nc,
        "--ladder",
        "paper",
        "--n",
        "6887575552",
        "--d",
        "3945065873408",
        "--tasks",
        "piqa",
    )
    assert result.exit_code == 0, result.output
    assert "piqa" in result.stdout and "Paper method" in result.stdout


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--ladder", "paper", "--target", "13B-5T", "--tasks", "mmlu,poetry"], ["unknown task(s) poetry"]),
        (["--ladder", "paper", "--target", "13B-5T", "--tasks", ","], ["--tasks"]),
        (["--ladder", "paper", "--target", "70B-15T"], ["unknown target '70B-15T'"]),
        (["--ladder", "paper", "--n", "0", "--d", "1e12"], ["--n and --d must be positive"]),
        (["--ladder", "paper", "--n", "7e9", "--d", "-5"], ["--n and --d must be positive"]),
        (["--ladder", "paper"], ["give a target"]),
        (["--ladder", "paper", "--n", "nan", "--d", "1e12"], ["--n and --d must be positive finite", "got --n nan"]),
        (["--ladder", "paper", "--n", "7e9", "--d", "inf"], ["--n and --d must be positive finite", "--d inf"]),
        (["--ladder", "paper", "--target", "13B-5T", "--n", "7e9"], ["give either --target 13B-5T or --n and --d"]),
        (["--sizes", "190M,7B", "--target", "13B-5T"], ["unknown size(s) 7B (from --sizes)"]),
        (["--lengths", "3xC", "--target", "13B-5T"], ["unknown length(s) 3xC"]),
        (["--ladder", "huge", "--target", "13B-5T"], ["unknown ladder preset 'huge'"]),
        (["--ladder", "paper", "--sizes", "1B", "--target", "13B-5T"], ["not both"]),
    ],
)
def test_baseline_bad_input(olmo_ladder_nc, args, fragments):
    assert_clean_error(invoke("baseline", "--data", olmo_ladder_nc, *args, "--json"), *fragments)


def test_a_preset_of_another_ladder_says_so_and_names_the_dataset():
    """'--ladder paper' on the shipped micro ladder: the sizes it names are not a typo of the user's."""
    result = invoke("baseline", "--ladder", "paper", "--target", "13B-5T")
    assert_clean_error(result, "(from the ladder preset 'paper')", "micro_ladder.nc has 102k", "with --sizes")


def test_baseline_bad_data_file(tmp_path, long_csv_file):
    assert_clean_error(
        invoke("baseline", "--data", tmp_path / "nope.nc", "--target", "13B-5T"), "nope.nc", "no such file"
    )
    assert_clean_error(
        invoke("baseline", "--data", long_csv_file, "--target", "13B-5T"), "ladder.csv", "not a readable netCDF"
    )


def test_import_csv_options_and_warnings(make_long_csv, tmp_path):
    def edit(rows):
        rows[0]["accuracy"] = "NaN"
        for row in rows:
            if row["task"] == "beta":
                row["task_loss"] = ""

    out = tmp_path / "out.nc"
    result = invoke("import", "csv", make_long_csv(edit), "-o", out, "--units", "nats", "--final-checkpoints", "1")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "line 2, column 'accuracy': NaN read as 'not evaluated'" in warnings[0]
    assert "no task loss for task(s) beta" in warnings[1]
    ds = schema.read(out)
    assert ds["task_loss"].attrs["units"] == "nats" and ds.attrs["final_checkpoints"] == 1


def test_import_csv_reports_every_bad_row_in_one_line(make_long_csv, tmp_path):
    def edit(rows):
        rows[1]["accuracy"] = "1.5"
        rows[4]["tokens"] = "soon"

    out = tmp_path / "out.nc"
    result = invoke("import", "csv", make_long_csv(edit, name="in.csv"), "-o", out)
    assert_clean_error(result, "in.csv", "line 3, column 'accuracy'", "line 6, column 'tokens'")
    assert_clean_error(invoke("import", "csv", make_long_csv(), "-o", out, "--units", "furlongs"), "furlongs")
    assert not out.exists()


def test_a_final_only_ladder_imports_validates_and_the_baseline_fits_it(olmo_final_only_ds, tmp_path):
    """The final-only OLMo ladder as a user's long CSV: it imports and validates; the paper's method fits its
    step 2 on the runs' final points."""
    rows = olmo_final_only_ds[["task_loss", "accuracy", "tokens", "n_params", "size", "length", "replicate", "role"]]
    frame = rows.isel(checkpoint=0).to_dataframe().reset_index()
    csv_path = tmp_path / "finals.csv"
    frame[["run", "n_params", "tokens", "task", "task_loss", "accuracy", "size", "length", "replicate", "role"]].to_csv(
        csv_path, index=False
    )
    out = tmp_path / "finals.nc"
    result = invoke("import", "csv", csv_path, "-o", out)
    assert result.exit_code == 0, result.output
    ds = schema.read(out)
    assert ds.sizes["checkpoint"] == 1 and ds.sizes["run"] == 30
    np.testing.assert_allclose(
        ds["task_loss"].sel(run="1B-10xC").values[0],
        olmo_final_only_ds["task_loss"].sel(run="1B-10xC").values[0],
    )
    result = invoke(
        "baseline", "--data", out, "--ladder", "paper", "--target", "13B-5T", "--tasks", "piqa,csqa", "--json"
    )
    assert result.exit_code == 0, result.output
    assert all(0.3 < row["accuracy"] < 0.99 for row in json.loads(result.stdout))


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--sizes", "190M,370M", "--lengths", "1xC,2xC"], ["cannot fit task 'arc_easy'", "step 1 has 4 runs"]),
        (["--sizes", "190M", "--lengths", "1xC,2xC,5xC"], ["all of one size (190M, N = 1.9e+08)", "at least 2 sizes"]),
    ],
)
@pytest.mark.parametrize("final_only", [False, True])
def test_baseline_refuses_what_it_cannot_fit(olmo_final_only_nc, olmo_ladder_nc, args, fragments, final_only):
    data = olmo_final_only_nc if final_only else olmo_ladder_nc
    result = invoke("baseline", "--data", data, *args, "--target", "13B-5T", "--tasks", "arc_easy", "--json")
    assert_clean_error(result, *fragments)
