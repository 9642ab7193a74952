"""What the model sees: step-2 blocks, reruns as extra step-1 points, inferred question counts, a checkpoint that
warmup-stable-decay branches share counted once."""

import numpy as np

from bayesladder import datasets, schema, testing
from bayesladder.bayes.data import BLOCK, infer_n_questions, prepare
from bayesladder.ladder import LadderSelection, select_runs


def test_question_count_is_inferred_from_the_accuracies_when_unknown():
    rng = np.random.default_rng(3)
    ds = testing.simulate_ladder(testing.draw_truths(rng, n_tasks=1), rng)
    ds["accuracy"] = np.round(ds["accuracy"] * 200) / 200  # proportions of 200 questions
    ds["n_questions"][:] = np.nan
    assert infer_n_questions(ds, ["task0"]).tolist() == [200.0]
    data = prepare(ds, select_runs(ds, LadderSelection()), ["task0"])
    assert data.n_questions.tolist() == [200.0]


def test_step2_points_are_non_overlapping_blocks_and_final_count_follows_the_dataset(olmo_ladder_ds):
    runs = select_runs(olmo_ladder_ds, LadderSelection(sizes=("190M",), lengths=("2xC",)))
    data = prepare(olmo_ladder_ds, runs, ["hellaswag"])
    kept = 73 - 8  # 190M-2xC has 73 checkpoints; the first ceil(10%) are dropped
    assert set(data.s2_count) == {BLOCK}
    assert len(data.s2_acc) == kept // BLOCK
    last_block = olmo_ladder_ds["accuracy"].sel(run="190M-2xC", task="hellaswag").values[73 - BLOCK : 73]
    assert np.isclose(data.s2_acc[-1], last_block.mean())
    assert data.final_count == 5


def test_reruns_of_a_selected_cell_enter_step_1_as_extra_points(olmo_ladder_ds):
    runs = select_runs(olmo_ladder_ds, LadderSelection(sizes=("190M",), lengths=("1xC",)))
    assert runs == ["190M-1xC"]
    data = prepare(olmo_ladder_ds, runs, ["mmlu"])
    assert len(data.s1_loss) == 2  # 190M-1xC and 190M-1xC-rerun
    assert data.s1_x[0] == data.s1_x[1]


def test_a_stable_phase_checkpoint_that_decay_branches_share_counts_once():
    # the shipped micro ladder: per size one run to 10xC, and 1, 2, 5xC decaying from its stable phase; each
    # branch holds the stable checkpoints before its decay, the very evaluations the 10xC run holds
    ds = schema.read(datasets.micro_ladder())
    runs = ["54k-1xC", "54k-2xC", "54k-5xC", "54k-10xC"]
    data = prepare(ds, runs, ["cloze"])
    ends = [float(ds["accuracy"].sel(run=r, task="cloze").dropna("checkpoint")[-1]) for r in runs[:3]]
    long_run = ds["accuracy"].sel(run="54k-10xC", task="cloze").values[1:]  # its first ceil(10%) dropped
    # each branch adds only its own decayed end; the stable checkpoints come once, from the 10xC run
    assert sorted(data.s2_acc) == sorted([*ends, *long_run])
    # selected alone, a branch keeps its stable checkpoints: nothing else holds them
    alone = prepare(ds, ["54k-5xC"], ["cloze"])
    assert len(alone.s2_acc) == 4
