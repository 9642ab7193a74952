"""Adding evaluations to a ladder dataset: new runs, new checkpoints of known runs, new tasks, replacements."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_long_csv

from bayesladder import schema
from bayesladder.combine import add_evaluations
from bayesladder.errors import BayesLadderError
from bayesladder.importers import long_csv


def rows(run, n_params, tokens, tasks, loss=1.0, size="s"):
    return [
        dict(
            run=run,
            n_params=str(n_params),
            tokens=str(t),
            task=task,
            task_loss=str(loss + i),
            accuracy="0.5",
            size=size,
            length="1xC",
            replicate="0",
            role="ladder",
            step="1",
        )
        for t in tokens
        for i, task in enumerate(tasks)
    ]


@pytest.fixture
def dataset(tmp_path):
    """``dataset(rows, more_rows, ..., name=...)``: those long-CSV rows imported."""

    def make(*row_lists, name="a.csv"):
        return long_csv.import_file(write_long_csv(tmp_path / name, [r for rs in row_lists for r in rs]))

    return make


def test_a_new_checkpoint_lands_in_token_order_and_a_new_run_is_appended(dataset):
    old = dataset(rows("s", 1e8, [1e9, 3e9], ["alpha", "beta"]), rows("m", 3e8, [1e9], ["alpha"]))
    new = dataset(rows("s", 1e8, [2e9], ["alpha", "gamma"], loss=5.0), rows("l", 1e9, [4e9], ["beta"]), name="b.csv")
    out = add_evaluations(old, new)
    assert schema.validate(out) == []
    assert out["run"].values.tolist() == ["s", "m", "l"]
    assert out["task"].values.tolist() == ["alpha", "beta", "gamma"]
    np.testing.assert_array_equal(out["tokens"].sel(run="s").values, [1e9, 2e9, 3e9])
    np.testing.assert_array_equal(out["task_loss"].sel(run="s", task="alpha").values, [1.0, 5.0, 1.0])
    assert np.isnan(out["task_loss"].sel(run="s", task="beta").values[1])  # not evaluated at the new checkpoint
    np.testing.assert_array_equal(out["task_loss"].sel(run="s", task="gamma").values[1], 6.0)
    assert float(out["n_params"].sel(run="l")) == 1e9 and np.isnan(out["tokens"].sel(run="m").values[1:]).all()
    assert out.attrs["producer"] == old.attrs["producer"]


def test_a_checkpoint_at_the_same_tokens_is_replaced(dataset):
    old = dataset(rows("s", 1e8, [1e9, 2e9], ["alpha"]))
    new = dataset(rows("s", 1e8, [2e9], ["alpha"], loss=9.0), name="b.csv")
    out = add_evaluations(old, new)
    np.testing.assert_array_equal(out["task_loss"].sel(run="s", task="alpha").values, [1.0, 9.0])


def test_a_run_with_another_n_is_refused(dataset):
    old = dataset(rows("s", 1e8, [1e9], ["alpha"]))
    new = dataset(rows("s", 2e8, [2e9], ["alpha"]), name="b.csv")
    with pytest.raises(BayesLadderError, match=r"run\(s\) s already in the dataset with another N"):
        add_evaluations(old, new)


def test_task_loss_in_other_units_is_refused(dataset, make_long_csv):
    old = dataset(rows("s", 1e8, [1e9], ["alpha"]))
    new = long_csv.import_file(make_long_csv(name="b.csv"), units="nats")
    with pytest.raises(BayesLadderError, match="task_loss is in bits/byte, the new evaluation's in nats"):
        add_evaluations(old, new)
