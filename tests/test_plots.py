"""Figures draw any label without glyph warnings, keeping every character some installed font can show."""

from __future__ import annotations

import warnings

import pandas as pd

from initstudy import plots
from initstudy.analysis import PairwiseResult
from initstudy.report import figure_uri

LABELS = ["Xavier–He α", "初始化", "🧪 probe", "𝛼-scaled"]


def test_unicode_labels_draw_without_glyph_warnings_and_keep_the_glyphs_fonts_have():
    rows = [{"run": f"{arm}-{seed}", "initializer": arm, "seed": seed, "epoch": epoch, "val_acc": 0.1 * epoch,
             "train_loss": 1.0 / (epoch + 1), "diverged": False}
            for arm in LABELS for seed in range(2) for epoch in range(3)]
    tidy = pd.DataFrame(rows)
    outcomes = pd.DataFrame([{"initializer": arm, "seed": seed, "final_acc": 0.5 + 0.1 * seed, "diverged": False}
                             for arm in LABELS for seed in range(2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curves = plots.learning_curves(tidy, LABELS, 0.2)
        final = plots.final_accuracy(outcomes, LABELS)
        ranks = {arm: float(i + 1) for i, arm in enumerate(LABELS)}
        pairs = [PairwiseResult(a, b, "wilcoxon", 0.0, 0.5, 0.5) for i, a in enumerate(LABELS) for b in LABELS[i + 1:]]
        cd = plots.critical_difference(ranks, pairs, 0.05, 2)
        for fig in (curves, final, cd):
            figure_uri(fig)  # drawn as the report draws it
    assert [str(w.message) for w in caught] == []
    legend = [t.get_text() for t in curves.axes[1].get_legend().get_texts()]
    ticks = [t.get_text() for t in final.axes[0].get_xticklabels()]
    expected = [plots.displayable(x) for x in LABELS]
    assert legend == ticks == expected
    assert {f"{x} ({i + 1:.2f})" for i, x in enumerate(expected)} <= {t.get_text() for t in cd.axes[0].texts}
    assert expected[0] == "Xavier–He α"  # DejaVu Sans has the en dash and the alpha
    assert expected[3] == "α-scaled"  # a mathematical alpha no font has: its compatibility form
    if "Droid Sans Fallback" in plots.font_families():  # a CJK font this system has
        assert expected[1] == "初始化"


def test_characters_no_font_has_become_one_visible_placeholder():
    missing = next(chr(c) for c in (0x13000, 0x16A0, 0x1F9EA, 0x10FFFD) if c not in plots._drawable())
    assert plots.displayable(f"a{missing}b\u200d") == f"a{plots.PLACEHOLDER}b" + \
        ("\u200d" if 0x200D in plots._drawable() else "")
    assert plots.displayable("line\nbreak") == "line\nbreak"


def test_critical_difference_labels_overlap_nothing_with_many_arms():
    # 12 arms with many cliques: each label's box clears every other label, every clique bar and every leader
    # line but its own (the layout that touched bars at about 12 arms before)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection

    arms = [f"initializer_{i:02d}" for i in range(12)]
    ranks = {a: 1 + 11 * ((i * 7) % 12) / 11 for i, a in enumerate(arms)}
    pairs = [PairwiseResult(a, b, "wilcoxon", 0.0, p, p) for i, a in enumerate(arms) for b in arms[i + 1:]
             for p in [0.5 if abs(ranks[a] - ranks[b]) < 2.5 else 0.001]]
    fig = plots.critical_difference(ranks, pairs, 0.05, 10)
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("initializer_")]
    assert len(labels) == 12
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not any(b.overlaps(c) for i, b in enumerate(boxes) for c in boxes[i + 1:])
    bars = [c for c in ax.collections if isinstance(c, LineCollection) and max(c.get_linewidths()) > 2]
    assert len(bars) == len(plots.cliques(arms, ranks, pairs, 0.05)) > 2
    for (x0, y), (x1, _) in (ax.transData.transform(seg) for c in bars for seg in c.get_segments()):
        assert not any(b.x0 < x1 and x0 < b.x1 and b.y0 - 2 < y < b.y1 + 2 for b in boxes)
    for line in (line for line in ax.lines if len(line.get_xdata()) == 3):  # leader: down from the rank, across
        (x, y0), (_, y1) = ax.transData.transform(list(zip(line.get_xdata(), line.get_ydata()))[:2])
        assert not any(b.x0 < x < b.x1 and min(y0, y1) < b.y1 and b.y0 < max(y0, y1) for b in boxes)
