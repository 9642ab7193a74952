"""What each shared hyperparameter of the model is, in one plain sentence (the report's prior-vs-posterior
panels and their table). A name the model gains without a sentence here reads 'no description yet'; a test
checks that every shared hyperparameter of a fit has one."""

from __future__ import annotations

HYPERPARAMETERS = {
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
    "acc_size_scale": (
        "How far each model size's accuracy strays from the sigmoid (logit scale); a new size draws its own "
        "such error in step 2."
    ),
}


def describe(name: str) -> str:
    """The sentence for ``name`` ('no description yet' for a name not listed)."""
    return HYPERPARAMETERS.get(name, "A shared hyperparameter of the model (no description yet).")
