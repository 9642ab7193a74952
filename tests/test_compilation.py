"""Compiling ahead: a fit whose models the compile cache lacks compiles the later ones in a child process. The child
only fills the cache, so a fit's draws must not depend on it, and a child that fails must cost nothing but time."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bayesladder.bayes import compilation
from bayesladder.bayes.fit import FitConfig, LadderFit, design_jobs, fit_design, fit_jobs
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
    children.clear()  # a child compiled it ahead, or the cache had it already
    monkeypatch.setattr(compilation, "_marker", lambda job, priors: tmp_path / job.block)  # a cache that lacks all
    monkeypatch.setattr(sys, "executable", "/bin/false")  # a child that exits at once, having compiled nothing
    got = fit_design(olmo_ladder_ds, CONFIG, "two-step").posterior
    assert [child.pending for child in children] == [set()]  # started for the accuracy block; not waited on forever
    assert children[0].process.returncode is not None
    for name in ("E", "k", "A"):
        np.testing.assert_array_equal(got[name].values, expected[name].values)
    assert {path.name for path in tmp_path.iterdir()} == {"loss", "accuracy"}  # compiled here, so marked


def test_no_child_is_started_for_models_the_cache_has(olmo_ladder_ds, children, tmp_path, monkeypatch):
    monkeypatch.setattr(compilation, "_marker", lambda job, priors: tmp_path / job.block)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    two_step = design_jobs(olmo_ladder_ds, CONFIG, "two-step")
    single_step = design_jobs(olmo_ladder_ds, CONFIG, "single-step")
    (tmp_path / "accuracy").touch()
    with compilation.compiling_ahead(olmo_ladder_ds, two_step, CONFIG.priors):
        compilation.wait_for(two_step[1])
    assert children == []
    with compilation.compiling_ahead(olmo_ladder_ds, [*two_step, *single_step], CONFIG.priors):
        with compilation.compiling_ahead(olmo_ladder_ds, single_step, CONFIG.priors):  # a design: the fit's child does
            compilation.wait_for(single_step[0])
    assert [child.pending for child in children] == [set()]  # the single-step model alone, then waited on


def test_the_cache_is_asked_for_each_model_of_its_own_runs_and_dataset(olmo_ladder_ds):
    """A model of other runs (a nested split's) or of another dataset is not taken for one the cache has: a dataset
    fitted for the first time compiles every model ahead, though models of its blocks were compiled before."""
    jobs = fit_jobs(olmo_ladder_ds, CONFIG, CONFIG.check(olmo_ladder_ds))
    other = fit_jobs(olmo_ladder_ds.isel(checkpoint=slice(-1)), CONFIG, CONFIG.check(olmo_ladder_ds))
    markers = [compilation._marker(job, CONFIG.priors) for job in [*jobs, *other]]
    assert len(set(markers)) == len(markers) == 18
    assert compilation.uncompiled([*jobs, *jobs], CONFIG.priors) == compilation.uncompiled(jobs, CONFIG.priors)


def test_a_fit_compiles_ahead_the_models_it_samples(tiny_fit, olmo_ladder_ds):
    """What a fit compiles ahead is what it then samples, in order: each nested split's models and the full ladder's
    (a refit without failing tasks aside, which is decided as it happens)."""
    path, _, compiled = tiny_fit
    config = LadderFit.load(path).config
    ahead = fit_jobs(olmo_ladder_ds, config, config.check(olmo_ladder_ds))
    assert [job for job in compiled if job.tasks == config.tasks] == ahead
    assert len({job.runs for job in ahead}) == 3  # the size split's, the length split's, the full ladder's
