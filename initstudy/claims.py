"""Verdicts on a study's claims, read off the tests the analysis already ran; frozen result objects.

Every claim is decided by one two-sided test per cell it applies to, and its
direction is read from that same test's statistic, so a verdict never points
against its test:

- epochs to threshold (faster/slower): the cell's pairwise log-rank, direction
  from a's observed minus expected events (more events than expected: a reaches
  the threshold sooner); the difference in restricted mean epochs is shown as
  the effect size;
- final accuracy (better/worse): the cell's pairwise Wilcoxon signed-rank
  (paired) or Mann-Whitney U (unpaired), direction from the signed-rank sum or
  from U against its null mean; the median difference is the effect size;
- not_worse with margin m: the same rank test of a's accuracy plus m against
  b's; supported when a + m ranks significantly above b (a trails b by less
  than m), contradicted when significantly below;
- a bound (a's final accuracy at most / at least x): an exact two-sided sign
  test on a's runs, a diverged run counting as below any bound.

Multiplicity: all claim tests of a report (every claim x every cell it applies
to) form one family; their raw p-values are Holm-adjusted together at the
study's alpha. A cell supports a claim when its adjusted p is below alpha and the
direction is the claim's, contradicts it when the direction is the opposite.
A claim holds overall when every tested cell supports it, fails when any cell
contradicts it, and is inconclusive otherwise; a claim whose arms or cells the
study lacks is "not tested", with the reason, and adds no test to the family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .analysis import CellResult, PairwiseResult, Results, _num, holm, rank_scores
from .config import Claim
from .stats import logrank_sums, mannwhitney, wilcoxon

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"


@dataclass(frozen=True)
class CellVerdict:
    factors: dict
    verdict: str  # supported | contradicted | inconclusive
    test: str  # the test behind the verdict, in words
    statistic: float | None
    pvalue: float | None  # Holm-adjusted over the report's claim tests (`family_size` of them)
    effect_name: str  # what `effect` measures, e.g. "median difference a - b (accuracy)"
    effect: float | None
    ci: tuple[float | None, float | None]  # 95% interval of `effect` where the analysis has one
    note: str = ""
    pvalue_raw: float | None = None  # the claim test's own two-sided p, before the adjustment
    family_size: int = 0  # claim tests with a p-value in the report: the size of the Holm family
    side: int = 0  # +1: the test's data lean the claim's way, -1: against (sequential monitoring signs its z so)

    def to_dict(self) -> dict:
        return {"factors": self.factors, "verdict": self.verdict, "test": self.test,
                "statistic": _num(self.statistic), "pvalue": _num(self.pvalue_raw),
                "pvalue_holm": _num(self.pvalue), "family_size": self.family_size,
                "effect": {"name": self.effect_name, "value": _num(self.effect),
                           "ci": [_num(self.ci[0]), _num(self.ci[1])]}, "note": self.note}


@dataclass(frozen=True)
class ClaimVerdict:
    claim: Claim
    verdict: str  # supported | contradicted | inconclusive | not tested
    reason: str  # why, in one sentence
    cells: tuple[CellVerdict, ...]

    def to_dict(self) -> dict:
        c = self.claim
        return {"claim": c.text, "a": c.a, "b": c.b, "endpoint": c.endpoint, "direction": c.direction,
                "margin": c.margin, "at_most": c.at_most, "at_least": c.at_least,
                "where": {k: list(v) for k, v in c.where}, "source": c.source, "verdict": self.verdict,
                "reason": self.reason, "cells": [v.to_dict() for v in self.cells]}


@dataclass(frozen=True)
class _Test:
    """One claim test before the family's adjustment; `side` +1: the data lean the claim's way, -1: against."""
    test: str
    statistic: float | None
    pvalue: float | None
    side: int
    effect_name: str
    effect: float | None
    ci: tuple[float | None, float | None] = (None, None)
    note: str = ""


def logrank_direction(time, event, group, a: str, strata=None) -> float:
    """Observed minus expected events of arm `a` in the log-rank test of `group` (summed over `strata`).

    Positive: `a` reached the threshold more often than equal hazards predict, i.e. sooner. It is the
    numerator of the two-group log-rank statistic, so its sign is the direction that test found.
    """
    labels, o_minus_e, _var, _n = logrank_sums(time, event, group, strata)
    return float(o_minus_e[list(labels).index(a)])


def rank_direction(x: np.ndarray, y: np.ndarray, paired: bool) -> float:
    """Which way the rank test of x against y leans: positive when x ranks above y.

    Paired: the signed-rank sum W+ - W- of x - y (zero differences split, so they add nothing); unpaired:
    Mann-Whitney's U of x minus its null mean n_x n_y / 2.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if paired:
        d = x - y
        return float(np.sum(np.sign(d) * stats.rankdata(np.abs(d))))
    return float(np.sum(np.sign(x[:, None] - y[None, :])) / 2)


def _pair(pairs: tuple[PairwiseResult, ...], a: str, b: str) -> tuple[PairwiseResult | None, int]:
    """The pairwise result for {a, b} and the sign that turns its a - b into the claim's a - b."""
    for p in pairs:
        if (p.a, p.b) == (a, b):
            return p, 1
        if (p.a, p.b) == (b, a):
            return p, -1
    return None, 1


def _side(direction: float) -> int:
    return int(np.sign(direction)) if np.isfinite(direction) else 0


def _scores(cell: CellResult, outcomes: pd.DataFrame, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """Final-accuracy scores of a and b as the cell's rank tests see them (a diverged run scores below every
    finished one); paired cells: aligned on the seeds that every arm has."""
    o = outcomes.assign(score=rank_scores(outcomes))
    if cell.design == "paired":
        wide = o.pivot(index="seed", columns="initializer", values="score").dropna()
        return wide[a].to_numpy(float), wide[b].to_numpy(float)
    return tuple(o.loc[o["initializer"] == x, "score"].to_numpy(float) for x in (a, b))


def _compare(claim: Claim, cell: CellResult, outcomes: pd.DataFrame) -> _Test:
    a, b = claim.a, claim.b
    paired = cell.design == "paired"
    if claim.endpoint == "epochs_to_threshold":
        p, _ = _pair(cell.ett_pairwise, a, b)
        o = outcomes[outcomes["initializer"].isin([a, b])]
        if paired:
            o = o[o["seed"].isin(o.groupby("seed")["initializer"].nunique().loc[lambda n: n == 2].index)]
        oe = logrank_direction(o["time"], o["event"], o["initializer"], a, o["seed"] if paired else None)
        arms = {x.initializer: x for x in cell.arms}
        diff = arms[a].rmst - arms[b].rmst  # restricted mean epochs: orders arms even without medians
        wanted = 1 if claim.direction == "faster" else -1  # faster: more events than expected
        if p.pvalue is None:
            notes = ["neither arm reached the threshold: the test has no events" if not o["event"].any()
                     else "the log-rank test has no information: events tie"]
        else:
            notes = [f"observed - expected events of {a}: {oe:+.2f} (positive: sooner)"]
        if p.pvalue is not None and np.sign(oe) * np.sign(diff) > 0:  # sooner by log-rank, later by area
            notes.append("the Kaplan-Meier curves cross: the restricted means order the arms the other way "
                         "than the log-rank, whose direction the verdict follows")
        return _Test(test="pairwise log-rank" + (" stratified by seed" if paired else ""), statistic=p.statistic,
                     pvalue=p.pvalue, side=_side(oe) * wanted,
                     effect_name="restricted mean epochs to threshold, a - b", effect=diff, note="; ".join(notes))
    p, sign = _pair(cell.final_primary, a, b)
    e = p.effect
    value = None if e is None or e.value is None else sign * e.value
    ci = (None, None) if e is None or e.ci[0] is None else tuple(sorted((sign * e.ci[0], sign * e.ci[1])))
    test = "pairwise Wilcoxon signed-rank" if paired else "pairwise Mann-Whitney U"
    effect_name = "median difference in final accuracy, a - b"
    x, y = _scores(cell, outcomes, a, b)
    if claim.direction == "not_worse":
        m = claim.margin
        stat, pvalue = (wilcoxon if paired else mannwhitney)(x + m, y)
        return _Test(test=f"{test.removeprefix('pairwise ')} of a + margin against b (non-inferiority)",
                     statistic=stat, pvalue=pvalue, side=_side(rank_direction(x + m, y, paired)),
                     effect_name=effect_name, effect=value, ci=ci,
                     note=f"margin {m:g}: supported when a's accuracy plus {m:g} ranks significantly above b's")
    wanted = 1 if claim.direction == "better" else -1
    return _Test(test=test, statistic=p.statistic, pvalue=p.pvalue, side=_side(rank_direction(x, y, paired)) * wanted,
                 effect_name=effect_name, effect=value, ci=ci)


def _sign_test(claim: Claim, final: pd.Series) -> _Test:
    """Exact two-sided sign test of a's final accuracies against the claim's bound; a diverged run (NaN) is
    below any bound."""
    acc = final.to_numpy(float)
    if claim.at_most is not None:
        side, bound = np.isnan(acc) | (acc <= claim.at_most), f"at most {claim.at_most:g}"
    else:
        side, bound = ~np.isnan(acc) & (acc >= claim.at_least), f"at least {claim.at_least:g}"
    k, n = int(side.sum()), len(acc)
    p = stats.binomtest(k, n, 0.5, alternative="two-sided").pvalue
    median = float(np.median(np.where(np.isnan(acc), -1.0, acc)))
    return _Test(test="exact sign test on the runs' final accuracy", statistic=float(k), pvalue=float(p),
                 side=_side(k - n / 2), effect_name="median final accuracy of a", effect=median,
                 note=f"{k} of {n} runs {bound} (diverged runs count as below)")


def _matches(claim: Claim, cell: CellResult) -> bool:
    return all(key in cell.factors and cell.factors[key] in accepted for key, accepted in claim.where)


def _where_text(claim: Claim) -> str:
    return ", ".join(f"{k} {' or '.join(map(str, v))}" for k, v in claim.where)


def evaluate_claims(claims: tuple[Claim, ...], results: Results,
                    finals: list[pd.DataFrame]) -> tuple[ClaimVerdict, ...]:
    """One verdict per claim. `finals[i]`: run outcomes of `results.cells[i]` (columns initializer, seed,
    diverged, final_acc with NaN for diverged runs, time, event), as `analysis.run_outcomes` returns them."""
    alpha = results.alpha
    pending = []  # per claim: (claim, reason it is not tested, [(cell index, its test)])
    for claim in claims:
        arms = [claim.a] if claim.b is None else [claim.a, claim.b]
        cells = [i for i, c in enumerate(results.cells) if _matches(claim, c)]
        tested = [i for i in cells if all(x in results.cells[i].initializers for x in arms)]
        if not cells:
            reason = f"the study has no cell with {_where_text(claim)}"
        elif not tested:
            lacking = [x for x in arms if not any(x in results.cells[i].initializers for i in cells)]
            reason = (f"the study has no runs of {' and '.join(lacking or arms)}"
                      + (f" with {_where_text(claim)}" if claim.where else ""))
        else:
            reason = ""
        tests = [(i, _compare(claim, results.cells[i], finals[i]) if claim.b is not None else
                  _sign_test(claim, finals[i].loc[finals[i]["initializer"] == claim.a, "final_acc"]))
                 for i in tested]
        pending.append((claim, reason, tests))

    # One family: every claim test of the report, Holm-adjusted together.
    raw = [t.pvalue for _c, _r, tests in pending for _i, t in tests]
    adjusted = iter(holm(raw))
    size = sum(p is not None for p in raw)
    suffix = f", Holm-adjusted over the report's {size} claim test{'s' if size != 1 else ''}"

    out = []
    for claim, reason, tests in pending:
        if not tests:
            out.append(ClaimVerdict(claim, NOT_TESTED, reason, ()))
            continue
        verdicts = []
        for i, t in tests:
            q = next(adjusted)
            verdict = (INCONCLUSIVE if q is None or q >= alpha or t.side == 0 else
                       SUPPORTED if t.side > 0 else CONTRADICTED)
            verdicts.append(CellVerdict(factors=results.cells[i].factors, verdict=verdict, test=t.test + suffix,
                                        statistic=t.statistic, pvalue=q, effect_name=t.effect_name, effect=t.effect,
                                        ci=t.ci, note=t.note, pvalue_raw=t.pvalue, family_size=size, side=t.side))
        out.append(combine(claim, verdicts))
    return tuple(out)


def combine(claim: Claim, verdicts) -> ClaimVerdict:
    """A claim's overall verdict from its cells': contradicted if any cell contradicts it, supported if all
    support it, else inconclusive."""
    counts = {k: sum(v.verdict == k for v in verdicts) for k in (SUPPORTED, CONTRADICTED, INCONCLUSIVE)}
    overall = (CONTRADICTED if counts[CONTRADICTED] else SUPPORTED if counts[SUPPORTED] == len(verdicts)
               else INCONCLUSIVE)
    reason = ", ".join(f"{k} in {n}" for k, n in counts.items() if n) + \
        f" of {len(verdicts)} tested cell{'s' if len(verdicts) > 1 else ''}"
    return ClaimVerdict(claim, overall, reason, tuple(verdicts))
