"""How far a target lies beyond the ladder a fit saw: the factor in N and in D past its largest rung.

The model learns its extrapolation error from how the ladder's own sizes deviate from the fitted curves;
that says something about a step of a few sizes, little about a jump of orders of magnitude. The paper's
own targets lie up to 10x beyond its largest rung in N (13B against 1.3B) and 20x in D (5T tokens against
the 1B-10xC run's 256B), where its method was checked against real models. A target more than
``FAR_FACTOR`` times beyond the largest rung in N or in D is flagged as far outside the ladder.
"""

from __future__ import annotations

from dataclasses import dataclass

FAR_FACTOR = 25.0


@dataclass(frozen=True)
class Extrapolation:
    """A target's N and D as multiples of the largest N and the largest final D among the fit's runs."""

    n_factor: float
    d_factor: float

    @property
    def far(self) -> bool:
        """More than ``FAR_FACTOR`` times beyond the largest rung in N or in D."""
        return max(self.n_factor, self.d_factor) > FAR_FACTOR

    def describe(self) -> str:
        """E.g. '10.3x the largest rung in N, within the ladder in D'."""
        return f"{_axis(self.n_factor)} in N, {_axis(self.d_factor)} in D"

    def warning(self, name: str) -> str | None:
        """One sentence for a target far outside the ladder, else None."""
        if not self.far:
            return None
        return (
            f"{name} lies far outside the ladder ({self.describe()}; more than {FAR_FACTOR:g}x): nothing in the "
            "ladder measures an error this far out, so its intervals are optimistic"
        )


def beyond(largest_rung: tuple[float, float], n_params: float, tokens: float) -> Extrapolation:
    """The target (``n_params``, ``tokens``) against the (largest N, largest final D) of a fit's runs."""
    largest_n, largest_d = largest_rung
    return Extrapolation(n_factor=n_params / largest_n, d_factor=tokens / largest_d)


def _axis(factor: float) -> str:
    if factor <= 1:
        return "within the ladder"
    return f"{factor:.3g}x the largest rung" if factor < 100 else f"{factor:,.0f}x the largest rung"
