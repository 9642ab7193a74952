"""The OLMo-ladder importer on the real W&B exports in ../shared, the target logs, and --download."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bayesladder.errors import BayesLadderError
from bayesladder.importers import olmo_ladder

TASKS = [
    "mmlu",
    "hellaswag",
    "arc_challenge",
    "arc_easy",
    "piqa",
    "csqa",
    "socialiqa",
    "openbookqa",
    "boolq",
    "winogrande",
]
CHANCE = dict(
    mmlu=1 / 4,
    hellaswag=1 / 4,
    arc_challenge=1 / 4,
    arc_easy=1 / 4,
    piqa=1 / 2,
    csqa=1 / 5,
    socialiqa=1 / 3,
    openbookqa=1 / 4,
    boolq=1 / 2,
    winogrande=1 / 2,
)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def published_targets(olmo_data: Path) -> dict[str, dict]:
    """N and D of the 7B-4T and 13B-5T targets as ladder.json gives them."""
    return json.loads((olmo_data / "ladder.json").read_text())["targets"]


def readme_mmlu_weights(olmo_data: Path) -> dict[str, float]:
    """The data README's weights of the four MMLU subject groups."""
    text = " ".join((olmo_data / "README.md").read_text().split())
    m = re.search(r"weights stem ([\d.]+), humanities ([\d.]+), social_sciences ([\d.]+), other ([\d.]+)", text)
    return dict(zip(["stem", "humanities", "social_sciences", "other"], map(float, m.groups())))


def readme_question_counts(olmo_data: Path) -> dict[str, int]:
    """The data README's number of questions of each task's split (MMLU: its four test subject groups together)."""
    text = " ".join((olmo_data / "README.md").read_text().split())
    counts = {
        "mmlu": sum(
            map(
                int,
                re.search(r"mmlu test stem (\d+), humanities (\d+), social_sciences (\d+), other (\d+)", text).groups(),
            )
        )
    }
    for task, split in (
        ("hellaswag", "_val"),
        ("arc_challenge", " test"),
        ("arc_easy", " test"),
        ("piqa", "_val"),
        ("csqa", "_val"),
        ("socialiqa", "_val"),
        ("openbookqa", " test"),
        ("boolq", "_val"),
        ("winogrande", "_val"),
    ):
        counts[task] = int(re.search(rf"\b{task}{split} (\d+)", text)[1])
    return counts


def readme_table(olmo_data: Path) -> dict[str, dict]:
    """The README's per-file table: rows, first step, last step, final tokens."""
    table = {}
    for line in (olmo_data / "README.md").read_text().splitlines():
        m = re.match(r"^\| (\S+)\.csv \| (\d+) \| (\d+) \| (\d+) \| ([\d,]+) \|", line)
        if m:
            table[m[1]] = dict(rows=int(m[2]), first=int(m[3]), last=int(m[4]), tokens=int(m[5].replace(",", "")))
    assert len(table) == 30
    return table


def test_thirty_runs_with_their_metadata(olmo_ladder_ds):
    ds = olmo_ladder_ds
    assert ds.sizes["run"] == 30
    assert ds["task"].values.tolist() == TASKS
    runs = ds["run"].values.tolist()
    for size in ("190M", "370M", "760M", "1B", "3B"):
        for length in ("0.5xC", "1xC", "2xC", "5xC", "10xC"):
            assert f"{size}-{length}" in runs
        assert f"{size}-1xC-rerun" in runs
    assert set(ds["role"].values) == {"ladder"}
    r = ds.sel(run="3B-1xC-rerun")
    assert (str(r["size"].values), str(r["length"].values), int(r["replicate"]), str(r["source"].values)) == (
        "3B",
        "1xC",
        1,
        "3B-1xC-rerun.csv",
    )
    r = ds.sel(run="190M-0.5xC")
    assert (str(r["size"].values), str(r["length"].values), float(r["multiplier"]), int(r["replicate"])) == (
        "190M",
        "0.5xC",
        0.5,
        0,
    )
    reruns = [run for run in runs if run.endswith("-rerun")]
    assert ds["replicate"].sel(run=reruns).values.tolist() == [1] * 5
    assert set(ds["replicate"].drop_sel(run=reruns).values.tolist()) == {0}


def test_row_counts_steps_and_final_tokens_match_the_readme(olmo_ladder_ds, olmo_data):
    ds = olmo_ladder_ds
    table = readme_table(olmo_data)
    counts = {str(run): int(n) for run, n in zip(ds["run"].values, ds["tokens"].notnull().sum("checkpoint").values)}
    assert counts == {run: spec["rows"] for run, spec in table.items()}
    assert (counts["190M-1xC"], counts["3B-10xC"], counts["1B-1xC-rerun"]) == (37, 202, 163)
    for run, spec in table.items():
        r = ds.sel(run=run)
        n = spec["rows"]
        assert r["step"].values[0] == spec["first"] and r["step"].values[n - 1] == spec["last"], run
        assert r["tokens"].values[n - 1] == spec["tokens"], run
        assert np.isnan(r["tokens"].values[n:]).all() and np.isnan(r["task_loss"].values[n:]).all(), run


def test_n_params_from_ladder_json(olmo_ladder_ds, olmo_data):
    models = json.loads((olmo_data / "ladder.json").read_text())["models"]
    for run, size, n in zip(
        olmo_ladder_ds["run"].values, olmo_ladder_ds["size"].values, olmo_ladder_ds["n_params"].values
    ):
        assert n == models[str(size)]["N"], run
    assert "input embedding" in olmo_ladder_ds.attrs["n_params_convention"]


def test_tokens_are_throughput_total_tokens_and_flops_6nd(olmo_ladder_ds, olmo_data):
    ds = olmo_ladder_ds
    for path in sorted((olmo_data / "raw").glob("*.csv")):
        rows = read_rows(path)
        r = ds.sel(run=path.stem)
        expected = [float(row["throughput/total_tokens"]) for row in rows]
        np.testing.assert_array_equal(r["tokens"].values[: len(rows)], expected, err_msg=path.name)
        np.testing.assert_array_equal(r["step"].values[: len(rows)], [float(row["_step"]) for row in rows])
        np.testing.assert_allclose(
            r["flops"].values[: len(rows)], 6 * float(r["n_params"]) * np.array(expected), rtol=1e-12
        )


@pytest.mark.parametrize("run, row", [("1B-5xC", 10), ("3B-1xC-rerun", -1), ("190M-0.5xC", 0)])
def test_spot_values_recomputed_from_the_csv(olmo_ladder_ds, olmo_data, run, row):
    rows = read_rows(olmo_data / "raw" / f"{run}.csv")
    index = row % len(rows)
    cells = {k: float(v) for k, v in rows[index].items()}
    r = olmo_ladder_ds.sel(run=run).isel(checkpoint=index)
    assert float(r["step"]) == cells["_step"]

    def value(variable, task):
        return float(r[variable].sel(task=task))

    weights = readme_mmlu_weights(olmo_data)
    mmlu_bpb = sum(w * cells[f"eval/downstream_bpb/mmlu_{g}_test_rc_5shot_bpb"] for g, w in weights.items())
    mmlu_acc = sum(w * cells[f"eval/downstream/mmlu_{g}_test_rc_5shot_len_norm"] for g, w in weights.items())
    assert value("task_loss", "mmlu") == pytest.approx(mmlu_bpb, rel=1e-12)
    assert value("accuracy", "mmlu") == pytest.approx(mmlu_acc, rel=1e-12)
    assert value("accuracy", "boolq") == cells["eval/downstream/boolq_val_rc_5shot_acc"]
    assert value("task_loss", "boolq") == cells["eval/downstream_bpb/boolq_val_rc_5shot_bpb"]
    assert value("accuracy", "hellaswag") == cells["eval/downstream/hellaswag_val_rc_5shot_len_norm"]
    assert value("task_loss", "hellaswag") == cells["eval/downstream_bpb/hellaswag_val_rc_5shot_bpb"]
    # the test split of ARC and OpenBookQA, not the val split
    assert value("accuracy", "arc_challenge") == cells["eval/downstream/arc_challenge_test_rc_5shot_len_norm"]
    assert value("task_loss", "openbookqa") == cells["eval/downstream_bpb/openbookqa_test_rc_5shot_bpb"]
    assert value("accuracy", "winogrande") == cells["eval/downstream/winogrande_val_rc_5shot_len_norm"]
    assert float(r["val_loss"].sel(valset="c4_en")) == cells["eval/c4_en-validation/CrossEntropyLoss"]


def test_chance_levels_and_question_counts(olmo_ladder_ds, olmo_data):
    ds = olmo_ladder_ds
    n_questions = readme_question_counts(olmo_data)
    assert n_questions["mmlu"] == 14042 and n_questions["hellaswag"] == 10042
    for task in TASKS:
        assert float(ds["chance"].sel(task=task)) == pytest.approx(CHANCE[task]), task
        assert float(ds["n_questions"].sel(task=task)) == n_questions[task], task
    assert str(ds["source_key"].sel(task="mmlu").values) == "mmlu_avg_test_5shot"
    assert str(ds["source_key"].sel(task="arc_challenge").values) == "arc_challenge_test_5shot"


def test_gap_rows_and_evaluation_cadences(olmo_ladder_ds):
    ds = olmo_ladder_ds

    def steps(run):
        s = ds["step"].sel(run=run).values
        return s[~np.isnan(s)]

    assert 2100 not in steps("190M-0.5xC") and {2050, 2150} <= set(steps("190M-0.5xC"))
    assert 8350 not in steps("3B-0.5xC") and {8300, 8400} <= set(steps("3B-0.5xC"))
    for run, every in (("760M-1xC", 200), ("760M-1xC-rerun", 100), ("760M-5xC", 500), ("760M-10xC", 1000)):
        gaps = np.diff(steps(run))
        assert (gaps[:-1] == every).all(), run  # plus one final row at the run's last step
        assert 0 < gaps[-1] <= every
    # different cadences share one array: the short runs are NaN-padded
    assert ds.sizes["checkpoint"] == 202


# ---------------------------------------------------------------- target logs


def make_target_logs(olmo_data: Path, folder: Path) -> Path:
    """A folder with two ladder files and target logs made from ladder rows, shaped like the upstream ones."""
    folder.mkdir()
    raw = olmo_data / "raw"
    for name in ("190M-1xC.csv", "370M-1xC.csv"):
        shutil.copy(raw / name, folder / name)
    rows = read_rows(raw / "3B-10xC.csv")
    header = list(rows[0])
    # 13B-5T: 12 rows, _step and throughput/total_tokens (8,388,608 tokens per step), the last at D of the target
    last = rows[-12:]
    for i, row in enumerate(last):
        row["_step"] = str(596057 - 1000 * (11 - i))
        row["throughput/total_tokens"] = f"{int(row['_step']) * 8388608}.0"
    write_csv(folder / "peteish13_eval_final.csv", header, last)
    # 7B-4T: one row, no _step column, throughput/total_tokens present
    row = dict(rows[-1], **{"throughput/total_tokens": "3945065873408"})
    write_csv(folder / "peteish7_eval_anneal.csv", [h for h in header if h != "_step"], [row])
    return folder


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def test_target_logs_import_as_targets(olmo_data, tmp_path):
    ds = olmo_ladder.import_dir(make_target_logs(olmo_data, tmp_path / "runs"))
    assert sorted(ds["run"].values.tolist()) == ["13B-5T", "190M-1xC", "370M-1xC", "7B-4T"]
    for name, rows in (("13B-5T", 12), ("7B-4T", 1)):
        r = ds.sel(run=name)
        target = published_targets(olmo_data)[name]
        assert str(r["role"].values) == "target"
        assert float(r["n_params"]) == target["N"]
        present = r["tokens"].values[~np.isnan(r["tokens"].values)]
        assert len(present) == rows
        assert present[-1] == target["D"]
        assert float(r["multiplier"]) == pytest.approx(target["D"] / (20 * target["N"]))  # 1xC = 20 tokens/param
    assert str(ds["size"].sel(run="13B-5T").values) == "13B" and str(ds["length"].sel(run="13B-5T").values) == "5T"
    assert np.isnan(ds["step"].sel(run="7B-4T").values).all()
    # the metrics are read exactly as for a ladder file
    source = read_rows(olmo_data / "raw" / "3B-10xC.csv")[-1]
    assert float(ds["accuracy"].sel(run="7B-4T", task="hellaswag").values[0]) == float(
        source["eval/downstream/hellaswag_val_rc_5shot_len_norm"]
    )
    assert set(ds["role"].sel(run=["190M-1xC", "370M-1xC"]).values) == {"ladder"}


def test_one_row_target_log_without_token_columns_gets_d_from_the_target(olmo_data, tmp_path):
    rows = read_rows(olmo_data / "raw" / "3B-10xC.csv")
    header = [h for h in rows[0] if h not in ("_step", "throughput/total_tokens")]
    (tmp_path / "runs").mkdir()
    write_csv(tmp_path / "runs" / "peteish7_eval_anneal.csv", header, rows[-1:])
    ds = olmo_ladder.import_dir(tmp_path / "runs")
    assert ds["run"].values.tolist() == ["7B-4T"]
    target = published_targets(olmo_data)["7B-4T"]
    assert ds["tokens"].values.tolist() == [[target["D"]]]
    assert float(ds["n_params"][0]) == target["N"]


def test_tokens_fall_back_to_step_times_batch_size(olmo_data, tmp_path):
    rows = read_rows(olmo_data / "raw" / "190M-1xC.csv")
    (tmp_path / "runs").mkdir()
    write_csv(tmp_path / "runs" / "190M-1xC.csv", [h for h in rows[0] if h != "throughput/total_tokens"], rows)
    ds = olmo_ladder.import_dir(tmp_path / "runs")
    np.testing.assert_array_equal(ds["tokens"].values[0], [float(r["_step"]) * 524288 for r in rows])


# ---------------------------------------------------------------- bad input


def test_missing_metric_column_names_file_and_column(olmo_data, tmp_path):
    rows = read_rows(olmo_data / "raw" / "190M-1xC.csv")
    (tmp_path / "runs").mkdir()
    column = "eval/downstream/boolq_val_rc_5shot_acc"
    write_csv(tmp_path / "runs" / "190M-1xC.csv", [h for h in rows[0] if h != column], rows)
    with pytest.raises(BayesLadderError, match=rf"190M-1xC\.csv: missing column\(s\) '{column}'"):
        olmo_ladder.import_dir(tmp_path / "runs")


def test_non_numeric_metric_names_line_and_column(olmo_data, tmp_path):
    rows = read_rows(olmo_data / "raw" / "190M-1xC.csv")
    rows[4]["eval/downstream_bpb/piqa_val_rc_5shot_bpb"] = "oops"
    (tmp_path / "runs").mkdir()
    write_csv(tmp_path / "runs" / "190M-1xC.csv", list(rows[0]), rows)
    with pytest.raises(
        BayesLadderError,
        match=r"190M-1xC\.csv, line 6, column 'eval/downstream_bpb/piqa_val_rc_5shot_bpb': non-numeric",
    ):
        olmo_ladder.import_dir(tmp_path / "runs")


def test_folder_problems(tmp_path):
    with pytest.raises(BayesLadderError, match="no such folder"):
        olmo_ladder.import_dir(tmp_path / "missing")
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")  # unrelated CSVs are ignored
    with pytest.raises(BayesLadderError, match="no OLMo-ladder files found"):
        olmo_ladder.import_dir(tmp_path)
    (tmp_path / "7B-1xC.csv").write_text("a,b\n1,2\n")
    with pytest.raises(BayesLadderError, match="unknown model size '7B'"):
        olmo_ladder.import_dir(tmp_path)


def test_binary_file_is_not_a_csv(tmp_path):
    (tmp_path / "190M-1xC.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20)
    with pytest.raises(BayesLadderError, match="not a CSV file"):
        olmo_ladder.import_dir(tmp_path)


# ---------------------------------------------------------------- --download, without network


def test_registry_hashes_match_the_shared_copies(olmo_data):
    files = sorted((olmo_data / "raw").glob("*.csv"))
    assert len(files) == 30
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == olmo_ladder.UPSTREAM_SHA256[path.name], path.name
    assert set(olmo_ladder.UPSTREAM_SHA256) == {p.name for p in files} | set(olmo_ladder.TARGET_FILES)
    assert "67a3f440f787d020da35e3ca8eeae475fae754f5/src/scripts/paper/data/ladder-runs/" in olmo_ladder.UPSTREAM


def test_download_fetches_every_file_from_the_pinned_commit(offline_upstream, tmp_path):
    upstream, requested = offline_upstream
    folder = olmo_ladder.download(tmp_path / "cache")
    assert sorted(requested) == sorted(olmo_ladder.UPSTREAM + name for name in olmo_ladder.UPSTREAM_SHA256)
    for name in olmo_ladder.UPSTREAM_SHA256:
        assert (folder / name).read_bytes() == (upstream / name).read_bytes()
    requested.clear()
    assert olmo_ladder.download(tmp_path / "cache") == folder  # cached: nothing fetched again
    assert requested == []


def test_download_rejects_a_corrupted_file(offline_upstream, tmp_path):
    upstream, _ = offline_upstream
    path = upstream / "370M-2xC.csv"
    path.write_bytes(path.read_bytes().replace(b"0.7", b"0.8", 1))
    with pytest.raises(BayesLadderError, match=r"370M-2xC\.csv.*(hash|SHA)"):
        olmo_ladder.download(tmp_path / "cache")
    assert not (tmp_path / "cache" / "370M-2xC.csv").exists()


def test_every_bad_cell_of_every_bad_file_is_reported(olmo_data, tmp_path):
    (tmp_path / "runs").mkdir()
    rows = read_rows(olmo_data / "raw" / "190M-1xC.csv")
    for i in (4, 7):
        rows[i]["eval/downstream_bpb/piqa_val_rc_5shot_bpb"] = "oops"
    rows[9]["throughput/total_tokens"] = "-3"
    write_csv(tmp_path / "runs" / "190M-1xC.csv", list(rows[0]), rows)
    rows = read_rows(olmo_data / "raw" / "370M-2xC.csv")
    rows[2]["eval/downstream/piqa_val_rc_5shot_len_norm"] = "?"
    write_csv(tmp_path / "runs" / "370M-2xC.csv", list(rows[0]), rows)
    with pytest.raises(BayesLadderError) as info:
        olmo_ladder.import_dir(tmp_path / "runs")
    message = str(info.value)
    assert "190M-1xC.csv, line 11: tokens D must be a positive number" in message
    assert "lines 6 and 9, column 'eval/downstream_bpb/piqa_val_rc_5shot_bpb': non-numeric value 'oops'" in message
    assert "370M-2xC.csv, line 4, column 'eval/downstream/piqa_val_rc_5shot_len_norm'" in message
