"""Slow: the default fit on a real ladder where a user meets its hardest case (minutes each)."""

from __future__ import annotations

import pytest
from cli_helpers import invoke

from bayesladder.bayes.fit import LadderFit


@pytest.mark.slow
def test_the_whole_olmo_ladder_with_every_task_passes_with_boolq_left_out_of_the_nested_backtest(
    olmo_ladder_nc, tmp_path
):
    """190M-3B, 10 tasks: on the nested backtest's sizes (190M-760M) boolq sits at its floor, and the two-step nested
    fit with it failed its checks at seeds 0-2 (R-hat 1.03-1.06 on log_k[boolq], ~30 divergences), which made the
    whole fit fail. Fitted again without boolq it passes; the full fit, boolq included, passes too. (Since the
    low-rank step-2 sampler, commit a285cb1, winogrande, near chance there too, is left out beside it at seed 0:
    its own parameters' ESS fails with boolq's R-hat, 1.102.)"""
    out = tmp_path / "fit.nc"
    result = invoke("fit", "--data", olmo_ladder_nc, "--tasks", "all", "--seed", 0, "-o", out)
    assert result.exit_code == 0, (result.output, result.exception)
    fitted = LadderFit.load(out)
    left_out = fitted.calibration.left_out()
    assert left_out[0] == "boolq" and set(left_out) <= {"boolq", "winogrande"}  # the two tasks near chance there
    assert set(left_out) <= set(fitted.config.tasks) and fitted.diagnostics["ok"]
    assert f"without {', '.join(left_out)}, whose nested fits failed their checks" in result.stderr
    assert any(
        line.startswith(f"warning: nested backtest (size), two-step: fitted with {', '.join(left_out)} it failed")
        for line in result.stderr.splitlines()
    )
