"""Prediction targets known by name (the paper's OLMo 7B and 13B models), and the default targets of a fit."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    n_params: float
    tokens: float


KNOWN_TARGETS = {
    t.name: t
    for t in (
        Target("7B-4T", 6_887_575_552, 3_945_065_873_408),
        Target("13B-5T", 13_202_396_160, 5_000_088_518_656),
    )
}


def default_targets(ds, fitted) -> list[str]:
    """What to predict when no target is named: the dataset's target runs; else its first-replicate runs of
    sizes the fit did not see (at the fit's lengths); else 7B-4T and 13B-5T."""
    names = [str(r) for r in ds["run"].values]
    chosen = [n for n, role in zip(names, ds["role"].values.astype(str)) if role == "target"]
    if not chosen:
        lengths = fitted.config.selection.lengths
        chosen = [
            n
            for n, size, length, rep in zip(names, ds["size"].values, ds["length"].values, ds["replicate"].values)
            if str(size) not in fitted.sizes and int(rep) == 0 and (not lengths or str(length) in lengths)
        ]
    return chosen or list(KNOWN_TARGETS)
