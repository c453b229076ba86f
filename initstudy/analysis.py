"""Statistics per cell: censored epochs-to-threshold and final accuracy, as frozen result objects.

Input is a tidy frame, one row per run and epoch (see `TIDY_COLUMNS`), built from
the run store by `tidy_from_store`. A cell is one combination of the factors
other than initializer and seed; each cell is one family for Holm's correction.

Epochs-to-threshold is a right-censored time: the first epoch whose validation
accuracy reaches the threshold is an event; a run that never reaches it is
censored at the epoch budget (a diverged run too: it did not reach the
threshold within the budget). Censored runs are never imputed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.multitest import multipletests

SCHEMA = "initstudy.results/1"
TIDY_COLUMNS = ("run", "initializer", "seed", "epoch", "val_acc", "val_loss", "train_loss", "diverged")
DIVERGED_SCORE = -1.0  # rank tests score a diverged run below any accuracy in [0, 1]
N_BOOT = 2000  # bootstrap resamples of seeds for effect-size intervals
BOOT_SEED = 20240917  # fixed so the same runs give byte-identical results


def _num(x) -> float | None:
    """A JSON-safe float: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class TestResult:
    test: str  # friedman | kruskal | logrank
    statistic: float | None
    df: float | None
    pvalue: float | None
    note: str = ""

    def to_dict(self) -> dict:
        return {"test": self.test, "statistic": _num(self.statistic), "df": _num(self.df),
                "pvalue": _num(self.pvalue), "note": self.note}


@dataclass(frozen=True)
class Effect:
    name: str  # e.g. "median_difference" (a - b, accuracy fraction)
    value: float | None
    ci: tuple[float | None, float | None]  # 95% percentile bootstrap over seeds

    def to_dict(self) -> dict:
        return {"name": self.name, "value": _num(self.value), "ci": [_num(self.ci[0]), _num(self.ci[1])]}


@dataclass(frozen=True)
class PairwiseResult:
    a: str
    b: str
    test: str  # wilcoxon | mannwhitney | logrank
    statistic: float | None
    pvalue: float | None
    pvalue_holm: float | None
    effect: Effect | None = None

    def to_dict(self) -> dict:
        d = {"a": self.a, "b": self.b, "test": self.test, "statistic": _num(self.statistic),
             "pvalue": _num(self.pvalue), "pvalue_holm": _num(self.pvalue_holm)}
        if self.effect is not None:
            d["effect"] = self.effect.to_dict()
        return d


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
class ArmSummary:
    initializer: str
    n_runs: int
    n_diverged: int
    final_acc_mean: float | None  # over non-diverged runs
    final_acc_median: float | None
    final_acc_sd: float | None
    n_reached: int  # runs that reached the threshold within the budget
    median_epochs: float | None  # Kaplan-Meier median epochs-to-threshold; None if not reached
    median_epochs_ci: tuple[float | None, float | None]
    kaplan_meier: tuple[tuple[int, float], ...]  # (epoch, P(not yet reached)) for epoch 0..budget

    def to_dict(self) -> dict:
        return {"initializer": self.initializer, "n_runs": self.n_runs, "n_diverged": self.n_diverged,
                "final_acc_mean": _num(self.final_acc_mean), "final_acc_median": _num(self.final_acc_median),
                "final_acc_sd": _num(self.final_acc_sd), "n_reached": self.n_reached,
                "median_epochs": _num(self.median_epochs),
                "median_epochs_ci": [_num(self.median_epochs_ci[0]), _num(self.median_epochs_ci[1])]}


@dataclass(frozen=True)
class CellResult:
    factors: dict
    design: str  # "paired" (same seeds in every arm, tests block on seed) or "unpaired"
    seeds: tuple[int, ...]
    threshold: float
    budget_epochs: int
    arms: tuple[ArmSummary, ...]
    final_omnibus: tuple[TestResult, ...]
    final_pairwise: tuple[PairwiseResult, ...]
    ett_omnibus: tuple[TestResult, ...]
    ett_pairwise: tuple[PairwiseResult, ...]
    ett_cox: tuple[CoxResult, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def initializers(self) -> list[str]:
        return [a.initializer for a in self.arms]

    def to_dict(self) -> dict:
        return {
            "factors": self.factors, "design": self.design, "seeds": list(self.seeds),
            "threshold": self.threshold, "budget_epochs": self.budget_epochs,
            "initializers": self.initializers,
            "arms": [a.to_dict() for a in self.arms],
            "final_accuracy": {"omnibus": [t.to_dict() for t in self.final_omnibus],
                               "pairwise": [p.to_dict() for p in self.final_pairwise]},
            "epochs_to_threshold": {
                "omnibus": [t.to_dict() for t in self.ett_omnibus],
                "pairwise": [p.to_dict() for p in self.ett_pairwise],
                "cox": [c.to_dict() for c in self.ett_cox],
                "kaplan_meier": {a.initializer: [{"epoch": e, "survival": _num(s)} for e, s in a.kaplan_meier]
                                 for a in self.arms},
            },
            "divergence": {a.initializer: {"diverged": a.n_diverged, "runs": a.n_runs} for a in self.arms},
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Results:
    study: str
    threshold: float
    alpha: float
    cells: tuple[CellResult, ...]

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "study": self.study, "threshold": self.threshold, "alpha": self.alpha,
                "correction": "holm", "cells": [c.to_dict() for c in self.cells]}


# ---------------------------------------------------------------- per-run outcomes

def run_outcomes(tidy: pd.DataFrame, threshold: float, budget: int) -> pd.DataFrame:
    """One row per run: initializer, seed, diverged, final_acc, time (epochs), event (1 = reached).

    `tidy` has one row per run and epoch; epoch 0 is before training.
    """
    rows = []
    for run, g in tidy.sort_values("epoch").groupby("run", sort=False):
        diverged = bool(g["diverged"].iloc[0])
        reached = g.loc[g["val_acc"] >= threshold, "epoch"]
        if len(reached):
            time, event = float(reached.iloc[0]), 1
        else:
            # Not reached: censored at the budget if the run used it (or diverged), else where its log ends.
            time, event = float(budget if diverged else g["epoch"].max()), 0
        rows.append({"run": run, "initializer": g["initializer"].iloc[0], "seed": int(g["seed"].iloc[0]),
                     "diverged": diverged, "final_acc": np.nan if diverged else float(g["val_acc"].iloc[-1]),
                     "time": time, "event": event})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- Kaplan-Meier and log-rank

def kaplan_meier(time: np.ndarray, event: np.ndarray, budget: int):
    """(points [(epoch, S(epoch))] for 0..budget, median, (median CI low, high)).

    S is the probability of not yet having reached the threshold; the median is
    the first epoch with S <= 0.5 (None when never), its CI Brookmeyer-Crowley.
    """
    if event.sum() == 0:
        return tuple((e, 1.0) for e in range(budget + 1)), None, (None, None)
    sf = SurvfuncRight(time, event)
    times, probs = np.asarray(sf.surv_times), np.asarray(sf.surv_prob)

    def s_at(t):
        idx = np.searchsorted(times, t, side="right") - 1
        return 1.0 if idx < 0 else float(probs[idx])

    points = tuple((e, s_at(e)) for e in range(budget + 1))
    below = [e for e, s in points if s <= 0.5 + 1e-12]
    median = float(below[0]) if below else None
    try:
        with np.errstate(all="ignore"):  # log(0) at S = 1 or 0 is handled by the CI's NaN/inf bounds
            lo, hi = sf.quantile_ci(0.5)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        lo, hi = np.nan, np.nan
    return points, median, (_num(lo), _num(hi))


def logrank(time, event, group, strata=None) -> TestResult:
    """Log-rank test across groups, stratified when `strata` is given.

    Observed-minus-expected events and their covariance are summed over strata;
    chi2 = (O - E)' V^+ (O - E) with a generalized inverse and df = rank(V), as R's
    survdiff does, so strata where events tie exactly carry no information rather
    than breaking the test.
    """
    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    labels = np.unique(group)
    k = len(labels)
    if event.sum() == 0:
        return TestResult("logrank", None, k - 1, None, "no run reached the threshold")
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
    df = int(np.linalg.matrix_rank(var, tol=1e-10))
    note = "stratified by seed" if len(np.unique(strata)) > 1 else ""
    if df == 0:
        return TestResult("logrank", 0.0, 0, None, (note + "; " if note else "") + "no information: events tie")
    stat = float(o_minus_e @ np.linalg.pinv(var, rcond=1e-10) @ o_minus_e)
    return TestResult("logrank", stat, df, float(stats.chi2.sf(stat, df)), note)


def cox(time, event, group, reference: str, strata=None) -> list[CoxResult]:
    """Hazard ratios of reaching the threshold vs `reference`: Cox PH with Efron ties, stratified by seed
    when `strata` is given. Arms without events (or all arms, when the reference has none) are not
    estimable: the partial likelihood has no finite maximum, so they are reported as None with a note."""
    import warnings

    from statsmodels.duration.hazard_regression import PHReg

    time, event, group = np.asarray(time, float), np.asarray(event, int), np.asarray(group)
    arms = [g for g in dict.fromkeys(group) if g != reference]
    events = {g: int(event[group == g].sum()) for g in [reference, *arms]}
    if events[reference] == 0:
        return [CoxResult(a, reference, None, (None, None), None, "reference never reached the threshold")
                for a in arms]
    fit_arms = [a for a in arms if events[a] > 0]
    out = {a: CoxResult(a, reference, None, (None, None), None, "never reached the threshold: not estimable")
           for a in arms if events[a] == 0}
    keep = np.isin(group, [reference, *fit_arms])
    if fit_arms:
        x = np.column_stack([(group[keep] == a).astype(float) for a in fit_arms])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter; non-finite results are checked below
            res = PHReg(time[keep], x, status=event[keep], ties="efron",
                        strata=None if strata is None else np.asarray(strata)[keep]).fit()
        with np.errstate(over="ignore"):  # a separated arm overflows; it is flagged below
            ci, hrs = np.exp(res.conf_int()), np.exp(res.params)
        for j, a in enumerate(fit_arms):
            hr, p = float(hrs[j]), float(res.pvalues[j])
            finite = math.isfinite(hr) and math.isfinite(p) and 1e-8 < hr < 1e8
            out[a] = CoxResult(a, reference, hr if finite else None,
                               (float(ci[j, 0]), float(ci[j, 1])) if finite else (None, None),
                               p if finite else None, "" if finite else "did not converge (separation)")
    return [out[a] for a in arms]


# ---------------------------------------------------------------- final accuracy

def _scores(o: pd.DataFrame) -> pd.Series:
    return o["final_acc"].where(~o["diverged"], DIVERGED_SCORE)


def friedman(matrix: np.ndarray) -> TestResult:
    """Friedman chi-square on a (seeds x initializers) matrix; needs >= 3 initializers."""
    if np.all(matrix == matrix[:, :1]):
        return TestResult("friedman", 0.0, matrix.shape[1] - 1, 1.0, "all initializers tie within every seed")
    stat, p = stats.friedmanchisquare(*matrix.T)
    return TestResult("friedman", float(stat), matrix.shape[1] - 1, float(p))


def iman_davenport(fr: TestResult, n: int, k: int) -> TestResult:
    """Iman & Davenport's (1980) F form of Friedman's statistic: F = (n-1) chi2 / (n(k-1) - chi2),
    df (k-1, (k-1)(n-1)); less conservative than the chi-square approximation."""
    if fr.statistic is None:
        return TestResult("iman_davenport", None, None, None)
    denom = n * (k - 1) - fr.statistic
    if denom <= 0:  # every block ranks the arms identically: F is infinite
        return TestResult("iman_davenport", None, None, 0.0, "perfect agreement across seeds")
    f = (n - 1) * fr.statistic / denom
    df1, df2 = k - 1, (k - 1) * (n - 1)
    return TestResult("iman_davenport", f, df1, float(stats.f.sf(f, df1, df2)), f"df2 = {df2}")


def kruskal(groups: list[np.ndarray]) -> TestResult:
    allv = np.concatenate(groups)
    if np.all(allv == allv[0]):
        return TestResult("kruskal", 0.0, len(groups) - 1, 1.0, "all values equal")
    stat, p = stats.kruskal(*groups)
    return TestResult("kruskal", float(stat), len(groups) - 1, float(p))


def wilcoxon(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank on paired x - y, zero differences split between signs."""
    d = x - y
    if np.all(d == 0):
        return 0.0, 1.0
    res = stats.wilcoxon(x, y, zero_method="zsplit", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def mannwhitney(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    if np.all(np.concatenate([x, y]) == x[0]):
        return float(len(x) * len(y) / 2), 1.0
    res = stats.mannwhitneyu(x, y, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def median_difference(x: np.ndarray, y: np.ndarray, paired: bool, rng: np.random.Generator) -> Effect:
    """Median of a - b (paired) or difference of medians, NaNs (diverged runs) dropped; bootstrap CI over seeds."""
    if paired:
        d = (x - y)[np.isfinite(x - y)]
        if len(d) == 0:
            return Effect("median_difference", None, (None, None))
        boots = np.median(d[rng.integers(0, len(d), (N_BOOT, len(d)))], axis=1)
        value = np.median(d)
    else:
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if len(x) == 0 or len(y) == 0:
            return Effect("median_difference", None, (None, None))
        boots = (np.median(x[rng.integers(0, len(x), (N_BOOT, len(x)))], axis=1)
                 - np.median(y[rng.integers(0, len(y), (N_BOOT, len(y)))], axis=1))
        value = np.median(x) - np.median(y)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return Effect("median_difference", float(value), (float(lo), float(hi)))


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values; None entries (tests that could not run) stay None and are not counted."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if idx:
        adj = multipletests([pvalues[i] for i in idx], method="holm")[1]
        for i, p in zip(idx, adj):
            out[i] = float(p)
    return out


# ---------------------------------------------------------------- one cell

def analyze_cell(tidy: pd.DataFrame, factors: dict, threshold: float, budget: int,
                 order: list[str] | None = None, reference: str | None = None) -> CellResult:
    """All tests for one cell. `tidy`: the cell's rows (TIDY_COLUMNS); `order`: initializer order;
    `reference`: the arm hazard ratios compare against (default: the first arm that reached the threshold)."""
    o = run_outcomes(tidy, threshold, budget)
    inits = [i for i in (order or sorted(o["initializer"].unique())) if i in set(o["initializer"])]
    seed_sets = {i: frozenset(o.loc[o["initializer"] == i, "seed"]) for i in inits}
    counts_ok = all(o.loc[o["initializer"] == i, "seed"].is_unique for i in inits)
    paired = counts_ok and len(set(seed_sets.values())) == 1 and len(seed_sets[inits[0]]) >= 2
    seeds = tuple(sorted(set().union(*seed_sets.values())))
    notes = ["Diverged runs rank below every finished run in the rank tests; they are excluded from "
             "accuracy means and effect sizes."] if o["diverged"].any() else []
    if not paired:
        notes.append("Initializers do not share one set of seeds, so tests are unpaired.")
    rng = np.random.default_rng(BOOT_SEED)

    arms = []
    for i in inits:
        oi = o[o["initializer"] == i]
        acc = oi["final_acc"].dropna().to_numpy()
        points, median, ci = kaplan_meier(oi["time"].to_numpy(float), oi["event"].to_numpy(int), budget)
        arms.append(ArmSummary(i, len(oi), int(oi["diverged"].sum()),
                               _num(acc.mean()) if len(acc) else None, _num(np.median(acc)) if len(acc) else None,
                               _num(acc.std(ddof=1)) if len(acc) > 1 else None, int(oi["event"].sum()),
                               median, ci, points))

    # Final accuracy.
    scores = o.assign(score=_scores(o))
    final_omnibus, final_pairwise = [], []
    if paired:
        wide = scores.pivot(index="seed", columns="initializer", values="score")[inits]
        raw = o.pivot(index="seed", columns="initializer", values="final_acc")[inits]
        if len(inits) >= 3:
            fr = friedman(wide.to_numpy())
            final_omnibus += [fr, iman_davenport(fr, len(wide), len(inits))]
        pairs = []
        for a, b in itertools.combinations(inits, 2):
            stat, p = wilcoxon(wide[a].to_numpy(), wide[b].to_numpy())
            pairs.append((a, b, "wilcoxon", stat, p,
                          median_difference(raw[a].to_numpy(), raw[b].to_numpy(), True, rng)))
    else:
        groups = {i: scores.loc[scores["initializer"] == i, "score"].to_numpy() for i in inits}
        raw = {i: o.loc[o["initializer"] == i, "final_acc"].to_numpy() for i in inits}
        if len(inits) >= 2:
            final_omnibus.append(kruskal(list(groups.values())))
        pairs = []
        for a, b in itertools.combinations(inits, 2):
            stat, p = mannwhitney(groups[a], groups[b])
            pairs.append((a, b, "mannwhitney", stat, p, median_difference(raw[a], raw[b], False, rng)))
    adjusted = holm([p[4] for p in pairs])
    final_pairwise = [PairwiseResult(a, b, t, s, p, q, e) for (a, b, t, s, p, e), q in zip(pairs, adjusted)]

    # Epochs-to-threshold.
    time, event, group = o["time"].to_numpy(float), o["event"].to_numpy(int), o["initializer"].to_numpy()
    strata = o["seed"].to_numpy() if paired else None
    ett_omnibus = [logrank(time, event, group, strata)] if len(inits) >= 2 else []
    lr_pairs = []
    for a, b in itertools.combinations(inits, 2):
        m = np.isin(group, [a, b])
        t = logrank(time[m], event[m], group[m], None if strata is None else strata[m])
        lr_pairs.append((a, b, t.statistic, t.pvalue))
    adjusted = holm([p[3] for p in lr_pairs])
    ett_pairwise = [PairwiseResult(a, b, "logrank", s, p, q) for (a, b, s, p), q in zip(lr_pairs, adjusted)]
    if reference not in inits:
        reached = [a.initializer for a in arms if a.n_reached]
        reference = reached[0] if reached else inits[0]
    ett_cox = sorted(cox(time, event, group, reference, strata) if len(inits) >= 2 else [],
                     key=lambda c: inits.index(c.initializer))

    return CellResult(factors, "paired" if paired else "unpaired", seeds, threshold, budget, tuple(arms),
                      tuple(final_omnibus), tuple(final_pairwise), tuple(ett_omnibus), tuple(ett_pairwise),
                      tuple(ett_cox), tuple(notes))


def analyze(tidy: pd.DataFrame, factor_columns: list[str], threshold: float, budget: int, alpha: float,
            study: str, order: list[str] | None = None, reference: str | None = None) -> Results:
    """Split `tidy` into cells by `factor_columns` and analyse each; cells keep first-seen order."""
    cells = []
    if factor_columns:
        grouped = tidy.groupby(factor_columns, sort=False, dropna=False)
    else:
        grouped = [((), tidy)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        factors = {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(factor_columns, key)}
        cells.append(analyze_cell(g, factors, threshold, budget, order, reference))
    return Results(study, threshold, alpha, tuple(cells))
