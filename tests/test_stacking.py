"""The nested backtest's decisions (bayes.stacking), on held-out values whose truth is known: the discrepancy scale
kappa, the stacking weights and the splits. No MCMC: a design's predictive is given as per-draw components."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayesladder.bayes.fit import FitConfig
from bayesladder.bayes.predict import Components
from bayesladder.bayes.stacking import (
    Calibration,
    calibration_splits,
    discrepancy_scale,
    held_out_runs,
    nested_split,
    stacking_weights,
)
from bayesladder.ladder import LadderSelection

SIZES, TASKS, DRAWS = 3, 8, 400  # held-out sizes (one run each), tasks, posterior draws


def held_out(seed: int, true_kappa: float):
    """(parts, actual, distance): a design whose per-draw means scatter 0.3 logits around each truth (its parameter
    uncertainty, which the truth shares), measured with SD 0.01; the actual values shifted further by a discrepancy
    of SD true_kappa x distance, the same for every task of a size (as a size's deviation is)."""
    rng = np.random.default_rng(seed)
    distance = np.array([0.5, 1.0, 1.5])
    slope = np.full((DRAWS, TASKS), 0.2)  # accuracy per logit
    parts, actual = [], np.empty((SIZES, TASKS))
    for i in range(SIZES):
        truth = 0.6 + 0.2 * 0.3 * rng.standard_normal(TASKS)  # the truth: one draw of the design's own predictive
        centre = truth + 0.2 * 0.3 * rng.standard_normal(TASKS)
        mean = centre + 0.2 * 0.3 * rng.standard_normal((DRAWS, TASKS))
        shift = true_kappa * distance[i] * (0.5 * rng.standard_normal() + 0.87 * rng.standard_normal(TASKS))
        actual[i] = truth + 0.2 * shift + 0.01 * rng.standard_normal(TASKS)
        parts.append(Components(np.full((DRAWS, TASKS), np.nan), mean, slope, np.full((DRAWS, TASKS), 0.01)))
    return parts, actual, distance


def test_kappa_stays_0_where_the_designs_own_intervals_cover_what_it_misses():
    kappas = [discrepancy_scale(*held_out(seed, 0.0), units=SIZES)[0] for seed in range(20)]
    assert sum(k > 0 for k in kappas) <= 2, kappas  # the evidence rule: not an upward-biased boundary estimate


def test_kappa_follows_a_discrepancy_the_held_out_values_show():
    kappa, gain = discrepancy_scale(*held_out(0, 1.5), units=SIZES)
    assert gain > 1.0
    assert 0.7 < kappa < 2.0


def test_stacking_weights_favour_the_design_that_scores_better_without_dropping_the_other():
    rng = np.random.default_rng(3)
    better = rng.uniform(1.0, 3.0, 40)
    densities = np.column_stack([better, 0.5 * better])
    weights = stacking_weights(densities, 4)
    assert weights.sum() == pytest.approx(1.0)
    assert 0.5 < weights[0] < 0.95  # 4 independent units: the Dirichlet(2) prior keeps the other design in
    np.testing.assert_allclose(stacking_weights(np.column_stack([better, better]), 4), [0.5, 0.5], atol=1e-3)
    assert stacking_weights(densities, None)[0] > weights[0]  # 40 independent points say more than 4


def test_a_target_is_weighted_by_the_split_that_extrapolated_in_its_direction():
    """On OLMo's paper ladder the single-step design extrapolates better in N, the two-step design in tokens per
    parameter: a bigger target at the ladder's lengths takes the size split's weights, a longer-trained one at its
    sizes the length split's, one beyond in both lies between by its distance in each, one inside the ladder
    halfway."""
    size = stacking_weights(np.column_stack([np.full(32, 1.0), np.full(32, 2.0)]), 2)  # single-step better in N
    length = stacking_weights(np.column_stack([np.full(32, 2.0), np.full(32, 0.5)]), 2)  # two-step better in D
    designs = ("two-step", "single-step")
    calibration = Calibration(
        (), {"size": dict(zip(designs, size)), "length": dict(zip(designs, length))}, {}, {}, pd.DataFrame()
    )
    two_step = {efolds: calibration.weights_at(efolds)["two-step"] for efolds in [(1.7, 0), (0, 1.0), (1.0, 1.0),
                                                                               (0, 0)]}  # fmt: skip
    assert two_step[(1.7, 0)] == pytest.approx(size[0]) and size[0] < 0.5
    assert two_step[(0, 1.0)] == pytest.approx(length[0]) and length[0] > 0.5
    assert two_step[(1.0, 1.0)] == pytest.approx(0.5 * (size[0] + length[0])) == two_step[(0, 0)]
    assert sum(calibration.weights_at((1.7, 1.0)).values()) == pytest.approx(1.0)


def ladder(sizes: dict[str, float], multipliers=(1, 2, 5, 10)) -> xr.Dataset:
    """Runs of every size at every length (D = multiplier x 20 N), one checkpoint each."""
    runs = [(s, m) for s in sizes for m in multipliers]
    return xr.Dataset(
        {
            "size": ("run", [s for s, _ in runs]),
            "length": ("run", [f"{m}xC" for _, m in runs]),
            "n_params": ("run", [sizes[s] for s, _ in runs]),
            "tokens": (("run", "checkpoint"), [[m * 20 * sizes[s]] for s, m in runs]),
        },
        coords={"run": [f"{s}-{m}xC" for s, m in runs]},
    )


def test_the_nested_split_fits_the_sizes_below_the_geometric_middle_and_needs_two_of_them():
    ds = ladder({"190M": 190e6, "370M": 370e6, "760M": 760e6, "1B": 1.2e9})
    split = nested_split(ds, list(ds["run"].values))
    assert split.fitted == ("190M", "370M") and split.held_out == ("760M", "1B")
    two = ladder({"190M": 190e6, "370M": 370e6})
    assert nested_split(two, list(two["run"].values)) is None  # one size below the middle: no curve in N to fit


def test_the_length_split_fits_the_shorter_runs_and_predicts_the_longer_runs_of_the_same_sizes():
    ds = ladder({"190M": 190e6, "370M": 370e6, "760M": 760e6, "1B": 1.2e9})
    runs = list(ds["run"].values)
    split = nested_split(ds, runs, "length")
    assert (split.fitted, split.held_out) == (("1xC", "2xC"), ("5xC", "10xC"))  # 20-40 below the middle of 20-200
    assert held_out_runs(ds, runs, split) == [r for r in runs if r.endswith(("-5xC", "-10xC"))]
    assert [s.axis for s in calibration_splits(ds, runs)] == ["size", "length"]
    # a size trained only long is not predicted by the length split: the split extrapolates in D alone
    runs = [r for r in runs if not r.startswith("1B-") or r == "1B-10xC"]
    assert "1B-10xC" not in held_out_runs(ds, runs, nested_split(ds, runs, "length"))


def test_no_length_split_on_a_ladder_of_one_length_or_of_one_short_length(olmo_ladder_ds):
    one_length = ladder({"48M": 48e6, "60M": 60e6, "90M": 90e6, "120M": 120e6, "500M": 500e6}, multipliers=(1,))
    one_length["tokens"][:] = 350e9  # every size trained to the same D, as Gemstones is
    assert [s.axis for s in calibration_splits(one_length, list(one_length["run"].values))] == ["size"]
    ds = olmo_ladder_ds
    chosen = ds["size"].isin(["190M", "370M", "760M", "1B"]) & ds["length"].isin(["1xC", "5xC", "10xC"])
    runs = list(map(str, ds["run"].values[(chosen & (ds["replicate"] == 0)).values]))
    assert nested_split(ds, runs, "length") is None  # 1xC alone below the middle of 20-200: D not apart from N


def test_no_nested_split_whose_fit_has_no_more_runs_than_step_1_has_parameters(olmo_ladder_ds):
    """OLMo's paper sizes at 1xC and 2xC: the lower half (190M, 370M) has 4 runs for the 5 parameters of step 1's
    curve per task (E, A, B, alpha, beta), and its nested fits diverged; at 4 lengths it has 8."""
    ds = olmo_ladder_ds
    paper_sizes = ("190M", "370M", "760M", "1B")

    def runs(lengths):
        chosen = ds["size"].isin(paper_sizes) & ds["length"].isin(lengths) & (ds["replicate"] == 0)
        return list(map(str, ds["run"].values[chosen.values]))

    assert nested_split(ds, runs(("1xC", "2xC", "5xC", "10xC"))).fitted == ("190M", "370M")
    assert nested_split(ds, runs(("1xC", "2xC"))) is None
    one_length = ladder({"48M": 48e6, "60M": 60e6, "90M": 90e6, "120M": 120e6, "500M": 500e6}, multipliers=(1,))
    one_length["tokens"][:] = 350e9  # every size trained to the same D, as Gemstones is
    assert len(nested_split(one_length, list(one_length["run"].values)).fitted) == 4  # 4 runs > E, A and alpha


def test_fit_warns_before_sampling_a_ladder_with_no_more_runs_than_step_1_has_parameters(olmo_ladder_ds):
    """190M and 370M at 1xC and 2xC: 4 runs for step 1's 5 parameters per task (its fits diverged at seeds 0-2)."""
    small = FitConfig(tasks=("hellaswag",), selection=LadderSelection(sizes=("190M", "370M"), lengths=("1xC", "2xC")))
    assert "4 runs for the 5 parameters" in small.step1_warning(olmo_ladder_ds)
    assert replace(small, designs=("single-step",)).step1_warning(olmo_ladder_ds) is None  # no step 1 to fit
    paper = replace(small, selection=LadderSelection(sizes=("190M", "370M", "760M", "1B"), lengths=("1xC", "2xC")))
    assert paper.step1_warning(olmo_ladder_ds) is None  # 8 runs
