"""The report's figures (matplotlib Figure objects; pyplot's backend untouched), each returned as PNG bytes."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pymc as pm
from matplotlib.figure import Figure
from scipy.special import expit

from bayesladder import baseline
from bayesladder.bayes.model import accuracy_curve
from bayesladder.bayes.predict import predictive_draws
from bayesladder.bayes.priors import merge
from bayesladder.ladder import final_points, step2_checkpoints

DPI = 90
GRID = 40
PRIOR_DRAWS = 4000


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _size_colors(ds, runs) -> dict[str, tuple]:
    sizes = sorted({str(ds["size"].sel(run=r).values) for r in runs}, key=lambda s: _n_of_size(ds, s))
    cmap = plt.get_cmap("viridis")
    return {s: cmap(i / max(1, len(sizes) - 1) * 0.85) for i, s in enumerate(sizes)}


def _n_of_size(ds, size: str) -> float:
    return float(ds["n_params"].values[(ds["size"] == size).values][0])


def _grid_axes(n: int, width: float = 4.2, height: float = 3.3):
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def step1(ds, fitted, thin, runs, tasks, specs, draws, seed) -> list[tuple[str, bytes]]:
    """One figure per task: final task loss against D, bands per ladder size and per target."""
    finals = final_points(ds, runs)
    colors = _size_colors(ds, runs)
    d_lo = finals["tokens"].min() / 1.5
    d_hi = max([finals["tokens"].max()] + [s.target.tokens for s in specs]) * 1.5
    grid = np.geomspace(d_lo, d_hi, GRID)
    curves = {}  # label -> (quantiles (3, grid, task), color, dashed)
    for size in fitted.sizes:
        curves[size] = (
            _loss_band(thin, fitted.constants, _n_of_size(ds, size), grid, size, seed),
            colors.get(size, "grey"),
            False,
        )
    for spec in specs:
        if spec.size in fitted.sizes:
            continue
        curves[spec.name] = (
            _loss_band(thin, fitted.constants, spec.target.n_params, grid, spec.size, seed),
            "crimson",
            True,
        )
    out = []
    for i, task in enumerate(tasks):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        for label, (q, color, dashed) in curves.items():
            ax.fill_between(grid, q[0, :, i], q[2, :, i], color=color, alpha=0.18, lw=0)
            ax.plot(grid, q[1, :, i], color=color, ls="--" if dashed else "-", lw=1.2, label=f"{label} curve")
        points = finals[finals["task"] == task]
        for size in colors:  # in order of N
            group = points[points["size"] == size]
            ax.scatter(group["tokens"], group["task_loss"], color=colors[size], s=22, zorder=3, edgecolor="k", lw=0.4)
        _mark_targets(ax, ds, specs, draws, i, task, x="tokens", y="loss")
        ax.set_xscale("log")
        ax.set_xlabel("training tokens D")
        ax.set_ylabel("task loss (bits/byte)")
        ax.set_title(f"{task}: step 1 (90% predictive bands)")
        ax.legend(fontsize=7, ncol=2)
        out.append((f"{task}: task loss against D", png(fig)))
    return out


def _loss_band(thin, constants, n_params, grid, size, seed) -> np.ndarray:
    q = np.empty((3, len(grid), constants.sizes["task"]))
    for j, tokens in enumerate(grid):
        loss, _ = predictive_draws(thin, constants, n_params, tokens, size, seed)
        q[:, j, :] = np.quantile(loss, [0.05, 0.5, 0.95], axis=0)
    return q


def _mark_targets(ax, ds, specs, draws, i, task, x, y):
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
            color="crimson",
            ms=5,
            capsize=3,
            label=f"{spec.name} predicted",
        )
        if spec.name in ds["run"].values:
            actual = final_points(ds, [spec.name]).set_index("task").loc[task]
            xa = spec.target.tokens if x == "tokens" else actual["task_loss"]
            ya = actual["task_loss"] if y == "loss" else actual["accuracy"]
            ax.scatter(
                [xa], [ya], marker="*", s=120, color="gold", edgecolor="k", zorder=4, label=f"{spec.name} actual"
            )


def step2(ds, thin, constants, runs, tasks, specs, draws) -> list[tuple[str, bytes]]:
    """One figure per task: accuracy against task loss, every checkpoint, sigmoid band, chance floor."""
    colors = _size_colors(ds, runs)
    post = thin.stack(sample=("chain", "draw")).transpose("sample", ...)
    out = []
    for i, task in enumerate(tasks):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        all_loss = []
        for run in runs:
            _, loss, acc = step2_checkpoints(ds, run, task)
            size = str(ds["size"].sel(run=run).values)
            ax.scatter(loss, acc, s=6, alpha=0.5, color=colors.get(size, "grey"), label=size)
            all_loss.append(loss)
        all_loss = np.concatenate(all_loss)
        lo = min(all_loss.min(), *(np.quantile(draws[s.name][0][:, i], 0.05) for s in specs)) * 0.95
        hi = all_loss.max() * 1.05
        grid = np.linspace(lo, hi, 80)
        u = (grid[None, :] - float(constants["step2_center"].values[i])) / float(constants["step2_spread"].values[i])

        def par(name, i=i):
            return post[name].values[:, i][:, None]

        curve = accuracy_curve(u, par("floor"), par("ceiling"), par("k"), par("midpoint"), 0.0, expit)
        q = np.quantile(curve, [0.05, 0.5, 0.95], axis=0)
        ax.fill_between(grid, q[0], q[2], color="k", alpha=0.15, lw=0, label="sigmoid 90% band")
        ax.plot(grid, q[1], color="k", lw=1.2, label="sigmoid median")
        chance = float(ds["chance"].sel(task=task))
        ax.axhline(chance, color="grey", ls=":", lw=1, label=f"chance {chance:.2f}")
        _mark_targets(ax, ds, specs, draws, i, task, x="loss", y="acc")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7, ncol=2)
        ax.set_xlabel("task loss (bits/byte)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task}: step 2")
        out.append((f"{task}: accuracy against task loss", png(fig)))
    return out


def chained(ds, runs, tasks, specs, draws, base_fits) -> bytes:
    """Accuracy against compute per task: ladder finals, and each target's chained prediction."""
    finals = final_points(ds, runs)
    finals = finals.assign(flops=6 * finals["n_params"] * finals["tokens"])
    colors = _size_colors(ds, runs)
    fig, axes = _grid_axes(len(tasks))
    for i, (ax, task) in enumerate(zip(axes, tasks)):
        points = finals[finals["task"] == task]
        for size in colors:  # in order of N
            group = points[points["size"] == size]
            ax.scatter(group["flops"], group["accuracy"], color=colors[size], s=16, label=size)
        for spec in specs:
            c = 6 * spec.target.n_params * spec.target.tokens
            acc = draws[spec.name][1][:, i]
            q = np.quantile(acc, [0.05, 0.25, 0.5, 0.75, 0.95])
            ax.vlines(c, q[0], q[4], color="crimson", lw=1)
            ax.vlines(c, q[1], q[3], color="crimson", lw=4)
            ax.scatter([c], [q[2]], color="white", edgecolor="crimson", zorder=3, s=18)
            if base_fits:
                b = baseline.predict({task: base_fits[task]}, spec.target.n_params, spec.target.tokens)[
                    "accuracy"
                ].iloc[0]
                ax.scatter([c], [b], marker="x", color="k", zorder=4, label="baseline")
            if spec.name in ds["run"].values:
                a = final_points(ds, [spec.name]).set_index("task").loc[task, "accuracy"]
                ax.scatter([c], [a], marker="*", s=90, color="gold", edgecolor="k", zorder=5, label="actual")
        ax.set_xscale("log")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("compute 6ND (FLOPs)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        if i == 0:
            ax.legend(unique.values(), unique.keys(), fontsize=6)
    fig.suptitle("Chained predictions: median, 50% and 90% intervals (red)")
    fig.tight_layout()
    return png(fig)


def prior_posterior(fitted, seed: int) -> bytes:
    """Histograms of prior and posterior draws of every scalar (shared) hyperparameter."""
    priors = merge(fitted.config.priors)
    posterior = fitted.posterior
    names = [n for n, p in priors.items() if not p.dims and n in posterior and posterior[n].ndim == 2]
    variables = [getattr(pm, priors[n].dist).dist(**priors[n].params, size=PRIOR_DRAWS) for n in names]
    prior_draws_all = pm.draw(variables, draws=1, random_seed=seed) if names else []  # one compiled function, one call
    if len(names) == 1:
        prior_draws_all = [prior_draws_all]
    fig, axes = _grid_axes(max(1, len(names)), width=3.6, height=2.6)
    for k, (ax, name) in enumerate(zip(axes, names)):
        prior_draws = np.asarray(prior_draws_all[k])
        post_draws = posterior[name].values.ravel()
        lo, hi = np.quantile(np.concatenate([prior_draws, post_draws]), [0.005, 0.995])
        bins = np.linspace(lo, hi, 50)
        ax.hist(prior_draws, bins=bins, density=True, alpha=0.4, color="grey", label="prior")
        ax.hist(post_draws, bins=bins, density=True, alpha=0.6, color="tab:blue", label="posterior")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        if k == 0:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return png(fig)
