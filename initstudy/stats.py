"""Statistical tests and effect sizes on plain arrays, returning small frozen result objects.

Nothing here knows about runs or cells (`analysis.py` assembles these per cell).
Every function takes numpy arrays and says their shapes; results carry plain
attributes (`statistic`, `df`, `pvalue`) and intervals as `(low, high)`, with
None where a quantity is undefined (no events, zero variance), never NaN.
All arithmetic is float64; resampling is seeded by the caller's generator.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight

N_BOOT = 2000  # bootstrap resamples of seeds for effect-size intervals
POWER = 0.8  # the power at which minimum detectable effects and seeds needed are stated
Z95 = float(stats.norm.ppf(0.975))


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ci(lo, hi) -> tuple[float | None, float | None]:
    return (_num(lo), _num(hi))


@dataclass(frozen=True)
class TestResult:
    test: str  # logrank | friedman | iman_davenport | rm_anova | anova | welch_anova | kruskal | cochran_q | ...
    statistic: float | None
    df: float | None  # numerator df for F tests
    pvalue: float | None
    note: str = ""
    df2: float | None = None  # denominator df of an F test

    def to_dict(self) -> dict:
        d = {"test": self.test, "statistic": _num(self.statistic), "df": _num(self.df),
             "pvalue": _num(self.pvalue), "note": self.note}
        if self.df2 is not None:
            d["df2"] = _num(self.df2)
        return d


@dataclass(frozen=True)
class Effect:
    name: str  # median_difference | mean_difference | d_z | hedges_g | cliffs_delta | a12 | rmst_difference
    value: float | None
    ci: tuple[float | None, float | None]  # 95%: percentile bootstrap over seeds unless `method` says otherwise
    method: str = "bootstrap"

    def to_dict(self) -> dict:
        return {"name": self.name, "value": _num(self.value), "ci": [_num(self.ci[0]), _num(self.ci[1])],
                "method": self.method}


@dataclass(frozen=True)
class CoxResult:
    initializer: str
    reference: str
    hazard_ratio: float | None  # > 1: reaches the threshold sooner than the reference
    ci: tuple[float | None, float | None]  # 95% Wald interval
    pvalue: float | None
    note: str = ""

    def to_dict(self) -> dict:
        return {"initializer": self.initializer, "reference": self.reference,
                "hazard_ratio": _num(self.hazard_ratio), "ci": [_num(self.ci[0]), _num(self.ci[1])],
                "pvalue": _num(self.pvalue), "note": self.note}


@dataclass(frozen=True)
class Comparison:
    """One pairwise comparison from a simultaneous procedure (Tukey HSD, Games-Howell)."""
    a: str
    b: str
    difference: float  # mean(a) - mean(b)
    ci: tuple[float | None, float | None]  # simultaneous 95% interval
    statistic: float | None  # studentized range q
    df: float | None
    pvalue: float | None  # already adjusted for the family by the procedure


def accuracy_ci(mean: float | None, sd: float | None, n: int) -> tuple[float | None, float | None]:
    """95% t-interval of a mean accuracy over n runs, clipped to [0, 1]; (None, None) below two runs."""
    if mean is None or sd is None or n < 2:
        return None, None
    half = float(stats.t.ppf(0.975, n - 1)) * sd / n ** 0.5
    return max(0.0, mean - half), min(1.0, mean + half)


# ---------------------------------------------------------------- epochs-to-threshold (censored)

def _epoch(t) -> int | float:
    """An epoch as an int when whole, else a float: 2, 2.25."""
    t = float(t)
    return int(t) if t.is_integer() else t


def kaplan_meier(time: np.ndarray, event: np.ndarray, budget: int):
    """(points [(epoch, S(epoch))] for 0..budget and the event times, median, (median CI low, high)).

    S is the probability of not yet having reached the threshold; the median is
    the first epoch with S <= 0.5 (None when never; R's survfit takes the midpoint
    to the next event time when S = 0.5 exactly). Its 95% CI is Brookmeyer-Crowley
    on the log-log scale, as R's survfit(conf.type = "log-log") (not R's default
    "log"); an upper limit that would fall where S = 0 is None, as R's NA.
    """
    # Points at every whole epoch and every event time (fractions of an epoch with eval_every < 1).
    grid = sorted(set(range(budget + 1)) | {_epoch(t) for t in np.asarray(time)[np.asarray(event) == 1]
                                             if t <= budget})
    if event.sum() == 0:
        return tuple((e, 1.0) for e in grid), None, (None, None)
    sf = SurvfuncRight(time, event)
    times, probs = np.asarray(sf.surv_times), np.asarray(sf.surv_prob)

    def s_at(t):
        idx = np.searchsorted(times, t, side="right") - 1
        return 1.0 if idx < 0 else float(probs[idx])

    points = tuple((e, s_at(e)) for e in grid)
    below = [e for e, s in points if s <= 0.5 + 1e-12]
    median = float(below[0]) if below else None
    try:
        with np.errstate(all="ignore"):  # log(0) at S = 1 or 0 is handled by the CI's NaN/inf bounds
            lo, hi = sf.quantile_ci(0.5)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        lo, hi = np.nan, np.nan
    if math.isfinite(hi) and s_at(hi) == 0.0:  # the log-log band is undefined where S = 0: R reports NA
        hi = np.nan
    return points, median, (_num(lo), _num(hi))


def _km_steps(time: np.ndarray, event: np.ndarray, tau: float):
    """Kaplan-Meier on many samples at once. time, event: (B, n). Returns the event-time grid u (J,),
    at-risk and event counts (B, J), and S just after each grid time (B, J)."""
    u = np.unique(time[(event == 1) & (time <= tau)])
    at_risk = (time[:, :, None] >= u).sum(axis=1).astype(float)
    died = ((time[:, :, None] == u) & (event[:, :, None] == 1)).sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - died / at_risk, 1.0)
    return u, at_risk, died, np.cumprod(factor, axis=1)


def _rmst_rows(time: np.ndarray, event: np.ndarray, tau: float) -> np.ndarray:
    """Restricted mean time to event over [0, tau] for each row of (B, n) samples: the area under S."""
    u, _, _, surv = _km_steps(time, event, tau)
    if len(u) == 0:
        return np.full(time.shape[0], float(tau))
    widths = np.diff(np.append(u, tau))  # S is constant from each event time to the next, then to tau
    return u[0] + (surv * widths).sum(axis=1)


def rmst(time: np.ndarray, event: np.ndarray, tau: float) -> tuple[float, float | None]:
    """(restricted mean time to event up to tau, its standard error). time, event: (n,).

    The area under the Kaplan-Meier curve from 0 to tau; the variance is the
    Greenwood-type sum over event times t_j <= tau of A_j^2 d_j / (n_j (n_j - d_j)),
    A_j the area from t_j to tau (Klein & Moeschberger 2003, sec. 4.5; R's survfit rmean).
    """
    t, e = np.asarray(time, float)[None, :], np.asarray(event, int)[None, :]
    u, at_risk, died, surv = _km_steps(t, e, tau)
    value = float(_rmst_rows(t, e, tau)[0])
    if len(u) == 0:
        return value, 0.0
    pieces = surv[0] * np.diff(np.append(u, tau))
    after = np.cumsum(pieces[::-1])[::-1]  # A_j: area from t_j to tau
    n, d = at_risk[0], died[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(n > d, after ** 2 * d / (n * (n - d)), 0.0)
    return value, float(math.sqrt(terms.sum()))


def rmst_difference(ta, ea, tb, eb, tau: float, paired: bool, rng: np.random.Generator) -> Effect:
    """RMST(a) - RMST(b) in epochs (negative: a reaches the threshold sooner), bootstrap CI over seeds.
    Paired arrays are aligned by seed and resampled together."""
    ta, tb, ea, eb = (np.asarray(x) for x in (ta, tb, ea, eb))
    value = _rmst_rows(ta[None], ea[None], tau)[0] - _rmst_rows(tb[None], eb[None], tau)[0]
    ia = rng.integers(0, len(ta), (N_BOOT, len(ta)))
    ib = ia if paired else rng.integers(0, len(tb), (N_BOOT, len(tb)))
    boots = _rmst_rows(ta[ia], ea[ia], tau) - _rmst_rows(tb[ib], eb[ib], tau)
    return Effect("rmst_difference", float(value), _ci(*np.percentile(boots, [2.5, 97.5])))


def logrank(time, event, group, strata=None) -> TestResult:
    """Log-rank test across groups, stratified when `strata` is given.

    Observed-minus-expected events and their covariance are summed over strata;
    chi2 = (O - E)' V^+ (O - E) with a generalized inverse and df = rank(V), as R's
    survdiff does, so strata where events tie exactly carry no information rather
    than breaking the test.
    """
    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    k = len(np.unique(group))
    if event.sum() == 0:
        return TestResult("logrank", statistic=None, df=k - 1, pvalue=None, note="no run reached the threshold")
    _labels, o_minus_e, var, n_strata = logrank_sums(time, event, group, strata)
    df = int(np.linalg.matrix_rank(var, tol=1e-10))
    note = "stratified by seed" if n_strata > 1 else ""
    if df == 0:
        return TestResult("logrank", statistic=0.0, df=0, pvalue=None,
                          note=(note + "; " if note else "") + "no information: events tie")
    stat = float(o_minus_e @ np.linalg.pinv(var, rcond=1e-10) @ o_minus_e)
    return TestResult("logrank", statistic=stat, df=df, pvalue=float(stats.chi2.sf(stat, df)), note=note)


def logrank_sums(time, event, group, strata=None):
    """(labels (k,) sorted, observed minus expected events (k,), their covariance (k, k), number of strata),
    summed over strata: the pieces of the log-rank statistic. A group's O - E > 0: it reached the threshold
    more often than equal hazards predict, i.e. sooner."""
    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    labels = np.unique(group)
    k = len(labels)
    gi = np.searchsorted(labels, group)
    strata = np.zeros(len(time), int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    o_minus_e, var = np.zeros(k), np.zeros((k, k))
    for s in np.unique(strata):
        m = strata == s
        t, e, g = time[m], event[m], gi[m]
        for u in np.unique(t[e == 1]):
            at_risk = np.bincount(g[t >= u], minlength=k).astype(float)
            died = np.bincount(g[(t == u) & (e == 1)], minlength=k).astype(float)
            n, d = at_risk.sum(), died.sum()
            o_minus_e += died - d * at_risk / n
            if n > 1:
                p = at_risk / n
                var += d * (n - d) / (n - 1) * (np.diag(p) - np.outer(p, p))
    return labels, o_minus_e, var, len(np.unique(strata))


@dataclass(frozen=True)
class CoxFit:
    """A Cox proportional-hazards fit (Efron ties) by Newton-Raphson with step-halving, as R's coxph."""
    params: np.ndarray  # (p,) log hazard ratios
    se: np.ndarray  # (p,) Wald standard errors from the inverse information at `params`
    llf: float  # log partial likelihood at `params`
    separated: np.ndarray  # (p,) bool: the likelihood has no finite maximum along this coefficient


def _efron_design(time, event, strata):
    """Risk-set (G, n) and death (G, n) indicators for the G distinct (stratum, event time) pairs, and for
    the d_g tied deaths of each group its row index and Efron fraction l / d_g, l = 0 .. d_g - 1."""
    keys = np.unique(np.column_stack([strata[event == 1], time[event == 1]]), axis=0)
    risk = (strata[None, :] == keys[:, :1]) & (time[None, :] >= keys[:, 1:])
    dead = risk & (time[None, :] == keys[:, 1:]) & (event[None, :] == 1)
    d = dead.sum(axis=1)
    rows = np.repeat(np.arange(len(keys)), d)
    frac = np.concatenate([np.arange(k) / k for k in d]) if len(d) else np.zeros(0)
    return risk, dead, rows, frac


def _efron(beta, x, design, derivatives=True):
    """(log partial likelihood, score (p,), information (p, p)) at beta with Efron's tie correction."""
    risk, dead, rows, frac = design
    eta = x @ beta
    top = np.where(risk, eta[None, :], -np.inf).max(axis=1)  # per risk set, so no sum underflows to 0
    w = np.where(risk, np.exp(np.minimum(eta[None, :] - top[:, None], 0.0)), 0.0)  # (G, n)
    wd = np.where(dead, w, 0.0)
    den = w.sum(axis=1)[rows] - frac * wd.sum(axis=1)[rows]
    ll = float(eta @ dead.sum(axis=0) - (np.log(den) + top[rows]).sum())
    if not derivatives:
        return ll, None, None
    mean = ((w @ x)[rows] - frac[:, None] * (wd @ x)[rows]) / den[:, None]  # (D, p) Efron-weighted means
    xx = (x[:, :, None] * x[:, None, :]).reshape(len(x), -1)
    second = ((w @ xx)[rows] - frac[:, None] * (wd @ xx)[rows]) / den[:, None]
    p = x.shape[1]
    info = second.sum(axis=0).reshape(p, p) - mean.T @ mean
    return ll, dead.sum(axis=0) @ x - mean.sum(axis=0), info


def _newton_step(info: np.ndarray, score: np.ndarray) -> np.ndarray:
    """info^-1 score, solved exactly: a least-squares cut-off would zero the step along a separated
    coefficient, whose information and score both vanish."""
    try:
        step = np.linalg.solve(info, score)
        if np.all(np.isfinite(step)):
            return step
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(info, score, rcond=None)[0]  # exactly singular (an all-zero column)


def cox_fit(time, event, x, strata=None, max_iter: int = 200) -> CoxFit:
    """Maximise the Efron log partial likelihood of covariates `x` (n, p) for right-censored `time`,
    `event` (n,), stratified when `strata` (n,) is given.

    Newton-Raphson from 0, halving a step whenever it lowers the (concave) likelihood, as R's coxph does,
    so it converges wherever a finite maximum exists. Where none does (e.g. an arm whose every event
    comes before every event it competes with) the likelihood keeps rising as a coefficient grows without
    bound: the gain vanishes while the Newton step along that coefficient stays near one unit instead of
    shrinking quadratically. Such coefficients are flagged `separated` (R warns they "may be infinite")."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    x = np.asarray(x, float).reshape(len(time), -1)
    strata = np.zeros(len(time)) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    design = _efron_design(time, event, strata.astype(float))
    beta = np.zeros(x.shape[1])
    ll, score, info = _efron(beta, x, design)
    step = _newton_step(info, score)
    for _ in range(max_iter):
        if np.max(np.abs(step), initial=0.0) < 1e-9 * (1 + np.max(np.abs(beta), initial=0.0)):
            break
        new = beta + step
        ll_new = _efron(new, x, design, False)[0]
        for _ in range(60):
            if ll_new >= ll:
                break
            new = (beta + new) / 2
            ll_new = _efron(new, x, design, False)[0]
        gain, beta = ll_new - ll, new
        ll, score, info = _efron(beta, x, design)
        step = _newton_step(info, score)
        if gain <= 1e-13 * (1 + abs(ll)):  # converged in likelihood; `step` tells a maximum from a supremum
            break
    separated = (np.abs(step) > 1e-6) & (np.abs(step) > 1e-4 * np.abs(beta))
    var = np.diag(np.linalg.pinv(info, rcond=1e-12))
    return CoxFit(beta, np.sqrt(np.where(var > 0, var, np.nan)), ll, separated)


def cox(time, event, group, reference: str, strata=None) -> list[CoxResult]:
    """Hazard ratios of reaching the threshold vs `reference`: Cox PH with Efron ties, stratified by seed
    when `strata` is given. Arms without events (or all arms, when the reference has none) are not
    estimable: the partial likelihood has no finite maximum, so they are reported as None with a note."""
    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    arms = [g for g in dict.fromkeys(group) if g != reference]
    events = {g: int(event[group == g].sum()) for g in [reference, *arms]}
    if events[reference] == 0:
        return [CoxResult(initializer=a, reference=reference, hazard_ratio=None, ci=(None, None), pvalue=None,
                          note="reference never reached the threshold") for a in arms]
    fit_arms = [a for a in arms if events[a] > 0]
    out = {a: CoxResult(initializer=a, reference=reference, hazard_ratio=None, ci=(None, None), pvalue=None,
                        note="never reached the threshold: not estimable") for a in arms if events[a] == 0}
    keep = np.isin(group, [reference, *fit_arms])
    if fit_arms:
        x = np.column_stack([(group[keep] == a).astype(float) for a in fit_arms])
        fit = cox_fit(time[keep], event[keep], x, None if strata is None else np.asarray(strata)[keep])
        for j, a in enumerate(fit_arms):
            b, se = float(fit.params[j]), float(fit.se[j])
            if fit.separated[j] or not (math.isfinite(b) and math.isfinite(se) and se > 0):
                out[a] = CoxResult(initializer=a, reference=reference, hazard_ratio=None, ci=(None, None), pvalue=None,
                                   note="separation: the partial likelihood has no finite maximum (hazard ratio "
                                   + ("infinite)" if b > 0 else "zero)"))
                continue
            # Wald interval and p as R's summary(coxph): exp(coef +- z se), 2 P(Z > |coef / se|).
            out[a] = CoxResult(initializer=a, reference=reference, hazard_ratio=math.exp(b),
                               ci=(math.exp(b - Z95 * se), math.exp(b + Z95 * se)),
                               pvalue=float(2 * stats.norm.sf(abs(b / se))))
    return [out[a] for a in arms]


def cox_interaction(time, event, group, factor, strata=None) -> TestResult:
    """Likelihood-ratio test of initializer x factor interaction in a Cox model (Efron ties, strata as given):
    2 (llf(main + interaction) - llf(main)), df = number of interaction terms."""
    time, event = np.asarray(time, float), np.asarray(event, int)
    group, factor = np.asarray(group).astype(str), np.asarray(factor).astype(str)
    g_levels, f_levels = list(dict.fromkeys(group)), list(dict.fromkeys(factor))
    main = [(group == g).astype(float) for g in g_levels[1:]] + [(factor == f).astype(float) for f in f_levels[1:]]
    inter = [(group == g) * (factor == f).astype(float) for g in g_levels[1:] for f in f_levels[1:]]
    if not main or not inter or event.sum() == 0:
        return TestResult("cox_interaction_lr", statistic=None, df=None, pvalue=None, note="nothing to test")
    reduced = cox_fit(time, event, np.column_stack(main), strata)
    full = cox_fit(time, event, np.column_stack(main + inter), strata)
    stat = 2 * (full.llf - reduced.llf)
    if not (math.isfinite(stat) and stat >= -1e-8):
        return TestResult("cox_interaction_lr", statistic=None, df=len(inter), pvalue=None, note="fit failed")
    # Without a finite maximum the LR statistic compares suprema (as R's anova(coxph) does): still valid
    # as a likelihood ratio, but its chi-square reference is rough.
    note = ("a fit is separated (some arm and level's events all come before or after the others'); read "
            "with care") if full.separated.any() or reduced.separated.any() else ""
    return TestResult("cox_interaction_lr", statistic=max(stat, 0.0), df=len(inter),
                      pvalue=float(stats.chi2.sf(max(stat, 0.0), len(inter))), note=note)


def schoenfeld_events(hazard_ratio: float, alpha: float, power: float = POWER) -> float:
    """Events needed to detect `hazard_ratio` between two equal arms (Schoenfeld 1983):
    4 (z_{1-alpha/2} + z_power)^2 / log(HR)^2."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(4 * z ** 2 / math.log(hazard_ratio) ** 2)


def mde_hazard_ratio(events: int, alpha: float, power: float = POWER) -> float | None:
    """The smallest hazard ratio (> 1) detectable with `events` events between two equal arms."""
    if events <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(math.exp(2 * z / math.sqrt(events)))


# ---------------------------------------------------------------- accuracy: omnibus tests

def friedman(matrix: np.ndarray) -> TestResult:
    """Friedman chi-square on a (seeds x initializers) matrix; needs >= 3 initializers."""
    if np.all(matrix == matrix[:, :1]):
        return TestResult("friedman", statistic=0.0, df=matrix.shape[1] - 1, pvalue=1.0,
                          note="all initializers tie within every seed")
    stat, p = stats.friedmanchisquare(*matrix.T)
    return TestResult("friedman", statistic=float(stat), df=matrix.shape[1] - 1, pvalue=float(p))


def iman_davenport(fr: TestResult, n: int, k: int) -> TestResult:
    """Iman & Davenport's (1980) F form of Friedman's statistic: F = (n-1) chi2 / (n(k-1) - chi2),
    df (k-1, (k-1)(n-1)); less conservative than the chi-square approximation."""
    if fr.statistic is None:
        return TestResult("iman_davenport", statistic=None, df=None, pvalue=None)
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - fr.statistic
    if denom <= 0:  # every block ranks the arms identically: F is infinite
        return TestResult("iman_davenport", statistic=None, df=df1, pvalue=0.0, note="perfect agreement across seeds",
                          df2=df2)
    f = (n - 1) * fr.statistic / denom
    return TestResult("iman_davenport", statistic=f, df=df1, pvalue=float(stats.f.sf(f, df1, df2)), df2=df2)


def rm_anova(matrix: np.ndarray) -> TestResult:
    """One-way repeated-measures ANOVA on a (seeds x initializers) matrix: seeds are blocks,
    F = MS_initializer / MS_residual on ((k-1), (n-1)(k-1)) df (sphericity assumed)."""
    n, k = matrix.shape
    grand = matrix.mean()
    ss_arm = n * ((matrix.mean(axis=0) - grand) ** 2).sum()
    ss_seed = k * ((matrix.mean(axis=1) - grand) ** 2).sum()
    ss_res = ((matrix - grand) ** 2).sum() - ss_arm - ss_seed
    df1, df2 = k - 1, (n - 1) * (k - 1)
    if ss_res <= 1e-15 * max(1.0, ss_arm):
        return TestResult("rm_anova", statistic=None, df=df1, pvalue=None, note="no residual variance", df2=df2)
    f = (ss_arm / df1) / (ss_res / df2)
    return TestResult("rm_anova", statistic=float(f), df=df1, pvalue=float(stats.f.sf(f, df1, df2)), df2=df2)


def anova(groups: list[np.ndarray]) -> TestResult:
    """Classic one-way ANOVA (equal variances assumed)."""
    k, n = len(groups), sum(len(g) for g in groups)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant input: F undefined, reported as None
        res = stats.f_oneway(*groups)
    return TestResult("anova", statistic=_num(res.statistic), df=k - 1, pvalue=_num(res.pvalue), df2=n - k)


def welch_anova(groups: list[np.ndarray]) -> TestResult:
    """Welch's one-way ANOVA for unequal variances (Welch 1951; R's oneway.test)."""
    from statsmodels.stats.oneway import anova_oneway

    if any(len(g) < 2 or np.var(g) == 0 for g in groups):
        return TestResult("welch_anova", statistic=None, df=len(groups) - 1, pvalue=None,
                          note="a group with fewer than 2 runs or no variance")
    res = anova_oneway(groups, use_var="unequal")
    return TestResult("welch_anova", statistic=_num(res.statistic), df=float(res.df_num), pvalue=_num(res.pvalue),
                      df2=float(res.df_denom))


def kruskal(groups: list[np.ndarray]) -> TestResult:
    allv = np.concatenate(groups)
    if np.all(allv == allv[0]):
        return TestResult("kruskal", statistic=0.0, df=len(groups) - 1, pvalue=1.0, note="all values equal")
    stat, p = stats.kruskal(*groups)
    return TestResult("kruskal", statistic=float(stat), df=len(groups) - 1, pvalue=float(p))


def cochran_q(matrix: np.ndarray) -> TestResult:
    """Cochran's Q on a (blocks x treatments) 0/1 matrix (Cochran 1950)."""
    k = matrix.shape[1]
    if np.all(matrix == matrix[:, :1]):
        return TestResult("cochran_q", statistic=0.0, df=k - 1, pvalue=1.0,
                          note="every seed has the same outcome in every arm")
    from statsmodels.stats.contingency_tables import cochrans_q

    res = cochrans_q(matrix)
    return TestResult("cochran_q", statistic=float(res.statistic), df=int(res.df), pvalue=float(res.pvalue))


def proportions_test(counts: np.ndarray, totals: np.ndarray) -> TestResult:
    """Equal proportions across independent arms: Fisher's exact test for two arms, else the
    chi-square test of homogeneity."""
    if counts.sum() == 0 or counts.sum() == totals.sum():
        return TestResult("fisher_exact" if len(counts) == 2 else "chi2", statistic=0.0 if len(counts) > 2 else None,
                          df=len(counts) - 1, pvalue=1.0, note="the same outcome in every run")
    table = np.column_stack([counts, totals - counts])
    if len(counts) == 2:
        res = stats.fisher_exact(table)
        return TestResult("fisher_exact", statistic=None, df=None, pvalue=float(res.pvalue), note="two-sided")
    chi2, p, df, expected = stats.chi2_contingency(table, correction=False)
    note = "some expected counts below 5: approximate" if (expected < 5).any() else ""
    return TestResult("chi2", statistic=float(chi2), df=int(df), pvalue=float(p), note=note)


def wilson(k: int, n: int) -> tuple[float | None, float | None]:
    """Wilson score 95% interval for k successes out of n (Wilson 1927; Newcombe 1998)."""
    if n == 0:
        return (None, None)
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return (float(max(lo, 0.0)), float(min(hi, 1.0)))


def two_way_anova(y: np.ndarray, a: np.ndarray, b: np.ndarray, block: np.ndarray | None = None,
                  names: tuple[str, str] = ("a", "b")) -> tuple[TestResult, ...]:
    """OLS two-way ANOVA with interaction, type II sums of squares (equal to R's sequential anova(lm())
    for balanced data), optionally with an additive block factor. y, a, b, block: (n,).
    Returns F tests for a, b and a:b, each with df2 = residual df."""
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    frame = pd.DataFrame({"y": np.asarray(y, float), "a": np.asarray(a).astype(str), "b": np.asarray(b).astype(str)})
    formula = "y ~ C(a) * C(b)"
    if block is not None:
        frame["block"] = np.asarray(block).astype(str)
        formula += " + C(block)"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # a perfect fit gives F = inf / NaN: reported as None
        table = sm.stats.anova_lm(smf.ols(formula, frame).fit(), typ=2)
    df_resid = float(table.loc["Residual", "df"])
    labels = {"C(a)": names[0], "C(b)": names[1], "C(a):C(b)": f"{names[0]}:{names[1]}"}
    return tuple(TestResult(label, statistic=_num(table.loc[t, "F"]), df=float(table.loc[t, "df"]),
                            pvalue=_num(table.loc[t, "PR(>F)"]), df2=df_resid)
                 for t, label in labels.items() if t in table.index)


# ---------------------------------------------------------------- accuracy: pairwise tests

EXACT_WITH_TIES = 13  # rank tests are exact with ties (or zero differences) up to this many runs per arm
EXACT_NO_TIES = 50  # and without ties up to this many (R's wilcox.test: exact below 50)


def _subset_sum_counts(scores: np.ndarray, k: int | None) -> np.ndarray:
    """Number of ways each integer total arises: over all sign choices of `scores` (k None: each score in
    or out), or over the subsets of exactly k scores. scores: (m,) non-negative integers."""
    total = int(scores.sum())
    if k is None:
        counts = np.zeros(total + 1)
        counts[0] = 1.0
        for s in scores:
            counts[s:] = counts[s:] + counts[:total + 1 - s].copy()
        return counts
    counts = np.zeros((k + 1, total + 1))
    counts[0, 0] = 1.0
    for s in scores:  # each score joins the subsets built so far, from the largest size down
        counts[1:, s:] = counts[1:, s:] + counts[:-1, :total + 1 - s].copy()
    return counts[k]


def _two_sided_exact(counts: np.ndarray, observed: int) -> float:
    """P(|S - E S| >= |s - E S|) under the null counts of the integer statistic S, as R's coin does
    (with ties the rank-sum distribution is not symmetric, so this is not twice a tail)."""
    probs = counts / counts.sum()
    values = np.arange(len(counts))
    mean = float(values @ probs)
    far = np.abs(values - mean) >= abs(observed - mean) - 1e-9 * (1 + len(counts))
    return float(min(1.0, probs[far].sum()))


def wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test on paired x - y: (min(V+, V-), p), zero differences ranked and
    their ranks split between the signs (zsplit).

    Exact (the distribution over the 2^n sign flips of the nonzero differences, conditional on ties and
    zeros; R's coin::wilcoxsign_test(zero.method = "Pratt", distribution = "exact")) when n <= 13, or when
    there are no ties or zeros and n <= 50 (R's wilcox.test(exact = TRUE)); otherwise the normal
    approximation with the zero-split variance sum(rank^2) / 4 and no continuity correction."""
    d = np.asarray(x, float) - np.asarray(y, float)
    n = len(d)
    if np.all(d == 0):
        return 0.0, 1.0
    ranks = stats.rankdata(np.abs(d))
    half_zero = ranks[d == 0].sum() / 2
    v_plus, v_minus = ranks[d > 0].sum() + half_zero, ranks[d < 0].sum() + half_zero
    ties = (d == 0).any() or len(np.unique(np.abs(d))) < n
    if n <= EXACT_WITH_TIES or (not ties and n <= EXACT_NO_TIES):
        doubled = np.rint(2 * ranks[d != 0]).astype(int)  # midranks are multiples of 1/2
        p = _two_sided_exact(_subset_sum_counts(doubled, None), int(np.rint(2 * ranks[d > 0].sum())))
    else:
        z = (v_plus - n * (n + 1) / 4) / math.sqrt((ranks ** 2).sum() / 4)
        p = float(2 * stats.norm.sf(abs(z)))
    return float(min(v_plus, v_minus)), p


def mannwhitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test: (U of x, p). Exact (the permutation distribution of the rank sum,
    conditional on ties; R's coin::wilcox_test(distribution = "exact")) when both arms have <= 13 runs,
    or when there are no ties and both have <= 50 (R's wilcox.test(exact = TRUE)); otherwise the normal
    approximation with the tie-corrected variance and no continuity correction
    (R's wilcox.test(exact = FALSE, correct = FALSE))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    nx, ny = len(x), len(y)
    pooled = np.concatenate([x, y])
    if np.all(pooled == pooled[0]):
        return float(nx * ny / 2), 1.0
    ranks = stats.rankdata(pooled)
    u = float(ranks[:nx].sum() - nx * (nx + 1) / 2)
    ties = len(np.unique(pooled)) < len(pooled)
    if max(nx, ny) <= EXACT_WITH_TIES or (not ties and max(nx, ny) <= EXACT_NO_TIES):
        doubled = np.rint(2 * ranks).astype(int)
        small = slice(0, nx) if nx <= ny else slice(nx, None)  # either arm's rank sum gives the same p
        p = _two_sided_exact(_subset_sum_counts(doubled, min(nx, ny)), int(doubled[small].sum()))
    else:
        n = nx + ny
        _, t = np.unique(pooled, return_counts=True)
        var = nx * ny / 12 * ((n + 1) - (t ** 3 - t).sum() / (n * (n - 1)))
        p = float(2 * stats.norm.sf(abs(u - nx * ny / 2) / math.sqrt(var)))
    return u, p


def paired_t(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float, float | None]:
    """(t, df, two-sided p) of the paired t-test on x - y. None when the differences are constant up to
    rounding, by R's t.test rule: standard error < 10 * machine epsilon * |mean difference| ("data are
    essentially constant"); p = 1 when every difference is exactly 0."""
    d = np.asarray(x, float) - np.asarray(y, float)
    n = len(d)
    if n < 2:
        return None, n - 1, None
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    if np.all(d == 0):
        return None, n - 1, 1.0
    if se < 10 * np.finfo(float).eps * abs(mean):
        return None, n - 1, None
    t = mean / se
    return float(t), float(n - 1), float(2 * stats.t.sf(abs(t), n - 1))


def _pairs_from(groups: dict[str, np.ndarray]):
    names = list(groups)
    return [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]


_GL_X, _GL_W = np.polynomial.legendre.leggauss(128)  # nodes for the studentized range integrals


def studentized_range_cdf(q: float, k: int, df: float) -> float:
    """P(Q < q) for the studentized range of k means with df error degrees of freedom.

    Gauss-Legendre quadrature of the range distribution of k normals over the
    density of s = sqrt(chi2_df / df) (Lund & Lund 1983); agrees with scipy's
    adaptive integration to 1e-8 and is ~100x faster, which matters with 45 pairs per cell."""
    if q <= 0:
        return 0.0
    z, wz = 8.5 * _GL_X, 8.5 * _GL_W
    lo, hi = (math.sqrt(stats.chi2.ppf(p, df) / df) for p in (1e-12, 1 - 1e-12))
    s, ws = lo + (hi - lo) * (_GL_X + 1) / 2, (hi - lo) / 2 * _GL_W
    log_fs = ((df / 2) * math.log(df) - math.lgamma(df / 2) - (df / 2 - 1) * math.log(2)
              + (df - 1) * np.log(s) - df * s ** 2 / 2)
    inner = np.clip(stats.norm.cdf(z)[None, :] - stats.norm.cdf(z[None, :] - q * s[:, None]), 0.0, 1.0)
    range_cdf = k * (stats.norm.pdf(z) * wz * inner ** (k - 1)).sum(axis=1)
    return float(min(1.0, max(0.0, (ws * np.exp(log_fs) * range_cdf).sum())))


def studentized_range_ppf(p: float, k: int, df: float) -> float:
    from scipy.optimize import brentq

    return float(brentq(lambda q: studentized_range_cdf(q, k, df) - p, 1e-6, 200.0, xtol=1e-10))


def tukey_hsd(groups: dict[str, np.ndarray]) -> list[Comparison]:
    """Tukey's honestly significant difference for all pairs (Tukey-Kramer for unequal sizes), as R's TukeyHSD."""
    k, n = len(groups), sum(len(g) for g in groups.values())
    df = n - k
    mse = sum(((g - g.mean()) ** 2).sum() for g in groups.values()) / df
    q_crit = studentized_range_ppf(0.95, k, df) if mse > 0 else None
    out = []
    for a, b in _pairs_from(groups):
        x, y = groups[a], groups[b]
        diff = float(x.mean() - y.mean())
        se = math.sqrt(mse / 2 * (1 / len(x) + 1 / len(y)))
        if not se > 0:
            out.append(Comparison(a=a, b=b, difference=diff, ci=(None, None), statistic=None, df=df,
                                  pvalue=1.0 if diff == 0 else None))
            continue
        q = abs(diff) / se
        out.append(Comparison(a=a, b=b, difference=diff, ci=(diff - q_crit * se, diff + q_crit * se), statistic=q,
                              df=df, pvalue=1.0 - studentized_range_cdf(q, k, df)))
    return out


def games_howell(groups: dict[str, np.ndarray]) -> list[Comparison]:
    """Games & Howell (1976): Welch-type standard errors and df, studentized range p-values and intervals."""
    k = len(groups)
    out = []
    for a, b in _pairs_from(groups):
        x, y = groups[a], groups[b]
        va, vb = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
        diff = float(np.mean(x) - np.mean(y))
        se = math.sqrt(va + vb) if len(x) > 1 and len(y) > 1 else float("nan")
        if not se > 0:
            out.append(Comparison(a=a, b=b, difference=diff, ci=(None, None), statistic=None, df=None,
                                  pvalue=1.0 if diff == 0 else None))
            continue
        df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
        q = abs(diff) / se * math.sqrt(2)
        half = studentized_range_ppf(0.95, k, df) / math.sqrt(2) * se
        out.append(Comparison(a=a, b=b, difference=diff, ci=(diff - half, diff + half), statistic=q, df=df,
                              pvalue=1.0 - studentized_range_cdf(q, k, df)))
    return out


# ---------------------------------------------------------------- effect sizes (bootstrap over seeds)

def _boot_ci(boots: np.ndarray) -> tuple[float | None, float | None]:
    boots = boots[np.isfinite(boots)]
    if len(boots) < N_BOOT // 2:  # most resamples undefined (e.g. zero variance): no interval
        return (None, None)
    return _ci(*np.percentile(boots, [2.5, 97.5]))


def _hedges_g(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hedges' g (bias-corrected standardized mean difference) along the last axis."""
    nx, ny = x.shape[-1], y.shape[-1]
    pooled = np.sqrt(((nx - 1) * x.var(axis=-1, ddof=1) + (ny - 1) * y.var(axis=-1, ddof=1)) / (nx + ny - 2))
    correction = 1 - 3 / (4 * (nx + ny) - 9)
    with np.errstate(divide="ignore", invalid="ignore"):
        return correction * (x.mean(axis=-1) - y.mean(axis=-1)) / pooled


def _d_z(d: np.ndarray) -> np.ndarray:
    """Cohen's d_z: mean of paired differences over their standard deviation, along the last axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return d.mean(axis=-1) / d.std(axis=-1, ddof=1)


def _a12(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vargha-Delaney A12 = P(X > Y) + P(X = Y) / 2 along the last axis, from mid-ranks of the pooled sample."""
    nx, ny = x.shape[-1], y.shape[-1]
    ranks = stats.rankdata(np.concatenate([x, y], axis=-1), axis=-1)
    return (ranks[..., :nx].sum(axis=-1) - nx * (nx + 1) / 2) / (nx * ny)


def accuracy_effects(x: np.ndarray, y: np.ndarray, paired: bool, rng: np.random.Generator) -> tuple[Effect, ...]:
    """Effect sizes of a vs b with 95% bootstrap CIs that resample seeds (pairs together when paired):
    median difference, mean difference, standardized difference (d_z paired, Hedges' g unpaired),
    Cliff's delta and A12. x, y: (n,) accuracies, NaN for diverged runs (dropped; paired: the seed)."""
    if paired:
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
    else:
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    names = ("median_difference", "mean_difference", "d_z" if paired else "hedges_g", "cliffs_delta", "a12")
    if len(x) < 2 or len(y) < 2:
        return tuple(Effect(n, None, (None, None)) for n in names)
    ix = rng.integers(0, len(x), (N_BOOT, len(x)))
    iy = ix if paired else rng.integers(0, len(y), (N_BOOT, len(y)))
    bx, by = x[ix], y[iy]
    if paired:
        med = (np.median(x - y), np.median(bx - by, axis=1))
        std = (_d_z(x - y), _d_z(bx - by))
    else:
        med = (np.median(x) - np.median(y), np.median(bx, axis=1) - np.median(by, axis=1))
        std = (_hedges_g(x, y), _hedges_g(bx, by))
    a12 = (_a12(x, y), _a12(bx, by))
    values = [med, (x.mean() - y.mean(), bx.mean(axis=1) - by.mean(axis=1)), std,
              (2 * a12[0] - 1, 2 * a12[1] - 1), a12]
    return tuple(Effect(n, _num(v), _boot_ci(b)) for n, (v, b) in zip(names, values))


# ---------------------------------------------------------------- assumptions and power

def shapiro(values: np.ndarray) -> tuple[float | None, float | None]:
    """Shapiro-Wilk W and p (Shapiro & Wilk 1965); None for fewer than 3 values or no variance."""
    values = values[np.isfinite(values)]
    if len(values) < 3 or np.all(values == values[0]):
        return None, None
    res = stats.shapiro(values)
    return float(res.statistic), float(res.pvalue)


def levene(groups: list[np.ndarray]) -> TestResult:
    """Brown-Forsythe (median-centred Levene) test of equal variances; R's car::leveneTest default."""
    groups = [g[np.isfinite(g)] for g in groups]
    if len(groups) < 2 or any(len(g) < 2 for g in groups) or all(np.all(g == g[0]) for g in groups):
        return TestResult("levene", statistic=None, df=len(groups) - 1, pvalue=None, note="too few runs or no variance")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.levene(*groups, center="median")
    return TestResult("levene", statistic=_num(res.statistic), df=len(groups) - 1, pvalue=_num(res.pvalue),
                      note="median-centred", df2=sum(len(g) for g in groups) - len(groups))


def _t_power(effect: float, n: float, alpha: float, paired: bool) -> float:
    """Power of the two-sided t-test at `alpha` for standardized `effect` with n pairs (paired: one-sample
    t on differences, df n - 1, ncp effect sqrt(n)) or n per arm (two-sample, df 2(n - 1), ncp effect
    sqrt(n / 2)), both rejection tails counted as in R's power.t.test(strict = TRUE)."""
    df, ncp = (n - 1, effect * math.sqrt(n)) if paired else (2 * (n - 1), effect * math.sqrt(n / 2))
    q = stats.t.isf(alpha / 2, df)
    # P(T < -q) as P(T' > q) under -ncp: scipy's far left tail of the noncentral t can be NaN.
    return float(stats.nct.sf(q, df, ncp) + stats.nct.sf(q, df, -ncp))


def _increasing_root(f, lo: float, hi: float, limit: float) -> float | None:
    """The root of increasing f on [lo, hi], widening hi by factors of 10 up to `limit` until f(hi) > 0
    (R's uniroot(extendInt = "upX")); None when f never turns positive."""
    from scipy.optimize import brentq

    while f(hi) <= 0:
        if hi >= limit:
            return None
        hi *= 10
    return float(brentq(f, lo, hi, xtol=1e-12, maxiter=500))


def mde_t(n: int, alpha: float, paired: bool, power: float = POWER) -> float | None:
    """Smallest standardized effect (d_z paired with n pairs; d unpaired with n per arm) that a two-sided
    t-test at `alpha` detects with `power`: the root of the noncentral-t power in the effect, bracketed
    (power is increasing in the effect), as R's power.t.test(strict = TRUE). None for n < 2."""
    if n < 2:
        return None
    return _increasing_root(lambda d: _t_power(d, n, alpha, paired) - power, 1e-10, 10.0, 1e7)


def seeds_needed(effect: float, alpha: float, paired: bool, power: float = POWER) -> int:
    """Seeds (pairs, or runs per arm) for a two-sided t-test at `alpha` to detect `effect` with `power`:
    the bracketed root in n (from 2, as R's power.t.test(strict = TRUE)), rounded up."""
    f = lambda n: _t_power(abs(effect), n, alpha, paired) - power  # noqa: E731
    if f(2.0) >= 0:
        return 2
    n = _increasing_root(f, 2.0, 100.0, 1e9)
    if n is None:  # beyond 1e9 seeds the t-test is the z-test
        z = stats.norm.isf(alpha / 2) + stats.norm.ppf(power)
        n = (1 if paired else 2) * (z / abs(effect)) ** 2
    return int(math.ceil(n - 1e-9))


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm (1979) step-down adjusted p-values; None entries (tests that could not run) stay None and are
    not counted. (Written out: statsmodels' multipletests forces a garbage collection on every call.)"""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if idx:
        p = np.array([pvalues[i] for i in idx], float)
        order = np.argsort(p, kind="stable")
        m = len(p)
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
        for i, q in zip(np.array(idx)[order], adj):
            out[i] = float(q)
    return out
