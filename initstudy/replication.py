"""Published accuracies beside the study's own: one row per reference value and cell it applies to.

A study's `replication` entries (config.Reference) give a source's printed mean, and range, of one
initializer's final accuracy. Each is set beside the arm it maps to in every cell of its activation (every
cell when it names none): our mean final accuracy over the seeds with its 95% t-interval (diverged runs
left out, as in the league table), and both orderings, as ranks among the references of the cell. The
source's model and data are not the study's, so only the ordering is comparable; the claims naming the arm
carry the verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass

from .analysis import Results, _num
from .config import Reference
from .stats import accuracy_ci


@dataclass(frozen=True)
class ClaimMark:
    """A claim that names the arm, and its verdict in the row's cell."""

    number: int  # the claim's place in the study's list, from 1
    claim: str
    verdict: str  # supported | contradicted | inconclusive

    def to_dict(self) -> dict:
        return {"number": self.number, "claim": self.claim, "verdict": self.verdict}


@dataclass(frozen=True)
class ReplicationRow:
    reference: Reference
    arm: str  # the arm's initializer and options in words, e.g. "normal (std=0.01, mean=0.0)"
    factors: dict  # the cell
    runs: int  # our runs of the arm in the cell
    finished: int  # of which not diverged: the ones the mean is over
    mean: float | None  # our mean final accuracy
    ci: tuple[float | None, float | None]  # its 95% t-interval over the seeds, clipped to [0, 1]
    reference_rank: int  # 1 = highest printed mean among the cell's references (ties share the best rank)
    rank: int | None  # 1 = highest of our means among the same arms; None without a finished run
    claims: tuple[ClaimMark, ...] = ()

    def to_dict(self) -> dict:
        r = self.reference
        return {"name": r.name, "source": r.source, "initializer": r.initializer, "arm": self.arm,
                "mapping": r.mapping, "activation": r.activation, "factors": self.factors,
                "reference": {"mean": r.mean, "low": r.low, "high": r.high, "runs": r.runs,
                              "rank": self.reference_rank},
                "ours": {"mean": _num(self.mean), "ci": [_num(self.ci[0]), _num(self.ci[1])], "runs": self.runs,
                         "finished": self.finished, "rank": self.rank},
                "claims": [c.to_dict() for c in self.claims]}


def _ranks(values: list[float | None]) -> list[int | None]:
    """1 = highest; equal values share the best rank; None stays None."""
    return [None if v is None else 1 + sum(w is not None and w > v for w in values) for v in values]


def arm_text(spec) -> str:
    """An initializer spec in words: its name with every option, gain and bias that was set."""
    parts = [f"{k}={v}" for k, v in spec.options]
    if spec.gain is not None:
        parts.append(f"gain={spec.gain:g}")
    if spec.bias is not None:
        parts.append(f"bias={spec.bias}")
    return spec.name + (f" ({', '.join(parts)})" if parts else "")


def replication_rows(references: tuple[Reference, ...], results: Results, arms: dict[str, str] | None = None,
                     verdicts: tuple = ()) -> tuple[ReplicationRow, ...]:
    """One row per reference and cell it applies to, cells in the results' order, references in the study's.

    `arms`: label -> the arm in words (default: the label); `verdicts`: the report's claims.ClaimVerdicts,
    whose cell verdicts on the row's arm are attached to it.
    """
    arms = arms or {}
    rows = []
    for cell in results.cells:
        summaries = {a.initializer: a for a in cell.arms}
        refs = [r for r in references if r.initializer in summaries
                and (r.activation is None or cell.factors.get("activation") == r.activation)]
        means = [summaries[r.initializer].final_acc_mean for r in refs]
        for r, ref_rank, rank in zip(refs, _ranks([r.mean for r in refs]), _ranks(means)):
            a = summaries[r.initializer]
            finished = a.n_runs - a.n_diverged
            marks = tuple(ClaimMark(n, v.claim.text, cv.verdict) for n, v in enumerate(verdicts, 1)
                          if r.initializer in (v.claim.a, v.claim.b) for cv in v.cells if cv.factors == cell.factors)
            rows.append(ReplicationRow(r, arms.get(r.initializer, r.initializer), dict(cell.factors), a.n_runs,
                                       finished, a.final_acc_mean, accuracy_ci(a.final_acc_mean, a.final_acc_sd,
                                                                              finished), ref_rank, rank, marks))
    return tuple(rows)
