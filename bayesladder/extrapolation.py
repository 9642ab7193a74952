"""How far a target lies beyond the ladder a fit saw: the factor in N and in D past its largest rung.

The model learns its extrapolation error from how the ladder's own sizes deviate from the fitted curves;
that says something about a step of a few sizes, little about a jump of orders of magnitude. The paper's
own targets lie up to 10x beyond its largest rung in N (13B against 1.3B) and 20x in D (5T tokens against
the 1B-10xC run's 256B), where its method was checked against real models. A target more than
``FAR_FACTOR`` times beyond the largest rung in N or in D is flagged as far outside the ladder.

A ladder can also hold D fixed: every Gemstones run ends at 350B tokens. Its scaling law then says nothing about
how task loss changes with D (the model's step 1 has no D term there; the paper's fits one to a constant), so a
target at another D is flagged too, however near it lies. (A ladder of one size is refused: ``ladder.check_sizes``.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAR_FACTOR = 25.0
SAME_VALUE = 0.01  # N (or D) within 1% of each other are one value


def holds_fixed(log_values) -> bool:
    """The values (on a log scale) are all one, within :data:`SAME_VALUE`: a ladder of them does not vary that axis."""
    return float(np.ptp(log_values)) < SAME_VALUE


@dataclass(frozen=True)
class Extent:
    """What a fit's runs span: their N and their final D (the tokens each was trained to)."""

    n_params: tuple[float, ...]
    tokens: tuple[float, ...]

    @property
    def largest_n(self) -> float:
        return max(self.n_params)

    @property
    def largest_d(self) -> float:
        return max(self.tokens)

    @property
    def one_n(self) -> bool:
        """Every run has the same N: a ladder of one size."""
        return holds_fixed(np.log(self.n_params))

    @property
    def one_d(self) -> bool:
        """Every run was trained to the same D: the ladder says nothing about how loss falls with D."""
        return holds_fixed(np.log(self.tokens))


@dataclass(frozen=True)
class Extrapolation:
    """A target's N and D as multiples of the largest N and the largest final D among the fit's runs; ``off_one_d``:
    every run ends at one D and the target's differs."""

    n_factor: float
    d_factor: float
    off_one_d: bool = False

    @property
    def far(self) -> bool:
        """More than ``FAR_FACTOR`` times beyond the largest rung in N or in D, or off a ladder's one D."""
        return max(self.n_factor, self.d_factor) > FAR_FACTOR or self.off_one_d

    def record(self) -> dict:
        """The columns every prediction carries in its table and JSON."""
        return dict(
            n_factor=self.n_factor, d_factor=self.d_factor, off_one_d=self.off_one_d, far_outside_ladder=self.far
        )

    def describe(self) -> str:
        """E.g. '10.3x the largest rung in N, within the ladder in D'."""
        d = f"{self.d_factor:.3g}x the ladder's one value" if self.off_one_d else _axis(self.d_factor)
        return f"{_axis(self.n_factor)} in N, {d} in D"

    def warning(self, name: str) -> str | None:
        """One sentence for a target far outside the ladder, else None."""
        if self.off_one_d:
            return (
                f"{name} lies off the ladder in D ({self.describe()}): every run of the ladder was trained to one D, "
                "so nothing in it says how task loss changes with D and this prediction is not to be trusted; add "
                "runs of other lengths"
            )
        if not self.far:
            return None
        return (
            f"{name} lies far outside the ladder ({self.describe()}; more than {FAR_FACTOR:g}x): nothing in the "
            "ladder measures an error this far out, so its intervals are optimistic"
        )


def beyond(extent: Extent, n_params: float, tokens: float) -> Extrapolation:
    """The target (``n_params``, ``tokens``) against the runs of a fit's ladder."""
    off_one_d = extent.one_d and not holds_fixed(np.log([extent.largest_d, tokens]))
    return Extrapolation(n_params / extent.largest_n, tokens / extent.largest_d, off_one_d)


def _axis(factor: float) -> str:
    if factor <= 1:
        return "within the ladder"
    return f"{factor:.3g}x the largest rung" if factor < 100 else f"{factor:,.0f}x the largest rung"
