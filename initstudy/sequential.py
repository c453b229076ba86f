"""Group-sequential designs for claims: boundaries, monitoring, adjusted p-values, seeds spent.

A study that looks at its claims after, say, 5, 10, 20 and 30 seeds per arm may stop
early at a boundary and keep its type-I error at alpha. The statistical core:

- information fraction at look k: t_k = seeds at look k / seeds at the last look
  (seeds are the information unit of every claim test here);
- Lan-DeMets spending: by look k each bound may have spent a*(t_k) of its a = alpha/2
  (two-sided) or a = alpha (one-sided), for O'Brien-Fleming-type `2 - 2 Phi(z_{a/2} / sqrt(t))`
  or Pocock-type `a ln(1 + (e - 1) t)` (Lan & DeMets 1983, Biometrika 70:659). Spending per
  side is the convention of R's ldbounds and gsDesign, whose published bounds these match;
- critical values c_k from the joint normal law of the standardized statistics
  Z_1..Z_K (independent increments, corr(Z_j, Z_k) = sqrt(t_j / t_k)), by the
  recursive numerical integration of Jennison & Turnbull (2000), Group Sequential
  Methods, ch. 19 (their grid of 6m - 1 points and Simpson's rule), so that
  P0(first |Z_k| >= c_k at look k) = alpha*(t_k) - alpha*(t_{k-1});
- a claim test's two-sided p and its direction become a signed z, z = sign Phi^-1(1 - p/2),
  with the claim's direction positive: crossing +c_k supports it, -c_k contradicts it;
- at the stopping look: the stage-wise ordering p-value (J&T section 8.4) and the
  repeated confidence interval estimate +- c_k se (J&T ch. 9);
- an optional non-binding futility bound f: stop at an interim look when |Z_k| < f.
  Non-binding: the efficacy bounds ignore it, so type-I error stays <= alpha whether
  or not a stop for futility is honoured; power and expected seeds assume it is;
- claims share alpha by Bonferroni, each monitored with its own spending.

Drift `theta` throughout is E[Z] at the last look (for a paired test of standardized
effect d with N seeds, about d sqrt(N)); E[Z_k] = theta sqrt(t_k). Power counts
crossings in the effect's direction only, as for the fixed two-sided test it is
compared with (the opposite tail is about 1e-6 or less at power 0.8 and above).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats
from scipy.optimize import brentq
from scipy.special import ndtr

from .errors import StudyError

POWER = 0.8  # the power at which seeds of the fixed design are compared (as in stats.POWER)
GRID_M = 32  # J&T's grid parameter: 6m - 1 points per look, ~1e-6 accuracy in probabilities
Z_MAX = 38.0  # beyond this the normal tail is below double precision: an unreachable bound


def _obrien_fleming(t: np.ndarray, alpha: float) -> np.ndarray:
    return 2 * stats.norm.sf(stats.norm.isf(alpha / 2) / np.sqrt(t))


def _pocock(t: np.ndarray, alpha: float) -> np.ndarray:
    return alpha * np.log1p((math.e - 1) * t)


SPENDING = {  # name -> (t, a) -> cumulative level spent by one bound of level a at information fraction t
    "obrien_fleming": _obrien_fleming,
    "pocock": _pocock,
}
SPENDING_LABEL = {"obrien_fleming": "Lan-DeMets O'Brien-Fleming-type", "pocock": "Lan-DeMets Pocock-type"}
STUDY_KEYS = {"looks": "seed counts per arm at each look, increasing, e.g. [5, 10, 20, 30]",
              "spending": f"alpha-spending function: {', '.join(SPENDING)}",
              "futility": "optional non-binding futility bound on |z| at interim looks, e.g. 0.5"}


def spending_function(name: str):
    """The spending function `name` (t, alpha) -> cumulative alpha, or StudyError listing the known ones."""
    try:
        return SPENDING[name]
    except (KeyError, TypeError):
        raise StudyError(f"unknown spending function {name!r}; choose one of: {', '.join(SPENDING)}") from None


@dataclass(frozen=True)
class Plan:
    """The checked `sequential:` study key."""
    looks: tuple[int, ...]  # seeds per arm at each look, strictly increasing
    spending: str  # a SPENDING name
    futility: float | None = None  # non-binding futility bound on |z| at interim looks; None for none


def check_plan(value, seeds_allowed: int, alpha: float) -> Plan:
    """The study key `sequential: {looks: [...], spending: name, futility: f}` checked against the study's
    seed count and alpha, or StudyError with a one-line message naming the fix."""
    if not isinstance(value, dict):
        raise StudyError(f"sequential must be a mapping like {{looks: [5, 10, 20], spending: obrien_fleming}}, "
                         f"got {value!r}")
    unknown = sorted(set(value) - set(STUDY_KEYS), key=str)
    if unknown:
        raise StudyError(f"sequential takes no key {unknown[0]!r}; use: {', '.join(STUDY_KEYS)}")
    if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 < alpha < 1):
        raise StudyError(f"alpha must be a number strictly between 0 and 1, got {alpha!r}")
    looks = value.get("looks")
    if not isinstance(looks, (list, tuple)) or len(looks) < 2:
        raise StudyError(f"sequential.looks must list at least two seed counts, e.g. [5, 10, 20], got {looks!r} "
                         "(one look is the fixed design: drop the sequential key)")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in looks):
        raise StudyError(f"sequential.looks must be positive whole seed counts, got {list(looks)!r}")
    bad = next((k for k in range(1, len(looks)) if looks[k] <= looks[k - 1]), None)
    if bad is not None:
        raise StudyError(f"sequential.looks must be strictly increasing, but look {bad + 1} ({looks[bad]} seeds) "
                         f"does not exceed look {bad} ({looks[bad - 1]}); list each look after the one before")
    if looks[-1] > seeds_allowed:
        raise StudyError(f"sequential.looks ends at {looks[-1]} seeds but the study allows {seeds_allowed}; "
                         f"raise seeds to {looks[-1]} or end the looks at {seeds_allowed}")
    if "spending" not in value:
        raise StudyError(f"sequential needs a spending function; add spending: one of {', '.join(SPENDING)}")
    spending_function(value["spending"])
    futility = value.get("futility")
    if futility is not None and not (isinstance(futility, (int, float)) and not isinstance(futility, bool)
                                     and 0 < futility < stats.norm.isf(alpha / 2)):
        raise StudyError(f"sequential.futility must be a |z| bound between 0 and {stats.norm.isf(alpha / 2):.3f} "
                         f"(the fixed design's critical z), got {futility!r}; e.g. 0.5, or drop it")
    return Plan(looks=tuple(looks), spending=value["spending"],
                futility=None if futility is None else float(futility))


@dataclass(frozen=True)
class Design:
    """Boundaries of a group-sequential test; look k counts from 1 in words, from 0 in the tuples."""
    looks: tuple[int, ...]  # seeds per arm at each look
    alpha: float  # total type-I error, two-sided when `two_sided`
    spending: str  # SPENDING name
    two_sided: bool  # symmetric bounds +-c_k; else the upper bound only
    fractions: tuple[float, ...]  # information fraction t_k = looks[k] / looks[-1]
    spent: tuple[float, ...]  # cumulative alpha spent by each look, both bounds together
    bounds: tuple[float, ...]  # critical z per look: stop when |Z_k| >= bounds[k] (Z_k >= when one-sided)
    futility: float | None = None  # non-binding: stop at an interim look when |Z_k| < futility

    def to_dict(self) -> dict:
        return {"looks": list(self.looks), "alpha": self.alpha, "spending": self.spending,
                "two_sided": self.two_sided, "fractions": list(self.fractions), "spent": list(self.spent),
                "bounds": [b if math.isfinite(b) else None for b in self.bounds], "futility": self.futility}


def _grid(mu: float, lo: float, hi: float, m: int = GRID_M) -> tuple[np.ndarray, np.ndarray]:
    """Simpson nodes and weights on (lo, hi) for a normal density centred near mu (z scale): J&T (2000)
    section 19.2.1's 6m - 1 points, dense within mu +- 3 and log-spaced tails out to mu +- (3 + 4 ln m),
    cut to (lo, hi) with the ends added."""
    i = np.arange(1, 6 * m, dtype=float)
    x = np.where(i < m, mu - 3 - 4 * np.log(m / i),
                 np.where(i <= 5 * m, mu - 3 + 3 * (i - m) / (2 * m), mu + 3 + 4 * np.log(m / (6 * m - i))))
    x = np.concatenate([[max(lo, x[0])], x[(x > lo) & (x < hi)], [min(hi, x[-1])]])
    x = x[np.concatenate([[True], np.diff(x) > 0])]
    if len(x) < 2:
        return np.empty(0), np.empty(0)
    z = np.empty(2 * len(x) - 1)
    z[0::2], z[1::2] = x, (x[:-1] + x[1:]) / 2
    w = np.zeros_like(z)
    d = np.diff(x)
    w[0:-1:2] += d / 6
    w[2::2] += d / 6
    w[1::2] = 4 * d / 6
    return z, w


@dataclass(frozen=True)
class _State:
    """The sub-density of the score S_k = Z_k sqrt(t_k) on the continuation region after look k, as nodes
    and weight * density, so that integrals over continuing paths are sums."""
    s: np.ndarray
    wg: np.ndarray
    t: float


def _pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _exit(state: _State | None, t: float, theta: float, c: float, above: bool) -> float:
    """P(continue to look k, then Z_k >= c) (above) or Z_k <= c (below), at fraction t, drift theta."""
    if state is None:
        mean, sd, s0, wg = theta * t, math.sqrt(t), np.zeros(1), np.ones(1)
    else:
        mean, sd, s0, wg = theta * (t - state.t), math.sqrt(t - state.t), state.s, state.wg
    x = (c * math.sqrt(t) - s0 - mean) / sd
    return float(wg @ ndtr(-x if above else x))


def _advance(state: _State | None, t: float, theta: float, intervals: list[tuple[float, float]]) -> _State:
    """The sub-density after look k, kept on `intervals` of Z_k (the continuation region)."""
    zs, ws = zip(*(_grid(theta * math.sqrt(t), lo, hi) for lo, hi in intervals))
    z, w = np.concatenate(zs), np.concatenate(ws)
    s = z * math.sqrt(t)
    if state is None:
        g = _pdf(z - theta * math.sqrt(t))  # density of Z_1, so the weights stay on the z scale
    else:
        sd = math.sqrt(t - state.t)
        dens = _pdf((s[:, None] - state.s[None, :] - theta * (t - state.t)) / sd) / sd
        g = dens @ state.wg * math.sqrt(t)  # density of Z_k = S_k / sqrt(t)
    return _State(s=s, wg=w * g, t=t)


def _continuation(c: float, futility: float | None, two_sided: bool, interim: bool) -> list[tuple[float, float]]:
    lo = -c if two_sided else -np.inf
    if futility is None or not interim:
        return [(lo, c)]
    return [(-c, -futility), (futility, c)] if two_sided else [(futility, c)]


def _root(f, target: float) -> float:
    """c with f(c) = target for f decreasing in c: the bound that spends exactly `target`."""
    if target <= 0:
        return math.inf
    if f(0.0) <= target:  # even c = 0 spends no more than allowed (only when nearly all paths have stopped)
        return 0.0
    if f(Z_MAX) >= target:
        return Z_MAX
    return float(brentq(lambda c: f(c) - target, 0.0, Z_MAX, xtol=1e-10, rtol=1e-12, maxiter=200))


def boundaries(looks, alpha: float, spending: str = "obrien_fleming", two_sided: bool = True,
               futility: float | None = None) -> Design:
    """Critical z values for `looks` (seed counts, strictly increasing) at total level `alpha` with
    Lan-DeMets `spending` (a SPENDING name, applied per bound). Each c_k solves P0(first crossing at look k) = spent increment,
    by J&T ch. 19 recursive integration; accurate to ~1e-6 in z. `futility` (non-binding) is recorded,
    checked to lie below every interim bound, and ignored by the bounds."""
    looks = tuple(int(n) for n in looks)
    if len(looks) < 1 or any(n <= 0 for n in looks) or any(b <= a for a, b in zip(looks, looks[1:])):
        raise StudyError(f"looks must be positive, strictly increasing seed counts, got {list(looks)}")
    if not 0 < alpha < 1:
        raise StudyError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    fn = spending_function(spending)
    t = np.array(looks, float) / looks[-1]
    sides = 2 if two_sided else 1
    spent = np.minimum(sides * fn(t, alpha / sides), alpha)  # each side spends alpha / 2 by its own function
    spent[-1] = alpha
    bounds, state, prev = [], None, 0.0
    for k, tk in enumerate(t):
        def f(c):
            up = _exit(state, tk, 0.0, c, True)
            return 2 * up if two_sided else up  # symmetric: the lower tail equals the upper under H0
        c = _root(f, float(spent[k] - prev))
        prev = float(spent[k])
        bounds.append(c)
        if k < len(t) - 1:
            state = _advance(state, tk, 0.0, _continuation(c, None, two_sided, True))
    if futility is not None:
        low = next((k for k, c in enumerate(bounds[:-1]) if futility >= c), None)
        if low is not None:
            raise StudyError(f"futility bound {futility:g} is not below the efficacy bound {bounds[low]:.3f} at "
                             f"look {low + 1}; lower the futility bound or drop it")
    return Design(looks=looks, alpha=float(alpha), spending=spending, two_sided=two_sided,
                  fractions=tuple(float(x) for x in t), spent=tuple(float(x) for x in spent),
                  bounds=tuple(float(c) for c in bounds), futility=futility)


@dataclass(frozen=True)
class Crossing:
    """Per-look probabilities that a study stops there, under drift `theta`."""
    theta: float  # E[Z] at the last look
    upper: tuple[float, ...]  # P(first exit at look k through +c_k): the effect's direction
    lower: tuple[float, ...]  # P(... through -c_k); zeros for a one-sided design
    futility: tuple[float, ...]  # P(stop for futility at look k); zeros without a futility bound

    @property
    def power(self) -> float:
        """P(the study ends crossing the upper bound)."""
        return float(sum(self.upper))


def crossing(design: Design, theta: float, futility: bool = True) -> Crossing:
    """Exit probabilities of `design` under drift theta; with `futility` (and a bound in the design) the
    futility stops are honoured, as a study that follows its plan would."""
    f = design.futility if futility else None
    t, c = design.fractions, design.bounds
    up, lo, fu, state = [], [], [], None
    for k, tk in enumerate(t):
        up.append(_exit(state, tk, theta, c[k], True))
        lo.append(_exit(state, tk, theta, -c[k], False) if design.two_sided else 0.0)
        interim = k < len(t) - 1
        if interim:
            state = _advance(state, tk, theta, _continuation(c[k], f, design.two_sided, True))
            if f is None:
                fu.append(0.0)
            else:
                alive = 1.0 - sum(up) - sum(lo) - sum(fu)
                fu.append(max(0.0, alive - float(state.wg.sum())))
        else:
            fu.append(0.0)
    return Crossing(theta=float(theta), upper=tuple(up), lower=tuple(lo), futility=tuple(fu))


def z_from_p(pvalue: float, direction: float) -> float:
    """The signed standardized statistic of a two-sided test: sign(direction) Phi^-1(1 - p/2), positive in
    the claim's direction (0 when the direction is 0 or unknown). Any claim test (log-rank, signed-rank,
    Mann-Whitney, sign test) is monitored through this z."""
    if pvalue is None or not math.isfinite(direction) or direction == 0:
        return 0.0
    p = min(max(float(pvalue), 0.0), 1.0)
    return float(math.copysign(stats.norm.isf(p / 2), direction))


@lru_cache(maxsize=64)
def _null_states(fractions: tuple, bounds: tuple, two_sided: bool) -> tuple:
    """Null sub-densities before each look (None before the first), shared by every p-value of a design."""
    states = [None]
    for t, c in zip(fractions[:-1], bounds[:-1]):
        states.append(_advance(states[-1], t, 0.0, _continuation(c, None, two_sided, True)))
    return tuple(states)


def stagewise_pvalue(design: Design, look: int, z: float) -> float:
    """Stage-wise ordering p-value (J&T 2000, section 8.4) of a study that stopped at `look` (1-based) with
    statistic z: outcomes more extreme are exits at earlier looks, then larger Z at this look. Two-sided
    designs give 2 min(p_upper, 1 - p_upper). The efficacy bounds alone define the ordering (the futility
    bound is non-binding). The result is <= alpha exactly when the study crossed."""
    k = look - 1
    states = _null_states(design.fractions, design.bounds, design.two_sided)
    p_up = sum(_exit(states[j], design.fractions[j], 0.0, design.bounds[j], True) for j in range(k))
    p_up += _exit(states[k], design.fractions[k], 0.0, z, True)
    if not design.two_sided:
        return float(min(1.0, max(0.0, p_up)))
    return float(min(1.0, max(0.0, 2 * min(p_up, 1 - p_up))))


def repeated_ci(estimate: float, se: float, design: Design, look: int) -> tuple[float, float]:
    """Repeated confidence interval at `look` (1-based; J&T 2000, ch. 9): estimate +- c_k se. The intervals
    at all looks cover the effect together with probability >= 1 - alpha (two-sided design), so the one
    at whichever look the study stops is valid."""
    c = design.bounds[look - 1]
    return (float(estimate - c * se), float(estimate + c * se))


@dataclass(frozen=True)
class Decision:
    """What a group-sequential claim test concludes from the looks seen so far."""
    action: str  # "stop" | "continue"
    look: int  # the look (1-based) the decision was made at: the stopping look, or the last one seen
    seeds: int  # seeds per arm at that look
    crossed: str  # "upper" (claim supported) | "lower" (contradicted) | "futility" | "none" (last look, no bound)
    z: float  # the signed statistic at that look
    boundary: float  # the critical |z| at that look
    pvalue: float | None  # stage-wise ordering adjusted p (two-sided); None while continuing
    rci: tuple[float, float] | None  # repeated CI of the effect at that look, when estimates were given

    def to_dict(self) -> dict:
        return {"action": self.action, "look": self.look, "seeds": self.seeds, "crossed": self.crossed,
                "z": self.z, "boundary": self.boundary, "pvalue": self.pvalue,
                "rci": None if self.rci is None else list(self.rci)}


def monitor(z_by_look, design: Design, estimates=None, ses=None) -> Decision:
    """The decision after the looks seen so far: z_by_look[k] is the signed statistic at look k + 1
    (at most len(design.looks) of them); the first look whose |z| reaches its bound stops the study,
    later entries are ignored. `estimates`/`ses` (same length, optional) give the effect and its standard
    error per look, for the repeated confidence interval at the decision look."""
    z = [float(v) for v in z_by_look]
    if not 1 <= len(z) <= len(design.looks):
        raise StudyError(f"monitor needs 1 to {len(design.looks)} looks' statistics, got {len(z)}")
    K, stop, crossed = len(design.looks), None, "none"
    for k, zk in enumerate(z):
        c = design.bounds[k]
        if zk >= c:
            stop, crossed = k, "upper"
        elif design.two_sided and zk <= -c:
            stop, crossed = k, "lower"
        elif design.futility is not None and k < K - 1 and (abs(zk) if design.two_sided else zk) < design.futility:
            stop, crossed = k, "futility"
        elif k == K - 1:
            stop = k
        if stop is not None:
            break
    k = len(z) - 1 if stop is None else stop
    rci = None
    if estimates is not None and ses is not None and estimates[k] is not None and ses[k] is not None:
        rci = repeated_ci(float(estimates[k]), float(ses[k]), design, k + 1)
    return Decision(action="continue" if stop is None else "stop", look=k + 1, seeds=design.looks[k],
                    crossed=crossed, z=z[k], boundary=design.bounds[k],
                    pvalue=None if stop is None else stagewise_pvalue(design, k + 1, z[k]), rci=rci)


@dataclass(frozen=True)
class AlphaShare:
    alpha: float  # the level the claims share
    claims: int  # how many claims share it
    each: float  # the level each claim is monitored at
    rule: str  # the rule in one sentence, for the report's Methods


def share_alpha(alpha: float, claims: int, spending: str) -> AlphaShare:
    """Bonferroni: each of `claims` claims gets alpha / claims and its own spending function, so the chance
    that any true-null claim crosses is at most alpha whatever the correlation of their tests."""
    if claims < 1:
        raise StudyError(f"share_alpha needs at least one claim, got {claims}")
    each = alpha / claims
    spending_function(spending)  # an unknown name fails here, listing the known ones
    label = SPENDING_LABEL[spending]
    rule = (f"Bonferroni: each of the {claims} claim tests is monitored at alpha {alpha:g}/{claims} = {each:.4g} "
            f"(two-sided) with its own {label} spending" if claims > 1 else
            f"the single claim is monitored at alpha {alpha:g} (two-sided) with {label} spending")
    return AlphaShare(alpha=float(alpha), claims=int(claims), each=float(each), rule=rule)


def drift_for_power(design: Design, power: float = POWER) -> float:
    """The drift theta (E[Z] at the last look) at which `design` crosses the upper bound with `power`,
    futility stops honoured."""
    return float(brentq(lambda th: crossing(design, th).power - power, 0.0, 20.0, xtol=1e-9))


@dataclass(frozen=True)
class SeedPlan:
    """Seeds of a group-sequential design against the fixed design with the same power (normal theory)."""
    power: float  # the power both designs have at the effect with drift `theta`
    theta: float  # E[Z] at the last look of the sequential design at that effect
    max_seeds: int  # seeds per arm at the last look
    fixed_seeds: float  # seeds per arm of the fixed two-sided test at alpha with the same power: max / inflation
    inflation: float  # max seeds / fixed seeds = (theta / (z_{alpha/2} + z_power))^2, J&T's R
    expected_seeds_null: float  # mean seeds per arm when there is no difference
    expected_seeds_effect: float  # mean seeds per arm at the effect


def expected_seeds(design: Design, theta: float) -> float:
    """Mean seeds per arm at which the study stops under drift theta (futility stops honoured)."""
    cr = crossing(design, theta)
    stop = np.array(cr.upper) + np.array(cr.lower) + np.array(cr.futility)
    stop[-1] = 1.0 - stop[:-1].sum()  # whoever reaches the last look stops there
    return float(np.dot(stop, design.looks))


def seed_plan(design: Design, power: float = POWER) -> SeedPlan:
    """Max and expected seeds of `design` against the fixed design with equal power: the fixed test at the
    same alpha needs drift z_{alpha/2} + z_power, which it reaches with max_seeds / inflation seeds.
    For a paired test of standardized effect d, the effect is d = theta / sqrt(max_seeds)."""
    theta = drift_for_power(design, power)
    z_fixed = stats.norm.isf(design.alpha / (2 if design.two_sided else 1)) + stats.norm.ppf(power)
    inflation = (theta / z_fixed) ** 2
    return SeedPlan(power=float(power), theta=theta, max_seeds=design.looks[-1],
                    fixed_seeds=float(design.looks[-1] / inflation), inflation=float(inflation),
                    expected_seeds_null=expected_seeds(design, 0.0),
                    expected_seeds_effect=expected_seeds(design, theta))
