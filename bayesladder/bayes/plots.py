"""Diagnostic figures of a fit as PNG files, whatever its number of tasks: rank plots (with the marginal
densities) of the shared hyperparameters in one figure and of each task's parameters in one figure per task,
and posterior predictive checks of both steps (ArviZ plots on the matplotlib backend).

Every figure is drawn before the folder is touched, so a failure leaves no folder and no partial set behind.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import arviz as az
import xarray as xr

from bayesladder.bayes.diagnostics import SKIPPED, posterior_predictive
from bayesladder.bayes.fit import LadderFit
from bayesladder.errors import BayesLadderError
from bayesladder.files import atomic_write_bytes, check_writable

DPI = 80


# The per-task quantities of the model worth a rank plot (not its sampling coordinates, e.g. split_e).
PER_TASK = ("E", "A", "B", "alpha", "beta", "loss_noise", "floor", "level", "k", "trend", "acc_jitter",
            "direct_a", "direct_b")  # fmt: skip


def parameter_groups(posterior: xr.Dataset) -> dict[str, tuple[list[str], dict]]:
    """Figure name -> (variables, coords): the shared (scalar) hyperparameters, then one group per task with the
    model's per-task quantities (:data:`PER_TASK`) at that task. A group's panel count does not grow with tasks."""
    names = [v for v in posterior.data_vars if v not in SKIPPED]
    shared = [v for v in names if set(posterior[v].dims) == {"chain", "draw"}]
    per_task = [v for v in PER_TASK if v in posterior]
    groups = {"shared": (shared, {})} if shared else {}
    for task in map(str, posterior["task"].values):
        groups[f"task-{task}"] = (per_task, {"task": task})
    return groups


def draw_diagnostic_plots(fitted: LadderFit) -> dict[str, bytes]:
    """File name -> PNG bytes: rank-shared.png, rank-task-<task>.png for each task, ppc.png."""
    tree = posterior_predictive(fitted)
    figures = {}
    with warnings.catch_warnings():  # arviz-plots' own pandas deprecation warnings
        warnings.simplefilter("ignore", FutureWarning)
        for name, (variables, coords) in parameter_groups(fitted.posterior).items():
            collection = az.plot_rank_dist(tree, var_names=variables, coords=coords, backend="matplotlib")
            title = coords.get("task", "shared hyperparameters")
            figures[f"rank-{name}.png"] = _png(collection.get_viz("figure"), f"{title}: posterior and rank plots")
        collection = az.plot_ppc_dist(tree, backend="matplotlib", num_samples=50)
        figures["ppc.png"] = _png(collection.get_viz("figure"), "posterior predictive check (black: observed)")
    return figures


def write_diagnostic_plots(fitted: LadderFit, folder: str | Path) -> list[Path]:
    """Draw every figure, then write them into ``folder`` (created if needed), each file atomically."""
    folder = check_folder(folder)
    figures = draw_diagnostic_plots(fitted)
    return [atomic_write_bytes(folder / name, data) for name, data in figures.items()]


def check_folder(folder: str | Path) -> Path:
    """The figures' folder, refused before anything is computed if it is a file or cannot be written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BayesLadderError(f"{folder} is a file; --plots takes a folder for the figures")
    check_writable(folder / "ppc.png")
    return folder


def _png(figure, title: str) -> bytes:
    """The figure as PNG bytes; closed afterwards (only this figure: a notebook user's stay open)."""
    import matplotlib.pyplot as plt

    figure.suptitle(title, y=1.0)
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()
