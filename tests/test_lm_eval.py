"""lm-evaluation-harness output, end to end: a tiny ladder trained by this package, lm-eval itself run on its
checkpoints with a local task (no network), what it wrote imported; the task loss agrees with the package's
own evaluator on the same questions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_clean_error, invoke

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("lm_eval")

from bayesladder import schema
from bayesladder.errors import BayesLadderError, BayesLadderWarning
from bayesladder.importers import lm_eval
from bayesladder.training import runner, spec

WORDS = ["king", "man", "lord", "people", "servant", "prophet"]
PLACES = ["city", "house", "land", "field", "river", "temple", "mountain"]
TEXT = " ".join(f"And the {w} went up unto the {p} of the {w}." for w, p in zip(WORDS * 70, PLACES * 60))
SPEC = """
name = "lm-eval-test"
seq_len = 64
[ladder]
sizes = ["a"]
multipliers = [0.5, 1]
[train]
schedule = "wsd"
dtype = "fp32"
min_warmup_steps = 2
[corpus]
source = "files"
paths = ["{corpus}"]
block_bytes = 1024
heldout_every = 5
[eval]
every_xc = 1
[[eval.tasks]]
name = "cont"
kind = "continuation"
boundary = "any"
n_questions = 4
context_bytes = 16
continuation_bytes = 8
[sizes.a]
d_model = 8
n_layers = 1
n_heads = 2
mlp_hidden = 16
batch_tokens = 512
"""
TASK_YAML = """task: bl_verses
dataset_path: json
dataset_kwargs:
  data_files:
    test: {questions}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{query}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{gold}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""
# lm-eval's Python API as its CLI uses it: evaluate, then save results and samples with an EvaluationTracker.
RUN_LM_EVAL = """
import json, sys
from lm_eval import simple_evaluate
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager

output, include, models = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
for pretrained, revision in models:
    tracker = EvaluationTracker(output_path=output)
    results = simple_evaluate(
        model="hf", model_args={"pretrained": pretrained, "revision": revision}, tasks=["bl_verses"],
        task_manager=TaskManager(include_path=include, include_defaults=False), log_samples=True, device="cpu", batch_size=16,
        evaluation_tracker=tracker,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])
"""


def questions() -> list[dict]:
    """'And the king went up unto the' -> which place: the text's own pairing is the gold answer."""
    rows = []
    for i, (w, p) in enumerate(list(zip(WORDS * 2, PLACES * 2))[:12]):
        choices = [p] + [q for q in PLACES if q != p][:3]
        gold = i % 4
        choices[0], choices[gold] = choices[gold], choices[0]
        rows.append({"query": f"And the {w} went up unto the", "choices": choices, "gold": gold})
    return rows


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Two runs of a tiny ladder (a-0.5xC, a-1xC), their final checkpoints evaluated by lm-eval."""
    root = tmp_path_factory.mktemp("lm-eval")
    (root / "corpus.txt").write_text(TEXT)
    (root / "tiny.toml").write_text(SPEC.format(corpus=root / "corpus.txt"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train(spec.load(root / "tiny.toml"), root / "out", "a-0.5xC", progress=False)
    finally:
        torch.set_num_threads(before)
    checkpoints = {name: root / "out" / "runs" / name / "final" for name in ("a-0.5xC", "a-1xC")}
    (root / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions()) + "\n")
    (root / "tasks").mkdir()
    (root / "tasks" / "bl_verses.yaml").write_text(TASK_YAML.format(questions=root / "questions.jsonl"))
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf"), OMP_NUM_THREADS="1")
    models = [[str(path), f"step-{name}"] for name, path in checkpoints.items()]
    done = subprocess.run(
        [sys.executable, "-c", RUN_LM_EVAL, str(root / "results"), str(root / "tasks"), json.dumps(models)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = ["pretrained,revision,run,n_params,tokens,size"]
    for name, path in checkpoints.items():
        meta = json.loads((path.parent / "run.json").read_text())
        rows.append(f"{path},step-{name},{name},{meta['n_params']},{meta['steps'] * meta['batch_tokens']},a")
    (root / "runs.csv").write_text("\n".join(rows) + "\n")
    return root, checkpoints


def test_checkpoints_carry_a_byte_tokenizer_that_transformers_loads(evaluated):
    from transformers import AutoTokenizer

    _, checkpoints = evaluated
    tokenizer = AutoTokenizer.from_pretrained(checkpoints["a-1xC"])
    text = "And the king said: «Ὦ φίλε», 日本 🎉\n\ttabs\x00"
    ids = tokenizer(text)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
    assert len(tokenizer) == 256 and tokenizer.model_max_length == 64


def test_lm_eval_output_imports_and_its_task_loss_matches_the_package_evaluator(evaluated):
    root, checkpoints = evaluated
    imported = root / "lm_eval.nc"
    result = invoke("import", "lm-eval", root / "results", "--runs", root / "runs.csv", "-o", imported)
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr
    ds = schema.read(imported)
    assert sorted(ds["run"].values.tolist()) == ["a-0.5xC", "a-1xC"] and ds["task"].values.tolist() == ["bl_verses"]
    assert ds["n_questions"].values.tolist() == [12] and ds["chance"].values.tolist() == [0.25]
    assert ds.attrs["accuracy_metric"] == "bl_verses: acc_norm" and "gold continuation" in ds.attrs["task_loss_source"]
    for results_file in (root / "results").rglob("results_*.json"):
        written = json.loads(results_file.read_text())
        run = Path(written["config"]["model_args"]["pretrained"]).parent.name
        assert (
            ds["accuracy"].sel(run=run, task="bl_verses").values[0] == written["results"]["bl_verses"]["acc_norm,none"]
        )

    own = root / "own.nc"  # the package's evaluator on the same checkpoints and questions, one run at a time
    for path in checkpoints.values():
        result = invoke("eval", path, "--task", root / "questions.jsonl", "-o", own, "--threads", "1", "--json")
        assert result.exit_code == 0, result.output
    mine = schema.read(own)
    assert sorted(mine["run"].values.tolist()) == ["a-0.5xC", "a-1xC"]
    assert mine["task"].values.tolist() == ["questions"]
    for run in ("a-0.5xC", "a-1xC"):
        assert float(mine["tokens"].sel(run=run)[0]) == float(ds["tokens"].sel(run=run)[0])
        assert float(mine["n_params"].sel(run=run)) == float(ds["n_params"].sel(run=run))
        lm_eval_loss = float(ds["task_loss"].sel(run=run, task="bl_verses")[0])
        assert 0.5 < lm_eval_loss < 8
        assert lm_eval_loss == pytest.approx(float(mine["task_loss"].sel(run=run, task="questions")[0]), rel=1e-4)


def test_without_logged_samples_the_dataset_holds_accuracy_only(evaluated, tmp_path):
    root, _ = evaluated
    for path in (root / "results").rglob("results_*.json"):  # what lm-eval writes without --log_samples
        shutil.copy(path, tmp_path / path.name)
    with pytest.warns(BayesLadderWarning, match="accuracy only; rerun lm-eval with --log_samples"):
        ds = lm_eval.import_results([tmp_path], root / "runs.csv")
    assert np.isnan(ds["task_loss"].values).all() and (ds["accuracy"].values > 0).all()
    assert "without --log_samples" in ds.attrs["task_loss_source"]
    assert np.isnan(ds["chance"].values).all() and ds["n_questions"].values.tolist() == [12]


def test_a_results_file_without_a_row_and_a_row_without_results_are_one_line_errors(evaluated, tmp_path):
    root, _ = evaluated
    lines = (root / "runs.csv").read_text().splitlines()
    only_first = tmp_path / "first.csv"
    only_first.write_text("\n".join(lines[:2]) + "\n")
    result = invoke("import", "lm-eval", root / "results", "--runs", only_first, "-o", tmp_path / "x.nc")
    assert_clean_error(result, "first.csv", "results_", "revision=step-a-1xC", "which no row names")
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join([*lines, "ckpts/b/final,,b-1xC,5e4,1e6,b"]) + "\n")
    result = invoke("import", "lm-eval", root / "results", "--runs", extra, "-o", tmp_path / "x.nc")
    assert_clean_error(result, "extra.csv", "line 4 (pretrained=ckpts/b/final revision=-)", "matches no lm-eval")
    assert not (tmp_path / "x.nc").exists()


def test_bad_runs_csv_and_results_files(evaluated, tmp_path):
    root, _ = evaluated
    lines = (root / "runs.csv").read_text().splitlines()
    bad = tmp_path / "runs.csv"
    bad.write_text("\n".join([lines[0], lines[1].replace(",a-0.5xC,", ",,"), lines[1], "x,,y,-3,1e6,a"]) + "\n")
    with pytest.raises(BayesLadderError) as info:
        lm_eval.import_results([root / "results"], bad)
    message = str(info.value)
    assert "line 2, column 'run': must not be empty" in message
    assert "line 3, column 'pretrained': names a model and revision given before" in message
    assert "line 4, column 'n_params': must be a positive" in message
    not_results = tmp_path / "results_x.json"
    not_results.write_text('{"model": "x"}')
    with pytest.raises(BayesLadderError, match=r"results_x\.json: not an lm-eval results file"):
        lm_eval.import_results([not_results], root / "runs.csv")
    with pytest.raises(BayesLadderError, match="no such file or folder"):
        lm_eval.import_results([tmp_path / "missing"], root / "runs.csv")


def test_a_malformed_samples_line_names_file_and_line(evaluated, tmp_path):
    root, _ = evaluated
    folder = next(p.parent for p in (root / "results").rglob("results_*.json"))
    copy = tmp_path / "results"
    shutil.copytree(folder, copy)
    samples = next(copy.glob("samples_*.jsonl"))
    lines = samples.read_text().splitlines()
    lines[2] = json.dumps({"doc_id": 2, "target": "1"})
    samples.write_text("\n".join(lines) + "\n")
    with pytest.raises(BayesLadderError, match=rf"{samples.name}:3: not an lm-eval multiple-choice sample"):
        lm_eval.import_results([copy], root / "runs.csv")


@pytest.mark.parametrize(
    "target, continuations, lls, acc, expected",
    [
        ("2", [" a", " b", " c"], [-1, -2, -3], 0.0, 2),  # an index
        ("b", [" a", " b", " c"], [-1, -2, -3], 0.0, 1),  # a choice's text
        ("1", [" 0", " 1", " 2"], [-3, -1, -2], 1.0, 1),  # text 1 is index 1: both readings agree
        ("1", [" 1", " 2", " 3"], [-1, -2, -3], 1.0, 0),  # text '1' (index 0) or index 1: acc=1 picks argmax 0
        ("1", [" 1", " 2", " 3"], [-3, -2, -1], 1.0, None),  # neither reading is the logged prediction
        ("[0, 1]", [" a", " b"], [-1, -2], 1.0, None),  # several gold answers
    ],
)
def test_gold_answer_from_a_logged_sample(target, continuations, lls, acc, expected):
    sample = {"target": target, "acc": acc}
    assert lm_eval.gold_index(sample, continuations, lls, " ") == expected


def test_checkpoints_of_one_run_become_its_checkpoints_in_token_order(evaluated, tmp_path):
    root, checkpoints = evaluated
    n_params = (root / "runs.csv").read_text().splitlines()[1].split(",")[3]
    one_run = tmp_path / "runs.csv"
    one_run.write_text(
        "\n".join(
            [
                "pretrained,revision,run,n_params,tokens,step",
                f"{checkpoints['a-1xC']},step-a-1xC,a,{n_params},2e6,200",
                f"{checkpoints['a-0.5xC']},step-a-0.5xC,a,{n_params},1e6,",
            ]
        )
        + "\n"
    )
    ds = lm_eval.import_results([root / "results"], one_run, final_checkpoints=1)
    assert ds["run"].values.tolist() == ["a"] and ds["tokens"].values.tolist() == [[1e6, 2e6]]
    assert np.isnan(ds["step"].values[0, 0]) and ds["step"].values[0, 1] == 200
    assert ds.attrs["final_checkpoints"] == 1
    separate = lm_eval.import_results([root / "results"], root / "runs.csv")
    np.testing.assert_array_equal(
        ds["task_loss"].sel(run="a").values[:, 0], separate["task_loss"].sel(run=["a-0.5xC", "a-1xC"]).values[:, 0, 0]
    )
