"""Every prior of the model, declared once with its dims; a user overrides any of them by name.

Scales (see bayes.data): N and D enter as x = ln(N / N_ref), y = ln(D / D_ref); each task's loss is
divided by its geometric mean over the ladder (so 1 = a typical ladder loss), and step-2 losses are
standardised per task. Noise and size effects in step 1 are relative errors (0.01 = 1%).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import pymc as pm

from bayesladder.errors import BayesLadderError


@dataclass(frozen=True)
class Prior:
    dist: str
    params: dict = field(default_factory=dict)
    dims: tuple[str, ...] = ()

    def create(self, name: str):
        return getattr(pm, self.dist)(name, **self.params, dims=self.dims or None)

    def logp(self, value):
        """Log density at ``value``, for priors on derived quantities (added as a Potential)."""
        return pm.logp(getattr(pm, self.dist).dist(**self.params), value)


DEFAULT_PRIORS: dict[str, Prior] = {
    # step 1, relative loss l = L / loss_scale = E + A exp(-alpha x) + B exp(-beta y), written through
    # what the ladder pins down: l at the ladder's centre and the slopes there (A alpha, B beta).
    "centre_loss": Prior("LogNormal", {"mu": 0.0, "sigma": 0.3}, ("task",)),
    "slope_n": Prior("LogNormal", {"mu": -2.5, "sigma": 1.0}, ("task",)),
    "slope_d": Prior("LogNormal", {"mu": -2.5, "sigma": 1.0}, ("task",)),
    "irreducible": Prior("Normal", {"mu": 0.5, "sigma": 0.3}),  # prior on E (relative), a Potential
    "log_alpha_mu": Prior("Normal", {"mu": -1.2, "sigma": 0.3}),
    "log_alpha_sigma": Prior("LogNormal", {"mu": -2.3, "sigma": 0.3}),
    "log_beta_mu": Prior("Normal", {"mu": -1.2, "sigma": 0.3}),
    "log_beta_sigma": Prior("LogNormal", {"mu": -2.3, "sigma": 0.3}),
    "loss_noise": Prior("HalfNormal", {"sigma": 0.02}, ("task",)),
    "loss_size_scale": Prior("HalfNormal", {"sigma": 0.01}),
    # step 2: acc = floor + (ceiling - floor) * sigmoid(m - k u + size effect), u standardised loss
    "floor_offset": Prior("Normal", {"mu": 0.0, "sigma": 0.3}, ("task",)),
    "ceiling_gap": Prior("HalfNormal", {"sigma": 0.02}, ("task",)),
    "log_k_mu": Prior("Normal", {"mu": 0.5, "sigma": 1.0}),
    "log_k_sigma": Prior("LogNormal", {"mu": -0.7, "sigma": 0.4}),
    "midpoint": Prior("Normal", {"mu": 0.0, "sigma": 2.0}, ("task",)),
    "acc_jitter": Prior("HalfNormal", {"sigma": 0.02}, ("task",)),
    "acc_size_scale": Prior("LogNormal", {"mu": -3.0, "sigma": 0.5}),
}


def merge(overrides: Mapping[str, Prior] | None) -> dict[str, Prior]:
    unknown = sorted(set(overrides or {}) - set(DEFAULT_PRIORS))
    if unknown:
        raise BayesLadderError(f"unknown prior(s) {unknown}; valid names: {sorted(DEFAULT_PRIORS)}")
    return {**DEFAULT_PRIORS, **(overrides or {})}


def to_json(priors: Mapping[str, Prior]) -> str:
    return json.dumps({name: asdict(p) for name, p in sorted(priors.items())}, sort_keys=True)
