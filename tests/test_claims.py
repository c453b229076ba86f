"""Claims: the study-file grammar is checked at load time, and verdicts on planted results are the right ones."""

import copy
import json

import pandas as pd
import pytest

from initstudy.analysis import analyze, run_outcomes
from initstudy.claims import evaluate_claims
from initstudy.config import Claim, load_study
from initstudy.errors import StudyError

from .conftest import write_study

BUDGET = 4


def planted(arms: dict, seeds: int = 10, activations=("relu",)) -> pd.DataFrame:
    """Tidy rows: arm -> (epoch it reaches 0.9 or None, final accuracy); seed k shifts the final accuracy by
    a distinct amount so paired differences keep one sign but differ in size (Wilcoxon p = 2/2^n)."""
    rows = []
    for act in activations:
        for arm, (reach, final) in arms.items():
            for seed in range(seeds):
                acc = final + (0.001 * seed if final > 0.5 else 0.0005 * seed)
                for epoch in range(BUDGET + 1):
                    v = acc if reach is not None and epoch >= reach else min(0.1 + 0.1 * epoch, 0.85)
                    if reach is None and epoch == BUDGET:
                        v = acc
                    rows.append({"run": f"{act}-{arm}-{seed}", "activation": act, "initializer": arm,
                                 "seed": seed, "epoch": epoch, "val_acc": v, "val_loss": 1.0,
                                 "train_loss": 1.0, "diverged": False})
    return pd.DataFrame(rows)


ARMS = {"fast": (1, 0.96), "slow": (3, 0.91), "twin": (1, 0.96), "zeros": (None, 0.11)}


def verdicts(tidy: pd.DataFrame, *claims: Claim):
    results = analyze(tidy, ["activation"], 0.9, BUDGET, 0.05, "planted", list(ARMS))
    finals = [run_outcomes(tidy[tidy["activation"] == c.factors["activation"]], 0.9, BUDGET) for c in results.cells]
    return evaluate_claims(claims, results, finals)


def claim(a, b=None, endpoint="final_accuracy", direction=None, margin=None, at_most=None, at_least=None,
          where=()):
    return Claim("planted", a, b, endpoint, direction, margin, at_most, at_least, where, "")


def test_comparison_verdicts_follow_the_holm_adjusted_pairwise_tests():
    out = verdicts(planted(ARMS),
                   claim("fast", "slow", "epochs_to_threshold", "faster"),
                   claim("slow", "fast", "epochs_to_threshold", "faster"),
                   claim("fast", "twin", "epochs_to_threshold", "faster"),
                   claim("fast", "slow", direction="better"),
                   claim("fast", "slow", direction="worse"),
                   claim("twin", "fast", direction="better"))
    assert [v.verdict for v in out] == ["supported", "contradicted", "inconclusive",
                                        "supported", "contradicted", "inconclusive"]
    ett, final = out[0].cells[0], out[3].cells[0]
    assert "log-rank" in ett.test and ett.pvalue < 0.05 and ett.effect < 0  # fast needs fewer epochs
    assert "Wilcoxon" in final.test and final.effect == pytest.approx(0.05 + 0.0, abs=0.01)
    # One family of the report's claim tests, each with its own raw p: the two log-rank tests (R 4.2:
    # survdiff(Surv(t, e) ~ g + strata(seed)) -> chisq 10, p = 0.001565402258), the two Wilcoxon tests
    # (2/2^10) and twin-fast (p = 1); fast-twin has no information (events tie) and is not counted.
    raw = [v.cells[0].pvalue_raw for v in out]
    assert raw[2] is None
    assert raw[:2] + raw[3:] == pytest.approx([0.001565402258, 0.001565402258, 2 / 1024, 2 / 1024, 1.0], rel=1e-9)
    assert final.family_size == 5 and final.pvalue == pytest.approx(5 * 0.001565402258, rel=1e-9)
    assert out[1].cells[0].effect == pytest.approx(-ett.effect)


def test_few_seeds_leave_a_real_difference_inconclusive():
    out = verdicts(planted(ARMS, seeds=3), claim("fast", "slow", direction="better"),
                   claim("zeros", at_most=0.2), claim("twin", "fast", direction="not_worse", margin=0.02))
    assert [v.verdict for v in out] == ["inconclusive", "inconclusive", "inconclusive"]
    assert out[0].cells[0].pvalue >= 0.05
    assert out[2].cells[0].pvalue_raw == pytest.approx(2 / 2 ** 3)  # exact signed-rank, 3 positive differences


def test_not_worse_reads_the_interval_against_the_margin():
    out = verdicts(planted(ARMS), claim("twin", "fast", direction="not_worse", margin=0.02),
                   claim("slow", "fast", direction="not_worse", margin=0.01),
                   claim("slow", "fast", direction="not_worse", margin=0.2))
    assert [v.verdict for v in out] == ["supported", "contradicted", "supported"]
    lo, hi = out[1].cells[0].ci
    assert hi < -0.01 and lo <= hi


def test_bound_claims_use_a_sign_test_on_the_runs():
    out = verdicts(planted(ARMS), claim("zeros", at_most=0.2), claim("fast", at_most=0.2),
                   claim("fast", at_least=0.95))
    assert [v.verdict for v in out] == ["supported", "contradicted", "supported"]
    v = out[0].cells[0]
    assert v.statistic == 10 and "10 of 10 runs at most 0.2" in v.note
    # Holm over the three bound claims' tests, each direction: 6 p-values, the smallest 1/1024.
    assert v.pvalue == pytest.approx(6 / 1024)


def test_claim_tests_form_one_holm_family_with_their_own_p_values():
    family = (claim("fast", "slow", "epochs_to_threshold", "faster"), claim("fast", "slow", direction="better"),
              claim("fast", at_least=0.9605), claim("twin", "fast", direction="better"))
    out = verdicts(planted(ARMS), *family)
    # Raw p: log-rank chisq 10 (R: survdiff, p = 0.001565402258), Wilcoxon 2/2^10, sign test 9 of 10 runs
    # (R: binom.test(9, 10) -> 0.021484375), Wilcoxon of identical arms 1.
    # R 4.2: p.adjust(c(pchisq(10, 1, lower.tail = FALSE), 2/1024, 22/1024, 1), "holm")
    #   -> 0.006261609032 0.006261609032 0.042968750000 1
    assert [v.cells[0].pvalue_raw for v in out] == pytest.approx([0.001565402258, 2 / 1024, 22 / 1024, 1.0])
    assert [v.cells[0].pvalue for v in out] == pytest.approx([0.006261609032, 0.006261609032, 0.04296875, 1.0])
    assert [v.verdict for v in out] == ["supported", "supported", "supported", "inconclusive"]
    assert {v.cells[0].family_size for v in out} == {4}
    assert "over the report's 4 claim tests" in out[2].cells[0].test
    # No difference: slow is fast's twin. The comparisons have nothing to find (the log-rank no information,
    # so it leaves the family) and the same bound test now loses to a family of 3:
    # R: p.adjust(c(22/1024, 1, 1), "holm") -> 0.064453125.
    same = verdicts(planted({**ARMS, "slow": ARMS["fast"]}), *family)
    assert [v.verdict for v in same] == ["inconclusive"] * 4
    assert same[0].cells[0].pvalue is None and same[2].cells[0].family_size == 3
    assert same[2].cells[0].pvalue == pytest.approx(0.064453125)
    d = same[2].cells[0].to_dict()
    assert d["pvalue"] == pytest.approx(22 / 1024) and d["pvalue_holm"] == pytest.approx(0.064453125)


def test_time_to_threshold_direction_is_the_log_ranks_when_curves_cross():
    # 28 of 40 runs of "early" reach the threshold at epoch 1, the other 12 never within 10 epochs; every
    # "steady" run reaches it at epoch 2. The log-rank sees early sooner, the restricted means the reverse.
    budget, rows = 10, []
    for seed in range(40):
        for arm, reach in (("early", 1 if seed < 28 else None), ("steady", 2)):
            for epoch in range(budget + 1):
                rows.append({"run": f"{arm}-{seed}", "activation": "relu", "initializer": arm, "seed": seed,
                             "epoch": epoch, "val_acc": 0.95 if reach is not None and epoch >= reach else 0.5,
                             "val_loss": 1.0, "train_loss": 1.0, "diverged": False})
    tidy = pd.DataFrame(rows)
    results = analyze(tidy, ["activation"], 0.9, budget, 0.05, "crossing", ["early", "steady"])
    out = evaluate_claims((claim("early", "steady", "epochs_to_threshold", "faster"),
                           claim("steady", "early", "epochs_to_threshold", "faster")), results,
                          [run_outcomes(tidy, 0.9, budget)])
    v = out[0].cells[0]
    # R 4.2: survdiff(Surv(t, e) ~ g + strata(seed)) -> chisq 6.4, p = 0.01141203639, O - E of early +8;
    # summary(survfit(Surv(t, e) ~ g), rmean = 10) -> restricted means 3.7 and 2.0.
    assert v.statistic == pytest.approx(6.4) and v.pvalue_raw == pytest.approx(0.01141203639)
    assert v.effect == pytest.approx(3.7 - 2.0)  # shown, but it does not set the direction
    assert "observed - expected events of early: +8.00" in v.note and "curves cross" in v.note
    assert [c.verdict for c in out] == ["supported", "contradicted"]
    assert v.pvalue == pytest.approx(2 * 0.01141203639)


def test_claims_the_grid_cannot_test_say_why():
    out = verdicts(planted(ARMS), claim("fast", "slow", direction="better", where=(("activation", ("tanh",)),)),
                   claim("orthogonal", "fast", direction="better"))
    assert [v.verdict for v in out] == ["not tested", "not tested"]
    assert "no cell with activation tanh" in out[0].reason
    assert "no runs of orthogonal" in out[1].reason and out[1].cells == ()


def test_a_claim_over_several_cells_fails_when_one_cell_contradicts():
    tidy = planted(ARMS, activations=("relu", "tanh"))
    flip = (tidy["activation"] == "tanh") & tidy["initializer"].isin(["fast", "slow"])
    tidy.loc[flip, "initializer"] = tidy.loc[flip, "initializer"].map({"fast": "slow", "slow": "fast"})
    tidy.loc[flip, "run"] = tidy.loc[flip, "run"] + "-swapped"
    out = verdicts(tidy, claim("fast", "slow", direction="better"),
                   claim("fast", "slow", direction="better", where=(("activation", ("relu",)),)))
    assert [c.verdict for c in out[0].cells] == ["supported", "contradicted"]
    assert out[0].verdict == "contradicted" and out[1].verdict == "supported"
    assert json.loads(json.dumps([v.to_dict() for v in out], allow_nan=False))[0]["cells"][1]["verdict"] == \
        "contradicted"


GOOD = {"claim": "He beats Xavier", "a": "kaiming_normal", "b": "xavier_normal", "endpoint": "epochs_to_threshold",
        "direction": "faster", "where": {"activation": "relu"}}


@pytest.mark.parametrize("change, message", [
    ({"a": "he"}, "unknown initializer 'he'"),
    ({"where": {"activation": "tahn"}}, "unknown activation 'tahn'"),
    ({"where": {"optimizer": "sgd"}}, "where cannot restrict 'optimizer'"),
    ({"direction": "better"}, "direction for epochs_to_threshold must be one of faster, slower"),
    ({"direction": None}, "direction for epochs_to_threshold"),
    ({"endpoint": "accuracy"}, "endpoint must be one of"),
    ({"b": "kaiming_normal"}, "a and b are both"),
    ({"at_most": 0.2}, "either b with a direction"),
    ({"endpoint": "final_accuracy", "direction": "not_worse"}, "not_worse needs a margin"),
    ({"claim": ""}, "'claim' must state the hypothesis"),
    ({"verdict": "supported"}, "unknown key 'verdict'"),
    ({"b": None, "direction": None, "endpoint": "final_accuracy", "at_most": 1.5}, "at_most must be >= 0 and <= 1"),
])
def test_malformed_claims_fail_at_load_time_in_one_line(tmp_path, change, message):
    bad = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    path = write_study(tmp_path / "c.yaml", claims=[bad])
    with pytest.raises(StudyError) as err:
        load_study(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_claims_load_and_may_name_initializers_the_grid_lacks(tmp_path):
    # Copies: a mapping shared by two claims would be written as a YAML alias, which studies refuse.
    path = write_study(tmp_path / "c.yaml", claims=[copy.deepcopy(GOOD), {**copy.deepcopy(GOOD), "b": "orthogonal"},
                                                    {"claim": "zeros fail", "a": "zeros", "endpoint": "final_accuracy",
                                                     "at_most": 0.2, "where": {"activation": ["relu", "tanh"]}}])
    study = load_study(str(path))
    assert [c.b for c in study.claims] == ["xavier_normal", "orthogonal", None]
    assert study.claims[2].where == (("activation", ("relu", "tanh")),) and study.claims[2].at_most == 0.2
    assert load_study("default").claims  # the shipped study declares the literature's claims


# The same planted results drive the report's summary sentences and the critical-difference cliques.

def test_summary_names_each_significant_pair_with_its_numbers():
    from initstudy.report import pair_sentences

    tidy = planted(ARMS)
    cell = analyze(tidy, ["activation"], 0.9, BUDGET, 0.05, "planted", list(ARMS), reference="slow").cells[0]
    text = " ".join(pair_sentences(cell, 0.05))
    ett = next(p for p in cell.ett_pairwise if {p.a, p.b} == {"fast", "slow"})
    # Complete separation: no finite hazard ratio, so none is quoted.
    assert next(h for h in cell.ett_cox if h.initializer == "fast").hazard_ratio is None
    assert "hazard ratio" not in text
    # A ratio estimated against the slower arm is turned round to read "fast against slow".
    from dataclasses import replace

    from initstudy.analysis import CoxResult

    turned = replace(cell, ett_cox=(CoxResult("slow", "fast", 0.25, (0.1, 0.6), 0.001),))
    assert "hazard ratio 4.00 [1.67, 10.00]; log-rank" in " ".join(pair_sentences(turned, 0.05))
    assert "fast reached 0.9 sooner than slow (restricted mean 1.00 vs 3.00 epochs; " in text
    assert f"log-rank, Holm-adjusted p = {ett.pvalue_holm:.3f})" in text
    fin = next(p for p in cell.final_pairwise if (p.a, p.b) == ("fast", "slow"))
    assert (f"fast ended more accurate than slow (median difference {fin.effect.value:+.3f} "
            f"[{fin.effect.ci[0]:+.3f}, {fin.effect.ci[1]:+.3f}]; wilcoxon, Holm-adjusted p = "
            f"{fin.pvalue_holm:.3f})") in text
    # fast and twin are identical: named as not shown to differ, on both endpoints.
    assert text.count("fast–twin") == 2 and "sooner than twin" not in text


def test_cliques_join_rank_neighbours_that_no_test_separates():
    from initstudy.analysis import PairwiseResult
    from initstudy.plots import cliques

    ranks = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}

    def pairs(*significant):
        return [PairwiseResult(x, y, "wilcoxon", 0.0, 0.01, 0.01 if {x, y} in map(set, significant) else 0.5)
                for i, x in enumerate(ranks) for y in list(ranks)[i + 1:]]

    assert cliques(list(ranks), ranks, pairs(), 0.05) == [("a", "b", "c", "d")]
    assert cliques(list(ranks), ranks, pairs("ac", "ad", "bd"), 0.05) == [("a", "b"), ("b", "c"), ("c", "d")]
    every = pairs("ab", "ac", "ad", "bc", "bd", "cd")
    assert cliques(list(ranks), ranks, every, 0.05) == []
