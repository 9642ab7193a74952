"""Prediction targets known by name: the paper's OLMo 7B and 13B models."""

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
