"""The analysis pipeline: a study's runs, imported logs or a data frame in, results and claim verdicts out.

`analyze_study` reads a trained study's finished runs; `analyze_imported` the logs an import stored (under
`imported_settings`), `analyze_dataframe` a notebook's data frame: both through `analyze_logs`, which gives
an `Analysis`. `initstudy analyze` writes what these return; `report.py` renders the same objects.
"""

from __future__ import annotations

import contextlib
import json
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


def analyze_study(study: Study, runs_dir: str | Path) -> tuple[Results, pd.DataFrame, list[str], list[str]]:
    """(results, tidy frame, factor columns, missing run ids) for a study's finished runs."""
    store = RunStore(runs_dir, study.name)
    specs = expand(study)
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
    return analyze_logs(tidy, factors, int(tidy["epoch"].max()), settings_from_dict(settings, "analyze_frame"),
                        name)
