"""Verdicts on a study's claims, read off the tests the analysis already ran; frozen result objects.

A comparison claim (a vs b) is decided per cell by the cell's own Holm-adjusted
pairwise test: log-rank for epochs-to-threshold (direction from the restricted
mean epochs to threshold under the Kaplan-Meier curves), Wilcoxon signed-rank or
Mann-Whitney U for final accuracy (direction from the median difference);
`not_worse` reads the 95% bootstrap interval of the median difference against
the margin. A bound claim (a's final accuracy at most / at least x) is an exact
sign test on a's runs in each cell, Holm-adjusted over every bound test of the
report. A claim holds overall when every tested cell supports it, fails when
any cell contradicts it, and is inconclusive otherwise; a claim whose arms or
cells the study lacks is "not tested", with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .analysis import CellResult, PairwiseResult, Results, _num, holm
from .config import Claim

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested"
MIN_INTERVAL_RUNS = 6  # not_worse needs this many finished runs per arm: percentile bootstraps of fewer undercover


@dataclass(frozen=True)
class CellVerdict:
    factors: dict
    verdict: str  # supported | contradicted | inconclusive
    test: str  # the test behind the verdict, in words
    statistic: float | None
    pvalue: float | None  # Holm-adjusted (None for the bootstrap-interval rule of not_worse)
    effect_name: str  # what `effect` measures, e.g. "median difference a - b (accuracy)"
    effect: float | None
    ci: tuple[float | None, float | None]  # 95% interval of `effect` where the analysis has one
    note: str = ""

    def to_dict(self) -> dict:
        return {"factors": self.factors, "verdict": self.verdict, "test": self.test,
                "statistic": _num(self.statistic), "pvalue_holm": _num(self.pvalue),
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


def _pair(pairs: tuple[PairwiseResult, ...], a: str, b: str) -> tuple[PairwiseResult | None, int]:
    """The pairwise result for {a, b} and the sign that turns its a - b into the claim's a - b."""
    for p in pairs:
        if (p.a, p.b) == (a, b):
            return p, 1
        if (p.a, p.b) == (b, a):
            return p, -1
    return None, 1


def _decide(significant: bool, sign: float | None, wanted: int) -> str:
    if not significant or sign is None or sign == 0:
        return INCONCLUSIVE
    return SUPPORTED if np.sign(sign) == wanted else CONTRADICTED


def _compare(claim: Claim, cell: CellResult, alpha: float) -> CellVerdict:
    a, b = claim.a, claim.b
    if claim.endpoint == "epochs_to_threshold":
        p, _ = _pair(cell.ett_pairwise, a, b)
        arms = {x.initializer: x for x in cell.arms}
        diff = arms[a].rmst - arms[b].rmst  # restricted mean epochs: orders arms even without medians
        note = "" if p.pvalue is not None else "neither arm reached the threshold: the test has no events"
        wanted = -1 if claim.direction == "faster" else 1  # faster: fewer epochs
        return CellVerdict(cell.factors, _decide(p.pvalue_holm is not None and p.pvalue_holm < alpha, diff, wanted),
                           "pairwise log-rank" + (" stratified by seed" if cell.design == "paired" else "")
                           + ", Holm-adjusted", p.statistic, p.pvalue_holm,
                           "restricted mean epochs to threshold, a - b", diff, (None, None), note)
    p, sign = _pair(cell.final_primary, a, b)
    e = p.effect
    value = None if e is None or e.value is None else sign * e.value
    ci = (None, None) if e is None or e.ci[0] is None else tuple(sorted((sign * e.ci[0], sign * e.ci[1])))
    test = {"wilcoxon": "pairwise Wilcoxon signed-rank", "mannwhitney": "pairwise Mann-Whitney U"}.get(p.test, p.test)
    effect_name = "median difference in final accuracy, a - b"
    if claim.direction == "not_worse":
        m = claim.margin
        finished = min(x.n_runs - x.n_diverged for x in cell.arms if x.initializer in (a, b))
        if ci[0] is None:
            verdict, note = INCONCLUSIVE, "no interval: every run of one arm diverged"
        elif finished < MIN_INTERVAL_RUNS:
            verdict = INCONCLUSIVE
            note = f"only {finished} finished runs in an arm: too few for a bootstrap interval (need {MIN_INTERVAL_RUNS})"
        else:
            verdict = SUPPORTED if ci[0] >= -m else CONTRADICTED if ci[1] < -m else INCONCLUSIVE
            note = f"margin {m:g}: not worse when the interval's lower end is at least -{m:g}"
        return CellVerdict(cell.factors, verdict, "95% bootstrap interval of the median difference against the "
                           "margin (non-inferiority)", p.statistic, p.pvalue_holm, effect_name, value, ci, note)
    if value is None:  # every run of an arm diverged: rank the arms by their summaries instead
        arms = {x.initializer: x for x in cell.arms}
        med = {k: -1.0 if arms[k].final_acc_median is None else arms[k].final_acc_median for k in (a, b)}
        value = med[a] - med[b]
    wanted = 1 if claim.direction == "better" else -1
    return CellVerdict(cell.factors, _decide(p.pvalue_holm is not None and p.pvalue_holm < alpha, value, wanted),
                       test + ", Holm-adjusted", p.statistic, p.pvalue_holm, effect_name, value, ci)


def _sign_test(claim: Claim, final: pd.Series) -> tuple[float, float, float, int, int]:
    """(p for the claim, p against it, median, runs on the claim's side, runs) on a's final accuracies;
    a diverged run (NaN) is below any bound."""
    acc = final.to_numpy(float)
    if claim.at_most is not None:
        side = np.isnan(acc) | (acc <= claim.at_most)
    else:
        side = ~np.isnan(acc) & (acc >= claim.at_least)
    k, n = int(side.sum()), len(acc)
    p_for = stats.binomtest(k, n, 0.5, alternative="greater").pvalue
    p_against = stats.binomtest(n - k, n, 0.5, alternative="greater").pvalue
    median = float(np.median(np.where(np.isnan(acc), -1.0, acc)))
    return float(p_for), float(p_against), median, k, n


def _matches(claim: Claim, cell: CellResult) -> bool:
    return all(key in cell.factors and cell.factors[key] in accepted for key, accepted in claim.where)


def _where_text(claim: Claim) -> str:
    return ", ".join(f"{k} {' or '.join(map(str, v))}" for k, v in claim.where)


def evaluate_claims(claims: tuple[Claim, ...], results: Results,
                    finals: list[pd.DataFrame]) -> tuple[ClaimVerdict, ...]:
    """One verdict per claim. `finals[i]`: run outcomes of `results.cells[i]` (columns initializer, final_acc,
    NaN for diverged runs), as `analysis.run_outcomes` returns them."""
    alpha = results.alpha
    pending = []  # per claim: [(cell, verdict or sign-test numbers)]
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
        pending.append((claim, reason, tested))

    # Bound claims' sign tests form one family across the report.
    bound_tests = [(ci, i, _sign_test(c, finals[i].loc[finals[i]["initializer"] == c.a, "final_acc"]))
                   for ci, (c, _r, tested) in enumerate(pending) if c.b is None for i in tested]
    adj = holm([t[0] for _ci, _i, t in bound_tests] + [t[1] for _ci, _i, t in bound_tests])
    n = len(bound_tests)
    bound = {(ci, i): (t, adj[j], adj[n + j]) for j, (ci, i, t) in enumerate(bound_tests)}

    out = []
    for ci, (claim, reason, tested) in enumerate(pending):
        if not tested:
            out.append(ClaimVerdict(claim, NOT_TESTED, reason, ()))
            continue
        verdicts = []
        for i in tested:
            cell = results.cells[i]
            if claim.b is not None:
                verdicts.append(_compare(claim, cell, alpha))
                continue
            (_pf, _pa, median, k, n_runs), p_for, p_against = bound[(ci, i)]
            verdict = SUPPORTED if p_for < alpha else CONTRADICTED if p_against < alpha else INCONCLUSIVE
            side = f"at most {claim.at_most:g}" if claim.at_most is not None else f"at least {claim.at_least:g}"
            verdicts.append(CellVerdict(cell.factors, verdict, "exact sign test on the runs' final accuracy, "
                                        "Holm-adjusted over the report's bound claims", float(k),
                                        p_against if verdict == CONTRADICTED else p_for,
                                        "median final accuracy of a", median, (None, None),
                                        f"{k} of {n_runs} runs {side} (diverged runs count as below)"))
        counts = {k: sum(v.verdict == k for v in verdicts) for k in (SUPPORTED, CONTRADICTED, INCONCLUSIVE)}
        overall = (CONTRADICTED if counts[CONTRADICTED] else SUPPORTED if counts[SUPPORTED] == len(verdicts)
                   else INCONCLUSIVE)
        reason = ", ".join(f"{k} in {n}" for k, n in counts.items() if n) + \
            f" of {len(verdicts)} tested cell{'s' if len(verdicts) > 1 else ''}"
        out.append(ClaimVerdict(claim, overall, reason, tuple(verdicts)))
    return tuple(out)
