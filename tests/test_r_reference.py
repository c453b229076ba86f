"""Statistics against R 4.2.2 (survival 3.5-3, coin 1.4) on small data sets written out here.

Each block cites the R call whose printed values are pasted beside it.
"""

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from initstudy import stats as S

# ---------------------------------------------------------------- Cox (Efron ties)

# Unpaired, 5 arms x 8 runs, epochs to threshold censored at 10. statsmodels' PHReg.fit() returns NaN
# for every coefficient here (Newton without step-halving overshoots); R converges.
UNP_T = [1, 1, 1, 2, 1, 1, 1, 1, 2, 10, 10, 9, 8, 1, 2, 2, 8, 8, 9, 10, 10, 10, 10, 10, 10, 5, 4, 1, 8, 5, 3, 2,
         7, 10, 7, 10, 10, 10, 3, 10]
UNP_E = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1,
         0, 0, 0, 1, 0]
UNP_G = list("AAAAAAAABBBBBBBBCCCCCCCCDDDDDDDDEEEEEEEE")


def test_cox_converges_where_plain_newton_fails_and_matches_r():
    # R: coxph(Surv(t, e) ~ g, ties = "efron"), summary() and exp(confint()):
    #   coef, se, Pr(>|z|), 2.5 %, 97.5 %
    r = {"B": (-2.630449775, 0.6879074990, 1.313879837e-04, 0.018709503093, 0.2774329902),
         "C": (-3.817395710, 0.7875308187, 1.251550424e-06, 0.004696546857, 0.1029137861),
         "D": (-2.368956461, 0.6645760200, 3.643931450e-04, 0.025438245084, 0.3442416500),
         "E": (-3.973793689, 0.8333344989, 1.855605298e-06, 0.003671704460, 0.0962806337)}
    res = {c.initializer: c for c in S.cox(np.array(UNP_T, float), np.array(UNP_E), np.array(UNP_G), "A")}
    for arm, (coef, se, p, lo, hi) in r.items():
        c = res[arm]
        assert math.log(c.hazard_ratio) == pytest.approx(coef, abs=1e-8) and c.note == ""
        assert c.pvalue == pytest.approx(p, rel=1e-6)
        assert c.ci == (pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6))
    # R: coxph(...)$loglik -> -92.81833187 (null), -76.6967301 (fit).
    x = np.column_stack([(np.array(UNP_G) == a).astype(float) for a in "BCDE"])
    fit = S.cox_fit(np.array(UNP_T, float), np.array(UNP_E), x)
    assert fit.llf == pytest.approx(-76.6967301, abs=1e-6) and not fit.separated.any()
    assert fit.se == pytest.approx([r[a][1] for a in "BCDE"], rel=1e-6)


def test_stratified_cox_matches_r():
    # 3 arms x 10 seeds, stratified by seed. R: coxph(Surv(t, e) ~ g + strata(s), ties = "efron") ->
    #   gB coef 0.09800013576 se 0.5897105066 p 0.8680125710; gC -0.21067996274 se 0.6184283515 p 0.7333520546;
    #   loglik -17.06664795.
    t = np.array([4, 10, 1, 10, 10, 8, 10, 5, 4, 4, 2, 2, 3, 2, 9, 4, 5, 8, 3, 4, 5, 4, 5, 7, 8, 1, 6, 1, 2, 2], float)
    e = (t < 10).astype(int)
    g = np.array(list("ABC" * 10))
    s = np.repeat(np.arange(10), 3)
    res = {c.initializer: c for c in S.cox(t, e, g, "A", strata=s)}
    assert math.log(res["B"].hazard_ratio) == pytest.approx(0.09800013576, abs=1e-8)
    assert math.log(res["C"].hazard_ratio) == pytest.approx(-0.21067996274, abs=1e-8)
    assert (res["B"].pvalue, res["C"].pvalue) == (pytest.approx(0.8680125710, abs=1e-9),
                                                  pytest.approx(0.7333520546, abs=1e-9))
    fit = S.cox_fit(t, e, np.column_stack([(g == "B"), (g == "C")]).astype(float), s)
    assert fit.llf == pytest.approx(-17.06664795, abs=1e-7)


def test_cox_flags_separation_only_where_the_likelihood_has_no_finite_maximum():
    # F's four events all come before any other: no finite maximum for F; B overlaps A and is estimable.
    # R: coxph(Surv(t, e) ~ g) warns "Loglik converged before variable 2; coefficient may be infinite"
    # (gF coef 22.1, se 15770) and gives gB coef -0.6489295267, se 0.6782801608, p 0.3387046323,
    # exp(confint) [0.1382994229, 1.974815863]; loglik -17.82143778.
    t = np.array([1, 1, 1, 1, 2, 3, 4, 5, 6, 3, 4, 5, 6, 8], float)
    e = np.ones(14, int)
    g = np.array(list("FFFFAAAAABBBBB"))
    res = {c.initializer: c for c in S.cox(t, e, g, "A")}
    assert res["F"].hazard_ratio is None and "separation" in res["F"].note and "infinite" in res["F"].note
    b = res["B"]
    assert math.log(b.hazard_ratio) == pytest.approx(-0.6489295267, abs=1e-8)
    assert b.pvalue == pytest.approx(0.3387046323, abs=1e-9)
    assert b.ci == (pytest.approx(0.1382994229, rel=1e-8), pytest.approx(1.974815863, rel=1e-8))
    fit = S.cox_fit(t, e, np.column_stack([(g == "B"), (g == "F")]).astype(float))
    assert list(fit.separated) == [False, True] and fit.llf == pytest.approx(-17.82143778, abs=1e-6)


def test_cox_interaction_lr_matches_r_anova():
    # Data of test_stats.test_cox_interaction_planted_and_twin (numpy seed 3), 4 cells of 30.
    # R: anova(coxph(Surv(t, e) ~ g + f), coxph(Surv(t, e) ~ g * f)) -> Chisq 12.42194268, Df 1,
    # p 0.0004243186145; with + strata(s) (s = rep(0:14, 8)): Chisq 8.808367549, p 0.002998521936.
    rng = np.random.default_rng(3)
    n = 30
    g = np.tile(np.repeat(["he", "xavier"], n), 2)
    f = np.repeat(["relu", "tanh"], 2 * n)
    t = np.ceil(rng.exponential(np.where((g == "he") & (f == "relu"), 1.0, 4.0))).astype(float)
    e = (t <= 10).astype(int)
    t = np.minimum(t, 10)
    res = S.cox_interaction(t, e, g, f)
    assert res.statistic == pytest.approx(12.42194268, abs=1e-7) and res.df == 1
    assert res.pvalue == pytest.approx(0.0004243186145, rel=1e-7)
    strat = S.cox_interaction(t, e, g, f, np.tile(np.arange(15), 8))
    assert strat.statistic == pytest.approx(8.808367549, abs=1e-7)
    assert strat.pvalue == pytest.approx(0.002998521936, rel=1e-7)


# ---------------------------------------------------------------- power

SEEDS = (2, 3, 4, 5, 8, 10, 20)
# R: power.t.test(n = n, sig.level = 0.05 / choose(k, 2), power = 0.8, type = ..., strict = TRUE,
# tol = 1e-12)$delta, rows k = 2..6 arms, columns n in SEEDS.
R_MDE = {
    "paired": {2: (11.549888, 3.264044, 2.127949, 1.681997, 1.156035, 0.996001, 0.660442),
               3: (None, 5.667476, 3.124207, 2.291649, 1.450343, 1.223470, 0.783540),
               4: (None, 8.019398, 3.958060, 2.759263, 1.649536, 1.371441, 0.857808),
               5: (None, 10.355181, 4.705077, 3.155349, 1.805161, 1.484073, 0.911575),
               6: (None, 12.683770, 5.394028, 3.505761, 1.934845, 1.576117, 0.953884)},
    "two.sample": {2: (5.653489, 3.070892, 2.380754, 2.024439, 1.506634, 1.324947, 0.909129),
                   3: (9.816356, 4.183960, 3.037627, 2.509370, 1.806511, 1.574442, 1.063636),
                   4: (13.890005, 5.037701, 3.495305, 2.830381, 1.991916, 1.725542, 1.153683),
                   5: (17.935699, 5.760852, 3.859713, 3.077556, 2.128358, 1.835215, 1.217377),
                   6: (21.968935, 6.400614, 4.167684, 3.281304, 2.237061, 1.921682, 1.266620)},
}


def _power_df1_by_quadrature(effect: float, alpha: float) -> float:
    """Two-sided power of the paired t with 2 pairs (df 1): T = (Z + ncp) / |W|, Z, W standard normal,
    so P(T > q) = E[2 Phi((Z + ncp) / q) - 1; Z > -ncp]; the lower tail is below 1e-30 for ncp > 12."""
    q, ncp = sps.t.isf(alpha / 2, 1), effect * math.sqrt(2)
    assert ncp > 12
    return integrate.quad(lambda z: sps.norm.pdf(z) * (2 * sps.norm.cdf((z + ncp) / q) - 1), -12, 12,
                          limit=500)[0]


def test_mde_t_matches_r_power_t_test_on_a_grid():
    # The issue's cases: 5 arms x 4 seeds -> 4.705 (statsmodels' solve_power gave 3.420, power 0.525),
    # 3 arms x 2 seeds no longer the bracket bound 10.0.
    for kind, rows in R_MDE.items():
        for k, values in rows.items():
            for n, r in zip(SEEDS, values):
                ours = S.mde_t(n, 0.05 / math.comb(k, 2), kind == "paired")
                assert S._t_power(ours, n, 0.05 / math.comb(k, 2), kind == "paired") == pytest.approx(0.8, abs=1e-9)
                if r is not None:
                    assert ours == pytest.approx(r, abs=2e-6), (kind, k, n)
    # Paired, 2 seeds, 3+ arms: R's pt() switches to a normal approximation for ncp > 37.62 and gives
    # 36.33 (power 0.821 by quadrature); ours has power 0.8 by direct quadrature of the noncentral t.
    for k in (3, 4, 5, 6):
        a = 0.05 / math.comb(k, 2)
        assert _power_df1_by_quadrature(S.mde_t(2, a, True), a) == pytest.approx(0.8, abs=1e-6)
    assert S.mde_t(1, 0.05, True) is None


def test_seeds_needed_matches_r_power_t_test():
    # R: ceiling(power.t.test(delta = d, sig.level = 0.05 / choose(k, 2), power = 0.8, type = ...,
    # strict = TRUE, tol = 1e-12)$n) for d in (0.5, 0.8, 1.2, 2, 4), rows k = 2..6.
    r = {True: {2: (34, 15, 8, 5, 3), 3: (45, 20, 11, 6, 4), 4: (52, 23, 12, 7, 4), 5: (58, 25, 14, 8, 5),
                6: (62, 27, 15, 8, 5)},
         False: {2: (64, 26, 12, 6, 3), 3: (86, 35, 17, 7, 4), 4: (99, 40, 19, 8, 4), 5: (109, 44, 21, 9, 4),
                 6: (117, 47, 23, 10, 5)}}
    for paired, rows in r.items():
        for k, values in rows.items():
            got = tuple(S.seeds_needed(d, 0.05 / math.comb(k, 2), paired) for d in (0.5, 0.8, 1.2, 2, 4))
            assert got == values, (paired, k)


# ---------------------------------------------------------------- paired t

def test_paired_t_refuses_essentially_constant_differences_like_r():
    # Differences of 0.01 that differ only in the last bits. R: t.test(x, x - 0.01, paired = TRUE) ->
    # Error "data are essentially constant" (stderr < 10 * .Machine$double.eps * abs(mean)).
    x = np.array([0.3, 0.71, 0.83, 0.92, 0.64])
    y = x - 0.03
    assert len(set(x - y)) > 1  # not exactly constant: scipy's ttest_rel gives t = 2.7e15, p = 1e-61
    assert S.paired_t(x, y) == (None, 4, None)
    assert S.paired_t(x, x) == (None, 4, 1.0)
    # Variation far above rounding is kept: R t.test(c(1, 1 + 1e-9, 1 - 1e-9), rep(0, 3), paired = TRUE)
    # -> t = 1732050760.41, df = 2.
    t, df, p = S.paired_t(np.array([1, 1 + 1e-9, 1 - 1e-9]), np.zeros(3))
    assert t == pytest.approx(1732050760.41, rel=1e-9) and df == 2 and p < 1e-15


# ---------------------------------------------------------------- rank tests

def test_wilcoxon_conventions_match_r():
    # n = 10 with ties and two zero differences: exact over the sign flips.
    # R: coin::pvalue(wilcoxsign_test(x ~ y, zero.method = "Pratt", distribution = "exact")) -> 0.1640625.
    x = np.array([93, 95, 91, 90, 96, 94, 92, 90, 97, 95], float)
    y = np.array([92, 93, 92, 90, 93, 92, 94, 90, 93, 94], float)
    assert S.wilcoxon(x, y) == (12.5, pytest.approx(0.1640625, abs=1e-12))
    # n = 20, ties, no zeros: normal, tie-corrected, no continuity correction.
    # R: wilcox.test(x2, y2, paired = TRUE, exact = FALSE, correct = FALSE)$p.value -> 0.865277225988.
    x2 = np.array([83, 86, 80, 81, 90, 93, 97, 98, 80, 89, 93, 89, 86, 88, 94, 84, 88, 93, 84, 84], float)
    y2 = np.array([81, 84, 83, 78, 91, 97, 94, 99, 79, 92, 91, 87, 89, 92, 95, 85, 89, 91, 85, 81], float)
    assert S.wilcoxon(x2, y2)[1] == pytest.approx(0.865277225988, abs=1e-11)
    # The same with 3 zero differences: zero-split normal. R, by hand: d <- x2 - y3; r <- rank(abs(d));
    # z <- (sum(r[d > 0]) + sum(r[d == 0]) / 2 - 105) / sqrt(sum(r^2) / 4); 2 * pnorm(-abs(z)) -> 0.612089880089.
    y3 = y2.copy()
    y3[[1, 4, 8]] = x2[[1, 4, 8]]
    assert S.wilcoxon(x2, y3)[1] == pytest.approx(0.612089880089, abs=1e-11)
    # n = 30 without ties: exact. R: wilcox.test(d, exact = TRUE)$p.value -> 0.903226472437382.
    d = np.array([125, -1858, -741, 2236, 1493, -986, -2101, 1124, 1745, -1478, 1623, -1104, -2219, -1350, -109,
                  -356, 265, -1966, 1011, -2336, 1881, -846, 767, 1264, 397, -470, 895, 2136, 2013, -2450]) / 124
    assert S.wilcoxon(d, np.zeros(30))[1] == pytest.approx(0.903226472437382, abs=1e-12)


def test_mannwhitney_conventions_match_r():
    # 6 vs 7 with ties: exact conditional on the ties, two-sided as P(|W - E W| >= |w - E W|).
    # R: coin::pvalue(wilcox_test(v ~ g, distribution = "exact")) -> 0.0390442890443 (scipy's normal
    # approximation with continuity correction gave 0.0428).
    x = np.array([90, 92, 92, 95, 91, 93], float)
    y = np.array([92, 94, 95, 95, 96, 93, 97], float)
    assert S.mannwhitney(x, y) == (6.5, pytest.approx(0.0390442890443, abs=1e-12))
    # 15 vs 15 with ties: normal, tie-corrected, no continuity correction.
    # R: wilcox.test(x2, y2, exact = FALSE, correct = FALSE)$p.value -> 0.363056437199 (scipy's default 0.374).
    x2 = np.array([89, 94, 91, 88, 94, 92, 95, 92, 88, 94, 91, 92, 92, 92, 89], float)
    y2 = np.array([88, 91, 94, 91, 95, 95, 94, 92, 88, 95, 94, 92, 89, 92, 94], float)
    assert S.mannwhitney(x2, y2)[1] == pytest.approx(0.363056437199, abs=1e-11)
    # 20 vs 20 without ties: exact. R: wilcox.test(x3, y3, exact = TRUE) -> W = 136, p = 0.0859140199857
    # (scipy's default used the normal approximation here: 0.08585).
    x3, y3 = np.arange(1, 21) * 2 + 0.1, np.arange(1, 21) * 2 + 7.3
    assert S.mannwhitney(x3, y3) == (136.0, pytest.approx(0.0859140199857, abs=1e-12))


# ---------------------------------------------------------------- Kaplan-Meier

def test_km_median_and_log_log_ci_match_r_survfit():
    # R: summary(survfit(Surv(t, e) ~ 1, conf.type = "log-log"))$table[c("median", "0.95LCL", "0.95UCL")]
    six_mp = ([6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35],
              [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    cases = [(six_mp, (23.0, (13.0, None))),  # R: 23, 13, NA (R's default "log" band gives 16, NA)
             (([1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23], [1] * 21), (8.0, (4.0, 11.0))),
             (([1, 2, 3, 4, 5, 6, 6, 8, 9, 10], [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]), (6.0, (1.0, 9.0))),
             (([1, 1, 2, 2, 3, 3], [1] * 6), (2.0, (1.0, None)))]  # R: 2, 1, NA (the band is undefined at S = 0)
    for (t, e), expected in cases:
        assert S.kaplan_meier(np.array(t, float), np.array(e), 40)[1:] == expected
    # Where S = 0.5 exactly the median is the first such time, 5; R's survfit takes the midpoint, 5.5.
    assert S.kaplan_meier(np.arange(1, 11, dtype=float), np.ones(10, int), 12)[1] == 5.0
