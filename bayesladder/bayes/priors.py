"""Every prior of the model, declared once with its dims; a user overrides any of them by name.

Scales (see bayes.data and bayes.curves): N and D enter as x = ln(N / N_ref), y = ln(D / D_ref); each task's
loss is divided by its geometric mean over the ladder (so 1 = a typical ladder loss), and step-2 losses
are standardised per task. Noise and size effects in step 1 are relative errors (0.01 = 1%); step-2 shifts
are in logits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from bayesladder.errors import BayesLadderError


@dataclass(frozen=True)
class Prior:
    dist: str
    params: dict = field(default_factory=dict)
    dims: tuple[str, ...] = ()

    def create(self, name: str):
        """The model variable (a ``Constant`` is a fixed value, kept as a prior so that it is overridable too)."""
        import pymc as pm

        if self.dist == "Constant":
            return pm.Data(name, self.params["value"])
        return getattr(pm, self.dist)(name, **self.params, dims=self.dims or None)

    def logp(self, value):
        """Log density at ``value``, for priors on derived quantities (added as a Potential)."""
        import pymc as pm

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
    # step 2: acc = floor + (1 - floor) * sigmoid(m - k u + trend x_size + residual), u standardised loss,
    # sampled through the level (acc at u = 0) and a floor below it; the floor's prior is on its logit offset
    # from chance, applied with its Jacobian
    "floor_offset": Prior("Normal", {"mu": 0.0, "sigma": 0.3}, ("task",)),
    "level_logit": Prior("Normal", {"mu": 0.0, "sigma": 1.5}, ("task",)),
    "log_k_mu": Prior("Normal", {"mu": 0.5, "sigma": 1.0}),
    "log_k_sigma": Prior("LogNormal", {"mu": -0.7, "sigma": 0.4}),
    "acc_jitter": Prior("HalfNormal", {"sigma": 0.02}, ("task",)),
    "trend_mu": Prior("Normal", {"mu": 0.0, "sigma": 0.2}),  # logit shift per e-fold of N, at equal task loss
    # between-task SD of the trend, fixed: 8-10 tasks cannot pin a learned one, which then froze chains
    "trend_sigma": Prior("Constant", {"value": 0.05}),
    "acc_size_scale": Prior("LogNormal", {"mu": -3.0, "sigma": 0.5}),
    # single-step design: acc = floor + (1 - floor) * sigmoid(m - a exp(-alpha x) - b exp(-beta y) + shift),
    # sampled through the slopes at the ladder's centre
    "direct_slope_n": Prior("LogNormal", {"mu": -1.0, "sigma": 1.0}, ("task",)),  # a alpha: logits per e-fold of N
    "direct_slope_d": Prior("LogNormal", {"mu": -1.0, "sigma": 1.0}, ("task",)),  # b beta: logits per e-fold of D
}

# Which priors each independently sampled block of a design uses.
BLOCK_PRIORS: dict[str, tuple[str, ...]] = {
    "loss": ("centre_loss", "slope_n", "slope_d", "irreducible", "log_alpha_mu", "log_alpha_sigma", "log_beta_mu",
             "log_beta_sigma", "loss_noise", "loss_size_scale"),
    "loss_flops": ("centre_loss", "slope_n", "irreducible", "log_alpha_mu", "log_alpha_sigma", "loss_noise",
                   "loss_size_scale"),
    "accuracy": ("level_logit", "log_k_mu", "log_k_sigma", "acc_jitter", "trend_mu", "trend_sigma",
                 "acc_size_scale"),
    "direct": ("level_logit", "acc_jitter", "acc_size_scale", "direct_slope_n", "direct_slope_d", "log_alpha_mu",
               "log_alpha_sigma", "log_beta_mu", "log_beta_sigma"),
}  # fmt: skip

# What each shared (scalar) hyperparameter is, in one plain sentence: the report's prior-vs-posterior panels.
DESCRIPTIONS: dict[str, str] = {
    "log_alpha_mu": "Typical log of alpha across tasks: how fast task loss falls as the parameter count N grows.",
    "log_alpha_sigma": "How much alpha (the exponent of N) differs from task to task, on the log scale.",
    "log_beta_mu": "Typical log of beta across tasks: how fast task loss falls as the training tokens D grow.",
    "log_beta_sigma": "How much beta (the exponent of D) differs from task to task, on the log scale.",
    "loss_size_scale": (
        "How far each model size's task loss strays from the smooth power law (0.01 = 1%); a new size draws "
        "its own such error, which widens the intervals of a target."
    ),
    "log_k_mu": "Typical log steepness of the step-2 sigmoid: how quickly accuracy rises as task loss falls.",
    "log_k_sigma": "How much that steepness differs from task to task, on the log scale.",
    "trend_mu": (
        "Typical trend of accuracy with model size at equal task loss (logits per e-fold of N): what carries a "
        "size beyond the ladder off the small models' curve."
    ),
    "acc_size_scale": (
        "How far each model size's accuracy strays from the sigmoid and its trend (logit scale); a new size draws "
        "its own such error in step 2, widened by how far beyond the ladder it lies (the error of the fitted trend "
        "that the ladder's own sizes leave)."
    ),
}


def describe(name: str) -> str:
    """The sentence for ``name`` ('no description yet' for a name not listed)."""
    return DESCRIPTIONS.get(name, "A shared hyperparameter of the model (no description yet).")


def merge(overrides: Mapping[str, Prior] | None) -> dict[str, Prior]:
    unknown = sorted(set(overrides or {}) - set(DEFAULT_PRIORS))
    if unknown:
        raise BayesLadderError(f"unknown prior(s) {unknown}; valid names: {sorted(DEFAULT_PRIORS)}")
    return {**DEFAULT_PRIORS, **(overrides or {})}


def to_json(priors: Mapping[str, Prior]) -> str:
    return json.dumps({name: asdict(p) for name, p in sorted(priors.items())}, sort_keys=True)
