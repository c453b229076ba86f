"""Figures for one cell. Each function returns a matplotlib Figure; the report decides where it goes.

Colours are the Okabe-Ito palette (safe for colour-blind readers) and every
initializer also gets its own marker and line style, so figures survive grayscale.
"""

from __future__ import annotations

import functools
import unicodedata

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator
from scipy import stats

from .analysis import CellResult

# Okabe-Ito, with its low-contrast yellow moved last.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
LINESTYLES = ["-", "--", "-.", ":"]
# Figure text in DejaVu Sans (shipped with matplotlib), falling back glyph by glyph to the first of these that
# the system has: CJK, then symbols and monochrome emoji. Colour emoji fonts are left out: FreeType in
# matplotlib cannot draw their bitmaps.
FONT_FALLBACKS = ("DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Source Han Sans", "WenQuanYi Zen Hei",
                  "Droid Sans Fallback", "Noto Sans Symbols 2", "Noto Sans Symbols", "Noto Emoji", "Symbola")
PLACEHOLDER = "\N{REPLACEMENT CHARACTER}"  # stands for a character no font of the list can draw


@functools.lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """The names in FONT_FALLBACKS that this system has (DejaVu Sans always)."""
    present = {f.name for f in font_manager.fontManager.ttflist}
    return tuple(name for name in FONT_FALLBACKS if name in present or name == "DejaVu Sans")


@functools.lru_cache(maxsize=1)
def _drawable() -> frozenset[int]:
    """Code points some font of `font_families()` has a glyph for."""
    from matplotlib.ft2font import FT2Font

    points: set[int] = set()
    for name in font_families():
        path = font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False)
        points |= set(FT2Font(path).get_charmap())
    return frozenset(points)


def displayable(text: str) -> str:
    """`text` with every character no figure font can draw replaced by its compatibility form when the fonts
    have that (e.g. a mathematical alpha by α), else by PLACEHOLDER; invisible joiners and selectors are dropped.
    Drawing the result warns of no missing glyph."""
    have = _drawable()
    out = []
    for ch in text:
        if ch == "\n" or ord(ch) in have:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Mn"):
            continue
        else:
            plain = unicodedata.normalize("NFKD", ch)
            out.append(plain if plain != ch and all(ord(c) in have for c in plain) else PLACEHOLDER)
    return "".join(out)


def rc():
    """matplotlib settings for drawing and saving initstudy's figures, as a context (rcParams are left as they
    were): the font list, and a fixed SVG id salt so the same runs give the same SVG."""
    return matplotlib.rc_context({"font.family": list(font_families()), "svg.hashsalt": "initstudy"})


def _figure(plot):
    """Build `plot`'s figure under `rc()`, its text made `displayable` (draw and save it under `rc()` too)."""

    @functools.wraps(plot)
    def build(*args, **kwargs) -> Figure:
        with rc():
            fig = plot(*args, **kwargs)
        for text in fig.findobj(Text):  # tick labels are remade when drawn: set_*ticks get `displayable` ones
            text.set_text(displayable(text.get_text()))
        return fig

    return build


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


def _legend_columns(k: int) -> int:
    return min(k, 5 if k > 8 else 4)


@_figure
def learning_curves(tidy: pd.DataFrame, order: list[str], threshold: float | None = None) -> Figure:
    """Validation accuracy and training loss (log scale) per epoch: mean and 95% CI band over seeds."""
    fig = Figure(figsize=(9, 3.0 + (0.18 * -(-len(order) // _legend_columns(len(order))) if len(order) > 6 else 0)),
                 layout="constrained")
    ax_acc, ax_loss = fig.subplots(1, 2)
    has_loss = bool((tidy["train_loss"] > 0).any())  # imported logs may hold no training loss
    panels = ((ax_acc, "val_acc"), (ax_loss, "train_loss")) if has_loss else ((ax_acc, "val_acc"),)
    for i, init in enumerate(order):
        g = tidy[tidy["initializer"] == init]
        if g.empty:
            continue
        st = style(i)
        for ax, col in panels:
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
    if has_loss:
        ax_loss.set(xlabel="epoch", ylabel="training loss (log)", title="Training loss", yscale="log")
    else:
        ax_loss.set(title="Training loss", xticks=[], yticks=[])
        ax_loss.text(0.5, 0.5, "not in the logs", ha="center", va="center", color="0.4", transform=ax_loss.transAxes)
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(order) > 6:  # a long legend inside a panel would cover the curves
        fig.legend(*ax_acc.get_legend_handles_labels(), loc="outside lower center",
                   ncols=_legend_columns(len(order)), fontsize=7, frameon=False)
    else:
        (ax_loss if has_loss else ax_acc).legend(fontsize=7, loc="best")
    return fig


@_figure
def final_accuracy(outcomes: pd.DataFrame, order: list[str]) -> Figure:
    """Final validation accuracy per initializer: seeds as points over a box; diverged runs counted below."""
    fig = Figure(figsize=(min(9.0, max(5.0, 0.7 * len(order) + 2)), 4.0), layout="constrained")  # fits a page width
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
    ax.set_xticks(range(len(order)), [displayable(x) for x in order], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="final validation accuracy", title="Final accuracy per seed", ylim=(0, 1.02))
    ax.grid(alpha=0.3, axis="y")
    return fig


@_figure
def cell_overview(tidy: pd.DataFrame, cell: CellResult, outcomes: pd.DataFrame, order: list[str]) -> Figure:
    """One row per cell: validation accuracy by epoch (mean, 95% t band), Kaplan-Meier curves of time to
    threshold, and final accuracy per seed (arms as rows, so long names stay horizontal). One legend below."""
    k = len(order)
    height = max(3.0, 0.17 * k + 1.4) + 0.18 * -(-k // _legend_columns(k))
    fig = Figure(figsize=(10, height), layout="constrained")
    ax_acc, ax_km, ax_fin = fig.subplots(1, 3, width_ratios=[1, 1, 1.1])
    for i, init in enumerate(order):
        g = tidy[tidy["initializer"] == init]
        if g.empty:
            continue
        st = style(i)
        wide = g.pivot_table(index="seed", columns="epoch", values="val_acc", aggfunc="first")
        mean, lo, hi = _mean_ci(wide)
        epochs = wide.columns.to_numpy()
        ax_acc.plot(epochs, mean, label=displayable(init), markersize=3, linewidth=1.1, **st)
        ax_acc.fill_between(epochs, np.clip(lo, 0, 1), np.clip(hi, 0, 1), color=st["color"], alpha=0.15, linewidth=0)
    ax_acc.axhline(cell.threshold, color="0.4", linewidth=0.8, linestyle=":")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", ylim=(0, 1.02))
    ax_acc.set_title("Validation accuracy (dotted: threshold)", fontsize=9)
    arms = {a.initializer: a for a in cell.arms}
    for i, init in enumerate(order):
        arm = arms.get(init)
        if arm is None:
            continue
        st = style(i)
        epochs = [e for e, _ in arm.kaplan_meier]
        surv = [s for _, s in arm.kaplan_meier]
        ax_km.step(epochs, surv, where="post", color=st["color"], linestyle=st["linestyle"], linewidth=1.1)
        cens = outcomes[(outcomes["initializer"] == init) & (outcomes["event"] == 0)]["time"]
        if len(cens):
            s_at = [surv[min(int(t), len(surv) - 1)] for t in cens]
            ax_km.scatter(cens + 0.04 * (i - k / 2), s_at, marker=st["marker"], color=st["color"],
                          edgecolor="black", linewidth=0.3, s=14, zorder=3)
    ax_km.set(xlabel="epoch", ylabel="P(threshold not yet reached)", ylim=(-0.03, 1.05))
    ax_km.set_title("Kaplan-Meier (markers: censored runs)", fontsize=9)
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    for i, init in enumerate(order):
        st = style(i)
        mine = outcomes["initializer"] == init
        d = outcomes.loc[mine & ~outcomes["diverged"], "final_acc"].to_numpy()
        if len(d):
            ax_fin.boxplot([d], positions=[i], widths=0.55, vert=False, showfliers=False,
                           medianprops={"color": "black"})
            ax_fin.scatter(d, i + rng.uniform(-0.18, 0.18, len(d)), color=st["color"], marker=st["marker"],
                           edgecolor="black", linewidth=0.3, zorder=3, s=12)
        n_div = int((mine & outcomes["diverged"]).sum())
        if n_div:
            ax_fin.annotate(f"{n_div} diverged", (0.01, i), xycoords=("axes fraction", "data"), va="center",
                            fontsize=6.5, color="#D55E00")
    ax_fin.set_yticks(range(k), [displayable(x) for x in order], fontsize=7 if k > 8 else 8)
    ax_fin.set_ylim(k - 0.5, -0.5)
    ax_fin.set_xlabel("final validation accuracy")
    ax_fin.set_title("Final accuracy per seed", fontsize=9)
    for ax in (ax_acc, ax_km, ax_fin):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in (ax_acc, ax_km):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*ax_acc.get_legend_handles_labels(), loc="outside lower center", ncols=_legend_columns(k),
               fontsize=7, frameon=False)
    return fig


@_figure
def summary_forest(rows: list[dict], cells: list[str], order: list[str]) -> Figure:
    """Across cells: per initializer (rows) and cell (colour and marker), mean final accuracy and restricted mean
    epochs to threshold, each with its 95% interval. `rows`: dicts with keys cell, initializer, acc, acc_ci, rmst,
    rmst_ci (intervals as (low, high), None where unknown)."""
    k, m = len(order), len(cells)
    fig = Figure(figsize=(9, max(2.0, (0.15 + 0.05 * m) * k + 0.8 + 0.2 * -(-m // 3))), layout="constrained")
    ax_acc, ax_ett = fig.subplots(1, 2, sharey=True)
    step = 0.7 / max(m, 1)
    for n, title in enumerate(cells):
        st = style(n)
        off = (n - (m - 1) / 2) * step
        mine = [r for r in rows if r["cell"] == title]
        for ax, key in ((ax_acc, "acc"), (ax_ett, "rmst")):
            pts = [(order.index(r["initializer"]) + off, r[key], r[key + "_ci"]) for r in mine if r[key] is not None]
            if not pts:
                continue
            y, x, ci = zip(*pts)
            lo = [v - (c[0] if c[0] is not None else v) for v, c in zip(x, ci)]
            hi = [(c[1] if c[1] is not None else v) - v for v, c in zip(x, ci)]
            ax.errorbar(x, y, xerr=[lo, hi], fmt=st["marker"], color=st["color"], markersize=4, capsize=2,
                        elinewidth=1, markeredgecolor="black", markeredgewidth=0.3,
                        label=displayable(title) if ax is ax_acc else None)
    ax_acc.set_yticks(range(k), [displayable(x) for x in order], fontsize=7 if k > 8 else 8)
    ax_acc.set_ylim(k - 0.5, -0.5)
    ax_acc.set_xlabel("mean final validation accuracy [95% t-interval]", fontsize=8)
    ax_ett.set_xlabel("restricted mean epochs to threshold [95% CI] (less: sooner)", fontsize=8)
    for ax in (ax_acc, ax_ett):
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    if m > 1:
        fig.legend(loc="outside lower center", ncols=min(m, 3), fontsize=7, frameon=False)
    return fig


@_figure
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


# Significance levels for pairwise figures: a light-to-dark ramp (ColorBrewer Blues, colour-blind safe and
# monotone in grayscale), with stars printed too so the level never rests on colour alone.
SIG_LEVELS = [(0.001, "***", "#08519c"), (0.01, "**", "#3182bd"), (None, "*", "#9ecae1")]  # None: alpha
NOT_SIG = "#f7f7f7"


def _sig(p, alpha: float) -> tuple[str, str]:
    """(stars, fill colour) of a Holm-adjusted p-value."""
    if p is None or p >= alpha:
        return "", NOT_SIG
    for bound, stars, colour in SIG_LEVELS:
        if p < (alpha if bound is None else min(bound, alpha)):
            return stars, colour
    return "*", SIG_LEVELS[-1][2]


def _matrix_panel(ax, order: list[str], values: dict, alpha: float, title: str, fmt: str) -> None:
    """One k x k panel: `values[(row, col)] = (row - col effect or None, Holm p or None)`."""
    k = len(order)
    for i, r in enumerate(order):
        for j, c in enumerate(order):
            if i == j:
                ax.add_patch(_rect(j, i, "#d9d9d9"))
                continue
            value, p = values.get((r, c), (None, None))
            stars, colour = _sig(p, alpha)
            ax.add_patch(_rect(j, i, colour))
            text = "–" if value is None else format(0.0 if abs(value) < 5e-4 else value, fmt)  # no "-0.000"
            dark = colour in (SIG_LEVELS[0][2], SIG_LEVELS[1][2])
            ax.text(j, i, text + ("\n" + stars if stars else ""), ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    ax.set_xlim(-0.5, k - 0.5)
    ax.set_ylim(k - 0.5, -0.5)
    shown = [displayable(x) for x in order]
    ax.set_xticks(range(k), shown, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(k), shown, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.tick_params(length=0)


def _rect(x, y, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor=colour, edgecolor="white", linewidth=1.5)


@_figure
def pairwise_matrix(cell: CellResult, alpha: float, endpoint: str,
                    restricted_means: dict[str, float] | None = None) -> Figure:
    """Row minus column effect for every pair, filled by Holm-adjusted significance. `endpoint`:
    "final_accuracy" (median difference; pairwise Wilcoxon / Mann-Whitney) or "epochs_to_threshold"
    (difference in restricted mean epochs, `restricted_means`: initializer -> epochs; pairwise log-rank)."""
    from matplotlib.patches import Patch

    order = cell.initializers
    values = {}
    if endpoint == "final_accuracy":
        for p in cell.final_primary:
            v = None if p.effect is None or p.effect.value is None else p.effect.value
            values[(p.a, p.b)], values[(p.b, p.a)] = (v, p.pvalue_holm), (None if v is None else -v, p.pvalue_holm)
        title, fmt = "Final accuracy: median difference, row − column", "+.3f"
    else:
        for p in cell.ett_pairwise:
            d = restricted_means[p.a] - restricted_means[p.b]
            values[(p.a, p.b)], values[(p.b, p.a)] = (d, p.pvalue_holm), (-d, p.pvalue_holm)
        title, fmt = "Epochs to threshold: restricted mean, row − column", "+.2f"
    side = max(3.0, 0.62 * len(order) + 1.6)
    fig = Figure(figsize=(side + 0.6, side + 0.4), layout="constrained")
    _matrix_panel(fig.subplots(), order, values, alpha, title, fmt)
    handles = [Patch(facecolor=c, edgecolor="0.6", label=f"{s} p < {min(b, alpha) if b else alpha:g}")
               for b, s, c in SIG_LEVELS] + [Patch(facecolor=NOT_SIG, edgecolor="0.6", label=f"p ≥ {alpha:g}")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4 if len(order) > 4 else 2, fontsize=7,
               title="Holm-adjusted p", title_fontsize=7, frameon=False)
    return fig


def cliques(order: list[str], ranks: dict[str, float], pairwise, alpha: float) -> list[tuple[str, ...]]:
    """Maximal runs of rank-adjacent arms in which no pair differs (Holm-adjusted p >= alpha), length >= 2."""
    sig = {frozenset((p.a, p.b)) for p in pairwise if p.pvalue_holm is not None and p.pvalue_holm < alpha}
    ranked = sorted(order, key=lambda a: ranks[a])
    groups = []
    for i in range(len(ranked)):
        j = i
        while j + 1 < len(ranked) and not any(frozenset((ranked[x], ranked[j + 1])) in sig for x in range(i, j + 1)):
            j += 1
        if j > i and not any(i >= gi and j <= gj for gi, gj in groups):
            groups.append((i, j))
    return [tuple(ranked[i:j + 1]) for i, j in groups]


@_figure
def critical_difference(ranks: dict[str, float], pairwise, alpha: float, n_blocks: int) -> Figure:
    """Demšar-style diagram: mean rank of final accuracy over seeds (1 = best), a bar joining arms that
    Holm-adjusted pairwise Wilcoxon tests do not separate. `ranks`: initializer -> mean rank."""
    order = list(ranks)
    k = len(order)
    ranked = sorted(order, key=lambda a: ranks[a])
    half = (k + 1) // 2
    groups = cliques(order, ranks, pairwise, alpha)
    labels = {a: f"{a} ({ranks[a]:.2f})" for a in ranked}
    # Coordinates in inches: labels sit outside the rank scale, each in its own row below every clique bar,
    # so no label meets a bar or another arm's leader line however many arms there are.
    width, fontsize = 7.0, 8 if k <= 16 else 7
    margin = min(2.6, 0.25 + 0.6 * fontsize / 72 * max(len(t) for t in labels.values()))  # one side's labels
    scale = width - 2 * margin - 0.2
    x_of = (lambda r: margin + 0.1 + scale * (r - 1) / (k - 1)) if k > 1 else (lambda r: width / 2)
    row_h, bar_h = 0.2 if k <= 16 else 0.17, 0.09
    top = -0.12 - bar_h * max(len(groups), 1) - 0.12  # the first label row, under the bars
    height = 0.55 - top + row_h * max(half, k - half)
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(top - row_h * max(half, k - half) - 0.05, 0.5)
    ax.hlines(0, x_of(1), x_of(k), color="black", linewidth=1)
    step = max(1, -(-k // 12))  # at most about a dozen numbered ticks
    for r in range(1, k + 1):
        ax.vlines(x_of(r), 0, 0.06 if (r - 1) % step else 0.1, color="black", linewidth=1)
        if (r - 1) % step == 0 or r == k:
            ax.text(x_of(r), 0.12, str(r), ha="center", va="bottom", fontsize=fontsize)
    for n, arm in enumerate(ranked):
        left = n < half
        row = n if left else k - 1 - n
        y = top - row_h * row
        x_end = margin if left else width - margin
        st = style(order.index(arm))
        ax.plot([x_of(ranks[arm]), x_of(ranks[arm]), x_end], [0, y, y], color="0.25", linewidth=0.8)
        ax.plot(x_of(ranks[arm]), 0, marker=st["marker"], color=st["color"], markeredgecolor="black",
                markersize=5, linestyle="none")
        ax.text(x_end - 0.05 if left else x_end + 0.05, y, labels[arm], ha="right" if left else "left",
                va="center", fontsize=fontsize)
    for m, group in enumerate(groups):
        lo, hi = x_of(ranks[group[0]]), x_of(ranks[group[-1]])
        ax.hlines(-0.12 - bar_h * m - bar_h / 2, lo - 0.04, hi + 0.04, color="black", linewidth=2.5)
    ax.axis("off")
    ax.text(width / 2, 0.48, f"Mean rank of final accuracy over {n_blocks} seeds (1 = best); bars: no Holm-adjusted "
            f"difference at alpha {alpha:g}", ha="center", va="top", fontsize=fontsize)
    return fig


@_figure
def sequential_paths(design: dict, tests: list[dict]) -> Figure:
    """Each claim test's signed z (positive: the claim's direction) against the group-sequential bounds, look by
    look. `design`: Design.to_dict(); `tests`: dicts with label, z_by_look and crossed."""
    looks, bounds = design["looks"], [b if b is not None else np.nan for b in design["bounds"]]
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.plot(looks, bounds, color="black", linewidth=1.2, marker="_", markersize=10, label="efficacy bounds ±c_k")
    ax.plot(looks, [-b for b in bounds], color="black", linewidth=1.2, marker="_", markersize=10)
    if design.get("futility") is not None and len(looks) > 1:
        f = design["futility"]
        ax.fill_between(looks[:-1], [-f] * (len(looks) - 1), [f] * (len(looks) - 1), color="0.85",
                        label=f"futility region |z| < {f:g} (non-binding)")
    ax.axhline(0, color="0.6", linewidth=0.6)
    step = 0.012 * (looks[-1] - looks[0]) if len(tests) > 1 else 0.0  # apart, so that equal paths both show
    for n, t in enumerate(tests):
        st = style(n)
        zs = t["z_by_look"]
        x = [v + (n - (len(tests) - 1) / 2) * step for v in looks[:len(zs)]]
        ax.plot(x, zs, color=st["color"], marker=st["marker"], linestyle=st["linestyle"],
                markersize=5, markeredgecolor="black", markeredgewidth=0.3, label=displayable(t["label"]))
        if t["crossed"] in ("upper", "lower"):
            ax.plot([x[-1]], [zs[-1]], marker="o", markersize=11, markerfacecolor="none",
                    markeredgecolor=st["color"], linewidth=0)
    ax.set_xticks(looks)
    ax.set_xlabel("seeds per arm at the look", fontsize=8)
    ax.set_ylabel("z (positive: the claim's direction)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    fig.legend(loc="outside right center", fontsize=7, frameon=False)
    return fig
