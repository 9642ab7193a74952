"""Training: specs, the loop (loss goes down, resume equals uninterrupted, resumes only what it started), WSD
plans, the CLI and its errors."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_clean_error, invoke

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from bayesladder import schema
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


@pytest.mark.slow
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


@pytest.mark.parametrize("architecture", ["llama", "olmo2"])
def test_the_built_model_has_the_n_params_the_spec_counts(tiny_spec, architecture):
    raw = tomllib.loads(tiny_spec.read_text())
    raw["architecture"] = architecture
    raw["sizes"]["b"]["n_kv_heads"] = 1  # grouped-query attention: k and v (and OLMo-2's k-norm) are narrower
    s = spec.parse(raw)
    for size in s.sizes.values():
        model = build(size, s)
        assert type(model).__name__ == {"llama": "LlamaForCausalLM", "olmo2": "Olmo2ForCausalLM"}[architecture]
        assert count_n(model) == spec.n_params(size, s)


def test_unknown_key_lists_the_valid_ones(tiny_spec):
    raw = tomllib.loads(tiny_spec.read_text())
    raw["train"]["learning_rate"] = 1
    with pytest.raises(
        BayesLadderError, match=r"unknown key\(s\) learning_rate in \[train\] \(valid keys: beta1, beta2"
    ):
        spec.parse(raw)


def test_a_spec_with_several_problems_reports_them_all_in_one_error(tiny_spec):
    raw = tomllib.loads(tiny_spec.read_text())
    raw["train"]["learning_rate"] = 1
    raw["train"]["seed"] = "zero"
    raw["sizes"]["a"]["d_model"] = -8
    del raw["sizes"]["b"]["n_heads"]
    raw["ladder"]["sizes"].append("c")
    raw["ladder"]["multipliers"].append(0)
    raw["eval"]["tasks"][0]["kind"] = "essay"
    raw["corpus"]["source"] = "web"
    raw["targets"][0]["schedule"] = "wsd"
    with pytest.raises(BayesLadderError) as info:
        spec.parse(raw)
    message = str(info.value)
    for fragment in (
        "unknown key(s) learning_rate in [train]",
        "[train] seed must be of type int, got 'zero'",
        "[sizes.a] d_model must be a positive integer, got -8",
        "[sizes.b] is missing n_heads",
        "[ladder] sizes ['c'] are not defined under [sizes] (defined: a, b)",
        "[ladder] multipliers must be positive numbers, got [0.5, 1, 0]",
        "task 'cont': kind 'essay' is not one of cloze, continuation, jsonl, olmo",
        "[corpus] source 'web' is not one of files, kjv",
        "targets are trained with schedule = 'cosine'",
    ):
        assert fragment in message, (fragment, message)
    assert message.count("; ") == 8 and "\n" not in message


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
    # the branch decays from the stable LR (the peak) to 10% of it at its own end, as the main run does at its end
    stable = loop.lr_at(main, s, branch.start_step - 1)
    assert stable == loop.lr_at(main, s, main.decay_start - 1)
    assert loop.lr_at(branch, s, branch.steps - 1) == pytest.approx(0.1 * stable)
    assert loop.lr_at(main, s, main.steps - 1) == pytest.approx(0.1 * stable)
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
    opt = loop.make_optimizer(model, s, lr=1e-2)
    corpus = data.Corpus.from_text(TEXT, s.corpus)
    losses = []
    for step in range(40):
        x, y = data.batch(corpus.train, step, 0, 8, s.seq_len)
        losses.append(loop.train_step(model, model, opt, x, y, 4, False, "cpu", s.recipe.grad_clip))
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0


def test_micro_batches_take_the_same_step_as_the_whole_batch(tiny_spec):
    s = spec.load(tiny_spec)
    corpus = data.Corpus.from_text(TEXT, s.corpus)
    x, y = data.batch(corpus.train, 0, 0, 8, s.seq_len)
    weights, losses = [], []
    for micro in (8, 2):
        torch.manual_seed(0)
        model = build(s.sizes["b"], s)
        opt = loop.make_optimizer(model, s, lr=1e-2)
        losses.append(loop.train_step(model, model, opt, x, y, micro, False, "cpu", s.recipe.grad_clip))
        weights.append([p.detach().clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for whole, accumulated in zip(*weights):
        torch.testing.assert_close(whole, accumulated, rtol=1e-4, atol=1e-6)


def _final_weights(out: Path, name: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "runs" / name / "final" / "model.safetensors"))


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory) -> Path:
    """An output folder where runs a-1xC and b-0.75xC of the tiny spec stopped at their first evaluation, as if
    interrupted. Copy it before use (``_stopped``)."""
    folder = tmp_path_factory.mktemp("stopped")
    (folder / "corpus.txt").write_text(TEXT)
    s = spec.parse(tomllib.loads(tiny_spec_toml(folder / "corpus.txt")))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for name in ("a-1xC", "b-0.75xC"):
        runs, corpus, _ = runner.prepare(s, name)
        run = runs[-1]
        loop.train_run(run, loop.Env(s, folder / "out", corpus, progress=False), stop_after=loop.eval_steps(run, s)[0])
        assert (folder / "out" / "runs" / name / "last" / "state.pt").is_file()
        assert not (folder / "out" / "runs" / name / "final").exists()
    torch.set_num_threads(before)
    return folder / "out"


def _stopped(stopped_runs: Path, tiny_spec: Path, out: Path, name: str):
    """A copy of ``stopped_runs`` in ``out``; the stopped run ``name`` and its Env under ``tiny_spec``."""
    shutil.copytree(stopped_runs, out)
    s = spec.load(tiny_spec)
    runs, corpus, _ = runner.prepare(s, name)
    return runs[-1], loop.Env(s, out, corpus, progress=False)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, tiny_spec, stopped_runs):
    main, interrupted = _stopped(stopped_runs, tiny_spec, tmp_path / "interrupted", "a-1xC")
    assert main.name == "a-1xC" and main.steps >= 8
    loop.train_run(main, interrupted)  # resumes from the last checkpoint
    s, corpus = interrupted.spec, interrupted.corpus
    loop.train_run(main, loop.Env(s, tmp_path / "straight", corpus, progress=False))
    a, b = _final_weights(tmp_path / "interrupted", "a-1xC"), _final_weights(tmp_path / "straight", "a-1xC")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ev_a = checkpoint.read_json(tmp_path / "interrupted" / "runs" / "a-1xC" / "evals.json")
    ev_b = checkpoint.read_json(tmp_path / "straight" / "runs" / "a-1xC" / "evals.json")
    assert [e["step"] for e in ev_a] == [e["step"] for e in ev_b]


def test_resuming_under_a_changed_spec_names_the_changed_keys_and_keeps_the_checkpoint(
    tmp_path, tiny_spec, stopped_runs
):
    run, env = _stopped(stopped_runs, tiny_spec, tmp_path / "out", "a-1xC")
    last = tmp_path / "out" / "runs" / "a-1xC" / "last"
    before = {p.name: p.read_bytes() for p in last.iterdir()}
    changed = spec.load(tiny_spec)
    changed = dataclasses.replace(changed, recipe=dataclasses.replace(changed.recipe, seed=1, lr_base=1e-3))
    with pytest.raises(BayesLadderError) as info:
        loop.train_run(run, dataclasses.replace(env, spec=changed))
    message = str(info.value)
    assert f"checkpoint {last} was written under a different spec" in message
    assert "recipe.seed: 0 -> 1" in message and "recipe.lr_base: 0.001175 -> 0.001" in message
    assert message.count(" -> ") == 2
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before
    # the same through the command: one line, exit 1, before anything is written
    tiny_spec.write_text(tiny_spec.read_text().replace("[train]\n", "[train]\nseed = 1\n"))
    result = invoke("train", "--spec", tiny_spec, "--rung", "a-1xC", "--out", tmp_path / "out", "--no-progress")
    assert_clean_error(result, "recipe.seed: 0 -> 1", "different spec")
    assert {p.name: p.read_bytes() for p in last.iterdir()} == before


@pytest.mark.parametrize(
    "damaged, keep", [("model.safetensors", 100), ("state.pt", 100), ("state.pt", 0), ("training.json", 10)]
)
def test_a_damaged_checkpoint_is_a_one_line_error(tmp_path, tiny_spec, stopped_runs, damaged, keep):
    _stopped(stopped_runs, tiny_spec, tmp_path / "out", "b-0.75xC")
    last = tmp_path / "out" / "runs" / "b-0.75xC" / "last"
    (last / damaged).write_bytes((last / damaged).read_bytes()[:keep])
    result = invoke("train", "--spec", tiny_spec, "--rung", "b-0.75xC", "--out", tmp_path / "out", "--no-progress")
    assert_clean_error(result, f"checkpoint {last}", "delete")


# ---------------------------------------------------------------- the CLI end to end


def test_train_all_writes_a_valid_dataset_and_loadable_checkpoints(tmp_path, tiny_spec):
    out = tmp_path / "out"
    result = invoke("train", "--spec", tiny_spec, "--all", "--out", out, "--no-progress", "--threads", "1")
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
    # finished runs are not trained again, and only under the spec they were trained with
    dataset = (out / "ladder.nc").read_bytes()
    tiny_spec.write_text(tiny_spec.read_text().replace('dtype = "fp32"', 'dtype = "bf16"'))
    result = invoke("train", "--spec", tiny_spec, "--all", "--out", out, "--no-progress")
    assert_clean_error(result, "final was written under a different spec", "recipe.dtype: 'fp32' -> 'bf16'")
    assert (out / "ladder.nc").read_bytes() == dataset


def test_unknown_size_in_rung_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    out = tmp_path / "out"
    assert_clean_error(invoke("train", "--spec", tiny_spec, "--rung", "zz-1xC", "--out", out), "unknown size 'zz'")
    assert not out.exists()


def test_an_output_folder_below_a_file_is_one_line(tmp_path, tiny_spec):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    result = invoke("train", "--spec", tiny_spec, "--all", "--out", a_file / "out")
    assert_clean_error(result, str(a_file / "out"), f"{a_file} is a file, not a folder")


def test_missing_corpus_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    out = tmp_path / "out"
    result = invoke("train", "--spec", tiny_spec, "--all", "--out", out, "--corpus", tmp_path / "missing.txt")
    assert_clean_error(result, "missing.txt does not exist")
    assert not out.exists()


def test_a_folder_given_as_the_spec_is_named_as_a_folder(tmp_path):
    assert_clean_error(
        invoke("train", "--spec", tmp_path, "--all", "--out", tmp_path / "out"), "is a folder", "models/micro.toml"
    )
    assert not (tmp_path / "out").exists()


def test_bad_spec_is_one_line_naming_every_problem_and_leaves_no_output(tmp_path, corpus_file):
    bad = tmp_path / "bad.toml"
    bad.write_text(tiny_spec_toml(corpus_file, width=-8).replace('schedule = "wsd"', 'schedule = "linear"'))
    out = tmp_path / "out"
    result = invoke("train", "--spec", bad, "--all", "--out", out)
    assert_clean_error(result, str(bad), "d_model must be a positive integer", "schedule 'linear'")
    assert not out.exists()


def test_malformed_task_line_in_a_spec_is_one_line_and_leaves_no_output(tmp_path, tiny_spec):
    bad_task = tmp_path / "bad.jsonl"
    bad_task.write_text('{"query": "a", "choices": ["b", "c"], "gold": 0}\n{"query": "a", "choices": ["b"]\n')
    text = tiny_spec.read_text() + f'\n[[eval.tasks]]\nname = "mine"\nkind = "jsonl"\npath = "{bad_task}"\n'
    tiny_spec.write_text(text)
    out = tmp_path / "out"
    assert_clean_error(invoke("train", "--spec", tiny_spec, "--all", "--out", out), "bad.jsonl:2: malformed task line")
    assert not out.exists()


@pytest.mark.slow
def test_ddp_under_torchrun_matches_a_single_process(tmp_path, tiny_spec):
    import os
    import shutil
    import subprocess
    import sys

    exe = shutil.which("bayesladder") or f"{sys.executable} -m bayesladder.cli"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["train", "--spec", str(tiny_spec), "--rung", "a-1xC", "--no-progress", "--threads", "1"]
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
    assert invoke(*args, "--out", tmp_path / "one").exit_code == 0
    a, b = _final_weights(tmp_path / "ddp", "a-1xC"), _final_weights(tmp_path / "one", "a-1xC")
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-3), key
