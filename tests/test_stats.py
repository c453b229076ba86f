"""Statistical primitives against published reference values (each source cited beside its numbers)."""

import math

import numpy as np
import pytest

from initstudy import stats as S

# R's PlantGrowth (Dobson 1983, An Introduction to Statistical Modelling, Table 7.1): dried plant weights.
PLANT = {"ctrl": np.array([4.17, 5.58, 5.18, 6.11, 4.50, 4.61, 5.17, 4.53, 5.33, 5.14]),
         "trt1": np.array([4.81, 4.17, 4.41, 3.59, 5.87, 3.83, 6.03, 4.89, 4.32, 4.69]),
         "trt2": np.array([6.31, 5.12, 5.54, 5.50, 5.37, 5.29, 4.92, 6.15, 5.80, 5.26])}
# R's sleep (Student 1908): extra hours of sleep under two drugs, the same 10 patients.
SLEEP_1 = np.array([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0])
SLEEP_2 = np.array([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])


def test_one_way_anova_and_welch_match_r_on_plantgrowth():
    # R: anova(lm(weight ~ group, PlantGrowth)) -> F = 4.8461 on 2 and 27 df, p = 0.01591.
    res = S.anova(list(PLANT.values()))
    assert (res.statistic, res.df, res.df2) == (pytest.approx(4.8461, abs=1e-4), 2, 27)
    assert res.pvalue == pytest.approx(0.01591, abs=1e-5)
    # R: oneway.test(weight ~ group, PlantGrowth) -> F = 5.181, num df = 2.000, denom df = 17.128, p = 0.01739.
    w = S.welch_anova(list(PLANT.values()))
    assert (w.statistic, w.df, w.df2) == (pytest.approx(5.181, abs=5e-4), 2, pytest.approx(17.128, abs=5e-4))
    assert w.pvalue == pytest.approx(0.01739, abs=1e-5)


def test_kruskal_and_levene_match_r_on_plantgrowth():
    # R: kruskal.test(weight ~ group, PlantGrowth) -> chi-squared = 7.9882, df = 2, p = 0.01842.
    k = S.kruskal(list(PLANT.values()))
    assert k.statistic == pytest.approx(7.9882, abs=1e-4) and k.pvalue == pytest.approx(0.01842, abs=1e-5)
    # R: car::leveneTest(weight ~ group, PlantGrowth) (median-centred) -> F = 1.1192 on (2, 27), p = 0.3412.
    lev = S.levene(list(PLANT.values()))
    assert (lev.statistic, lev.df, lev.df2) == (pytest.approx(1.1192, abs=1e-4), 2, 27)
    assert lev.pvalue == pytest.approx(0.3412, abs=1e-4)


def test_tukey_hsd_matches_r_on_plantgrowth():
    # R: TukeyHSD(aov(weight ~ group, PlantGrowth)):
    #   trt1-ctrl -0.371 [-1.0622161, 0.3202161] p adj 0.3908711
    #   trt2-ctrl  0.494 [-0.1972161, 1.1852161] p adj 0.1979960
    #   trt2-trt1  0.865 [ 0.1737839, 1.5562161] p adj 0.0120064
    rows = {(c.a, c.b): c for c in S.tukey_hsd(PLANT)}
    c = rows[("ctrl", "trt1")]  # ours is a - b, R's trt1-ctrl is b - a
    assert c.difference == pytest.approx(0.371) and c.pvalue == pytest.approx(0.3908711, abs=1e-6)
    assert c.ci == (pytest.approx(-0.3202161, abs=1e-6), pytest.approx(1.0622161, abs=1e-6))
    assert rows[("ctrl", "trt2")].pvalue == pytest.approx(0.1979960, abs=1e-6)
    t = rows[("trt1", "trt2")]
    assert t.pvalue == pytest.approx(0.0120064, abs=1e-6)
    assert t.ci == (pytest.approx(-1.5562161, abs=1e-6), pytest.approx(-0.1737839, abs=1e-6))


def test_paired_t_and_rm_anova_match_r_on_sleep():
    # R: t.test(SLEEP_1, SLEEP_2, paired = TRUE) -> t = -4.0621, df = 9, p-value = 0.002833.
    t, df, p = S.paired_t(SLEEP_1, SLEEP_2)
    assert (t, df) == (pytest.approx(-4.0621, abs=1e-4), 9)
    assert p == pytest.approx(0.002833, abs=1e-6)
    # With two conditions the repeated-measures F is t squared, on (1, 9) df, with the same p.
    rm = S.rm_anova(np.column_stack([SLEEP_1, SLEEP_2]))
    assert rm.statistic == pytest.approx(t ** 2) and rm.df2 == 9 and rm.pvalue == pytest.approx(p)


def test_games_howell_with_two_groups_is_welchs_t():
    # With two groups the studentized range reduces to Welch's t. R: t.test(extra ~ group, data = sleep)
    # -> t = -1.8608, df = 17.776, p-value = 0.07939, 95% CI [-3.3654832, 0.2054832].
    (c,) = S.games_howell({"a": SLEEP_1, "b": SLEEP_2})
    assert c.df == pytest.approx(17.776, abs=5e-4) and c.pvalue == pytest.approx(0.07939, abs=1e-5)
    assert c.statistic == pytest.approx(1.8608 * math.sqrt(2), abs=1e-3)
    assert c.ci == (pytest.approx(-3.3654832, abs=1e-6), pytest.approx(0.2054832, abs=1e-6))
    # Three groups: each interval is wider than the two-group one would be (the family is larger).
    rows = S.games_howell(PLANT)
    assert all(r.pvalue >= S.games_howell({"x": PLANT[r.a], "y": PLANT[r.b]})[0].pvalue for r in rows)


def test_shapiro_wilk_matches_the_1965_paper_example():
    # Shapiro & Wilk (1965), Biometrika 52, sec. 5: weights of 11 men -> W = 0.79, p < 0.01.
    w, p = S.shapiro(np.array([148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236], float))
    assert w == pytest.approx(0.79, abs=0.005) and p < 0.01
    assert S.shapiro(np.ones(5)) == (None, None)


def test_wilson_intervals_match_newcombe_1998():
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score, no correction).
    expected = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611),
                (1, 29): (0.0061, 0.1718)}
    for (k, n), (lo, hi) in expected.items():
        assert S.wilson(k, n) == (pytest.approx(lo, abs=5e-5), pytest.approx(hi, abs=5e-5))


def test_cochran_q_matches_published_fabric_example():
    # Four water-repellent treatments on six fabrics (1 = satisfactory); ALSTAT R blog (2012), "Cochran Q
    # test for k related samples in R", by hand and with RVAideMemoire::cochran.qtest -> Q = 9.3158, df = 3.
    m = np.array([[1, 1, 0, 0], [1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 0, 1]])
    res = S.cochran_q(m)
    assert res.statistic == pytest.approx(177 / 19) and res.df == 3
    assert res.pvalue == pytest.approx(0.02537, abs=1e-5)
    assert S.cochran_q(np.ones((4, 3), int)).pvalue == 1.0


def test_rmst_matches_r_survfit_on_aml():
    # R: print(survfit(Surv(time, status) ~ x, data = aml), print.rmean = TRUE) with the common upper limit
    # 161 -> Maintained rmean 52.6 (se 19.8), Nonmaintained 22.7 (se 4.18).
    mt = np.array([9, 13, 13, 18, 23, 28, 31, 34, 45, 48, 161], float)
    me = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 0])
    nt = np.array([5, 5, 8, 8, 12, 16, 23, 27, 30, 33, 43, 45], float)
    ne = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1])
    assert S.rmst(mt, me, 161) == (pytest.approx(52.65, abs=0.01), pytest.approx(19.83, abs=0.01))
    assert S.rmst(nt, ne, 161) == (pytest.approx(22.71, abs=0.01), pytest.approx(4.18, abs=0.005))
    # No events: every run takes the whole window.
    assert S.rmst(np.array([5.0, 5.0]), np.array([0, 0]), 5)[0] == 5.0


def test_rmst_difference_planted_and_twin():
    rng = np.random.default_rng(0)
    fast, slow = rng.integers(1, 4, 12).astype(float), rng.integers(5, 9, 12).astype(float)
    ev = np.ones(12, int)
    eff = S.rmst_difference(fast, ev, slow, ev, 10, True, rng)
    assert eff.value == pytest.approx(fast.mean() - slow.mean()) and eff.ci[1] < 0
    same = rng.integers(2, 8, (2, 12)).astype(float)
    twin = S.rmst_difference(same[0], ev, same[1], ev, 10, True, rng)
    assert twin.ci[0] < 0 < twin.ci[1]  # no planted difference: the interval covers 0


def test_two_way_anova_matches_r_on_warpbreaks():
    # R: anova(lm(breaks ~ wool * tension, warpbreaks)) -> wool F = 3.7653 (p 0.058213), tension F = 8.4980
    # (p 0.000693), wool:tension F = 4.1891 (p 0.021044), residual df 48 (Tukey 1977 via McNeil 1977).
    data = {("A", "L"): [26, 30, 54, 25, 70, 52, 51, 26, 67], ("A", "M"): [18, 21, 29, 17, 12, 18, 35, 30, 36],
            ("A", "H"): [36, 21, 24, 18, 10, 43, 28, 15, 26], ("B", "L"): [27, 14, 29, 19, 29, 31, 41, 20, 44],
            ("B", "M"): [42, 26, 19, 16, 39, 28, 21, 39, 29], ("B", "H"): [20, 21, 24, 17, 13, 15, 15, 16, 28]}
    y = np.concatenate([v for v in data.values()]).astype(float)
    wool = np.repeat([k[0] for k in data], 9)
    tension = np.repeat([k[1] for k in data], 9)
    w, t, wt = S.two_way_anova(y, wool, tension, names=("wool", "tension"))
    assert (w.test, t.test, wt.test) == ("wool", "tension", "wool:tension")
    assert w.statistic == pytest.approx(3.7653, abs=1e-4) and w.pvalue == pytest.approx(0.058213, abs=1e-6)
    assert t.statistic == pytest.approx(8.4980, abs=1e-4) and t.pvalue == pytest.approx(0.000693, abs=1e-6)
    assert wt.statistic == pytest.approx(4.1891, abs=1e-4) and wt.pvalue == pytest.approx(0.021044, abs=1e-6)
    assert wt.df == 2 and wt.df2 == 48


def test_effect_sizes_against_definitions_and_r_wilcox():
    rng = np.random.default_rng(0)
    med, mean, std, delta, a12 = S.accuracy_effects(SLEEP_1, SLEEP_2, False, rng)
    # Hedges' g from Student's sleep summary statistics (means 0.75, 2.33; SDs 1.789, 2.002; n = 10 + 10):
    # d = -1.58 / 1.8986 = -0.832, times J = 1 - 3 / (4 * 20 - 9) -> g = -0.797 (Hedges & Olkin 1985).
    assert std.name == "hedges_g" and std.value == pytest.approx(-0.797, abs=5e-4)
    assert mean.value == pytest.approx(-1.58) and med.value == pytest.approx(0.35 - 1.75)
    # A12 is the Mann-Whitney U over n1 n2. R: wilcox.test(x, y) on Hollander & Wolfe (1973, p. 69) gives
    # W = 35 with n = 10 and 5, so A12 = 0.7 and Cliff's delta = 0.4.
    x = np.array([0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46])
    y = np.array([1.15, 0.88, 0.90, 0.74, 1.21])
    *_, d, a = S.accuracy_effects(x, y, False, rng)
    assert (a.value, d.value) == (pytest.approx(0.7), pytest.approx(0.4))
    assert a.ci[0] <= a.value <= a.ci[1]
    # Paired: d_z = mean(d) / sd(d) = -1.58 / 1.2300 (Cohen 1988, eq. 2.3.5).
    dz = S.accuracy_effects(SLEEP_1, SLEEP_2, True, rng)[2]
    assert dz.name == "d_z" and dz.value == pytest.approx(-1.58 / np.std(SLEEP_1 - SLEEP_2, ddof=1))
    assert dz.ci[1] < 0  # every bootstrap of 9 of 10 negative differences stays negative on average
    # Undefined effects are None, not NaN.
    flat = S.accuracy_effects(np.ones(4), np.ones(4), True, rng)
    assert flat[2].value is None and flat[0].value == 0.0


def test_power_matches_cohen_and_schoenfeld():
    # Cohen (1988), Table 2.4.1: d = 0.5, two-sided alpha 0.05, power 0.8 -> n = 64 per group.
    assert S.seeds_needed(0.5, 0.05, paired=False) == 64
    assert S.mde_t(64, 0.05, paired=False) == pytest.approx(0.5, abs=0.005)
    # Paired (one-sample on differences): d_z = 0.5 -> n = 34 (G*Power, Faul et al. 2007).
    assert S.seeds_needed(0.5, 0.05, paired=True) == 34
    # Schoenfeld (1983): events = 4 (z_0.975 + z_0.8)^2 / log(HR)^2 = 4 * 2.8016^2 / 0.6931^2 = 65.3 for HR 2.
    assert S.schoenfeld_events(2.0, 0.05) == pytest.approx(65.3, abs=0.05)
    assert S.mde_hazard_ratio(66, 0.05) == pytest.approx(2.0, abs=0.01)
    assert S.mde_hazard_ratio(0, 0.05) is None


def test_proportions_test_fisher_and_chi2():
    # Fisher (1935) tea tasting: 3 of 4 cups right in each half -> two-sided p = 0.4857 (R fisher.test).
    res = S.proportions_test(np.array([3, 1]), np.array([4, 4]))
    assert res.test == "fisher_exact" and res.pvalue == pytest.approx(0.4857, abs=1e-4)
    assert S.proportions_test(np.array([0, 0, 0]), np.array([5, 5, 5])).pvalue == 1.0
    chi = S.proportions_test(np.array([10, 2, 1]), np.array([12, 12, 12]))
    assert chi.test == "chi2" and chi.df == 2 and chi.pvalue < 0.001


def test_cox_interaction_planted_and_twin():
    rng = np.random.default_rng(3)
    n = 30
    g = np.tile(np.repeat(["he", "xavier"], n), 2)
    f = np.repeat(["relu", "tanh"], 2 * n)
    # he is fast with relu only; with tanh both arms draw from the same distribution.
    scale = np.where((g == "he") & (f == "relu"), 1.0, 4.0)
    t = np.ceil(rng.exponential(scale)).astype(float)
    e = (t <= 10).astype(int)
    t = np.minimum(t, 10)
    res = S.cox_interaction(t, e, g, f)
    assert res.df == 1 and res.pvalue < 0.01
    additive = np.where(g == "he", 1.0, 3.0)
    t2 = np.minimum(np.ceil(rng.exponential(additive)), 10).astype(float)
    twin = S.cox_interaction(t2, (t2 < 10).astype(int), g, f)
    assert twin.pvalue > 0.05


def test_studentized_range_agrees_with_scipy():
    from scipy import stats

    for k in (2, 3, 10):
        for df in (2.0, 17.776, 27.0, 500.0):
            for q in (0.5, 2.0, 3.5, 7.0):
                assert S.studentized_range_cdf(q, k, df) == pytest.approx(stats.studentized_range.cdf(q, k, df),
                                                                          abs=1e-7)
    # R: qtukey(0.95, 3, 27) = 3.506426 (the critical value behind TukeyHSD on PlantGrowth).
    assert S.studentized_range_ppf(0.95, 3, 27) == pytest.approx(3.506426, abs=1e-6)
