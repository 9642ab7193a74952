"""The hierarchical Bayesian two-step model: data preparation, priors, model, fit, predictions."""
