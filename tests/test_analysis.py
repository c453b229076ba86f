"""Statistics against published reference values, planted effects and their no-difference twins."""

import numpy as np
import pandas as pd
import pytest

from initstudy.analysis import (analyze, analyze_cell, friedman, holm, kaplan_meier, kruskal, logrank,
                                mannwhitney, run_outcomes, wilcoxon)
from initstudy.errors import StudyError

# Freireich et al. (1963) remission times, weeks, as the 'gehan' data of R's MASS package.
GEHAN_6MP = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
GEHAN_6MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
GEHAN_PLACEBO = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]


def test_logrank_matches_r_survdiff_on_gehan():
    # R: survdiff(Surv(time, cens) ~ treat, data = MASS::gehan) -> Chisq = 16.8 on 1 df, p = 4.17e-05
    # (Venables & Ripley, Modern Applied Statistics with S, 4th ed., sec. 13.1).
    t = np.array(GEHAN_6MP + GEHAN_PLACEBO, float)
    e = np.array(GEHAN_6MP_EVENT + [1] * 21)
    g = np.array(["6mp"] * 21 + ["placebo"] * 21)
    res = logrank(t, e, g)
    assert res.statistic == pytest.approx(16.79, abs=0.01)
    assert res.df == 1
    assert res.pvalue == pytest.approx(4.17e-5, rel=0.01)


def test_kaplan_meier_medians_match_r_survfit_on_gehan():
    # R: survfit(Surv(time, cens) ~ treat, data = gehan): median 23 (6-MP) and 8 (control) weeks.
    _, med_6mp, _ = kaplan_meier(np.array(GEHAN_6MP, float), np.array(GEHAN_6MP_EVENT), 35)
    points, med_pl, _ = kaplan_meier(np.array(GEHAN_PLACEBO, float), np.ones(21, int), 35)
    assert (med_6mp, med_pl) == (23.0, 8.0)
    # Hand computed: 2 of 21 placebo patients relapse at week 1, so S(1) = 19/21.
    assert points[1][1] == pytest.approx(19 / 21)
    assert points[0][1] == 1.0 and points[23][1] == 0.0


def test_friedman_matches_r_rounding_times():
    # R: friedman.test(RoundingTimes) (Hollander & Wolfe 1973, p. 140) -> chi-squared = 11.143, df = 2,
    # p-value = 0.003805.
    rt = np.array([5.40, 5.50, 5.55, 5.85, 5.70, 5.75, 5.20, 5.60, 5.50, 5.55, 5.50, 5.40, 5.90, 5.85, 5.70,
                   5.45, 5.55, 5.60, 5.40, 5.40, 5.35, 5.45, 5.50, 5.35, 5.25, 5.15, 5.00, 5.85, 5.80, 5.70,
                   5.25, 5.20, 5.10, 5.65, 5.55, 5.45, 5.60, 5.35, 5.45, 5.05, 5.00, 4.95, 5.50, 5.50, 5.40,
                   5.45, 5.55, 5.50, 5.55, 5.55, 5.35, 5.45, 5.50, 5.55, 5.50, 5.45, 5.25, 5.65, 5.60, 5.40,
                   5.70, 5.65, 5.55, 6.30, 6.30, 6.25]).reshape(22, 3)
    res = friedman(rt)
    assert res.statistic == pytest.approx(11.143, abs=5e-4)
    assert res.df == 2
    assert res.pvalue == pytest.approx(0.003805, abs=5e-7)


def test_wilcoxon_matches_r_depression_example():
    # R: wilcox.test(x, y, paired = TRUE) on Hollander & Wolfe (1973, p. 29): V = 40, two-sided
    # p = 0.03906 (the documented one-sided p = 0.01953, doubled). scipy reports min(V+, V-) = 5.
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    stat, p = wilcoxon(x, y)
    assert stat == 5.0
    assert p == pytest.approx(0.03906, abs=1e-5)
    assert wilcoxon(x, x) == (0.0, 1.0)


def test_kruskal_matches_r_airway_example():
    # R: kruskal.test(list(x, y, z)) (Hollander & Wolfe 1973, p. 116) -> chi-squared = 0.77143, df = 2,
    # p-value = 0.68.
    res = kruskal([np.array([2.9, 3.0, 2.5, 2.6, 3.2]), np.array([3.8, 2.7, 4.0, 2.4]),
                   np.array([2.8, 3.4, 3.7, 2.2, 2.0])])
    assert res.statistic == pytest.approx(0.77143, abs=1e-5)
    assert res.pvalue == pytest.approx(0.68, abs=0.005)


def test_mannwhitney_matches_r_permeability_example():
    # R: wilcox.test(x, y, alternative = "g") (Hollander & Wolfe 1973, p. 69) -> W = 35, p = 0.1272;
    # two-sided doubles it.
    stat, p = mannwhitney(np.array([0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46]),
                          np.array([1.15, 0.88, 0.90, 0.74, 1.21]))
    assert stat == 35.0
    assert p == pytest.approx(0.2544, abs=1e-4)


def test_holm_by_hand_and_skips_missing():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([None, 0.02, 0.04]) == [None, pytest.approx(0.04), pytest.approx(0.04)]


# ---------------------------------------------------------------- synthetic studies

def synthetic(reach: dict, seeds: int, budget: int, rng, diverged: dict | None = None) -> pd.DataFrame:
    """Tidy rows where arm a's run reaches accuracy 0.9 at an epoch drawn by reach[a](rng).

    Accuracy climbs linearly to 0.91 at that epoch (noise sd 0.001, so the crossing epoch
    is exact), then to 0.95; a draw beyond the budget never reaches the threshold.
    """
    rows = []
    for arm, draw in reach.items():
        for s in range(seeds):
            at = draw(rng)
            div = bool(diverged and s in diverged.get(arm, ()))
            for e in range(budget + 1):
                acc = 0.1 + 0.81 * min(e / at, 1.0) if e <= at else min(0.91 + 0.01 * (e - at), 0.95)
                acc += rng.normal(0, 0.001)
                rows.append({"run": f"{arm}-{s}", "initializer": arm, "seed": s, "epoch": e,
                             "val_acc": min(acc, 1.0), "val_loss": 1.0, "train_loss": 1.0, "diverged": div})
                if div and e >= 2:
                    break
    return pd.DataFrame(rows)


def test_planted_effect_is_detected():
    rng = np.random.default_rng(1)
    tidy = synthetic({"fast": lambda r: r.integers(2, 4), "slow": lambda r: r.integers(6, 9),
                      "mid": lambda r: r.integers(4, 6)}, 10, 12, rng)
    cell = analyze_cell(tidy, {}, 0.9, 12, ["fast", "mid", "slow"])
    assert cell.design == "paired"
    assert cell.ett_omnibus[0].pvalue < 0.001
    fast_slow = next(p for p in cell.ett_pairwise if (p.a, p.b) == ("fast", "slow"))
    assert fast_slow.pvalue_holm < 0.05
    medians = {a.initializer: a.median_epochs for a in cell.arms}
    assert medians["fast"] < medians["mid"] < medians["slow"]


def test_no_difference_twin_rejects_at_about_alpha():
    """Identical arms: the log-rank and Friedman tests reject in about alpha of the draws, not more."""
    rng = np.random.default_rng(2)
    rejections = {"logrank": 0, "friedman": 0}
    draws = 120
    for _ in range(draws):
        same = lambda r: r.integers(2, 9)  # noqa: E731
        tidy = synthetic({"a": same, "b": same, "c": same}, 8, 10, rng)
        cell = analyze_cell(tidy, {}, 0.9, 10)
        rejections["logrank"] += cell.ett_omnibus[0].pvalue < 0.05
        rejections["friedman"] += cell.final_omnibus[0].pvalue < 0.05
    # Binomial(120, 0.05) exceeds 14 rejections with probability < 0.2%.
    assert rejections["logrank"] <= 14 and rejections["friedman"] <= 14, rejections


def test_censoring_is_not_imputed():
    """6 of 10 'bimodal' runs reach the threshold at epoch 2, 4 never; every 'steady' run at epoch 6.

    Imputing the never-reached runs as the 20-epoch budget gives bimodal a mean of 9.2 epochs, slower
    than steady's 6; the Kaplan-Meier medians (2 vs 6) rank bimodal first, as its runs deserve.
    """
    rng = np.random.default_rng(3)
    pattern = iter([2] * 6 + [99] * 4)
    tidy = synthetic({"bimodal": lambda r: next(pattern), "steady": lambda r: 6}, 10, 20, rng)
    out = run_outcomes(tidy, 0.9, 20)
    bimodal = out[out["initializer"] == "bimodal"]
    assert set(bimodal.loc[bimodal["event"] == 0, "time"]) <= {20.0}  # censored at the budget, flagged
    assert bimodal["time"].mean() == pytest.approx(9.2)  # what an imputing analysis would report
    cell = analyze_cell(tidy, {}, 0.9, 20, ["bimodal", "steady"])
    med = {a.initializer: a.median_epochs for a in cell.arms}
    assert med == {"bimodal": 2.0, "steady": 6.0}


def test_diverged_runs_are_censored_at_budget_and_rank_worst():
    rng = np.random.default_rng(4)
    tidy = synthetic({"a": lambda r: 3, "b": lambda r: 3}, 6, 8, rng, diverged={"b": {0, 1, 2, 3, 4, 5}})
    out = run_outcomes(tidy, 0.9, 8)
    b = out[out["initializer"] == "b"]
    assert b["diverged"].all() and (b["event"] == 0).all() and (b["time"] == 8).all()
    cell = analyze_cell(tidy, {}, 0.9, 8, ["a", "b"])
    pair = cell.final_pairwise[0]
    assert pair.test == "wilcoxon" and pair.pvalue == pytest.approx(2 / 2 ** 6)  # every seed: a beats b
    assert any("Diverged runs rank below" in n for n in cell.notes)
    arm_b = next(a for a in cell.arms if a.initializer == "b")
    assert arm_b.n_diverged == 6 and arm_b.final_acc_mean is None


def test_a_missing_run_keeps_the_cell_paired_on_the_shared_seeds():
    """The design is fixed in advance: one missing run drops its seed from the paired tests (with a note
    naming it), it does not switch the cell to unpaired tests."""
    rng = np.random.default_rng(5)
    full = synthetic({"a": lambda r: 3, "b": lambda r: 5, "c": lambda r: 4}, 6, 8, rng)
    tidy = full[~((full["initializer"] == "b") & (full["seed"] == 0))]
    cell = analyze_cell(tidy, {}, 0.9, 8)
    assert cell.design == "paired" and cell.seeds == (1, 2, 3, 4, 5)
    assert [a.n_runs for a in cell.arms] == [5, 5, 5]
    note = next(n for n in cell.notes if n.startswith("Paired on the 5 seeds"))
    assert "seed 0 of a (missing in b)" in note and "seed 0 of c (missing in b)" in note
    assert [t.test for t in cell.final_omnibus] == ["friedman", "iman_davenport", "rm_anova"]
    assert {p.test for p in cell.final_pairwise} == {"wilcoxon", "paired_t"}
    # The same as analysing only the shared seeds.
    same = analyze_cell(full[full["seed"] != 0], {}, 0.9, 8)
    assert [p.pvalue for p in cell.final_pairwise] == [p.pvalue for p in same.final_pairwise]
    assert cell.ett_omnibus == same.ett_omnibus
    # No complete seed in common beyond one: unpaired, and said so; forcing the design overrides it.
    disjoint = full[(full["initializer"] == "a") | (full["seed"] >= 5)]
    un = analyze_cell(disjoint, {}, 0.9, 8, ["a", "b"])
    assert un.design == "unpaired" and any("fewer than 2 seeds are shared" in n for n in un.notes)
    assert [t.test for t in un.final_omnibus][-1] == "kruskal" and un.final_pairwise[0].test == "mannwhitney"
    forced = analyze_cell(tidy, {}, 0.9, 8, design="unpaired")
    assert forced.design == "unpaired" and [a.n_runs for a in forced.arms] == [6, 5, 6]
    assert [p.test for p in forced.final_pairwise] == ["mannwhitney"] * 3 + ["tukey_hsd"] * 3 + ["games_howell"] * 3
    with pytest.raises(StudyError, match="design 'blocked' is unknown; use one of auto, paired, unpaired"):
        analyze_cell(tidy, {}, 0.9, 8, design="blocked")


def test_unpaired_when_seed_sets_are_disjoint():
    rng = np.random.default_rng(5)
    tidy = synthetic({"a": lambda r: 3, "b": lambda r: 5}, 6, 8, rng)
    tidy = tidy[(tidy["initializer"] == "a") | (tidy["seed"] == 0)]
    cell = analyze_cell(tidy, {}, 0.9, 8)
    assert cell.design == "unpaired"
    assert [t.test for t in cell.final_omnibus] == ["kruskal"]  # b has 1 run: no ANOVA
    assert [p.test for p in cell.final_pairwise] == ["mannwhitney"]


def test_analyze_is_deterministic_and_json_safe():
    import json

    rng = np.random.default_rng(6)
    tidy = synthetic({"a": lambda r: r.integers(2, 5), "b": lambda r: 99}, 5, 6, rng)
    tidy["model"] = "m"
    a = json.dumps(analyze(tidy, ["model"], 0.9, 6, 0.05, "s").to_dict(), allow_nan=False)
    b = json.dumps(analyze(tidy, ["model"], 0.9, 6, 0.05, "s").to_dict(), allow_nan=False)
    assert a == b
    d = json.loads(a)
    assert d["schema"] == "initstudy.results/1"
    cell = d["cells"][0]
    assert cell["factors"] == {"model": "m"}
    assert cell["epochs_to_threshold"]["omnibus"][0]["test"] == "logrank"
    assert [p["epoch"] for p in cell["epochs_to_threshold"]["kaplan_meier"]["a"]] == list(range(7))


def test_stratified_logrank_agrees_with_statsmodels_and_survives_ties():
    from statsmodels.duration.survfunc import survdiff

    rng = np.random.default_rng(7)
    t = rng.integers(1, 10, 60).astype(float)
    e = (rng.random(60) < 0.7).astype(int)
    g = np.repeat(["a", "b", "c"], 20)
    s = np.tile(np.arange(20), 3)
    strata = s % 4
    ours = logrank(t, e, g, strata)
    ref_stat, ref_p = survdiff(t, e, g, strata=strata)
    assert ours.statistic == pytest.approx(ref_stat, rel=1e-9) and ours.pvalue == pytest.approx(ref_p, rel=1e-9)
    # Every stratum's events tie exactly: statsmodels' solve fails, ours reports no information.
    tied = logrank(np.array([2.0, 2.0, 3.0, 3.0]), np.array([1, 1, 1, 1]), np.array(["a", "b", "a", "b"]),
                   np.array([0, 0, 1, 1]))
    assert tied.pvalue is None and tied.df == 0


def test_cox_efron_matches_r_coxph_on_gehan():
    # R (survival, Efron ties by default): coxph(Surv(time, cens) ~ treat, data = MASS::gehan)
    # -> coef 1.572, exp(coef) 4.817, se(coef) 0.412, p = 0.00014 (control vs 6-MP).
    from initstudy.analysis import cox

    t = np.array(GEHAN_6MP + GEHAN_PLACEBO, float)
    e = np.array(GEHAN_6MP_EVENT + [1] * 21)
    g = np.array(["6mp"] * 21 + ["placebo"] * 21)
    (res,) = cox(t, e, g, reference="6mp")
    assert res.initializer == "placebo" and res.reference == "6mp"
    assert np.log(res.hazard_ratio) == pytest.approx(1.572, abs=5e-4)
    se = (np.log(res.ci[1]) - np.log(res.ci[0])) / (2 * 1.959964)
    assert se == pytest.approx(0.412, abs=5e-4)
    assert res.pvalue == pytest.approx(0.00014, abs=1e-5)


def test_iman_davenport_by_hand():
    # RoundingTimes: chi2 = 11.143, n = 22, k = 3 -> F = 21 * 11.143 / (44 - 11.143) = 7.1217 on (2, 42).
    from initstudy.analysis import TestResult, iman_davenport

    res = iman_davenport(TestResult("friedman", 11.142857142857, 2, 0.0038), 22, 3)
    assert res.statistic == pytest.approx(21 * 11.142857142857 / (44 - 11.142857142857))
    assert res.statistic == pytest.approx(7.1217, abs=1e-4)
    assert res.pvalue == pytest.approx(stats_f_sf(7.12174, 2, 42), rel=1e-3)


def stats_f_sf(f, d1, d2):
    from scipy import stats

    return stats.f.sf(f, d1, d2)


def test_cox_planted_effect_and_unestimable_arm():
    rng = np.random.default_rng(8)
    # Overlapping arms: with complete separation inside every seed the stratified partial likelihood has
    # no finite maximum (reported as such), so the planted effect is strong but not total.
    tidy = synthetic({"slow": lambda r: r.integers(4, 10), "fast": lambda r: r.integers(2, 6),
                      "never": lambda r: 99}, 12, 10, rng)
    cell = analyze_cell(tidy, {}, 0.9, 10, ["never", "slow", "fast"])
    hr = {c.initializer: c for c in cell.ett_cox}
    assert cell.ett_cox[0].reference == "slow"  # first arm that reached the threshold
    assert hr["fast"].hazard_ratio > 1 and hr["fast"].pvalue < 0.05
    assert hr["never"].hazard_ratio is None and "not estimable" in hr["never"].note
    twin = analyze_cell(synthetic({"a": lambda r: r.integers(2, 9), "b": lambda r: r.integers(2, 9)}, 10, 10,
                                  np.random.default_rng(9)), {}, 0.9, 10, ["a", "b"])
    assert twin.ett_cox[0].ci[0] < 1 < twin.ett_cox[0].ci[1]


def test_cox_reports_separation_instead_of_a_huge_ratio():
    from initstudy.analysis import cox

    t = np.array([2, 2, 2, 2, 6, 6, 6, 6], float)
    e = np.ones(8, int)
    g = np.array(["fast"] * 4 + ["slow"] * 4)
    (res,) = cox(t, e, g, reference="slow", strata=np.array([0, 1, 2, 3] * 2))
    assert res.hazard_ratio is None and "separation" in res.note


# ---------------------------------------------------------------- final accuracy, divergence, power, factorial

def accuracy_tidy(finals: dict, budget: int = 3, diverged: dict | None = None, factors: dict | None = None,
                  seeds: dict | None = None) -> pd.DataFrame:
    """Tidy rows whose accuracy climbs linearly from 0.1 to finals[arm][i] (run i, seed seeds[arm][i])."""
    rows = []
    for arm, values in finals.items():
        for i, final in enumerate(values):
            seed = (seeds or {}).get(arm, range(len(values)))[i]
            div = bool(diverged and i in diverged.get(arm, ()))
            for e in range(budget + 1):
                rows.append({"run": f"{arm}-{seed}-{factors}", "initializer": arm, "seed": seed, "epoch": e,
                             "val_acc": 0.1 + (final - 0.1) * e / budget, "val_loss": 1.0, "train_loss": 1.0,
                             "diverged": div, **(factors or {})})
    return pd.DataFrame(rows)


def test_unpaired_accuracy_planted_effect_and_no_difference_twin():
    """Unpaired arms: ANOVA, Welch, Kruskal and Tukey find a planted 3-SD shift; with none they reject in
    about alpha of the draws."""
    rng = np.random.default_rng(11)
    seeds = {"a": list(range(10)), "b": list(range(10, 20)), "c": list(range(20, 30))}
    planted = accuracy_tidy({"a": 0.90 + 0.01 * rng.standard_normal(10), "b": 0.90 + 0.01 * rng.standard_normal(10),
                             "c": 0.93 + 0.01 * rng.standard_normal(10)}, seeds=seeds)
    cell = analyze_cell(planted, {}, 0.95, 3, ["a", "b", "c"])
    assert cell.design == "unpaired"
    assert all(t.pvalue < 0.01 for t in cell.final_omnibus), cell.final_omnibus
    tukey = {(p.a, p.b): p for p in cell.final_pairwise if p.test == "tukey_hsd"}
    assert tukey[("a", "c")].pvalue < 0.05 and tukey[("a", "c")].effect.ci[1] < 0
    g = next(e for e in tukey[("a", "c")].effects if e.name == "hedges_g")
    assert g.value < -1 and g.ci[1] < 0
    rejections = {t: 0 for t in ("anova", "welch_anova", "kruskal", "tukey_hsd")}
    draws = 60
    for _ in range(draws):
        twin = accuracy_tidy({k: 0.9 + 0.01 * rng.standard_normal(10) for k in "abc"}, seeds=seeds)
        c = analyze_cell(twin, {}, 0.95, 3, ["a", "b", "c"])
        for t in c.final_omnibus:
            rejections[t.test] += t.pvalue < 0.05
        rejections["tukey_hsd"] += any(p.pvalue < 0.05 for p in c.final_pairwise if p.test == "tukey_hsd")
    # Binomial(60, 0.05) exceeds 8 with probability < 0.5%.
    assert max(rejections.values()) <= 8, rejections


def test_paired_accuracy_t_and_effects_and_assumption_checks():
    rng = np.random.default_rng(12)
    base = 0.9 + 0.02 * rng.standard_normal(8)  # shared seed effect: pairing removes it
    tidy = accuracy_tidy({"a": base + 0.005 + 0.002 * rng.standard_normal(8), "b": base})
    cell = analyze_cell(tidy, {}, 0.95, 3, ["a", "b"])
    tests = {p.test: p for p in cell.final_pairwise}
    assert set(tests) == {"wilcoxon", "paired_t"}
    assert tests["paired_t"].pvalue < 0.01 and tests["paired_t"].effect.name == "d_z"
    assert tests["paired_t"].effect.value > 1 and tests["paired_t"].effect.ci[0] > 0
    assert [t.test for t in cell.final_omnibus] == ["rm_anova"]  # two arms: no Friedman
    assert cell.final_checks[0].test == "shapiro" and cell.final_checks[0].pvalue is not None
    assert cell.best is not None and {p.test for p in cell.best.pairwise} == {"wilcoxon", "paired_t"}


def test_divergence_rates_wilson_and_cochran_planted_and_twin():
    rng = np.random.default_rng(13)
    finals = {k: 0.9 + 0.01 * rng.standard_normal(12) for k in ("stable", "fragile")}
    cell = analyze_cell(accuracy_tidy(finals, diverged={"fragile": set(range(9))}), {}, 0.95, 3)
    assert cell.divergence_test.test == "cochran_q" and cell.divergence_test.pvalue < 0.01
    arm = {a.initializer: a for a in cell.arms}
    assert arm["fragile"].n_diverged == 9 and arm["fragile"].diverged_ci[0] > 0.4
    assert arm["stable"].diverged_ci == (0.0, pytest.approx(0.2425, abs=1e-4))  # Wilson 0/12
    twin = analyze_cell(accuracy_tidy(finals, diverged={"fragile": {0}, "stable": {1}}), {}, 0.95, 3)
    assert twin.divergence_test.pvalue > 0.5
    unpaired = accuracy_tidy(finals, diverged={"fragile": set(range(9))},
                             seeds={"stable": list(range(12)), "fragile": list(range(12, 24))})
    assert analyze_cell(unpaired, {}, 0.95, 3).divergence_test.test == "fisher_exact"


def test_power_flags_underpowered_cells():
    rng = np.random.default_rng(14)
    few = analyze_cell(accuracy_tidy({k: 0.9 + 0.01 * rng.standard_normal(5) for k in "abc"}), {}, 0.95, 3)
    p = few.power
    assert p.underpowered and p.comparisons == 3 and p.alpha_per_comparison == pytest.approx(0.05 / 3)
    assert p.min_wilcoxon_p == pytest.approx(2 / 32) and any("Wilcoxon" in r for r in p.reasons)
    assert p.seeds_needed == S_seeds_needed(0.8, 0.05 / 3, True) and p.mde_standardized > 0.8
    many = analyze_cell(accuracy_tidy({k: 0.9 + 0.01 * rng.standard_normal(30) for k in "ab"}), {}, 0.95, 3)
    assert not many.power.underpowered and many.power.mde_standardized < 0.8
    assert many.power.mde_accuracy == pytest.approx(many.power.mde_standardized * 0.01 * np.sqrt(2), rel=0.35)


def S_seeds_needed(effect, alpha, paired):
    from initstudy.stats import seeds_needed

    return seeds_needed(effect, alpha, paired)


def test_factorial_interaction_planted_and_twin():
    """he beats xavier with relu only: the initializer x activation interaction is significant; with an
    additive (same-size) advantage in both activations it is not."""
    rng = np.random.default_rng(15)

    def study(gap_tanh):
        parts = []
        for act, gap in (("relu", 0.03), ("tanh", gap_tanh)):
            base = 0.9 + 0.005 * rng.standard_normal(10)
            parts.append(accuracy_tidy({"he": base + gap, "xavier": base + 0.003 * rng.standard_normal(10)},
                                       factors={"activation": act}))
        return pd.concat(parts)

    res = analyze(study(0.0), ["activation"], 0.99, 3, 0.05, "s")
    assert len(res.cells) == 2 and len(res.factorial) == 1
    f = res.factorial[0]
    terms = {t.test: t for t in f.final_accuracy}
    assert f.factor == "activation" and f.design == "blocked by seed"
    assert terms["initializer:activation"].pvalue < 0.001
    twin = {t.test: t for t in analyze(study(0.03), ["activation"], 0.99, 3, 0.05, "s").factorial[0].final_accuracy}
    assert twin["initializer:activation"].pvalue > 0.05 and twin["initializer"].pvalue < 0.001


def test_results_json_carries_the_documented_schema():
    import json

    rng = np.random.default_rng(16)
    tidy = synthetic({"a": lambda r: r.integers(2, 5), "b": lambda r: r.integers(3, 7), "c": lambda r: 99}, 6, 8, rng)
    d = json.loads(json.dumps(analyze(tidy, [], 0.9, 8, 0.05, "s").to_dict(), allow_nan=False))
    cell = d["cells"][0]
    assert cell["design"] == "paired" and cell["budget_epochs"] == 8 and cell["threshold"] == 0.9
    fa = cell["final_accuracy"]
    assert {t["test"] for t in fa["omnibus"]} == {"friedman", "iman_davenport", "rm_anova"}
    for p in fa["pairwise"]:
        assert {"a", "b", "test", "statistic", "pvalue", "pvalue_holm", "effect"} <= set(p)
        assert {"name", "value", "ci"} <= set(p["effect"])
    ett = cell["epochs_to_threshold"]
    assert ett["omnibus"][0]["test"] == "logrank" and {"statistic", "df", "pvalue"} <= set(ett["omnibus"][0])
    assert {"epoch", "survival"} == set(ett["kaplan_meier"]["a"][0])
    assert {"initializer", "reference", "hazard_ratio", "ci", "pvalue"} <= set(ett["cox"][0])
    assert all(p["effect"]["name"] == "rmst_difference" for p in ett["pairwise"])
    assert [r["initializer"] for r in ett["rmst"]] == ["a", "b", "c"] and ett["rmst"][2]["rmst"] == 8
    assert cell["divergence"]["arms"][0]["ci"] == [0.0, pytest.approx(0.39, abs=0.01)]
    assert cell["power"]["n_seeds"] == 6 and cell["power"]["comparisons"] == 3
    assert fa["assumptions"] and cell["best_accuracy"]["pairwise"]


# ---------------------------------------------------------------- issue 18: outcome rule, design and labels

def _run_rows(arm, seed, reach, last, diverged):
    """One run's tidy rows: accuracy 0.95 from epoch `reach` on (never if None), logged to epoch `last`;
    a diverged run's last logged epoch collapses to 0.1."""
    rows = []
    for e in range(last + 1):
        acc = 0.95 if reach is not None and e >= reach else 0.1 + 0.05 * e
        rows.append({"run": f"{arm}-{seed}", "initializer": arm, "seed": seed, "epoch": e,
                     "val_acc": 0.1 if diverged and e == last else acc, "val_loss": 1.0, "train_loss": 1.0,
                     "diverged": diverged})
    return rows


REACH_THEN_DIVERGE = [("a", 0, 2, 8, False), ("a", 1, 3, 8, False), ("a", 2, 3, 5, True), ("a", 3, 4, 8, False),
                      ("a", 4, None, 8, False), ("b", 0, 4, 8, False), ("b", 1, 5, 8, False), ("b", 2, 6, 8, False),
                      ("b", 3, None, 3, True), ("b", 4, 6, 7, True)]


def test_reaching_then_diverging_is_an_event_and_diverging_alone_is_censored_at_budget():
    tidy = pd.DataFrame([r for spec in REACH_THEN_DIVERGE for r in _run_rows(*spec)])
    out = run_outcomes(tidy, 0.9, 8).set_index("run")
    assert (out.at["a-2", "time"], out.at["a-2", "event"]) == (3.0, 1)  # reached at 3, diverged at 5
    assert (out.at["b-4", "time"], out.at["b-4", "event"]) == (6.0, 1)  # reached at 6, diverged at 7
    assert (out.at["b-3", "time"], out.at["b-3", "event"]) == (8.0, 0)  # diverged at 3 without reaching
    assert (out.at["a-4", "time"], out.at["a-4", "event"]) == (8.0, 0)  # used the budget, never reached
    assert np.isnan(out.at["a-2", "final_acc"])  # a diverged run has no final accuracy
    # R: survdiff(Surv(t, e) ~ g + strata(s)) with t = c(2,3,3,4,8, 4,5,6,8,6), e = c(1,1,1,1,0, 1,1,1,0,1),
    # s = rep(0:4, 2) -> Chisq = 1.8 (p = 0.179712494879); without strata Chisq = 1.25311106967
    # (p = 0.262959110669). Censoring the two reach-then-diverge runs instead would give 0.2406 unstratified.
    cell = analyze_cell(tidy, {}, 0.9, 8)
    assert cell.design == "paired"
    assert cell.ett_omnibus[0].statistic == pytest.approx(1.8, abs=1e-12)
    assert cell.ett_omnibus[0].pvalue == pytest.approx(0.179712494879, abs=1e-11)
    un = analyze_cell(tidy, {}, 0.9, 8, design="unpaired").ett_omnibus[0]
    assert un.statistic == pytest.approx(1.25311106967, abs=1e-10) and un.pvalue == pytest.approx(0.262959110669,
                                                                                                 abs=1e-11)


def test_duplicate_runs_are_named_and_never_paired():
    rng = np.random.default_rng(17)
    tidy = synthetic({"a": lambda r: r.integers(2, 6), "b": lambda r: r.integers(3, 8)}, 5, 8, rng)
    dup = tidy[(tidy["initializer"] == "b") & (tidy["seed"] == 2)].assign(run="b-2-again")
    cell = analyze_cell(pd.concat([tidy, dup]), {}, 0.9, 8)
    assert not any("do not share one set of seeds" in n for n in cell.notes)
    assert any("Duplicate runs" in n and "b seed 2 (b-2, b-2-again)" in n for n in cell.notes)
    assert cell.design == "paired" and cell.seeds == (0, 1, 3, 4)
    assert any("seed 2 of a (duplicated in b)" in n for n in cell.notes)
    assert [a.n_runs for a in cell.arms] == [4, 4]


def test_one_initializer_is_a_single_arm_not_paired():
    rng = np.random.default_rng(18)
    tidy = synthetic({"only": lambda r: r.integers(2, 6)}, 5, 8, rng)
    cell = analyze_cell(tidy, {}, 0.9, 8)
    assert cell.design == "single arm" and cell.final_pairwise == () and cell.ett_omnibus == ()
    assert cell.power is None and cell.arms[0].n_runs == 5 and cell.arms[0].median_epochs is not None
    assert cell.to_dict()["primary"] == {} and any("Only one initializer" in n for n in cell.notes)


def test_a_log_with_only_epoch_zero_has_no_final_accuracy():
    """Pre-training accuracy is not an outcome: such a run is left out like a missing one, with a note."""
    rng = np.random.default_rng(19)
    tidy = accuracy_tidy({"a": 0.9 + 0.01 * rng.standard_normal(4), "b": 0.9 + 0.01 * rng.standard_normal(4)})
    tidy.loc[tidy["run"].str.startswith("b-3"), "val_acc"] = 0.99  # would win if epoch 0 counted
    stub = tidy[~(tidy["run"].str.startswith("b-3") & (tidy["epoch"] > 0))]
    out = run_outcomes(stub, 0.95, 3)
    assert len(out) == 7 and (out["initializer"] == "b").sum() == 3
    cell = analyze_cell(stub, {}, 0.95, 3)
    b = next(a for a in cell.arms if a.initializer == "b")
    assert b.n_runs == 3 and b.final_acc_mean < 0.95
    assert any("no trained epoch" in n and "(b, seed 3)" in n for n in cell.notes)
    assert cell.design == "paired" and cell.seeds == (0, 1, 2)


def test_two_arms_with_one_run_in_an_arm_give_results_not_errors():
    import json

    rng = np.random.default_rng(20)
    full = synthetic({"a": lambda r: r.integers(2, 6), "b": lambda r: r.integers(3, 12)}, 4, 8, rng,
                     diverged={"b": {1}})
    for keep in (0, 1):  # b's one run finished, or diverged
        tidy = full[(full["initializer"] == "a") | (full["seed"] == keep)]
        for design in ("auto", "paired", "unpaired"):
            cell = analyze_cell(tidy, {}, 0.9, 8, design=design)
            json.dumps(cell.to_dict(), allow_nan=False)
            assert [a.n_runs for a in cell.arms] == ([1, 1] if design == "paired" else [4, 1])
            assert len(cell.final_primary) == 1 and len(cell.ett_pairwise) == 1
            if design == "paired":  # forced: one shared seed, so nothing paired can be computed
                assert cell.final_primary[0].pvalue is None and any("at least 2" in n for n in cell.notes)
            else:
                assert cell.design == "unpaired" and cell.final_primary[0].pvalue is not None
                assert cell.power.mde_standardized is None and cell.power.underpowered
