"""The analysis pipeline: a study's runs, imported logs or a data frame in, results and claim verdicts out.

`analyze_study` reads a trained study's finished runs; `analyze_imported` the logs an import stored (under
`imported_settings`), `analyze_dataframe` a notebook's data frame: both through `analyze_logs`, which gives
an `Analysis`. `initstudy analyze` writes what these return; `report.py` renders the same objects.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .analysis import TIDY_COLUMNS, Results, analyze, run_outcomes
from .claims import ClaimVerdict, evaluate_claims
from .config import Settings, Study, check_settings, expand, load_settings, settings_from_dict
from .errors import InitStudyError, StoreError
from .importing import IMPORTED, load_imported
from .store import RunStore, tidy_frame


def in_cell(df: pd.DataFrame, factors: dict) -> pd.DataFrame:
    """The rows of `df` whose factor columns hold the values in `factors`."""
    mask = pd.Series(True, index=df.index)
    for k, v in factors.items():
        mask &= df[k] == v
    return df[mask]


def analyze_study(study: Study, runs_dir: str | Path, specs: list | None = None
                  ) -> tuple[Results, pd.DataFrame, list[str], list[str]]:
    """(results, tidy frame, factor columns, missing run ids) for a study's finished runs among `specs`
    (default: the whole grid; a sequential study: the runs its looks asked for)."""
    store = RunStore(runs_dir, study.name)
    specs = expand(study) if specs is None else specs
    tidy, factor_columns, missing = tidy_frame(specs, store)
    if tidy.empty:
        raise StoreError(f"no finished runs of study {study.name!r} in {store.root}; run "
                         f"`initstudy train --study {study.source}` first (with the same --set options)")
    order = [i.label for i in study.initializers]
    results = analyze(tidy, factor_columns, study.threshold, study.epochs, study.alpha, study.name, order,
                      study.reference, study.target_effect)
    return results, tidy, factor_columns, missing


# ---------------------------------------------------------------- imported logs and data frames

@dataclass(frozen=True, eq=False)
class Analysis:
    """The analysis of logs (imported, or a data frame from a notebook): results, claim verdicts, and what the
    report needs to draw them. `tidy`: one row per run and epoch, initializers by their labels."""
    name: str
    results: Results
    verdicts: tuple[ClaimVerdict, ...]  # one per claim of the settings
    tidy: pd.DataFrame
    factors: tuple[str, ...]  # the cell factors analysed
    order: tuple[str, ...]  # initializer labels in report order
    settings: Settings
    provenance: dict  # where the logs came from (empty for a data frame)

    def to_dict(self) -> dict:
        """The content of results.json (as `initstudy analyze` and the report write it)."""
        d = {**self.results.to_dict(), "claims": [v.to_dict() for v in self.verdicts]}
        if self.provenance:
            d["source"] = {k: v for k, v in self.provenance.items() if k != "files"}
        return d

    def to_frame(self, kind: str) -> pd.DataFrame:
        """"arms", "pairwise", "omnibus" (see `Results.to_frame`), or "claims": one row per claim and cell."""
        if kind != "claims":
            return self.results.to_frame(kind)
        rows = []
        for v in self.verdicts:
            base = {"claim": v.claim.text, "a": v.claim.a, "b": v.claim.b, "endpoint": v.claim.endpoint,
                    "direction": v.claim.direction, "verdict": v.verdict, "reason": v.reason}
            for cv in v.cells or (None,):
                rows.append({**base, **({} if cv is None else {
                    **cv.factors, "cell_verdict": cv.verdict, "test": cv.test, "statistic": cv.statistic,
                    "pvalue": cv.pvalue_raw, "pvalue_holm": cv.pvalue, "effect": cv.effect_name,
                    "effect_value": cv.effect, "effect_ci_low": cv.ci[0], "effect_ci_high": cv.ci[1]})})
        return pd.DataFrame(rows)

    arms = property(lambda self: self.to_frame("arms"))
    pairwise = property(lambda self: self.to_frame("pairwise"))
    omnibus = property(lambda self: self.to_frame("omnibus"))
    claims = property(lambda self: self.to_frame("claims"))


def analyze_logs(tidy: pd.DataFrame, factors: list[str], budget: int, settings: Settings, name: str,
                 provenance: dict | None = None) -> Analysis:
    """Analyse checked logs (`tidy` as `importing.read_tidy_csv` returns it, `factors` its factor columns) under
    `settings`, which are checked against the logs first (StudyError when they name what the logs lack)."""
    logged = sorted(tidy["initializer"].unique())
    settings = check_settings(settings, logged, list(factors), int(tidy["epoch"].max()))
    tidy = tidy.assign(initializer=tidy["initializer"].map(settings.label))
    shown = [settings.label(i) for i in logged]
    order = list(settings.order or ()) + sorted(x for x in shown if x not in (settings.order or ()))
    cell_factors = list(settings.factors) if settings.factors is not None else list(factors)
    budget = settings.budget_epochs or budget
    results = analyze(tidy, cell_factors, settings.threshold, budget, settings.alpha, name, order,
                      settings.reference, settings.target_effect, settings.design)
    finals = [run_outcomes(in_cell(tidy, c.factors), settings.threshold, budget) for c in results.cells]
    verdicts = evaluate_claims(settings.claims, results, finals)
    keep = [c for c in tidy.columns if c in TIDY_COLUMNS or c in cell_factors]
    return Analysis(name, results, verdicts, tidy[keep], tuple(cell_factors), tuple(order), settings,
                    dict(provenance or {}))


SETTINGS_FILE = "settings.yaml"  # an import's stored analysis settings, beside imported.csv


def imported_settings(runs_dir: str | Path, study: str, path: str | Path | None = None) -> Settings:
    """The settings stored with an import, the keys of `path` (a settings file) replacing theirs."""
    stored = RunStore(runs_dir, study).root / SETTINGS_FILE
    return load_settings(stored if stored.is_file() else None, path)


@contextlib.contextmanager
def import_settings(runs_dir: str | Path, study: str, path: str | Path | None):
    """Around an import: the settings file is read first, then checked against the new logs and stored with
    them (None: an earlier import's settings are removed). Settings that do not fit the logs undo the import,
    an earlier import under the name coming back as it was."""
    root = RunStore(runs_dir, study).root
    settings = load_settings(path) if path is not None else None
    names = (IMPORTED, "import.json", SETTINGS_FILE)
    saved = {}
    if settings is not None:
        for name in names:
            if (root / name).is_file():
                saved[name] = root / f".{name}.before"
                shutil.copy2(root / name, saved[name])
    imported = False
    try:
        yield
        imported = True
        if settings is not None:
            analyze_imported(runs_dir, study, settings, check_only=True)
    except InitStudyError as exc:
        if imported:
            for name in names:
                (root / name).unlink(missing_ok=True)
            for name, copy in saved.items():
                copy.replace(root / name)
            if root.is_dir() and not any(root.iterdir()):
                root.rmdir()
            kept = "; the earlier import is kept as it was" if saved else ""
            raise type(exc)(f"{exc} (nothing was imported{kept})") from None
        raise
    finally:
        for copy in saved.values():
            copy.unlink(missing_ok=True)
    if settings is None:
        (root / SETTINGS_FILE).unlink(missing_ok=True)
    else:
        tmp = root / f".{SETTINGS_FILE}.tmp"
        tmp.write_text(Path(path).read_text())
        tmp.replace(root / SETTINGS_FILE)


def _import_meta(runs_dir: str | Path, study: str) -> dict:
    try:
        from .importing import load_import_meta
    except ImportError:  # older importers: import.json read directly
        path = RunStore(runs_dir, study).root / "import.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
    return load_import_meta(runs_dir, study)


def analyze_imported(runs_dir: str | Path, study: str, settings: Settings, check_only: bool = False
                     ) -> Analysis | None:
    """The Analysis of an imported study under `settings` (None when `check_only`: the settings fit)."""
    imported = load_imported(runs_dir, study)
    if imported is None:
        raise StoreError(f"{runs_dir}/{study} holds no imported logs; run `initstudy import FILE --study {study}` "
                         "first")
    tidy, factors, budget = imported
    if check_only:
        check_settings(settings, sorted(tidy["initializer"].unique()), list(factors), int(tidy["epoch"].max()))
        return None
    meta = _import_meta(runs_dir, study)
    provenance = dict(meta.get("provenance") or {})
    provenance.setdefault("source", meta.get("source", "unknown"))
    provenance.setdefault("imported_at", meta.get("imported_at"))
    if settings.source and settings.source != "settings":
        provenance["settings"] = settings.source
    return analyze_logs(tidy, factors, budget, settings, study, provenance)


def analyze_dataframe(df: pd.DataFrame, settings: dict, name: str = "frame") -> Analysis:
    """`initstudy.analyze_frame`: `df` checked as `initstudy import` checks a tidy CSV, analysed under the
    settings keys in `settings` (as a settings file gives them)."""
    import tempfile

    from .importing import read_tidy_csv

    if not isinstance(df, pd.DataFrame):
        raise StoreError(f"analyze_frame needs a pandas DataFrame, got {type(df).__name__}")
    with tempfile.TemporaryDirectory() as tmp:  # the import's own checks, row numbers included
        path = Path(tmp) / "frame.csv"
        df.to_csv(path, index=False)
        try:
            tidy, factors = read_tidy_csv(path)
        except InitStudyError as exc:  # rows are numbered as in the file: row 2 is the frame's first row
            raise type(exc)(str(exc).replace(str(path), "the data frame")) from None
    return analyze_logs(tidy, factors, math.ceil(tidy["epoch"].max()), settings_from_dict(settings, "analyze_frame"),
                        name)


# ---------------------------------------------------------------- group-sequential claims

@dataclass(frozen=True)
class SequentialState:
    """A sequential study's looks analysed so far. Each look: {look (1-based), seeds, cells (keys analysed),
    tests: [{claim (index), text, cell (factors), key, seeds, pvalue (the test's raw p), side, z, effect, se,
    decision (sequential.Decision.to_dict)}]}, holding only the claim tests still undecided before it."""
    plan: object  # sequential.Plan
    share: object | None  # sequential.AlphaShare; None before the first look
    design: object | None  # sequential.Design at the alpha each claim test is monitored at
    looks: tuple[dict, ...] = ()

    @property
    def tests(self) -> dict:
        """(claim index, cell key) -> the test's entry at its last look, and its z at every look."""
        out = {}
        for look in self.looks:
            for t in look["tests"]:
                tid = (t["claim"], t["key"])
                out[tid] = {**t, "z_by_look": [*out.get(tid, {}).get("z_by_look", []), t["z"]]}
        return out

    @property
    def going(self) -> set | None:
        """Cells with undecided claim tests after the last look (None before the first: every cell)."""
        if not self.looks:
            return None
        return {t["key"] for t in self.looks[-1]["tests"] if t["decision"]["action"] == "continue"}

    @property
    def finished(self) -> bool:
        return bool(self.looks) and not self.going

    def to_record(self) -> dict:
        plan = {"looks": list(self.plan.looks), "spending": self.plan.spending, "futility": self.plan.futility}
        return {"plan": plan, "alpha_rule": self.share.rule if self.share else None,
                "claim_tests": self.share.claims if self.share else None,
                "alpha_each": self.share.each if self.share else None,
                "design": self.design.to_dict() if self.design else None, "looks": list(self.looks)}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _effect_se(claim, cv, cell) -> float | None:
    """The standard error of a claim test's effect, from its 95% interval (half-width / 1.96); epochs to
    threshold from the two arms' restricted-mean intervals (independent arms: conservative when paired)."""
    lo, hi = cv.ci
    se = None
    if _finite(lo) and _finite(hi):
        se = (hi - lo) / (2 * 1.96)
    elif claim.endpoint == "epochs_to_threshold" and claim.b is not None:
        arms = {a.initializer: a.rmst_ci for a in cell.arms}
        cis = [arms.get(x, (None, None)) for x in (claim.a, claim.b)]
        if all(_finite(c[0]) and _finite(c[1]) for c in cis):
            se = math.sqrt(sum(((c[1] - c[0]) / (2 * 1.96)) ** 2 for c in cis))
    return se if se else None  # a zero-width interval (no spread at all) gives no usable error


def look_tests(study: Study, tidy: pd.DataFrame, columns: list[str], look: int, cells: set | None
               ) -> tuple[list[dict], list[str]]:
    """(every claim test of the cells `cells` (keys; None: all) on the runs of the look's first seeds, the keys
    of the cells analysed)."""
    from .analysis import analyze_cell
    from .sequential import z_from_p
    from .sweep import cell_key

    seeds = study.seeds[:study.sequential.looks[look]]
    sub = tidy[tidy["seed"].isin(seeds)]
    order = [i.label for i in study.initializers]
    analysed = []
    for values, g in sub.groupby(columns, sort=False, dropna=False):
        factors = {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(columns, values)}
        if cells is None or cell_key(factors) in cells:
            analysed.append(analyze_cell(g, factors, study.threshold, study.epochs, order, study.reference,
                                         study.alpha, study.target_effect))
    results = Results(study=study.name, threshold=study.threshold, alpha=study.alpha, cells=tuple(analysed))
    finals = [run_outcomes(in_cell(sub, c.factors), study.threshold, c.budget_epochs) for c in results.cells]
    out = []
    for i, v in enumerate(evaluate_claims(study.claims, results, finals)):
        for cv in v.cells:
            cell = next(c for c in results.cells if c.factors == cv.factors)
            p = cv.pvalue_raw if _finite(cv.pvalue_raw) else None
            out.append({"claim": i, "text": v.claim.text, "cell": cv.factors, "key": cell_key(cv.factors),
                        "seeds": len(seeds), "pvalue": p, "side": cv.side, "z": z_from_p(p, cv.side),
                        "effect": cv.effect if _finite(cv.effect) else None,
                        "se": _effect_se(v.claim, cv, cell)})
    return out, [cell_key(c.factors) for c in results.cells]


def start_sequential(study: Study):
    """The state of a sequential study before its first look."""
    return SequentialState(plan=study.sequential, share=None, design=None)


def decide_look(study: Study, tidy: pd.DataFrame, columns: list[str], state: SequentialState) -> SequentialState:
    """`state` with its next look analysed: the undecided claim tests monitored against the design's bounds.
    The first look fixes the family: the claim x cell tests it finds share alpha (Bonferroni)."""
    from .sequential import boundaries, monitor, share_alpha

    k = len(state.looks)
    plan = state.plan
    pending = None if k == 0 else {tid for tid, t in state.tests.items() if t["decision"]["action"] == "continue"}
    tests, cells = look_tests(study, tidy, columns, k, state.going)
    if pending is not None:
        tests = [t for t in tests if (t["claim"], t["key"]) in pending]
    share, design = state.share, state.design
    if k == 0:
        share = share_alpha(study.alpha, max(1, len(tests)), plan.spending)
        design = boundaries(plan.looks, share.each, plan.spending, True, plan.futility)
    history = state.tests
    for t in tests:
        before = history.get((t["claim"], t["key"]), {})
        zs = [*before.get("z_by_look", []), t["z"]]
        estimates = [None] * (len(zs) - 1) + [t["effect"]]
        ses = [None] * (len(zs) - 1) + [t["se"]]
        t["decision"] = monitor(zs, design, estimates, ses).to_dict()
    look = {"look": k + 1, "seeds": plan.looks[k], "cells": cells, "tests": tests}
    return SequentialState(plan=plan, share=share, design=design, looks=(*state.looks, look))


def check_record(state: SequentialState, record: dict | None, path) -> None:
    """StoreError unless the recorded design and decisions agree with `state`, recomputed from the runs."""
    if not record:
        return
    mine = state.to_record()
    if record.get("plan") != mine["plan"]:
        raise StoreError(f"{path} records the design {record.get('plan')} but the study now asks for "
                         f"{mine['plan']}; a sequential design must not change once looks are taken: restore "
                         "the study's sequential key, or delete the file to decide every look again")
    for old, new in zip(record.get("looks", []), mine["looks"]):
        was = {(t["claim"], t["key"]): t for t in old["tests"]}
        now = {(t["claim"], t["key"]): t for t in new["tests"]}
        differ = [tid for tid in was.keys() | now.keys() if tid not in was or tid not in now
                  or (was[tid]["decision"]["action"], was[tid]["decision"]["crossed"])
                  != (now[tid]["decision"]["action"], now[tid]["decision"]["crossed"])
                  or not math.isclose(was[tid]["z"], now[tid]["z"], rel_tol=1e-9, abs_tol=1e-9)]
        if differ:
            claim, key = sorted(differ, key=str)[0]
            raise StoreError(f"{path}: look {new['look']} recorded other decisions than the runs now give (claim "
                             f"{claim + 1} in cell {key}); the runs changed since it was recorded. Delete the "
                             "file to decide every look again from the runs as they are")


def replay_sequential(study: Study, runs_dir: str | Path, tidy: pd.DataFrame | None = None,
                      columns: list[str] | None = None) -> SequentialState:
    """The looks of a sequential study whose runs are all finished, decided again from the runs and checked
    against the record (StoreError when they disagree): what `report`, `analyze` and a resumed `train` use."""
    from .sweep import SEQUENTIAL_FILE, look_specs, read_sequential

    store = RunStore(runs_dir, study.name)
    if tidy is None:
        tidy, columns, _missing = tidy_frame(expand(study), store)
    state = start_sequential(study)
    for k in range(len(study.sequential.looks)):
        if state.finished or tidy.empty:
            break
        if not all(store.is_finished(s.run_id) for s in look_specs(study, k, state.going)):
            break
        state = decide_look(study, tidy, columns, state)
    record = read_sequential(runs_dir, study.name)
    if record and len(record.get("looks", [])) > len(state.looks):
        raise StoreError(f"{store.root / SEQUENTIAL_FILE} records {len(record['looks'])} looks but the finished "
                         f"runs cover {len(state.looks)}; runs were removed since. Train again, or delete the "
                         "file to decide every look again")
    check_record(state, record, store.root / SEQUENTIAL_FILE)
    return state


_CROSSED_VERDICT = {"upper": "supported", "lower": "contradicted", "futility": "inconclusive", "none": "inconclusive"}


def sequential_verdicts(verdicts: tuple[ClaimVerdict, ...], state: SequentialState) -> tuple[ClaimVerdict, ...]:
    """The claims' verdicts of a sequential study: each claim test's from its decision (supported or contradicted
    at the look it crossed, inconclusive when it stopped for futility, never crossed or is still going on), its
    p the stage-wise adjusted one; the effects stay those of all the cell's runs."""
    from dataclasses import replace

    from .claims import combine
    from .sequential import SPENDING_LABEL
    from .sweep import cell_key

    tests, out = state.tests, []
    if state.share is None:  # no look analysed yet: nothing is decided
        return tuple(combine(v.claim, [replace(cv, verdict="inconclusive", pvalue=None,
                                               note="the first look has not been analysed yet") for cv in v.cells])
                     if v.cells else v for v in verdicts)
    for i, v in enumerate(verdicts):
        if not v.cells:
            out.append(v)
            continue
        cells = []
        for cv in v.cells:
            t = tests.get((i, cell_key(cv.factors)))
            base = cv.test.split(", Holm-adjusted over")[0]
            if t is None:
                cells.append(replace(cv, verdict="inconclusive", pvalue=None, test=base, note=(
                    cv.note + "; " if cv.note else "") + "not monitored: the cell had no runs at the first look"))
                continue
            d = t["decision"]
            verdict = _CROSSED_VERDICT[d["crossed"]] if d["action"] == "stop" else "inconclusive"
            how = (f"{d['crossed']} bound crossed at look {d['look']} ({d['seeds']} seeds per arm): z = {d['z']:.2f}, "
                   f"bound ±{d['boundary']:.2f}" if d["crossed"] in ("upper", "lower") else
                   f"stopped for futility at look {d['look']}: |z| = {abs(d['z']):.2f}" if d["crossed"] == "futility"
                   else f"no bound crossed by the last look ({d['seeds']} seeds per arm): z = {d['z']:.2f}, bound "
                   f"±{d['boundary']:.2f}" if d["action"] == "stop" else
                   f"undecided at look {d['look']} of {len(state.plan.looks)}: z = {d['z']:.2f}, bound "
                   f"±{d['boundary']:.2f}")
            rci = d.get("rci")
            if rci:
                how += f"; repeated confidence interval of the effect at that look [{rci[0]:.3g}, {rci[1]:.3g}]"
            test = (f"{base}, group-sequential ({SPENDING_LABEL[state.plan.spending]} spending, "
                    f"{len(state.plan.looks)} looks) at alpha {state.share.each:.4g} each "
                    f"(Bonferroni over {state.share.claims} claim tests), stage-wise adjusted p")
            cells.append(replace(cv, verdict=verdict, pvalue=d["pvalue"], test=test,
                                 note=(cv.note + "; " if cv.note else "") + how, family_size=state.share.claims))
        out.append(combine(v.claim, cells))
    return tuple(out)


def sequential_summary(study: Study, state: SequentialState, runs_trained: int, arms: int, cells: int) -> dict:
    """The sequential design and its decisions as results.json holds them (its `sequential` key): the plan, the
    alpha rule, the bounds, every claim test's z by look and decision, and the seeds spent against the fixed
    design with the same power (`arms` x `cells` runs per seed)."""
    from .sequential import SPENDING_LABEL, seed_plan

    plan = state.plan
    d = state.design
    out = {"looks": list(plan.looks), "spending": plan.spending, "spending_label": SPENDING_LABEL[plan.spending],
           "futility": plan.futility, "alpha": study.alpha,
           "alpha_rule": state.share.rule if state.share else None,
           "alpha_each": state.share.each if state.share else None,
           "claim_tests": state.share.claims if state.share else 0,
           "design": d.to_dict() if d else None, "looks_analysed": len(state.looks), "finished": state.finished,
           "tests": [], "seeds": None}
    for (i, _key), t in sorted(state.tests.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        dec = t["decision"]
        out["tests"].append({
            "claim": i + 1, "text": t["text"], "cell": t["cell"], "z_by_look": t["z_by_look"],
            "verdict": _CROSSED_VERDICT[dec["crossed"]] if dec["action"] == "stop" else "undecided",
            "action": dec["action"], "look": dec["look"], "seeds": dec["seeds"], "crossed": dec["crossed"],
            "z": dec["z"], "boundary": dec["boundary"], "pvalue": dec["pvalue"], "rci": dec["rci"],
            "effect": t["effect"], "se": t["se"]})
    if d is not None:
        sp = seed_plan(d)
        fixed = math.ceil(sp.fixed_seeds - 1e-9)
        out["seeds"] = {"power": sp.power, "max_seeds": sp.max_seeds, "fixed_seeds": sp.fixed_seeds,
                        "inflation": sp.inflation, "expected_seeds_null": sp.expected_seeds_null,
                        "expected_seeds_effect": sp.expected_seeds_effect, "runs_trained": runs_trained,
                        "runs_fixed": fixed * arms * cells, "runs_max": sp.max_seeds * arms * cells}
    return out
