"""Group-sequential boundaries against published values and R, and their error rates by simulation.

Simulations are synthetic statistics (Brownian motion at the looks, or paired normal data with the
signed-rank test at each look), seeded, no training.
"""

import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.optimize import brentq

from initstudy import sequential as Q
from initstudy import stats as S
from initstudy.errors import StudyError

ALPHA = 0.05

# Lan-DeMets bounds for K equally spaced looks, two-sided alpha 0.05, alpha/2 spent per bound, as
# published for R's ldbounds (ldBounds(t = 1:K/K, iuse = c(1, 1) or c(2, 2), alpha = c(.025, .025))) and
# gsDesign (gsDesign(k = K, test.type = 2, alpha = 0.025, sfu = sfLDOF / sfLDPocock)$upper$bound).
PUBLISHED = {
    ("obrien_fleming", 2): (2.963, 1.969),
    ("obrien_fleming", 5): (4.877, 3.357, 2.680, 2.290, 2.031),
    ("pocock", 5): (2.438, 2.427, 2.410, 2.397, 2.386),
}

# Our bounds rounded to 4 decimals, with R 4.2.2 mvtnorm 1.1-3 exit probabilities at them:
#   S <- outer(t, t, function(a, c) sqrt(pmin(a, c) / pmax(a, c)))  # t = (1:k)/K
#   1 - pmvnorm(lower = -b[1:k], upper = b[1:k], sigma = S, algorithm = GenzBretz(abseps = 1e-9, maxpts = 1e7))
# printed as cumulative P0(|Z_j| >= b_j for some j <= k), k = 1..K.
R_EXIT = {
    ("obrien_fleming", 2): ((2.9626, 1.9686), (0.0030505, 0.0499995)),
    ("obrien_fleming", 3): ((3.7103, 2.5114, 1.9930), (0.0002070, 0.0120977, 0.0500053)),
    ("obrien_fleming", 4): ((4.3326, 2.9631, 2.3590, 2.0141), (0.0000147, 0.0030510, 0.0193009, 0.0500002)),
    ("obrien_fleming", 5): ((4.8769, 3.3570, 2.6803, 2.2898, 2.0310),
                            (0.0000011, 0.0007883, 0.0076157, 0.0244243, 0.0500030)),
    ("pocock", 2): ((2.1570, 2.2010), (0.0310057, 0.0499986)),
    ("pocock", 3): ((2.2794, 2.2949, 2.2959), (0.0226433, 0.0381710, 0.0500033)),
    ("pocock", 4): ((2.3683, 2.3675, 2.3582, 2.3500), (0.0178700, 0.0310078, 0.0414001, 0.0500019)),
    ("pocock", 5): ((2.4380, 2.4268, 2.4102, 2.3966, 2.3860),
                    (0.0147688, 0.0261566, 0.0354251, 0.0432429, 0.0499999)),
}


def _design(bounds, looks=None, **kw) -> Q.Design:
    """A design with given bounds (equal looks unless `looks`), to evaluate published constants."""
    looks = tuple(looks or range(1, len(bounds) + 1))
    return Q.Design(looks=looks, alpha=ALPHA, spending="obrien_fleming", two_sided=True,
                    fractions=tuple(n / looks[-1] for n in looks), spent=(), bounds=tuple(bounds), **kw)


def _brownian(rng, n: int, design: Q.Design, theta: float) -> np.ndarray:
    """Z at each look for n simulated studies, shape (n, K): independent increments, drift theta."""
    t = np.array(design.fractions)
    dt = np.diff(t, prepend=0.0)
    s = np.cumsum(rng.normal(theta * dt, np.sqrt(dt), size=(n, len(t))), axis=1)
    return s / np.sqrt(t)


def _first_exit(z: np.ndarray, design: Q.Design) -> tuple[np.ndarray, np.ndarray]:
    """Per study: the 0-based stopping look and the side crossed (+1 upper, -1 lower, 0 none)."""
    c = np.array(design.bounds)
    hit = np.abs(z) >= c
    look = np.where(hit.any(axis=1), hit.argmax(axis=1), len(c) - 1)
    zk = z[np.arange(len(z)), look]
    side = np.where(np.abs(zk) >= c[look], np.sign(zk), 0).astype(int)
    return look, side


def _mc_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("key", sorted(PUBLISHED))
def test_bounds_match_published_lan_demets_values(key):
    spending, k = key
    design = Q.boundaries(list(range(1, k + 1)), ALPHA, spending)
    assert design.bounds == pytest.approx(PUBLISHED[key], abs=6e-4)
    assert design.spent[-1] == ALPHA and design.fractions[-1] == 1.0


@pytest.mark.parametrize("key", sorted(R_EXIT))
def test_bounds_spend_the_spending_function_per_r_mvtnorm(key):
    spending, k = key
    rounded, r_cum = R_EXIT[key]
    design = Q.boundaries(list(range(1, k + 1)), ALPHA, spending)
    assert design.bounds == pytest.approx(rounded, abs=5.1e-5)
    # Our recursive integration at the same (rounded) bounds agrees with R's multivariate normal.
    cr = Q.crossing(_design(rounded), 0.0)
    ours = np.cumsum(np.array(cr.upper) + np.array(cr.lower))
    assert ours == pytest.approx(r_cum, abs=2e-6)  # R prints 7 decimals; GenzBretz error ~1e-9
    # And each look spends what the spending function allows (alpha/2 per bound).
    t = np.arange(1, k + 1) / k
    assert np.array(design.spent) == pytest.approx(2 * Q.SPENDING[spending](t, ALPHA / 2), rel=1e-12)


# Jennison & Turnbull (2000), Group Sequential Methods with Applications to Clinical Trials, two-sided
# alpha = 0.05, K equally spaced looks: Table 2.1 Pocock C_P(K, alpha) and Table 2.3 O'Brien & Fleming
# C_B(K, alpha) (bounds c_k = C_B sqrt(K / k)); Tables 2.2 and 2.4 the maximum-sample-size inflation
# factors R_P(K, alpha, beta) and R_B(K, alpha, beta) over the fixed design, for power 0.8 and 0.9.
JT_POCOCK = {2: (2.178, 1.110, 1.100), 3: (2.289, 1.166, 1.151), 4: (2.361, 1.202, 1.183), 5: (2.413, 1.229, 1.207)}
JT_OBF = {2: (1.977, 1.008, 1.007), 3: (2.004, 1.017, 1.016), 4: (2.024, 1.024, 1.022), 5: (2.040, 1.028, 1.026)}


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_classic_constants_and_inflation_match_jennison_turnbull_tables(k):
    def size(bounds):
        cr = Q.crossing(_design(tuple(bounds)), 0.0)
        return sum(cr.upper) + sum(cr.lower)

    shape = {"pocock": np.ones(k), "obf": np.sqrt(k / np.arange(1, k + 1))}
    for name, table in (("pocock", JT_POCOCK), ("obf", JT_OBF)):
        c = brentq(lambda c: size(c * shape[name]) - ALPHA, 1.5, 3.5, xtol=1e-10)
        assert c == pytest.approx(table[k][0], abs=6e-4), name
        design = _design(tuple(c * shape[name]))
        for power, r in zip((0.8, 0.9), table[k][1:]):
            fixed = sps.norm.isf(ALPHA / 2) + sps.norm.ppf(power)
            assert (Q.drift_for_power(design, power) / fixed) ** 2 == pytest.approx(r, abs=6e-4), (name, power)


def test_stagewise_pvalue_matches_r_and_fixed_test():
    design = _design((4.8769, 3.3570, 2.6803, 2.2898, 2.0310))
    # R mvtnorm (as above): P0(exit by look 2) + P0(|Z1| < b1, |Z2| < b2, |Z3| >= 2.9) = 0.0041014.
    assert Q.stagewise_pvalue(design, 3, 2.9) == pytest.approx(0.0041014, abs=2e-7)
    assert Q.stagewise_pvalue(design, 3, -2.9) == pytest.approx(0.0041014, abs=2e-7)
    # At the first look the ordering is that of the fixed test.
    assert Q.stagewise_pvalue(design, 1, 1.3) == pytest.approx(2 * sps.norm.sf(1.3), abs=1e-9)
    # At the final look without a crossing it exceeds alpha; on the bound it equals alpha.
    assert Q.stagewise_pvalue(design, 5, 1.9) > ALPHA
    real = Q.boundaries([1, 2, 3, 4, 5], ALPHA, "obrien_fleming")
    assert Q.stagewise_pvalue(real, 4, real.bounds[3]) == pytest.approx(real.spent[3], abs=1e-7)


def test_z_from_p_is_signed_normal_quantile():
    assert Q.z_from_p(0.05, 3.0) == pytest.approx(1.959964, abs=1e-6)
    assert Q.z_from_p(0.05, -0.1) == pytest.approx(-1.959964, abs=1e-6)
    assert Q.z_from_p(1.0, 1.0) == 0.0 and Q.z_from_p(0.01, 0.0) == 0.0 and Q.z_from_p(None, 1.0) == 0.0
    assert Q.z_from_p(0.0, 1.0) == math.inf


def test_monitor_decides_at_the_first_crossing():
    design = Q.boundaries([5, 10, 20, 30], ALPHA, "obrien_fleming")
    go = Q.monitor([1.0, 2.0], design)
    assert (go.action, go.look, go.seeds, go.pvalue) == ("continue", 2, 10, None)
    up = Q.monitor([1.0, 2.0, 3.0, -5.0], design, estimates=[0.1, 0.2, 0.3, 0.0], ses=[0.2, 0.1, 0.1, 0.1])
    assert (up.action, up.look, up.seeds, up.crossed) == ("stop", 3, 20, "upper")
    assert up.boundary == design.bounds[2] and up.pvalue < ALPHA
    assert up.rci == pytest.approx((0.3 - design.bounds[2] * 0.1, 0.3 + design.bounds[2] * 0.1))
    down = Q.monitor([-6.0], design)
    assert (down.crossed, down.look) == ("lower", 1) and down.pvalue < ALPHA
    end = Q.monitor([0.5, 0.5, 0.5, 1.5], design)
    assert (end.action, end.crossed, end.look) == ("stop", "none", 4) and end.pvalue > ALPHA
    fut = Q.boundaries([5, 10, 20, 30], ALPHA, "obrien_fleming", futility=0.5)
    stop = Q.monitor([1.0, 0.2], fut)
    assert (stop.action, stop.crossed, stop.look) == ("stop", "futility", 2) and stop.pvalue > ALPHA
    assert Q.monitor([0.6, 0.2, 0.1, 0.0], fut).look == 2  # futility stops even if later looks are given
    assert Q.monitor([1.0, 0.2], design).action == "continue"  # no futility bound: keep going


@pytest.mark.parametrize("spending", sorted(Q.SPENDING))
def test_type_one_error_under_no_difference(spending):
    rng = np.random.default_rng(17)
    design = Q.boundaries([5, 10, 20, 30], ALPHA, spending)
    n = 20000
    z = _brownian(rng, n, design, 0.0)
    look, side = _first_exit(z, design)
    se = _mc_se(ALPHA, n)
    assert abs((side != 0).mean() - ALPHA) < 3 * se  # the bounds spend exactly alpha, not less
    assert (side > 0).mean() < ALPHA / 2 + 3 * _mc_se(ALPHA / 2, n)  # "supported" under no difference
    # monitor() takes the same decisions, and its stage-wise p is below alpha exactly when a bound was crossed.
    for i in range(2000):
        d = Q.monitor(z[i], design)
        assert (d.look - 1, {"upper": 1, "lower": -1}.get(d.crossed, 0)) == (look[i], side[i])
        assert (d.pvalue <= ALPHA) == (side[i] != 0)
    # A non-binding futility bound only ever lowers the error.
    fut = Q.boundaries([5, 10, 20, 30], ALPHA, spending, futility=0.5)
    assert fut.bounds == design.bounds
    alive = np.cumprod(np.abs(z[:, :-1]) >= 0.5, axis=1).astype(bool)
    reach = np.hstack([np.ones((n, 1), bool), alive])
    rejected = ((np.abs(z) >= np.array(design.bounds)) & reach).any(axis=1)
    assert rejected.mean() <= (side != 0).mean()
    cr = Q.crossing(fut, 0.0)
    assert sum(cr.upper) + sum(cr.lower) == pytest.approx(rejected.mean(), abs=3 * se)


@pytest.mark.parametrize("spending", sorted(Q.SPENDING))
def test_power_with_a_planted_effect_matches_fixed_design_with_fewer_seeds(spending):
    rng = np.random.default_rng(18)
    design = Q.boundaries([5, 10, 20, 30], ALPHA, spending)
    plan = Q.seed_plan(design, 0.8)
    n = 20000
    z = _brownian(rng, n, design, plan.theta)
    look, side = _first_exit(z, design)
    power = (side > 0).mean()
    seeds = np.array(design.looks)[look]
    assert abs(power - 0.8) < 3 * _mc_se(0.8, n)
    assert abs(seeds.mean() - plan.expected_seeds_effect) < 3 * seeds.std() / math.sqrt(n)
    # The fixed design with plan.fixed_seeds seeds has the same power ...
    fixed_z = rng.normal(plan.theta * math.sqrt(plan.fixed_seeds / plan.max_seeds), 1.0, size=n)
    assert abs(power - (fixed_z >= sps.norm.isf(ALPHA / 2)).mean()) < 0.02
    # ... but always spends them, while the sequential study stops early on average.
    assert seeds.mean() < plan.fixed_seeds - 2
    assert plan.max_seeds == 30 and plan.inflation > 1
    if spending == "obrien_fleming":  # O'Brien-Fleming loses little against a fixed design of the max seeds
        full = (rng.normal(plan.theta, 1.0, size=n) >= sps.norm.isf(ALPHA / 2)).mean()
        assert 0 <= full - power < 0.02


def test_rank_test_per_look_keeps_alpha_and_saves_seeds():
    """Paired normal data, Wilcoxon signed-rank (the final-accuracy claim test) at 10, 20, 30, 40 seeds."""
    rng = np.random.default_rng(19)
    looks, n = [10, 20, 30, 40], 2000

    def z_path(d):
        z = []
        for n_k in looks:
            diff = d[:n_k]
            _, p = S.wilcoxon(diff, np.zeros(n_k))
            ranks = sps.rankdata(np.abs(diff))
            z.append(Q.z_from_p(p, ranks[diff > 0].sum() - n_k * (n_k + 1) / 4))
        return z

    null = np.array([z_path(rng.normal(size=40)) for _ in range(n)])
    designs = {s: Q.boundaries(looks, ALPHA, s) for s in Q.SPENDING}
    for s, design in designs.items():
        _, side = _first_exit(null, design)
        assert (side != 0).mean() < ALPHA + 3 * _mc_se(ALPHA, n), s
    design = designs["obrien_fleming"]
    plan = Q.seed_plan(design, 0.8)
    effect = plan.theta / math.sqrt(40 * 3 / math.pi)  # signed-rank efficiency 3/pi against the t-test
    planted = np.array([z_path(rng.normal(effect, 1.0, size=40)) for _ in range(n)])
    look, side = _first_exit(planted, design)
    m = math.ceil(plan.fixed_seeds)
    fixed = [S.wilcoxon(d, np.zeros(m))[1] < ALPHA and d.mean() > 0
             for d in rng.normal(effect, 1.0, size=(n, m))]
    assert abs((side > 0).mean() - np.mean(fixed)) < 0.05
    assert np.array(looks)[look].mean() < m - 2


def test_repeated_confidence_intervals_cover_jointly():
    rng = np.random.default_rng(20)
    design = Q.boundaries([5, 10, 20, 30], ALPHA, "pocock")
    theta, n = 1.7, 20000
    z = _brownian(rng, n, design, theta)
    t = np.array(design.fractions)
    est, se = z / np.sqrt(t), 1 / np.sqrt(t)  # effect per unit information and its standard error
    lo, hi = Q.repeated_ci(est[0, 2], se[2], design, 3)
    assert (lo, hi) == pytest.approx((est[0, 2] - design.bounds[2] * se[2], est[0, 2] + design.bounds[2] * se[2]))
    c = np.array(design.bounds)
    cover = ((est - c * se <= theta) & (theta <= est + c * se)).all(axis=1).mean()
    assert abs(cover - (1 - ALPHA)) < 3 * _mc_se(ALPHA, n)


def test_expected_seeds_and_futility_power():
    design = Q.boundaries([5, 10, 20, 30], ALPHA, "obrien_fleming")
    assert Q.expected_seeds(design, 0.0) < 30 and Q.expected_seeds(design, 3.0) < Q.expected_seeds(design, 0.0)
    cr = Q.crossing(design, 0.0)
    assert sum(cr.upper) + sum(cr.lower) == pytest.approx(ALPHA, abs=1e-8)
    fut = Q.boundaries([5, 10, 20, 30], ALPHA, "obrien_fleming", futility=0.5)
    assert Q.expected_seeds(fut, 0.0) < Q.expected_seeds(design, 0.0) - 5  # futility saves seeds under H0
    assert Q.crossing(fut, 2.8).power < Q.crossing(design, 2.8).power  # at some cost in power
    probs = Q.crossing(fut, 1.0)
    assert sum(probs.upper) + sum(probs.lower) + sum(probs.futility) <= 1 + 1e-9


def test_share_alpha_states_bonferroni():
    share = Q.share_alpha(0.05, 3, "obrien_fleming")
    assert share.each == pytest.approx(0.05 / 3) and share.claims == 3
    assert share.rule.startswith("Bonferroni") and "O'Brien-Fleming" in share.rule and "0.01667" in share.rule
    assert "single claim" in Q.share_alpha(0.05, 1, "pocock").rule


@pytest.mark.parametrize("value, seeds, alpha, needle", [
    ({"looks": [5, 5, 10], "spending": "pocock"}, 30, 0.05, "strictly increasing"),
    ({"looks": [10, 5], "spending": "pocock"}, 30, 0.05, "strictly increasing"),
    ({"looks": [5, 10, 40], "spending": "pocock"}, 30, 0.05, "raise seeds to 40"),
    ({"looks": [5, 10], "spending": "haybittle"}, 30, 0.05, "obrien_fleming, pocock"),
    ({"looks": [5, 10]}, 30, 0.05, "needs a spending function"),
    ({"looks": [5], "spending": "pocock"}, 30, 0.05, "at least two"),
    ({"looks": [0, 10], "spending": "pocock"}, 30, 0.05, "positive whole"),
    ({"looks": [2.5, 10], "spending": "pocock"}, 30, 0.05, "positive whole"),
    ({"looks": [True, 10], "spending": "pocock"}, 30, 0.05, "positive whole"),
    ({"looks": [5, 10], "spending": "pocock", "futility": 3}, 30, 0.05, "futility"),
    ({"looks": [5, 10], "spending": "pocock", "stop": 1}, 30, 0.05, "no key 'stop'"),
    ({"looks": [5, 10], "spending": "pocock"}, 30, 1.5, "alpha"),
    ([5, 10], 30, 0.05, "mapping"),
])
def test_bad_plan_raises_one_line(value, seeds, alpha, needle):
    with pytest.raises(StudyError) as err:
        Q.check_plan(value, seeds, alpha)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_good_plan_and_other_bad_input():
    plan = Q.check_plan({"looks": [5, 10, 20, 30], "spending": "obrien_fleming", "futility": 0.5}, 30, 0.05)
    assert plan == Q.Plan(looks=(5, 10, 20, 30), spending="obrien_fleming", futility=0.5)
    with pytest.raises(StudyError, match="choose one of: obrien_fleming, pocock"):
        Q.boundaries([5, 10], ALPHA, "nope")
    with pytest.raises(StudyError, match="strictly increasing"):
        Q.boundaries([10, 5], ALPHA, "pocock")
    with pytest.raises(StudyError, match="not below the efficacy bound"):
        Q.boundaries([5, 10, 20], ALPHA, "pocock", futility=2.5)
    with pytest.raises(StudyError, match="1 to 4 looks"):
        Q.monitor([0.1] * 5, Q.boundaries([5, 10, 20, 30], ALPHA, "pocock"))
