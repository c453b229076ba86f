"""Statistics per cell: censored epochs-to-threshold, final and best accuracy, divergence and power.

Input is a tidy frame, one row per run and epoch (see `TIDY_COLUMNS`), built from
the run store by `tidy_frame` or read from an imported CSV. A cell is one
combination of the factors other than initializer and seed; each test family in
a cell is one family for Holm's correction.

Epochs-to-threshold is a right-censored time: the first epoch whose validation
accuracy reaches the threshold is an event, observed at that epoch, even when the
run diverges later (reaching is what the endpoint records; divergence is its own
endpoint). A run that never reaches it is censored at the epoch budget when it
diverged (it cannot reach it any more) or used the whole budget, else where its
log ends. Censored runs are never imputed.

Design: a cell with two or more initializers is paired on the seeds that every
initializer has (at least 2), whatever else is missing; runs of other seeds, and
seeds with duplicate runs, are left out with a note naming them. With fewer than
2 shared seeds it is unpaired; with one initializer it is a single arm (no
tests). The primary tests are fixed in advance by the design, never chosen by the
assumption checks, which are reported beside them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StudyError
from .stats import (N_BOOT, POWER, Comparison, CoxResult, Effect, TestResult, _num, accuracy_effects, anova,
                    cochran_q, cox, cox_interaction, friedman, games_howell, holm, iman_davenport, kaplan_meier,
                    kruskal, levene, logrank, mannwhitney, mde_hazard_ratio, mde_t, paired_t, proportions_test,
                    rm_anova, rmst, rmst_difference, seeds_needed, shapiro, tukey_hsd, two_way_anova, welch_anova,
                    wilcoxon, wilson)

SCHEMA = "initstudy.results/1"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "results.schema.json"  # JSON Schema of results.json, shipped
TIDY_COLUMNS = ("run", "initializer", "seed", "epoch", "val_acc", "val_loss", "train_loss", "diverged")
DIVERGED_SCORE = -1.0  # rank tests score a diverged run below any accuracy in [0, 1]
BOOT_SEED = 20240917  # fixed so the same runs give byte-identical results
TARGET_EFFECT = 0.8  # default standardized effect the power section asks about (Cohen's "large")

DESIGNS = ("auto", "paired", "unpaired")  # `design` argument: auto pairs on the shared seeds when >= 2

PRIMARY = {
    "single arm": {},
    "paired": {"epochs_to_threshold": "log-rank stratified by seed; pairwise log-rank, Holm",
               "final_accuracy": "Friedman; pairwise Wilcoxon signed-rank (zeros split), Holm"},
    "unpaired": {"epochs_to_threshold": "log-rank; pairwise log-rank, Holm",
                 "final_accuracy": "Kruskal-Wallis; pairwise Mann-Whitney U, Holm"},
}


@dataclass(frozen=True)
class PairwiseResult:
    a: str
    b: str
    test: str  # wilcoxon | paired_t | mannwhitney | tukey_hsd | games_howell | logrank
    statistic: float | None
    pvalue: float | None  # for tukey_hsd and games_howell: already adjusted by the procedure
    pvalue_holm: float | None  # None where the procedure adjusts for the family itself
    effect: Effect | None = None  # the effect size this test speaks to
    effects: tuple[Effect, ...] = ()  # every effect size for the pair
    df: float | None = None
    adjustment: str = "holm"  # holm | tukey_hsd | games_howell

    @property
    def pvalue_adjusted(self) -> float | None:
        return self.pvalue_holm if self.adjustment == "holm" else self.pvalue

    def to_dict(self) -> dict:
        d = {"a": self.a, "b": self.b, "test": self.test, "statistic": _num(self.statistic), "df": _num(self.df),
             "pvalue": _num(self.pvalue), "pvalue_holm": _num(self.pvalue_holm),
             "pvalue_adjusted": _num(self.pvalue_adjusted), "adjustment": self.adjustment}
        if self.effect is not None:
            d["effect"] = self.effect.to_dict()
        if self.effects:
            d["effects"] = [e.to_dict() for e in self.effects]
        return d


@dataclass(frozen=True)
class Check:
    """An assumption check, reported beside the tests it concerns (it never picks the test)."""
    test: str  # shapiro | levene
    target: str  # what was checked, e.g. "final accuracy differences a - b"
    statistic: float | None
    pvalue: float | None
    note: str = ""

    def to_dict(self) -> dict:
        return {"test": self.test, "target": self.target, "statistic": _num(self.statistic),
                "pvalue": _num(self.pvalue), "note": self.note}


@dataclass(frozen=True)
class AccuracyTests:
    omnibus: tuple[TestResult, ...]
    pairwise: tuple[PairwiseResult, ...]
    checks: tuple[Check, ...]

    def to_dict(self) -> dict:
        return {"omnibus": [t.to_dict() for t in self.omnibus], "pairwise": [p.to_dict() for p in self.pairwise],
                "assumptions": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class Power:
    alpha_per_comparison: float  # alpha / comparisons: Holm's strictest step, so a conservative bound
    comparisons: int
    n_seeds: int  # pairs (paired) or the smallest arm (unpaired)
    mde_standardized: float | None  # d_z (paired) or d (unpaired) detectable with POWER
    mde_accuracy: float | None  # the same in accuracy units, via the observed SD
    target_effect: float
    seeds_needed: int  # for target_effect at alpha_per_comparison with POWER
    min_wilcoxon_p: float | None  # smallest two-sided exact signed-rank p with n pairs (paired only)
    events_per_arm: float
    mde_hazard_ratio: float | None  # for two arms with the cell's mean events per arm (Schoenfeld)
    underpowered: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"power": POWER, "alpha_per_comparison": self.alpha_per_comparison, "comparisons": self.comparisons,
                "n_seeds": self.n_seeds, "mde_standardized": _num(self.mde_standardized),
                "mde_accuracy": _num(self.mde_accuracy), "target_effect": self.target_effect,
                "seeds_needed": self.seeds_needed, "min_wilcoxon_p": _num(self.min_wilcoxon_p),
                "events_per_arm": _num(self.events_per_arm), "mde_hazard_ratio": _num(self.mde_hazard_ratio),
                "underpowered": self.underpowered, "reasons": list(self.reasons)}


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
    diverged_ci: tuple[float | None, float | None] = (None, None)  # Wilson 95% interval of the rate
    best_acc_mean: float | None = None
    rmst: float | None = None  # restricted mean epochs to threshold over [0, budget]
    rmst_ci: tuple[float | None, float | None] = (None, None)  # 95%, Greenwood-type SE

    def to_dict(self) -> dict:
        return {"initializer": self.initializer, "n_runs": self.n_runs, "n_diverged": self.n_diverged,
                "final_acc_mean": _num(self.final_acc_mean), "final_acc_median": _num(self.final_acc_median),
                "final_acc_sd": _num(self.final_acc_sd), "best_acc_mean": _num(self.best_acc_mean),
                "n_reached": self.n_reached, "median_epochs": _num(self.median_epochs),
                "median_epochs_ci": [_num(self.median_epochs_ci[0]), _num(self.median_epochs_ci[1])],
                "rmst": _num(self.rmst), "rmst_ci": [_num(self.rmst_ci[0]), _num(self.rmst_ci[1])]}


@dataclass(frozen=True)
class CellResult:
    factors: dict
    design: str  # "paired" (tests block on the seeds every arm has), "unpaired" or "single arm" (no tests)
    seeds: tuple[int, ...]
    threshold: float
    budget_epochs: int
    arms: tuple[ArmSummary, ...]
    final_omnibus: tuple[TestResult, ...]
    final_pairwise: tuple[PairwiseResult, ...]
    ett_omnibus: tuple[TestResult, ...]
    ett_pairwise: tuple[PairwiseResult, ...]  # log-rank, effect: RMST difference a - b
    ett_cox: tuple[CoxResult, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    final_checks: tuple[Check, ...] = ()
    best: AccuracyTests | None = None
    divergence_test: TestResult | None = None
    power: Power | None = None

    @property
    def initializers(self) -> list[str]:
        return [a.initializer for a in self.arms]

    @property
    def final_primary(self) -> tuple[PairwiseResult, ...]:
        """The pairwise rows of the primary final-accuracy test (Wilcoxon paired, Mann-Whitney unpaired)."""
        test = "wilcoxon" if self.design == "paired" else "mannwhitney"
        return tuple(p for p in self.final_pairwise if p.test == test)

    @property
    def omnibus_primary(self) -> tuple[TestResult, ...]:
        """The primary omnibus tests: log-rank, and Friedman (paired) or Kruskal-Wallis (unpaired)."""
        test = "friedman" if self.design == "paired" else "kruskal"
        return tuple(self.ett_omnibus) + tuple(t for t in self.final_omnibus if t.test == test)

    def to_dict(self) -> dict:
        return {
            "factors": self.factors, "design": self.design, "seeds": list(self.seeds),
            "threshold": self.threshold, "budget_epochs": self.budget_epochs,
            "initializers": self.initializers, "primary": PRIMARY[self.design],
            "arms": [a.to_dict() for a in self.arms],
            "final_accuracy": AccuracyTests(self.final_omnibus, self.final_pairwise, self.final_checks).to_dict(),
            "best_accuracy": self.best.to_dict() if self.best else None,
            "epochs_to_threshold": {
                "omnibus": [t.to_dict() for t in self.ett_omnibus],
                "pairwise": [p.to_dict() for p in self.ett_pairwise],
                "cox": [c.to_dict() for c in self.ett_cox],
                "rmst": [{"initializer": a.initializer, "tau": self.budget_epochs, "rmst": _num(a.rmst),
                          "ci": [_num(a.rmst_ci[0]), _num(a.rmst_ci[1])]} for a in self.arms],
                "kaplan_meier": {a.initializer: [{"epoch": e, "survival": _num(s)} for e, s in a.kaplan_meier]
                                 for a in self.arms},
            },
            "divergence": {
                "arms": [{"initializer": a.initializer, "diverged": a.n_diverged, "runs": a.n_runs,
                          "rate": a.n_diverged / a.n_runs if a.n_runs else None,
                          "ci": [_num(a.diverged_ci[0]), _num(a.diverged_ci[1])]} for a in self.arms],
                "test": self.divergence_test.to_dict() if self.divergence_test else None,
            },
            "power": self.power.to_dict() if self.power else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class FactorialResult:
    """Initializer x another factor, within one combination of the remaining factors."""
    factor: str
    fixed: dict  # the remaining factors' levels
    design: str  # "blocked by seed" or "unblocked"
    final_accuracy: tuple[TestResult, ...]  # OLS type II F tests: initializer, factor, interaction
    epochs_to_threshold: TestResult  # Cox likelihood-ratio test of the interaction
    note: str = ""

    def to_dict(self) -> dict:
        return {"factor": self.factor, "fixed": self.fixed, "design": self.design,
                "final_accuracy": {"model": "OLS two-way ANOVA with interaction, type II sums of squares"
                                            + (", seed as a block" if self.design == "blocked by seed" else "")
                                            + "; diverged runs left out",
                                   "terms": [t.to_dict() for t in self.final_accuracy]},
                "epochs_to_threshold": {"model": "Cox PH (Efron ties"
                                                 + (", stratified by seed" if self.design == "blocked by seed" else "")
                                                 + "): likelihood-ratio test of the interaction",
                                        **self.epochs_to_threshold.to_dict()},
                "note": self.note}


@dataclass(frozen=True)
class Results:
    study: str
    threshold: float
    alpha: float
    cells: tuple[CellResult, ...]
    factorial: tuple[FactorialResult, ...] = ()

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "study": self.study, "threshold": self.threshold, "alpha": self.alpha,
                "correction": "holm", "bootstrap": {"resamples": N_BOOT, "seed": BOOT_SEED, "unit": "seed"},
                "cells": [c.to_dict() for c in self.cells],
                "factorial": [f.to_dict() for f in self.factorial]}

    def to_frame(self, kind: str) -> pd.DataFrame:
        """A table of the results, one row per cell and: arm ("arms"), pairwise test ("pairwise"), or omnibus
        test ("omnibus"); the cell's factors come first, intervals as `_low`/`_high` columns."""
        rows = []
        for cell in self.cells:
            if kind == "arms":
                for a in cell.arms:
                    d = a.to_dict()
                    for key in ("median_epochs_ci", "rmst_ci"):
                        d[key + "_low"], d[key + "_high"] = d.pop(key)
                    rows.append({**cell.factors, "design": cell.design, **d, "diverged_ci_low": a.diverged_ci[0],
                                 "diverged_ci_high": a.diverged_ci[1]})
            elif kind == "pairwise":
                families = (("epochs_to_threshold", cell.ett_pairwise), ("final_accuracy", cell.final_pairwise),
                            ("best_accuracy", cell.best.pairwise if cell.best else ()))
                for endpoint, pairs in families:
                    for p in pairs:
                        d = p.to_dict()
                        d.pop("effects", None)
                        e = d.pop("effect", None) or {"name": None, "value": None, "ci": [None, None]}
                        rows.append({**cell.factors, "design": cell.design, "endpoint": endpoint, **d,
                                     "effect": e["name"], "effect_value": e["value"], "effect_ci_low": e["ci"][0],
                                     "effect_ci_high": e["ci"][1]})
            elif kind == "omnibus":
                families = (("epochs_to_threshold", cell.ett_omnibus), ("final_accuracy", cell.final_omnibus),
                            ("best_accuracy", cell.best.omnibus if cell.best else ()),
                            ("divergence", (cell.divergence_test,) if cell.divergence_test else ()))
                for endpoint, tests in families:
                    for t in tests:
                        rows.append({**cell.factors, "design": cell.design, "endpoint": endpoint,
                                     "df2": None, **t.to_dict()})
            else:
                raise StudyError(f"unknown table {kind!r}; ask for one of: {', '.join(FRAMES)}")
        return pd.DataFrame(rows)


FRAMES = ("arms", "pairwise", "omnibus")  # the tables Results.to_frame gives


# ---------------------------------------------------------------- per-run outcomes

def run_outcomes(tidy: pd.DataFrame, threshold: float, budget: int) -> pd.DataFrame:
    """One row per run: run, initializer, seed, diverged, final_acc, best_acc, time (epochs), event
    (1 = reached the threshold; the first epoch it did, even if the run diverged afterwards).

    `tidy` has one row per run and epoch; epoch 0 is before training. Accuracies are NaN for diverged runs.
    A run that did not diverge but has no trained epoch (only epoch 0) has no outcome and no row, like a
    missing run (`untrained_runs` lists them).
    """
    rows = []
    for run, g in tidy.sort_values("epoch").groupby("run", sort=False):
        diverged = bool(g["diverged"].iloc[0])
        trained = g.loc[g["epoch"] > 0, "val_acc"]
        if not diverged and not len(trained):
            continue  # pre-training accuracy is not an outcome
        reached = g.loc[g["val_acc"] >= threshold, "epoch"]
        if len(reached):
            time, event = float(reached.iloc[0]), 1
        else:
            # Not reached: censored at the budget if the run used it (or diverged), else where its log ends.
            time, event = float(budget if diverged else g["epoch"].max()), 0
        rows.append({"run": run, "initializer": g["initializer"].iloc[0], "seed": int(g["seed"].iloc[0]),
                     "diverged": diverged, "final_acc": np.nan if diverged else float(trained.iloc[-1]),
                     "best_acc": np.nan if diverged else float(trained.max()), "time": time, "event": event})
    return pd.DataFrame(rows, columns=["run", "initializer", "seed", "diverged", "final_acc", "best_acc", "time",
                                       "event"])


def untrained_runs(tidy: pd.DataFrame) -> list[tuple[str, str, int]]:
    """(run, initializer, seed) of runs that did not diverge and logged no epoch after epoch 0."""
    trained = tidy.groupby("run")["epoch"].max() > 0
    diverged = tidy.groupby("run")["diverged"].first().astype(bool)
    firsts = tidy.groupby("run")[["initializer", "seed"]].first()
    return [(str(r), str(firsts.at[r, "initializer"]), int(firsts.at[r, "seed"]))
            for r in trained.index if not trained[r] and not diverged[r]]


# ---------------------------------------------------------------- one endpoint's tests

def rank_scores(o: pd.DataFrame, column: str = "final_acc") -> pd.Series:
    """`column` of `run_outcomes` as the rank tests see it: a diverged run scores DIVERGED_SCORE, below any
    finished run."""
    return o[column].where(~o["diverged"].astype(bool), DIVERGED_SCORE)


def _pairs(inits: list[str]):
    return list(itertools.combinations(inits, 2))


def _holm_rows(rows: list[PairwiseResult]) -> list[PairwiseResult]:
    """The rows of one family with their Holm-adjusted p-values filled in."""
    adjusted = holm([r.pvalue for r in rows])
    return [replace(r, pvalue_holm=q) for r, q in zip(rows, adjusted)]


def _procedure_rows(test: str, comps: list[Comparison], effects: dict) -> list[PairwiseResult]:
    """Pairwise rows of a simultaneous procedure; its own interval and adjusted p stand in for Holm's."""
    return [PairwiseResult(a=c.a, b=c.b, test=test, statistic=c.statistic, pvalue=c.pvalue, pvalue_holm=None,
                           effect=Effect(name="mean_difference", value=c.difference, ci=c.ci, method=test),
                           effects=effects[(c.a, c.b)], df=c.df, adjustment=test) for c in comps]


def accuracy_tests(o: pd.DataFrame, column: str, inits: list[str], paired: bool,
                   rng: np.random.Generator) -> AccuracyTests:
    """Omnibus, pairwise and assumption checks for one accuracy column of `run_outcomes`.

    Rank tests score diverged runs below every finished run; parametric tests and effect sizes leave them
    out (paired: the seed is left out of that pair)."""
    scores = rank_scores(o, column)
    k = len(inits)
    omnibus: list[TestResult] = []
    checks: list[Check] = []
    if paired:
        wide_s = o.assign(score=scores).pivot(index="seed", columns="initializer", values="score")[inits]
        wide_v = o.pivot(index="seed", columns="initializer", values=column)[inits]
        if k >= 3:
            fr = friedman(wide_s.to_numpy())
            omnibus += [fr, iman_davenport(fr, len(wide_s), k)]
        complete = wide_v.dropna()
        if k >= 2 and len(complete) >= 2:
            res = rm_anova(complete.to_numpy())
            dropped = len(wide_v) - len(complete)
            omnibus.append(res if not dropped else replace(res, note=f"{dropped} seed(s) with a diverged run left out"))
        effects = {(a, b): accuracy_effects(wide_v[a].to_numpy(), wide_v[b].to_numpy(), True, rng)
                   for a, b in _pairs(inits)}
        ranked, parametric = [], []
        for a, b in _pairs(inits):
            stat, p = wilcoxon(wide_s[a].to_numpy(), wide_s[b].to_numpy())
            es = effects[(a, b)]
            ranked.append(PairwiseResult(a=a, b=b, test="wilcoxon", statistic=stat, pvalue=p, pvalue_holm=None,
                                         effect=es[0], effects=es))
            both = wide_v[[a, b]].dropna()
            t, df, pt = paired_t(both[a].to_numpy(), both[b].to_numpy())
            parametric.append(PairwiseResult(a=a, b=b, test="paired_t", statistic=t, pvalue=pt, pvalue_holm=None,
                                             effect=es[2], effects=es, df=df))
            w, pw = shapiro((both[a] - both[b]).to_numpy())
            checks.append(Check("shapiro", f"{column} differences {a} - {b}", w, pw))
        pairwise = _holm_rows(ranked) + _holm_rows(parametric)
    else:
        groups_s = {i: scores[o["initializer"] == i].to_numpy() for i in inits}
        groups_v = {i: o.loc[o["initializer"] == i, column].to_numpy() for i in inits}
        finite = {i: g[np.isfinite(g)] for i, g in groups_v.items()}
        usable = {i: g for i, g in finite.items() if len(g) >= 2}
        if k >= 2:
            if len(usable) >= 2:
                omnibus += [anova(list(usable.values())), welch_anova(list(usable.values()))]
                if len(usable) < k:
                    omnibus = [replace(t, note="arms with fewer than 2 finished runs left out") for t in omnibus]
            omnibus.append(kruskal(list(groups_s.values())))
        effects = {(a, b): accuracy_effects(groups_v[a], groups_v[b], False, rng) for a, b in _pairs(inits)}
        ranked = []
        for a, b in _pairs(inits):
            stat, p = mannwhitney(groups_s[a], groups_s[b])
            ranked.append(PairwiseResult(a=a, b=b, test="mannwhitney", statistic=stat, pvalue=p, pvalue_holm=None,
                                         effect=effects[(a, b)][0], effects=effects[(a, b)]))
        pairwise = _holm_rows(ranked)
        if len(usable) == k and k >= 2:
            pairwise += _procedure_rows("tukey_hsd", tukey_hsd(usable), effects)
            pairwise += _procedure_rows("games_howell", games_howell(usable), effects)
        if usable:
            resid = np.concatenate([g - g.mean() for g in usable.values()])
            w, pw = shapiro(resid)
            checks.append(Check("shapiro", f"{column} residuals from arm means", w, pw))
            lev = levene(list(usable.values()))
            checks.append(Check("levene", target=f"{column} variances across arms", statistic=lev.statistic,
                                pvalue=lev.pvalue, note=lev.note))
    return AccuracyTests(tuple(omnibus), tuple(pairwise), tuple(checks))


def divergence(o: pd.DataFrame, inits: list[str], paired: bool) -> TestResult:
    """Do divergence rates differ? Cochran's Q over seeds when paired, else Fisher / chi-square."""
    if not o["diverged"].any():
        return TestResult("cochran_q" if paired else "chi2", statistic=None, df=None, pvalue=None,
                          note="no run diverged")
    if paired:
        wide = o.pivot(index="seed", columns="initializer", values="diverged")[inits].astype(int).to_numpy()
        return cochran_q(wide)
    counts = np.array([o.loc[o["initializer"] == i, "diverged"].sum() for i in inits])
    totals = np.array([(o["initializer"] == i).sum() for i in inits])
    return proportions_test(counts, totals)


def power(o: pd.DataFrame, inits: list[str], paired: bool, alpha: float, target_effect: float) -> Power:
    """Minimum detectable effects for the seeds used and seeds needed for `target_effect`, at alpha divided
    by the number of pairwise comparisons (Holm's first step), with power POWER."""
    m = max(1, len(inits) * (len(inits) - 1) // 2)
    a1 = alpha / m
    if paired:
        wide = o.pivot(index="seed", columns="initializer", values="final_acc")[inits]
        n = len(wide)
        sds = [np.nanstd((wide[a] - wide[b]).to_numpy(), ddof=1) for a, b in _pairs(inits)
               if (wide[a] - wide[b]).notna().sum() > 1]
    else:
        n = int(min((o["initializer"] == i).sum() for i in inits))
        groups = [o.loc[(o["initializer"] == i) & ~o["diverged"], "final_acc"].to_numpy() for i in inits]
        sds = [g.std(ddof=1) for g in groups if len(g) > 1]
    sd = float(np.sqrt(np.mean(np.square(sds)))) if sds else None  # root-mean-square SD across pairs / arms
    mde = mde_t(n, a1, paired)
    needed = seeds_needed(target_effect, a1, paired)
    min_w = 2.0 / 2 ** n if paired else None
    events = float(o.groupby("initializer")["event"].sum().reindex(inits).mean())
    reasons = []
    if n < needed:
        reasons.append(f"{n} seeds detect a standardized effect of {mde:.2f} with {POWER:.0%} power at alpha "
                       f"{a1:.3g}; {needed} are needed for {target_effect:g}" if mde else
                       f"{n} seeds: too few for any t-based power statement; {needed} are needed")
    if min_w is not None and min_w > a1:
        reasons.append(f"with {n} paired seeds the smallest Wilcoxon p-value is {min_w:.3g}, above alpha/{m} = "
                       f"{a1:.3g}: no pairwise Wilcoxon test can be significant after Holm")
    return Power(alpha_per_comparison=a1, comparisons=m, n_seeds=n, mde_standardized=mde,
                 mde_accuracy=mde * sd if mde is not None and sd is not None else None, target_effect=target_effect,
                 seeds_needed=needed, min_wilcoxon_p=min_w, events_per_arm=events,
                 mde_hazard_ratio=mde_hazard_ratio(int(round(2 * events)), a1), underpowered=bool(reasons),
                 reasons=tuple(reasons))


# ---------------------------------------------------------------- one cell

def _seed_text(seeds) -> str:
    seeds = sorted(seeds)
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def choose_design(o: pd.DataFrame, inits: list[str], design: str = "auto"
                  ) -> tuple[str, tuple[int, ...], list[str]]:
    """(design, seeds analysed, notes) for a cell's run outcomes `o`, fixed before any test is run.

    Paired on the seeds that every initializer has, each with one run per initializer: seeds missing in
    some arm or duplicated in one are left out, and the notes say which, per arm, and why. `design` "auto"
    pairs when at least 2 seeds are shared (else unpaired, every run used); "paired" or "unpaired" forces
    it (a study trained as paired stays paired however many runs are missing)."""
    if design not in DESIGNS:
        raise StudyError(f"design {design!r} is unknown; use one of {', '.join(DESIGNS)}")
    notes = []
    counts = o.groupby(["initializer", "seed"]).size()
    dups = [f"{arm} seed {seed} ({', '.join(map(str, o.loc[(o['initializer'] == arm) & (o['seed'] == seed), 'run']))})"
            for (arm, seed), c in counts[counts > 1].items()]
    if dups:
        notes.append("Duplicate runs of one initializer and seed, never treated as a pairing: " + "; ".join(dups)
                     + ". Paired tests leave such seeds out; unpaired tests count every run.")
    if len(inits) < 2:
        seeds = tuple(sorted(set(o["seed"])))
        return "single arm", seeds, notes + ["Only one initializer in this cell: summaries only, nothing to compare."]
    seed_sets = {i: set(o.loc[o["initializer"] == i, "seed"]) for i in inits}
    duplicated = {int(s) for (_, s), c in counts.items() if c > 1}
    shared = set.intersection(*seed_sets.values()) - duplicated
    paired = len(shared) >= 2 if design == "auto" else design == "paired"
    if not paired:
        why = ("unpaired design requested" if design == "unpaired" else
               f"fewer than 2 seeds are shared by every initializer with one run each "
               f"({_seed_text(shared) if shared else 'none'})")
        notes.append(f"Tests are unpaired: {why}; every run is used.")
        return "unpaired", tuple(sorted(set().union(*seed_sets.values()))), notes
    dropped = []
    for i in inits:
        for s in sorted(seed_sets[i] - shared):
            if s in duplicated:
                reason = "duplicated in " + ", ".join(a for a in inits if counts.get((a, s), 0) > 1)
            else:
                reason = "missing in " + ", ".join(a for a in inits if s not in seed_sets[a])
            dropped.append(f"seed {s} of {i} ({reason})")
    shared_text = _seed_text(shared) if shared else "no seeds"
    if dropped:
        notes.append(f"Paired on the {len(shared)} seeds every initializer has ({shared_text}); runs of other "
                     f"seeds are left out of this cell's analysis: {'; '.join(dropped)}.")
    if len(shared) < 2:
        notes.append(f"Paired design with {shared_text} shared by every initializer: paired tests need at least "
                     "2, so they are not computed.")
    return "paired", tuple(sorted(int(s) for s in shared)), notes


def _untestable_pairs(inits: list[str], test: str) -> tuple[PairwiseResult, ...]:
    """One row per pair with nothing computed, so every pair is still listed (and found by claims)."""
    return tuple(PairwiseResult(a=a, b=b, test=test, statistic=None, pvalue=None, pvalue_holm=None)
                 for a, b in _pairs(inits))


def analyze_cell(tidy: pd.DataFrame, factors: dict, threshold: float, budget: int,
                 order: list[str] | None = None, reference: str | None = None, alpha: float = 0.05,
                 target_effect: float = TARGET_EFFECT, design: str = "auto") -> CellResult:
    """All tests for one cell. `tidy`: the cell's rows (TIDY_COLUMNS); `order`: initializer order;
    `reference`: the arm hazard ratios compare against (default: the first arm that reached the threshold);
    `design`: "auto" (paired on the seeds every arm has when there are >= 2), "paired" or "unpaired".
    Tests that cannot run (too few runs or seeds) are reported with None values, never raised."""
    everything = run_outcomes(tidy, threshold, budget)
    notes = []
    untrained = untrained_runs(tidy)
    if untrained:
        notes.append("Left out like missing runs, having no trained epoch (only epoch 0, whose accuracy is not an "
                     "outcome): " + "; ".join(f"{r} ({i}, seed {s})" for r, i, s in untrained) + ".")
    inits = [i for i in (order or sorted(everything["initializer"].unique())) if i in set(everything["initializer"])]
    everything = everything[everything["initializer"].isin(inits)]
    design, seeds, design_notes = choose_design(everything, inits, design)
    paired = design == "paired"
    o = (everything[everything["seed"].isin(seeds)] if paired else everything).reset_index(drop=True)
    if o["diverged"].any():
        notes.append("Diverged runs rank below every finished run in the rank tests; they are left out of means, "
                     "parametric tests and effect sizes.")
    notes += design_notes
    rng = np.random.default_rng(BOOT_SEED)

    arms = []
    for i in inits:
        oi = o[o["initializer"] == i]
        acc = oi["final_acc"].dropna().to_numpy()
        t, e = oi["time"].to_numpy(float), oi["event"].to_numpy(int)
        points, median, ci = kaplan_meier(t, e, budget)
        r, se = rmst(t, e, budget)
        n_diverged = int(oi["diverged"].sum())
        arms.append(ArmSummary(
            initializer=i, n_runs=len(oi), n_diverged=n_diverged,
            final_acc_mean=_num(acc.mean()) if len(acc) else None,
            final_acc_median=_num(np.median(acc)) if len(acc) else None,
            final_acc_sd=_num(acc.std(ddof=1)) if len(acc) > 1 else None,
            n_reached=int(oi["event"].sum()), median_epochs=median, median_epochs_ci=ci, kaplan_meier=points,
            diverged_ci=wilson(n_diverged, len(oi)),
            best_acc_mean=_num(oi["best_acc"].mean()) if oi["best_acc"].notna().any() else None,
            rmst=r, rmst_ci=(max(0.0, r - 1.959964 * se), min(float(budget), r + 1.959964 * se))))

    if len(inits) < 2 or (paired and len(seeds) < 2):
        primary = "wilcoxon" if paired else "mannwhitney"
        none = AccuracyTests((), _untestable_pairs(inits, primary), ())
        ett = (TestResult("logrank", statistic=None, df=len(inits) - 1, pvalue=None,
                          note="too few seeds shared by every initializer"),) if len(inits) >= 2 else ()
        return CellResult(factors=factors, design=design, seeds=seeds, threshold=threshold, budget_epochs=budget,
                          arms=tuple(arms), final_omnibus=(), final_pairwise=none.pairwise, ett_omnibus=ett,
                          ett_pairwise=_untestable_pairs(inits, "logrank"), ett_cox=(), notes=tuple(notes),
                          final_checks=(), best=none, divergence_test=None, power=None)

    final = accuracy_tests(o, "final_acc", inits, paired, rng)
    best = accuracy_tests(o, "best_acc", inits, paired, rng)

    # Epochs-to-threshold.
    time, event, group = o["time"].to_numpy(float), o["event"].to_numpy(int), o["initializer"].to_numpy()
    strata = o["seed"].to_numpy() if paired else None
    ett_omnibus = [logrank(time, event, group, strata)]
    lr_rows = []
    for a, b in _pairs(inits):
        m = np.isin(group, [a, b])
        t = logrank(time[m], event[m], group[m], None if strata is None else strata[m])
        oa, ob = (o[o["initializer"] == x].sort_values("seed") for x in (a, b))
        diff = rmst_difference(oa["time"].to_numpy(float), oa["event"].to_numpy(int), ob["time"].to_numpy(float),
                               ob["event"].to_numpy(int), budget, paired, rng)
        lr_rows.append(PairwiseResult(a=a, b=b, test="logrank", statistic=t.statistic, pvalue=t.pvalue,
                                      pvalue_holm=None, effect=diff, effects=(diff,), df=t.df))
    ett_pairwise = _holm_rows(lr_rows)
    if reference not in inits:
        reached = [a.initializer for a in arms if a.n_reached]
        reference = reached[0] if reached else inits[0]
    ett_cox = sorted(cox(time, event, group, reference, strata), key=lambda c: inits.index(c.initializer))

    return CellResult(factors=factors, design=design, seeds=seeds, threshold=threshold, budget_epochs=budget,
                      arms=tuple(arms), final_omnibus=final.omnibus, final_pairwise=final.pairwise,
                      ett_omnibus=tuple(ett_omnibus), ett_pairwise=tuple(ett_pairwise), ett_cox=tuple(ett_cox),
                      notes=tuple(notes), final_checks=final.checks, best=best,
                      divergence_test=divergence(o, inits, paired), power=power(o, inits, paired, alpha, target_effect))


# ---------------------------------------------------------------- factorial: initializer x another factor

def factorial(tidy: pd.DataFrame, factor: str, others: list[str], threshold: float, budget: int
              ) -> list[FactorialResult]:
    """Test the initializer x `factor` interaction within each combination of the `others` factors:
    two-way OLS ANOVA on final accuracy and a Cox likelihood-ratio test on epochs-to-threshold."""
    out = []
    grouped = tidy.groupby(others, sort=False, dropna=False) if others else [((), tidy)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        fixed = {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(others, key)}
        levels = g.groupby("run")[factor].first()
        o = run_outcomes(g, threshold, budget)
        o["level"] = o["run"].map(levels).astype(str)
        if o["level"].nunique() < 2 or o["initializer"].nunique() < 2:
            continue
        seed_sets = o.groupby(["initializer", "level"])["seed"].apply(frozenset)
        blocked = seed_sets.nunique() == 1 and len(seed_sets.iloc[0]) >= 2 and not o.duplicated(
            ["initializer", "level", "seed"]).any()
        fin = o.dropna(subset=["final_acc"])
        note = ""
        try:
            terms = two_way_anova(fin["final_acc"].to_numpy(), fin["initializer"].to_numpy(), fin["level"].to_numpy(),
                                  fin["seed"].to_numpy() if blocked else None, ("initializer", factor))
        except (ValueError, np.linalg.LinAlgError) as exc:
            terms, note = (), f"OLS fit failed: {exc}"
        ett = cox_interaction(o["time"].to_numpy(float), o["event"].to_numpy(int), o["initializer"].to_numpy(),
                              o["level"].to_numpy(), o["seed"].to_numpy() if blocked else None)
        out.append(FactorialResult(factor=factor, fixed=fixed, design="blocked by seed" if blocked else "unblocked",
                                   final_accuracy=terms, epochs_to_threshold=ett, note=note))
    return out


def analyze(tidy: pd.DataFrame, factor_columns: list[str], threshold: float, budget: int, alpha: float,
            study: str, order: list[str] | None = None, reference: str | None = None,
            target_effect: float = TARGET_EFFECT, design: str = "auto") -> Results:
    """Split `tidy` into cells by `factor_columns` and analyse each (`design` as in `analyze_cell`); cells keep
    first-seen order. Every factor with two or more levels also gets a factorial model of its interaction
    with the initializer."""
    cells = []
    grouped = tidy.groupby(factor_columns, sort=False, dropna=False) if factor_columns else [((), tidy)]
    for key, g in grouped:
        key = key if isinstance(key, tuple) else (key,)
        factors = {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(factor_columns, key)}
        cells.append(analyze_cell(g, factors, threshold, budget, order, reference, alpha, target_effect,
                                  design))
    fact = []
    for f in factor_columns:
        if tidy[f].nunique(dropna=False) >= 2:
            fact += factorial(tidy, f, [c for c in factor_columns if c != f], threshold, budget)
    return Results(study=study, threshold=threshold, alpha=alpha, cells=tuple(cells), factorial=tuple(fact))
