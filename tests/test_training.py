"""Training: specs, the loop (loss goes down, resume equals uninterrupted), WSD plans, the CLI and its errors."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bayesladder import schema
from bayesladder.cli import app
from bayesladder.errors import BayesLadderError
from bayesladder.training import checkpoint, data, loop, runner, schedule, spec
from bayesladder.training.model import build, count_n

ROOT = Path(__file__).resolve().parents[1]
LADDER_JSON = ROOT.parent / "shared" / "data" / "olmo-ladder" / "ladder.json"

TEXT = " ".join(
    f"And the {w} said unto the {v}, Go thou and {x} the {w} of the {v} in the day of {y}."
    for w, v, x, y in zip(
        ["king", "man", "lord", "people", "servant", "prophet"] * 60,
        ["city", "house", "land", "field", "river", "temple", "mountain"] * 52,
        ["keep", "build", "bless", "seek", "take"] * 73,
        ["harvest", "battle", "morning", "evening"] * 91,
    )
)


def tiny_spec_toml(corpus: Path, **extra) -> str:
    return f"""
name = "tiny"
seq_len = 32
[ladder]
sizes = ["a", "b"]
multipliers = [0.5, 1]
[train]
schedule = "{extra.get("schedule", "wsd")}"
dtype = "fp32"
min_warmup_steps = 2
[corpus]
source = "files"
paths = ["{corpus}"]
block_bytes = 1024
heldout_every = 5
[eval]
every_xc = 0.5
[[eval.tasks]]
name = "cont"
kind = "continuation"
boundary = "any"
n_questions = 6
context_bytes = 16
continuation_bytes = 8
[[eval.tasks]]
name = "cloze"
kind = "cloze"
n_questions = 6
context_bytes = 16
[sizes.a]
d_model = {extra.get("width", 8)}
n_layers = 1
n_heads = 2
mlp_hidden = 16
batch_tokens = 256
[sizes.b]
d_model = 16
n_layers = 1
n_heads = 2
mlp_hidden = 16
batch_tokens = 256
[[targets]]
size = "b"
multiplier = 0.75
"""


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def tiny_spec(tmp_path, corpus_file) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(tiny_spec_toml(corpus_file))
    return path


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- specs


def test_micro_spec_is_a_ladder_of_4_sizes_by_4_multipliers_with_a_larger_target():
    s = spec.load(ROOT / "models" / "micro.toml")
    assert len(s.ladder_sizes) >= 4 and set(s.multipliers) == {1, 2, 5, 10}
    target = s.targets[0]
    biggest = max(spec.n_params(s.sizes[z], s) for z in s.ladder_sizes)
    assert spec.n_params(s.sizes[target.size], s) > biggest
    assert len(s.eval.tasks) >= 2


def test_olmo_paper_spec_matches_ladder_json():
    s = spec.load(ROOT / "models" / "olmo-paper.toml")
    if not LADDER_JSON.is_file():
        pytest.skip("shared ladder.json not present")
    ref = json.loads(LADDER_JSON.read_text())["models"]
    assert set(s.sizes) == {"190M", "370M", "760M", "1B", "3B"}
    for name, size in s.sizes.items():
        assert spec.n_params(size, s) == ref[name]["N"]
        assert size.batch_tokens == ref[name]["batch_size_in_tokens"]
        assert math.isclose(spec.peak_lr(size, s), ref[name]["learning_rate_peak"], rel_tol=1e-12)
        arch = ref[name]["architecture"]
        assert (size.d_model, size.n_layers, size.n_heads, 2 * size.mlp_hidden) == (
            arch["d_model"],
            arch["n_layers"],
            arch["n_heads"],
            arch["mlp_hidden_size"],
        )


def test_olmo_paper_190m_builds_and_takes_one_optimizer_step_on_cpu():
    s = spec.load(ROOT / "models" / "olmo-paper.toml")
    size = s.sizes["190M"]
    torch.manual_seed(0)
    model = build(size, s)
    assert type(model).__name__ == "Olmo2ForCausalLM"
    assert count_n(model) == spec.n_params(size, s) == 190354176
    opt = loop.make_optimizer(model, s, spec.peak_lr(size, s))
    x = torch.randint(0, s.vocab_size, (1, 17))
    before = model.model.layers[0].mlp.down_proj.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(input_ids=x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    assert math.isfinite(loss.item())
    assert not torch.equal(before, model.model.layers[0].mlp.down_proj.weight)


def test_unknown_key_lists_the_valid_ones(tiny_spec):
    raw = tomllib.loads(tiny_spec.read_text())
    raw["train"]["learning_rate"] = 1
    with pytest.raises(
        BayesLadderError, match=r"unknown key\(s\) learning_rate in \[train\]; valid keys: beta1, beta2"
    ):
        spec.parse(raw)


def test_negative_width_is_an_error(tmp_path, corpus_file):
    path = tmp_path / "bad.toml"
    path.write_text(tiny_spec_toml(corpus_file, width=-8))
    with pytest.raises(BayesLadderError, match=r"d_model must be a positive integer, got -8"):
        spec.load(path)


def test_wsd_plan_saves_tokens_and_branches_share_the_stable_phase(tiny_spec):
    s = spec.load(tiny_spec)
    runs = {r.name: r for r in spec.plan(s)}
    main, branch = runs["a-1xC"], runs["a-0.5xC"]
    assert branch.parent == "a-1xC" and branch.start_step in main.branch_points
    for step in range(branch.start_step):
        assert loop.lr_at(branch, s, step) == loop.lr_at(main, s, step)
    assert loop.lr_at(branch, s, branch.steps - 1) == pytest.approx(0.1 * spec.peak_lr(s.sizes["a"], s))
    used, separate = spec.tokens_saved(s)
    assert used < separate
    assert runs["b-0.75xC"].role == "target" and runs["b-0.75xC"].schedule == "cosine"


def test_schedules_warm_up_and_end_at_ten_percent():
    assert schedule.cosine(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert schedule.cosine(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert schedule.cosine(100, 100, 10, 1.0) == pytest.approx(0.1)
    assert schedule.wsd(50, 100, 10, 1.0, decay_start=80) == 1.0
    assert schedule.wsd(99, 100, 10, 1.0, decay_start=80) == pytest.approx(0.1)


# ---------------------------------------------------------------- the loop


def test_loss_decreases_on_a_few_steps(tiny_spec):
    s = spec.load(tiny_spec)
    torch.manual_seed(0)
    model = build(s.sizes["b"], s)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    corpus = data.Corpus.from_text(TEXT, s.corpus)
    losses = []
    for step in range(40):
        x, y = data.batch(corpus.train, step, 0, 8, s.seq_len)
        loss = torch.nn.functional.cross_entropy(model(input_ids=x).logits.flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


def _final_weights(out: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "runs" / name / "final" / "model.safetensors"))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_spec):
    s = spec.load(tiny_spec)
    runs, corpus, _ = runner.prepare(s, "a-1xC")
    (main,) = [r for r in runs if r.name == "a-1xC"]
    assert main.steps >= 8
    interrupted = loop.Env(s, tmp_path / "interrupted", corpus, progress=False)
    stop = loop.eval_steps(main, s)[0]
    loop.train_run(main, interrupted, stop_after=stop)
    assert (tmp_path / "interrupted" / "runs" / "a-1xC" / "last" / "state.pt").is_file()
    assert not (tmp_path / "interrupted" / "runs" / "a-1xC" / "final").exists()
    loop.train_run(main, interrupted)  # resumes from the last checkpoint
    loop.train_run(main, loop.Env(s, tmp_path / "straight", corpus, progress=False))
    a, b = _final_weights(tmp_path / "interrupted", "a-1xC"), _final_weights(tmp_path / "straight", "a-1xC")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ev_a = checkpoint.read_json(tmp_path / "interrupted" / "runs" / "a-1xC" / "evals.json")
    ev_b = checkpoint.read_json(tmp_path / "straight" / "runs" / "a-1xC" / "evals.json")
    assert [e["step"] for e in ev_a] == [e["step"] for e in ev_b]


# ---------------------------------------------------------------- the CLI end to end


def test_train_all_writes_a_valid_dataset_and_loadable_checkpoints(tmp_path, tiny_spec):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["train", "--ladder", str(tiny_spec), "--all", "--out", str(out), "--no-progress", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    ds = schema.read(out / "ladder.nc")
    assert sorted(map(str, ds["run"].values)) == ["a-0.5xC", "a-1xC", "b-0.5xC", "b-0.75xC", "b-1xC"]
    assert list(ds["task"].values) == ["cont", "cloze"]
    assert str(ds["role"].sel(run="b-0.75xC").values) == "target"
    assert (ds["chance"].values == 0.25).all() and (ds["n_questions"].values == 6).all()
    assert "accuracy_raw" in ds
    assert ds.attrs["tokens_used"] < ds.attrs["tokens_separate_cosine"]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out / "runs" / "a-1xC" / "final")
    assert model.config.vocab_size == 256


def _one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_unknown_size_in_rung_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--ladder", str(tiny_spec), "--rung", "zz-1xC", "--out", str(out)])
    assert "unknown size 'zz'" in _one_line_error(result)
    assert not out.exists()


def test_missing_corpus_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["train", "--ladder", str(tiny_spec), "--all", "--out", str(out), "--corpus", str(tmp_path / "missing.txt")],
    )
    assert "does not exist" in _one_line_error(result)
    assert not out.exists()


def test_negative_width_spec_is_one_line_and_leaves_no_output(tmp_path, corpus_file):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_spec_toml(corpus_file, width=-8))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--ladder", str(bad), "--all", "--out", str(out)])
    assert "d_model must be a positive integer" in _one_line_error(result)
    assert not out.exists()


def test_malformed_task_line_in_a_spec_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    bad_task = tmp_path / "bad.jsonl"
    bad_task.write_text('{"query": "a", "choices": ["b", "c"], "gold": 0}\n{"query": "a", "choices": ["b"]\n')
    text = tiny_spec.read_text() + f'\n[[eval.tasks]]\nname = "mine"\nkind = "jsonl"\npath = "{bad_task}"\n'
    tiny_spec.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--ladder", str(tiny_spec), "--all", "--out", str(out)])
    assert "bad.jsonl:2: malformed task line" in _one_line_error(result)
    assert not out.exists()


@pytest.mark.slow
def test_ddp_under_torchrun_matches_a_single_process(tmp_path, tiny_spec):
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("bayesladder") or f"{sys.executable} -m bayesladder.cli"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--ladder", str(tiny_spec), "--rung", "a-1xC", "--no-progress", "--threads", "1"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            exe,
            *args,
            "--out",
            str(tmp_path / "ddp"),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "one")]).exit_code == 0
    a, b = _final_weights(tmp_path / "ddp", "a-1xC"), _final_weights(tmp_path / "one", "a-1xC")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-3), key
