"""How far a target lies beyond the ladder a fit saw: the factor in N and in D past its largest rung.

The model learns its extrapolation error from how the ladder's own sizes deviate from the fitted curves;
that says something about a step of a few sizes, little about a jump of orders of magnitude. The paper's
own targets lie up to 10x beyond its largest rung in N (13B against 1.3B) and 20x in D (5T tokens against
the 1B-10xC run's 256B), where its method was checked against real models. A target more than
``FAR_FACTOR`` times beyond the largest rung in N or in D is flagged as far outside the ladder.

Extrapolating in D is checked per size: a target trained on more tokens per parameter than any run of the ladder
(OLMo's 7B-4T: 570, the paper ladder's longest runs 200) is told so. The discrepancy that widens intervals with
distance (``bayes.stacking``) counts e-folds of N beyond the largest size and of tokens per parameter beyond the
longest-trained run (:meth:`Extent.efolds_beyond`), each learned from a nested split of the ladder; the length split
extrapolates about one e-fold, and a ladder of one length has none.

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
    def most_tokens_per_param(self) -> float:
        return max(d / n for n, d in zip(self.n_params, self.tokens))

    def efolds_beyond(self, n_params: float, tokens: float) -> tuple[float, float]:
        """(e-folds of N beyond the largest size, e-folds of tokens per parameter beyond the longest-trained run),
        each 0 within the ladder: the distances the discrepancy scales multiply (``bayes.stacking``)."""
        n_efolds = np.log(n_params / self.largest_n)
        per_param_efolds = np.log(tokens / n_params / self.most_tokens_per_param)
        return max(0.0, float(n_efolds)), max(0.0, float(per_param_efolds))

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
    """A target's N and D as multiples of the largest N and the largest final D among the fit's runs, and its tokens
    per parameter as a multiple of the most any run had; ``off_one_d``: every run ends at one D and the target's
    differs."""

    n_factor: float
    d_factor: float
    tokens_per_param_factor: float
    off_one_d: bool = False

    @property
    def longer_trained(self) -> bool:
        """More tokens per parameter than any run of the ladder (on a ladder of one D: see ``off_one_d``)."""
        return self.tokens_per_param_factor > 1.0 + SAME_VALUE and not self.off_one_d

    @property
    def far(self) -> bool:
        """More than ``FAR_FACTOR`` times beyond the largest rung in N or in D, or off a ladder's one D."""
        return max(self.n_factor, self.d_factor) > FAR_FACTOR or self.off_one_d

    def record(self) -> dict:
        """The columns every prediction carries in its table and JSON."""
        return dict(
            n_factor=self.n_factor,
            d_factor=self.d_factor,
            tokens_per_param_factor=self.tokens_per_param_factor,
            off_one_d=self.off_one_d,
            far_outside_ladder=self.far,
        )

    @classmethod
    def from_record(cls, record) -> Extrapolation:
        """The extrapolation of a row that carries :meth:`record`'s columns."""
        return cls(
            float(record["n_factor"]),
            float(record["d_factor"]),
            float(record["tokens_per_param_factor"]),
            bool(record["off_one_d"]),
        )

    def describe(self) -> str:
        """E.g. '10.3x the largest rung in N, within the ladder in D'."""
        d = f"{self.d_factor:.3g}x the ladder's one value" if self.off_one_d else _axis(self.d_factor)
        return f"{_axis(self.n_factor)} in N, {d} in D"

    def warning(self, name: str) -> str | None:
        """One sentence for a target far outside the ladder, or trained longer than its runs, else None."""
        if self.off_one_d:
            return (
                f"{name} lies off the ladder in D ({self.describe()}): every run of the ladder was trained to one D, "
                "so nothing in it says how task loss changes with D and this prediction is not to be trusted; add "
                "runs of other lengths"
            )
        said = []
        if self.far:
            said.append(
                f"{name} lies far outside the ladder ({self.describe()}; more than {FAR_FACTOR:g}x): nothing in the "
                "ladder measures an error this far out, so its intervals are optimistic"
            )
        if self.longer_trained:
            said.append(
                f"{name} is trained on {self.tokens_per_param_factor:.3g}x the most tokens per parameter of the "
                "ladder's runs: its intervals widen for that only as far as the ladder's own length split showed (the "
                "fit's kappa per e-fold of tokens per parameter; none on a ladder of one length) and may be too narrow "
                "(`bayesladder backtest --nested` shows how far the ladder's length cuts miss)"
            )
        return "; ".join(said) or None


def beyond(extent: Extent, n_params: float, tokens: float) -> Extrapolation:
    """The target (``n_params``, ``tokens``) against the runs of a fit's ladder."""
    off_one_d = extent.one_d and not holds_fixed(np.log([extent.largest_d, tokens]))
    per_param = tokens / n_params / extent.most_tokens_per_param
    return Extrapolation(n_params / extent.largest_n, tokens / extent.largest_d, per_param, off_one_d)


def _axis(factor: float) -> str:
    if factor <= 1:
        return "within the ladder"
    return f"{factor:.3g}x the largest rung" if factor < 100 else f"{factor:,.0f}x the largest rung"
