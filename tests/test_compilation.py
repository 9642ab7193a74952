"""Compiling ahead: a fit whose blocks the compile cache lacks compiles the later ones in a child process. The child
only fills the cache, so a fit's draws must not depend on it, and a child that fails must cost nothing but time."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bayesladder.bayes import compilation
from bayesladder.bayes.data import prepare
from bayesladder.bayes.fit import FitConfig, fit_design
from bayesladder.ladder import PRESETS

CONFIG = FitConfig(tasks=("piqa",), selection=PRESETS["paper"], chains=2, draws=50, tune=50)


@pytest.fixture
def children(monkeypatch):
    """The children started, recorded."""
    started = []

    class Recorded(compilation._Child):
        def __init__(self, *args):
            super().__init__(*args)
            started.append(self)

    monkeypatch.setattr(compilation, "_Child", Recorded)
    return started


def test_a_fit_samples_the_same_draws_when_its_compile_ahead_child_fails(olmo_ladder_ds, children, tmp_path,
                                                                         monkeypatch):  # fmt: skip
    expected = fit_design(olmo_ladder_ds, CONFIG, "two-step").posterior
    monkeypatch.setattr(compilation, "_marker", lambda block: tmp_path / block)  # a cache that lacks every block
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a child that exits at once, having compiled nothing
    got = fit_design(olmo_ladder_ds, CONFIG, "two-step").posterior
    assert [child.pending for child in children] == [set()]  # started for the accuracy block; not waited on forever
    assert children[0].process.returncode is not None
    for name in ("E", "k", "A"):
        np.testing.assert_array_equal(got[name].values, expected[name].values)
    assert {path.name for path in tmp_path.iterdir()} == {"loss", "accuracy"}  # compiled here, so marked


def test_no_child_is_started_for_blocks_the_cache_has(olmo_ladder_ds, children, tmp_path, monkeypatch):
    monkeypatch.setattr(compilation, "_marker", lambda block: tmp_path / block)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    data = prepare(olmo_ladder_ds, CONFIG.check(olmo_ladder_ds), list(CONFIG.tasks), need_loss=True)
    (tmp_path / "accuracy").touch()
    with compilation.compiling_ahead([(data, "accuracy")], CONFIG.priors):
        compilation.wait_for("accuracy")
    assert children == []
    with compilation.compiling_ahead([(data, "accuracy"), (data, "direct")], CONFIG.priors):
        with compilation.compiling_ahead([(data, "direct")], CONFIG.priors):  # a fit's design: the fit's child does
            compilation.wait_for("direct")
    assert [child.pending for child in children] == [set()]  # the direct block alone, then waited on
