"""Prediction targets known by name (the paper's OLMo 7B and 13B models), and the default targets of a fit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    n_params: float
    tokens: float

    @classmethod
    def at(cls, n_params: float, tokens: float) -> Target:
        """A target given by its N and D alone (``--n``/``--d``), named after them."""
        return cls(f"N={n_params:.3g},D={tokens:.3g}", float(n_params), float(tokens))


KNOWN_TARGETS = {
    t.name: t
    for t in (
        Target("7B-4T", 6_887_575_552, 3_945_065_873_408),
        Target("13B-5T", 13_202_396_160, 5_000_088_518_656),
    )
}


def default_targets(ds, fitted) -> list[Target]:
    """What to predict when no target is named: the dataset's target runs; else its first-replicate runs of
    sizes the fit did not see (at the fit's lengths); else 7B-4T and 13B-5T, or their N at the ladder's one D
    when every run of the fit ends at one (Gemstones: 350B tokens), since nothing in such a ladder says how task
    loss changes with D (``bayesladder.extrapolation``)."""
    from bayesladder.ladder import resolve_target  # bayesladder.ladder imports this module

    names = [str(r) for r in ds["run"].values]
    chosen = [n for n, role in zip(names, ds["role"].values.astype(str)) if role == "target"]
    if not chosen:
        lengths = fitted.config.selection.lengths
        chosen = [
            n
            for n, size, length, rep in zip(names, ds["size"].values, ds["length"].values, ds["replicate"].values)
            if str(size) not in fitted.sizes and int(rep) == 0 and (not lengths or str(length) in lengths)
        ]
    if chosen:
        return [resolve_target(ds, name, None, None) for name in chosen]
    extent = fitted.extent()
    if extent.one_d:
        return [Target.at(t.n_params, extent.largest_d) for t in KNOWN_TARGETS.values()]
    return list(KNOWN_TARGETS.values())
