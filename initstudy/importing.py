"""Logs from any trainer: a tidy CSV (one row per run and epoch) checked and stored for analysis.

Required columns: `initializer`, `seed`, `epoch` (completed epochs, 0 = before
training), `val_acc` (a fraction in [0, 1]). Optional: `run`, `val_loss`,
`train_loss`, `diverged` (true/false, 1/0), and any factor columns (`dataset`,
`model`, `activation`, `depth`, ...), which define the cells. A malformed file
(a repeated column, an empty factor, a run id over two initializers, seeds or
cells, an epoch above MAX_EPOCH) raises `ImportCSVError` naming the row and
column; nothing is written then. An import goes into a free study name, or
replaces an earlier import when asked; never into a trained study's folder.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from .errors import InitStudyError, StudyError
from .store import RunStore, write_json

REQUIRED = ("initializer", "seed", "epoch", "val_acc")
MAX_EPOCH = 100_000  # larger epochs (or budgets) are typos, and the analysis would loop over every epoch
MAX_SEED = 2**63 - 1  # seeds are stored as int64
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
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])  # pandas renames a repeated column "x" to "x.1"
    except FileNotFoundError:
        raise ImportCSVError(f"{path} not found; give the path of a tidy CSV") from None
    except IsADirectoryError:
        raise ImportCSVError(f"{path} is a folder; give the path of a tidy CSV file") from None
    except OSError as exc:
        raise ImportCSVError(f"{path} is unreadable ({exc.strerror}); check the path and its permissions") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise ImportCSVError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}); fix the file") from None
    names = [c.strip() for c in header]
    repeated = next((c for c in names if names.count(c) > 1), None)
    if repeated is not None:
        raise ImportCSVError(f"{path}: column {repeated!r} appears twice in the header; keep one")
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
            top = MAX_EPOCH if col == "epoch" else MAX_SEED
            if integer and x > top:
                raise ImportCSVError(f"{path}: row {row}, column {col}: {v!r} is above {top}; fix the value")
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
        empty = out.index[out[c] == ""]
        if len(empty):  # an empty factor would make a cell of its own
            raise ImportCSVError(f"{path}: row {empty[0] + 2}, column {c}: empty; give every row a value or "
                                 "drop the column")
    if "run" in raw.columns:
        out["run"] = raw["run"].str.strip()
        empty = out.index[out["run"] == ""]
        if len(empty):
            raise ImportCSVError(f"{path}: row {empty[0] + 2}, column run: empty; give every row its run id "
                                 "or drop the column")
        for c in ("initializer", "seed", *factors):  # a run is one arm, seed and cell
            mixed = out.groupby("run")[c].transform("nunique") > 1
            if mixed.any():
                i = mixed.idxmax()
                run = out.at[i, "run"]
                rows = out.index[out["run"] == run]
                other = next(j for j in rows if out.at[j, c] != out.at[rows[0], c])
                raise ImportCSVError(f"{path}: run {run!r} has {c} {raw.at[rows[0], c].strip()!r} (row "
                                     f"{rows[0] + 2}) and {raw.at[other, c].strip()!r} (row {other + 2}); a run "
                                     f"is one {c}: give each its own run id")
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


def import_csv(path: str | Path, runs_dir: str | Path, study: str, budget_epochs: int | None = None,
               replace: bool = False) -> dict:
    """Check the CSV, then write `<runs_dir>/<study>/imported.csv` and `import.json`; returns the summary.

    The study name must be free, or hold an earlier import and `replace` be set: an import never shares a
    folder with trained runs, whose results it would shadow.
    """
    root = RunStore(runs_dir, study).root
    tidy, factors = read_tidy_csv(path)
    budget = int(tidy["epoch"].max()) if budget_epochs is None else budget_epochs
    if not 1 <= budget <= MAX_EPOCH:
        raise ImportCSVError(f"budget_epochs must be from 1 to {MAX_EPOCH}, got {budget}; pass --budget-epochs N")
    if tidy["epoch"].max() > budget:
        raise ImportCSVError(f"{path}: epochs run to {tidy['epoch'].max()} but --budget-epochs is {budget}; raise it")
    if (root / IMPORTED).exists() or (root / "import.json").exists():
        if not replace:
            raise ImportCSVError(f"{root} already holds imported logs; pass --replace to replace them, or choose "
                                 "another --study name")
    elif root.is_dir() and any(root.iterdir()):
        raise ImportCSVError(f"{root} holds a trained study's runs, which an import would hide; choose another "
                             "--study name")
    summary = {"source": str(path), "factors": factors, "budget_epochs": budget, "runs": int(tidy["run"].nunique()),
               "rows": len(tidy), "initializers": sorted(tidy["initializer"].unique())}
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{IMPORTED}.tmp"
    try:
        tidy.to_csv(tmp, index=False)
        # import.json first: imported.csv, which marks the study as imported, lands last.
        write_json(root / "import.json", summary)
        tmp.replace(root / IMPORTED)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if created:
            (root / "import.json").unlink(missing_ok=True)
            root.rmdir()
        raise
    return summary


def load_imported(runs_dir: str | Path, study: str) -> tuple[pd.DataFrame, list[str], int] | None:
    """(tidy, factor columns, budget) of an imported study, or None when the study was not imported.

    `study` may be a preset name or a path to a study file (then never an imported study).
    """
    import json

    if not is_imported(runs_dir, study):
        return None
    root = RunStore(runs_dir, study).root
    try:
        meta = json.loads((root / "import.json").read_text())
        tidy = pd.read_csv(root / IMPORTED, dtype={c: str for c in meta["factors"]} | {"run": str, "initializer": str})
        return tidy, meta["factors"], int(meta["budget_epochs"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImportCSVError(f"imported study {root} is unreadable ({type(exc).__name__}); import the CSV again "
                             "with --replace") from None


def is_imported(runs_dir: str | Path, study: str) -> bool:
    """Whether `study` (a name, or a preset or path that is never imported) holds imported logs."""
    try:
        root = RunStore(runs_dir, study).root
    except StudyError:
        return False
    return (root / IMPORTED).is_file()
