"""Diagnostic figures of a fit as PNG files: rank and trace plots of the key parameters, and
posterior predictive checks of both steps (ArviZ plots on the matplotlib backend)."""

from __future__ import annotations

from pathlib import Path

import arviz as az
import matplotlib.pyplot as plt

from bayesladder.bayes.diagnostics import posterior_predictive
from bayesladder.bayes.fit import LadderFit

KEY_PARAMETERS = [
    "log_alpha_mu",
    "log_beta_mu",
    "log_k_mu",
    "alpha",
    "beta",
    "k",
    "floor",
    "loss_noise",
    "loss_size_scale",
]


def write_diagnostic_plots(fitted: LadderFit, folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tree = posterior_predictive(fitted)
    figures = {
        "rank.png": lambda: az.plot_rank(tree, var_names=KEY_PARAMETERS, backend="matplotlib"),
        "trace.png": lambda: az.plot_trace(tree, var_names=KEY_PARAMETERS, backend="matplotlib"),
        "ppc.png": lambda: az.plot_ppc_dist(tree, backend="matplotlib", num_samples=50),
    }
    written = []
    for name, draw in figures.items():
        collection = draw()
        collection.savefig(folder / name, dpi=80)  # PNG is rendered by Agg whatever the interactive backend
        plt.close(collection.get_viz("figure"))
        written.append(folder / name)
    return written
