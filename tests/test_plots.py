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
