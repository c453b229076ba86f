"""Logs from any trainer: a tidy CSV (one row per run and epoch) checked and stored for analysis.

Required columns: `initializer`, `seed`, `epoch` (completed epochs, 0 = before
training), `val_acc` (a fraction in [0, 1]). Optional: `run`, `val_loss`,
`train_loss`, `diverged` (true/false, 1/0), and any factor columns (`dataset`,
`model`, `activation`, `depth`, ...), which define the cells. A malformed file
raises `ImportCSVError` naming the row and column; nothing is written then.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .errors import InitStudyError
from .store import write_json

REQUIRED = ("initializer", "seed", "epoch", "val_acc")
OPTIONAL_NUMERIC = ("val_loss", "train_loss")
RESERVED = set(REQUIRED) | set(OPTIONAL_NUMERIC) | {"run", "diverged"}
IMPORTED = "imported.csv"


class ImportCSVError(InitStudyError):
    """A CSV row or column is malformed."""


def _bool(value, row: int) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0", "", "nan"):
        return False
    raise ImportCSVError(f"row {row}, column diverged: {value!r} is not true/false; use true, false, 1 or 0")


def read_tidy_csv(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(tidy frame with TIDY_COLUMNS plus factors, factor columns). Rows are numbered as in the file (header = 1)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ImportCSVError(f"{path} not found; give the path of a tidy CSV") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ImportCSVError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}); fix the file") from None
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise ImportCSVError(f"{path}: missing column {missing[0]!r}; required: {', '.join(REQUIRED)}")
    if raw.empty:
        raise ImportCSVError(f"{path} has a header but no rows; add one row per run and epoch")
    factors = [c for c in raw.columns if c not in RESERVED]
    out = pd.DataFrame(index=raw.index)
    for col, integer in (("seed", True), ("epoch", True), ("val_acc", False),
                         *((c, False) for c in OPTIONAL_NUMERIC if c in raw.columns)):
        values = []
        for i, v in raw[col].items():
            row = i + 2
            try:
                x = float(v) if v.strip() else (math.nan if col in OPTIONAL_NUMERIC else None)
            except ValueError:
                x = None
            if x is None or (col not in OPTIONAL_NUMERIC and not math.isfinite(x)):
                raise ImportCSVError(f"{path}: row {row}, column {col}: {v!r} is not a number; fix the value")
            if integer and (x != int(x) or x < 0):
                raise ImportCSVError(f"{path}: row {row}, column {col}: {v!r} must be a non-negative integer")
            if col == "val_acc" and not 0 <= x <= 1:
                raise ImportCSVError(f"{path}: row {row}, column val_acc: {v!r} is outside [0, 1]; give accuracy "
                                     "as a fraction, not a percentage")
            values.append(int(x) if integer else x)
        out[col] = values
    out["initializer"] = raw["initializer"].str.strip()
    empty = out.index[out["initializer"] == ""]
    if len(empty):
        raise ImportCSVError(f"{path}: row {empty[0] + 2}, column initializer: empty; name the initializer")
    for c in factors:
        out[c] = raw[c].str.strip()
    if "run" in raw.columns:
        out["run"] = raw["run"].str.strip()
    else:  # a run is one initializer x seed x factor combination
        out["run"] = out[["initializer", "seed", *factors]].astype(str).agg("|".join, axis=1)
    div = [_bool(v, i + 2) for i, v in raw["diverged"].items()] if "diverged" in raw.columns else [False] * len(raw)
    out["diverged"] = div
    out["diverged"] = out.groupby("run")["diverged"].transform("any")  # a run diverged if any row says so
    dup = out.duplicated(["run", "epoch"], keep="first")
    if dup.any():
        i = dup.idxmax()
        raise ImportCSVError(f"{path}: row {i + 2}, columns run/epoch: run {out.at[i, 'run']!r} has epoch "
                             f"{out.at[i, 'epoch']} twice; keep one row per run and epoch")
    for c in ("val_loss", "train_loss"):
        if c not in out.columns:
            out[c] = math.nan
    return out.sort_values(["run", "epoch"]).reset_index(drop=True), factors


def import_csv(path: str | Path, runs_dir: str | Path, study: str, budget_epochs: int | None = None) -> dict:
    """Check the CSV, then write `<runs_dir>/<study>/imported.csv` and `import.json`; returns the summary."""
    tidy, factors = read_tidy_csv(path)
    budget = int(tidy["epoch"].max()) if budget_epochs is None else budget_epochs
    if budget < 1:
        raise ImportCSVError("budget_epochs must be >= 1; pass --budget-epochs N")
    if tidy["epoch"].max() > budget:
        raise ImportCSVError(f"{path}: epochs run to {tidy['epoch'].max()} but --budget-epochs is {budget}; raise it")
    root = Path(runs_dir) / study
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{IMPORTED}.tmp"
    tidy.to_csv(tmp, index=False)
    tmp.replace(root / IMPORTED)
    summary = {"source": str(path), "factors": factors, "budget_epochs": budget, "runs": int(tidy["run"].nunique()),
               "rows": len(tidy), "initializers": sorted(tidy["initializer"].unique())}
    write_json(root / "import.json", summary)
    return summary


def load_imported(runs_dir: str | Path, study: str) -> tuple[pd.DataFrame, list[str], int] | None:
    """(tidy, factor columns, budget) of an imported study, or None when the study was not imported."""
    import json

    root = Path(runs_dir) / study
    if not (root / IMPORTED).is_file():
        return None
    meta = json.loads((root / "import.json").read_text())
    tidy = pd.read_csv(root / IMPORTED, dtype={c: str for c in meta["factors"]} | {"run": str, "initializer": str})
    return tidy, meta["factors"], int(meta["budget_epochs"])
