"""Figures for one cell. Each function returns a matplotlib Figure; the report decides where it goes.

Colours are the Okabe-Ito palette (safe for colour-blind readers) and every
initializer also gets its own marker and line style, so figures survive grayscale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from .analysis import CellResult

# Okabe-Ito, with its low-contrast yellow moved last.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", "-.", ":"]


def style(i: int) -> dict:
    return {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": LINESTYLES[(i // len(OKABE_ITO) + i) % len(LINESTYLES)]}


def _mean_ci(values: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column (epoch): mean and 95% t-interval over rows (seeds), NaN rows skipped."""
    n = values.notna().sum().to_numpy()
    mean = values.mean().to_numpy()
    sem = values.std(ddof=1).to_numpy() / np.sqrt(np.maximum(n, 1))
    half = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * sem, 0.0)
    return mean, mean - half, mean + half


def learning_curves(tidy: pd.DataFrame, order: list[str], threshold: float | None = None) -> Figure:
    """Validation accuracy and training loss (log scale) per epoch: mean and 95% CI band over seeds."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    for i, init in enumerate(order):
        g = tidy[tidy["initializer"] == init]
        if g.empty:
            continue
        st = style(i)
        for ax, col in ((ax_acc, "val_acc"), (ax_loss, "train_loss")):
            wide = g.pivot_table(index="seed", columns="epoch", values=col, aggfunc="first")
            if col == "train_loss":
                wide = wide.where(wide > 0)
            mean, lo, hi = _mean_ci(wide)
            if col == "val_acc":
                lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            epochs = wide.columns.to_numpy()
            ax.plot(epochs, mean, label=init, markersize=4, **st)
            ax.fill_between(epochs, lo, hi, color=st["color"], alpha=0.18, linewidth=0)
    if threshold is not None:
        ax_acc.axhline(threshold, color="0.4", linewidth=0.8, linestyle=":")
        ax_acc.annotate(f"threshold {threshold:g}", (0, threshold), textcoords="offset points", xytext=(2, 3),
                        fontsize=7, color="0.3")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy", ylim=(0, 1.02))
    ax_loss.set(xlabel="epoch", ylabel="training loss (log)", title="Training loss", yscale="log")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(fontsize=7, loc="best")
    return fig


def final_accuracy(outcomes: pd.DataFrame, order: list[str]) -> Figure:
    """Final validation accuracy per initializer: seeds as points over a box; diverged runs counted below."""
    fig = Figure(figsize=(max(5.0, 0.9 * len(order) + 2), 3.6), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    data = [outcomes.loc[(outcomes["initializer"] == i) & ~outcomes["diverged"], "final_acc"].to_numpy()
            for i in order]
    ax.boxplot([d if len(d) else [np.nan] for d in data], positions=range(len(order)), widths=0.5,
               showfliers=False, medianprops={"color": "black"})
    for i, d in enumerate(data):
        st = style(i)
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(d)), d, color=st["color"], marker=st["marker"],
                   edgecolor="black", linewidth=0.4, zorder=3, s=26)
        n_div = int(((outcomes["initializer"] == order[i]) & outcomes["diverged"]).sum())
        if n_div:
            ax.annotate(f"{n_div} diverged", (i, 0), ha="center", fontsize=7, color="#D55E00")
    ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="final validation accuracy", title="Final accuracy per seed", ylim=(0, 1.02))
    ax.grid(alpha=0.3, axis="y")
    return fig


def kaplan_meier(cell: CellResult, outcomes: pd.DataFrame) -> Figure:
    """Kaplan-Meier curves of P(threshold not yet reached) by epoch; '+' marks censored runs."""
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, arm in enumerate(cell.arms):
        st = style(i)
        epochs = [e for e, _ in arm.kaplan_meier]
        surv = [s for _, s in arm.kaplan_meier]
        ax.step(epochs, surv, where="post", label=arm.initializer, color=st["color"], linestyle=st["linestyle"])
        cens = outcomes[(outcomes["initializer"] == arm.initializer) & (outcomes["event"] == 0)]["time"]
        if len(cens):
            s_at = [surv[min(int(t), len(surv) - 1)] for t in cens]
            # Nudge marks sideways per arm so overlapping censored arms stay distinguishable.
            ax.scatter(cens + 0.06 * (i - len(cell.arms) / 2), s_at, marker=st["marker"], color=st["color"],
                       edgecolor="black", linewidth=0.4, s=28, zorder=3)
    ax.set(xlabel="epoch", ylabel="P(threshold not yet reached)",
           title=f"Epochs to {cell.threshold:g} validation accuracy (markers: censored runs)",
           ylim=(-0.03, 1.05))
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="best")
    return fig


def signal_propagation(diag: pd.DataFrame, order: list[str]) -> Figure:
    """Per-layer activation std, gradient std and (ReLU) dead fraction at init: median over seeds, log scale.

    `diag` has one row per run and layer with columns initializer, seed, index,
    activation_std, gradient_std, dead_fraction.
    """
    has_dead = diag["dead_fraction"].notna().any()
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 3 if has_dead else 2)
    panels = [("activation_std", "activation std (log)", "Forward signal"),
              ("gradient_std", "gradient std (log)", "Backward signal")]
    if has_dead:
        panels.append(("dead_fraction", "fraction of dead channels", "Dead ReLU channels"))
    for i, init in enumerate(order):
        g = diag[diag["initializer"] == init]
        if g.empty:
            continue
        st = style(i)
        for ax, (col, _label, _title) in zip(axes, panels):
            med = g.groupby("index")[col].median()
            if col != "dead_fraction":
                med = med.where(med > 0)  # zero signal cannot be drawn on a log axis; the gap shows it
            ax.plot(med.index, med.to_numpy(dtype=float), label=init, markersize=3, **st)
    for ax, (col, label, title) in zip(axes, panels):
        ax.set(xlabel="layer (forward order)", ylabel=label, title=title)
        if col != "dead_fraction":
            ax.set_yscale("log")
        else:
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7, loc="best")
    return fig
