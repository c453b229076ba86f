"""The benchmark's two sides compute the same thing, and its synthetic store is analysable.

Speed itself is checked by `make bench` against a baseline measured in the same run, never here.
"""

import math

import pytest

from initstudy.bench import check_targets, flops_per_image, raw_run, synthetic_store
from initstudy.config import expand, load_study
from initstudy.training import train_run


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_lightning_path_equals_raw_loop(optimizer):
    """Lightning adds bookkeeping, not arithmetic: same history as the hand-written loop on CPU."""
    spec = expand(load_study("smoke", ["seeds=[4]", "initializers=[kaiming_normal]", f"optimizer={optimizer}",
                                       "lr=0.01", "accelerator=cpu"]))[0]
    ours, raw = train_run(spec, None, "cpu").history, raw_run(spec)
    assert [r["epoch"] for r in ours] == [r["epoch"] for r in raw]
    for a, b in zip(ours, raw):
        for key in ("train_loss", "val_loss", "val_acc"):
            assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9), (key, a, b)


def test_flops_per_image_matches_hand_count():
    # simple on 8x8 digits: conv1 1->16 at 8x8 and conv2 16->32 at 4x4 (3x3), linear 32*2*2 -> 10.
    spec = expand(load_study("smoke", ["seeds=[0]", "initializers=[kaiming_normal]"]))[0]
    macs = 8 * 8 * 16 * 1 * 9 + 4 * 4 * 32 * 16 * 9 + 128 * 10
    # Forward 2*MACs; backward computes weight and input gradients (2x forward), minus the first
    # conv's input gradient, which autograd skips because the images need no gradient.
    expected = 2 * macs * 3 - 2 * (8 * 8 * 16 * 9)
    assert flops_per_image(spec) == pytest.approx(expected, rel=0.01)


def test_synthetic_store_has_1000_runs_and_analyses(tmp_path):
    from initstudy.report import analyze_study, build_report

    study = synthetic_store(tmp_path, n_inits=3, n_seeds=4, epochs=5)
    results, tidy, _, missing = analyze_study(study, tmp_path)
    assert not missing and len(tidy) == 3 * 4 * 6
    assert results.cells[0].design == "paired"
    html = build_report(study, tmp_path).html  # runs without diagnostics render without the signal figure
    assert "Signal propagation at initialization" not in html and "Kaplan-Meier" in html
    assert "no initialization diagnostics" in html


def test_targets_are_checked_both_ways():
    good = {"ratio": 0.97, "per_run_overhead_s": 0.1, "analyze_1000_runs_s": 5, "report_1000_runs_s": 9,
            "report_pdf_1000_runs_s": 20}
    assert all(check_targets(good).values())
    bad = {**good, "ratio": 0.9, "per_run_overhead_s": 0.2, "report_pdf_1000_runs_s": 61}
    assert check_targets(bad) == {"ratio": False, "per_run_overhead_s": False, "analyze_1000_runs_s": True,
                                  "report_1000_runs_s": True, "report_pdf_1000_runs_s": False}
