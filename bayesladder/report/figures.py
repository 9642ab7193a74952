"""The report's figures (matplotlib), each returned as PNG bytes.

Targets have one colour each across the figures; the markers of a target (prediction, the paper's point fit,
the actual value) sit side by side at its x position rather than on top of each other, and every axis leaves
room for them.
"""

from __future__ import annotations

import textwrap

import matplotlib
import numpy as np
import pymc as pm
from matplotlib.lines import Line2D

from bayesladder import baseline
from bayesladder.bayes import curves
from bayesladder.bayes.predict import Draws, design_draws
from bayesladder.bayes.priors import describe, merge
from bayesladder.ladder import final_points, step2_checkpoints
from bayesladder.plotting import figure, png

GRID = 40
PRIOR_DRAWS = 4000
TARGET_COLORS = ("crimson", "darkorange", "purple", "teal", "saddlebrown", "olive")
DODGE = 1.25  # in log x: the paper's fit to the left of a prediction, the actual value to its right


def target_colors(specs) -> dict[str, str]:
    return {s.name: TARGET_COLORS[k % len(TARGET_COLORS)] for k, s in enumerate(specs)}


def _size_colors(ds, runs) -> dict[str, tuple]:
    sizes = sorted({str(ds["size"].sel(run=r).values) for r in runs}, key=lambda s: _n_of_size(ds, s))
    cmap = matplotlib.colormaps["viridis"]
    return {s: cmap(i / max(1, len(sizes) - 1) * 0.85) for i, s in enumerate(sizes)}


def _n_of_size(ds, size: str) -> float:
    return float(ds["n_params"].values[(ds["size"] == size).values][0])


def _grid_axes(n: int, width: float = 4.2, height: float = 3.3):
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = figure(width * cols, height * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def step1(ds, design, runs, tasks, specs, draws, seed, max_draws) -> list[tuple[str, bytes]]:
    """One figure per task: final task loss against D, bands per ladder size and per target (``design``: the
    fitted two-step design, a ``DesignFit``)."""
    finals = final_points(ds, runs)
    colors = _size_colors(ds, runs)
    d_lo = finals["tokens"].min() / 1.5
    d_hi = max([finals["tokens"].max()] + [s.target.tokens for s in specs]) * 1.5
    grid = np.geomspace(d_lo, d_hi, GRID)
    bands = {}  # label -> (quantiles (3, grid, task), color, dashed)
    sizes = design.data.sizes
    for size in sorted(sizes, key=lambda z: _n_of_size(ds, z)):
        bands[size] = (
            _loss_band(design, _n_of_size(ds, size), grid, size, seed, max_draws),
            colors.get(size, "grey"),
            False,
        )
    palette = target_colors(specs)
    for spec in specs:
        if spec.size in sizes:
            continue
        bands[spec.name] = (
            _loss_band(design, spec.target.n_params, grid, spec.size, seed, max_draws),
            palette[spec.name],
            True,
        )
    out = []
    for i, task in enumerate(tasks):
        fig = figure(6.4, 4.4)
        ax = fig.subplots()
        for label, (q, color, dashed) in bands.items():
            ax.fill_between(grid, q[0, :, i], q[2, :, i], color=color, alpha=0.18, lw=0)
            ax.plot(grid, q[1, :, i], color=color, ls="--" if dashed else "-", lw=1.2, label=f"{label} curve")
        points = finals[finals["task"] == task]
        for size in colors:  # in order of N
            group = points[points["size"] == size]
            ax.scatter(group["tokens"], group["task_loss"], color=colors[size], s=22, zorder=3, edgecolor="k", lw=0.4)
        _mark_targets(ax, ds, specs, draws, i, task, x="tokens", y="loss")
        ax.set_xscale("log")
        ax.set_xlabel("training tokens D")
        ax.set_ylabel(f"task loss ({design.data.loss_units})")
        ax.set_title(f"{task}: step 1 (90% predictive bands)")
        ax.margins(x=0.05, y=0.08)
        ax.legend(fontsize=7, ncol=2)
        out.append((f"{task}: task loss against D", png(fig)))
    return out


def _loss_band(design, n_params, grid, size, seed, max_draws) -> np.ndarray:
    q = np.empty((3, len(grid), len(design.data.tasks)))
    for j, tokens in enumerate(grid):
        loss, _ = design_draws(design.posterior, design.data, design.design, n_params, tokens, size, seed, max_draws)
        q[:, j, :] = np.quantile(loss, [0.05, 0.5, 0.95], axis=0)
    return q


def _mark_targets(ax, ds, specs, draws, i, task, x, y):
    """Each target's predicted median with its 90% interval (diamond) and, for a run of the dataset, its actual
    value (star), set a little to the right when both share an x position (step 1)."""
    palette = target_colors(specs)
    for spec in specs:
        loss, acc = draws[spec.name]
        values = {"loss": loss[:, i], "acc": acc[:, i]}
        xv = spec.target.tokens if x == "tokens" else float(np.median(values[x]))
        yq = np.quantile(values[y], [0.05, 0.5, 0.95])
        ax.errorbar(
            [xv],
            [yq[1]],
            yerr=[[yq[1] - yq[0]], [yq[2] - yq[1]]],
            fmt="D",
            color=palette[spec.name],
            ms=5,
            capsize=3,
            zorder=5,
            label=f"{spec.name} predicted",
        )
        if spec.name in ds["run"].values:
            actual = final_points(ds, [spec.name]).set_index("task").loc[task]
            xa = spec.target.tokens * DODGE**0.5 if x == "tokens" else actual["task_loss"]
            ya = actual["task_loss"] if y == "loss" else actual["accuracy"]
            ax.scatter(
                [xa],
                [ya],
                marker="*",
                s=130,
                color="gold",
                edgecolor=palette[spec.name],
                lw=1.0,
                zorder=6,
                label=f"{spec.name} actual",
            )


def step2(ds, design, runs, tasks, specs, draws, max_draws) -> list[tuple[str, bytes]]:
    """One figure per task: accuracy against task loss, every checkpoint, the sigmoid band at the ladder's central
    size (no size shift), chance floor (``design``: the fitted two-step design)."""
    colors = _size_colors(ds, runs)
    post = Draws(design.posterior, max_draws)
    data = design.data
    out = []
    for i, task in enumerate(tasks):
        fig = figure(6.4, 4.2)
        ax = fig.subplots()
        all_loss = []
        for size, color in colors.items():  # in order of N: the legend lists sizes that way
            of_size = [r for r in runs if str(ds["size"].sel(run=r).values) == size]
            points = list(step2_checkpoints(ds, of_size, task).values())
            loss = np.concatenate([p[1] for p in points])
            ax.scatter(loss, np.concatenate([p[2] for p in points]), s=6, alpha=0.5, color=color, label=size)
            all_loss.append(loss)
        all_loss = np.concatenate(all_loss)
        lo = min(all_loss.min(), *(np.quantile(draws[s.name][0][:, i], 0.05) for s in specs)) * 0.95
        hi = all_loss.max() * 1.05
        grid = np.linspace(lo, hi, 80)
        u = (grid[None, :] - data.step2_center[i]) / data.step2_spread[i]
        floor_, k, midpoint = (post[name][:, [i]] for name in ("floor", "k", "midpoint"))
        curve = curves.accuracy(u, floor_, k, midpoint, 0.0, curves.NUMPY_OPS)
        q = np.quantile(curve, [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(grid, q[0], q[2], color="k", alpha=0.15, lw=0, label="sigmoid 90% band")
        ax.plot(grid, q[1], color="k", lw=1.2, label="sigmoid median")
        chance = float(ds["chance"].sel(task=task))
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance {chance:.2f}")
        _mark_targets(ax, ds, specs, draws, i, task, x="loss", y="acc")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=2)
        ax.margins(y=0.08)
        ax.set_xlabel(f"task loss ({data.loss_units})")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task}: step 2")
        out.append((f"{task}: accuracy against task loss", png(fig)))
    return out


def chained(ds, runs, tasks, specs, draws, base_fits) -> bytes:
    """Accuracy against compute per task: ladder finals by size, and each target's chained prediction (median,
    50% and 90% intervals) with the paper's point fit just left of it and the actual value just right of it."""
    finals = final_points(ds, runs)
    finals = finals.assign(flops=6 * finals["n_params"] * finals["tokens"])
    colors = _size_colors(ds, runs)
    palette = target_colors(specs)
    fig, axes = _grid_axes(len(tasks), height=3.4)
    for i, (ax, task) in enumerate(zip(axes, tasks)):
        points = finals[finals["task"] == task]
        for size in colors:  # in order of N
            group = points[points["size"] == size]
            ax.scatter(group["flops"], group["accuracy"], color=colors[size], s=16)
        for spec in specs:
            c = 6 * spec.target.n_params * spec.target.tokens
            q = np.quantile(draws[spec.name][1][:, i], [0.05, 0.25, 0.5, 0.75, 0.95])
            color = palette[spec.name]
            ax.vlines(c, q[0], q[4], color=color, lw=1, zorder=3)
            ax.vlines(c, q[1], q[3], color=color, lw=4, zorder=3)
            ax.scatter([c], [q[2]], color="white", edgecolor=color, zorder=4, s=22, lw=1.2)
            if base_fits:
                b = baseline.predict({task: base_fits[task]}, spec.target.n_params, spec.target.tokens)
                ax.scatter([c / DODGE], b["accuracy"].values, marker="x", color="k", zorder=5, s=30)
            if spec.name in ds["run"].values:
                a = final_points(ds, [spec.name]).set_index("task").loc[task, "accuracy"]
                ax.scatter([c * DODGE], [a], marker="*", s=110, color="gold", edgecolor="k", lw=0.6, zorder=6)
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.1)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("compute 6ND (FLOPs)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], ls="", marker="o", color=c, label=f"ladder {size}") for size, c in colors.items()]
    for spec in specs:
        handles.append(
            Line2D([], [], color=palette[spec.name], lw=3, marker="o", mfc="white", label=f"{spec.name} predicted")
        )
    if base_fits:
        handles.append(Line2D([], [], ls="", marker="x", color="k", label="paper's point fit"))
    if any(spec.name in ds["run"].values for spec in specs):
        handles.append(Line2D([], [], ls="", marker="*", ms=10, mfc="gold", mec="k", label="actual"))
    fig.suptitle("Chained predictions: median (circle), 50% (thick) and 90% (thin) intervals")
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 5), fontsize=8)
    return png(fig)


def prior_posterior(fitted, seed: int) -> bytes:
    """Histograms of prior and posterior draws of every scalar (shared) hyperparameter, each panel titled with
    its name and a sentence saying what it is."""
    priors = merge(fitted.config.priors)
    posterior = fitted.posterior
    names = [n for n, p in priors.items() if not p.dims and n in posterior and posterior[n].ndim == 2]
    variables = [getattr(pm, priors[n].dist).dist(**priors[n].params, size=PRIOR_DRAWS) for n in names]
    prior_draws_all = pm.draw(variables, draws=1, random_seed=seed) if names else []  # one compiled function, one call
    if len(names) == 1:
        prior_draws_all = [prior_draws_all]
    fig, axes = _grid_axes(max(1, len(names)), width=4.2, height=3.2)
    for k, (ax, name) in enumerate(zip(axes, names)):
        prior_draws = np.asarray(prior_draws_all[k])
        post_draws = posterior[name].values.ravel()
        lo, hi = np.quantile(np.concatenate([prior_draws, post_draws]), [0.005, 0.995])
        bins = np.linspace(lo, hi, 50)
        ax.hist(prior_draws, bins=bins, density=True, alpha=0.4, color="grey", label="prior")
        ax.hist(post_draws, bins=bins, density=True, alpha=0.6, color="tab:blue", label="posterior")
        ax.set_title(f"{name}\n" + "\n".join(textwrap.wrap(describe(name), 52)), fontsize=7.5, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
