"""Logs from any trainer, read with their own library, checked and stored as a tidy table for analysis.

Formats (`read_logs`, detected from the path when not given):
- `tidy` CSV: one row per run and evaluation; columns `initializer`, `seed`, `epoch` (completed epochs, 0 =
  before training; fractions such as 2.25 for evaluations within an epoch), `val_acc` (a fraction in
  [0, 1]); optional `run`, `val_loss`, `train_loss`, `diverged` (true/false, 1/0) and factor
  columns (`dataset`, `model`, ...), which define the cells.
- `wide` CSV: one column per metric (a W&B history export, say), renamed by `mapping`
  ({"val_acc": "val/acc", "run": "name", ...}); columns that name no standard field are not read.
- `tensorboard`: a folder of runs, each folder holding event files being one run, read with tensorboard's
  `EventAccumulator`; the step is the epoch, or with steps_per_epoch the epoch is step / steps_per_epoch, a
  fraction (rounded to 6 decimals) between whole epochs.
- `lightning-csv`: Lightning CSVLogger folders (`version_N/metrics.csv`, `hparams.yaml`); Lightning's
  0-based `epoch` column k becomes k + 1 completed epochs; a column mapped to `epoch` is taken as given
  (fractions allowed), the `step` column with steps_per_epoch as for tensorboard.
- `mlflow`: a local tracking folder (`mlruns/`) read through `MlflowClient`.
A run's initializer and seed come from `run_pattern` fields matched on its folder (or run) name, else from its
logged hyperparameters; from folders, a run whose losses hold a NaN or infinity counts as diverged. A
malformed log raises `ImportCSVError` naming the file, run or row and the fix; nothing is written then.
An import goes into a free study name, or replaces an earlier import when asked; never into a trained
study's folder. Whole epochs are stored as ints, fractions as floats; the budget (default) is the last
epoch rounded up to a whole epoch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import numbers
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .errors import InitStudyError, StudyError
from .store import RunStore, eval_point, write_json

REQUIRED = ("initializer", "seed", "epoch", "val_acc")
MAX_EPOCH = 100_000  # larger epochs (or budgets) are typos, and the analysis would loop over every epoch
MAX_SEED = 2**63 - 1  # seeds are stored as int64
OPTIONAL_NUMERIC = ("val_loss", "train_loss")
RESERVED = set(REQUIRED) | set(OPTIONAL_NUMERIC) | {"run", "diverged"}
IMPORTED = "imported.csv"
FORMATS = ("tidy", "wide", "tensorboard", "lightning-csv", "mlflow")
MAP_KEYS = ("run", "initializer", "seed", "epoch", "val_acc", "val_loss", "train_loss", "diverged")
METRICS = ("val_acc", "val_loss", "train_loss")
# What --map may rename in each format: CSV columns, or metric tags/keys plus the hyperparameters that hold
# the initializer and seed (the run and its epoch come from the folder layout and the step there).
FORMAT_KEYS = {"tidy": MAP_KEYS, "wide": MAP_KEYS, "tensorboard": (*METRICS, "initializer", "seed"),
               "lightning-csv": (*METRICS, "epoch", "initializer", "seed"),
               "mlflow": (*METRICS, "initializer", "seed")}
FORMAT_HINT = "pass --format " + "|".join(FORMATS)


class ImportCSVError(InitStudyError):
    """A log file, folder, run or value is malformed, or the import options do not fit it."""


@dataclass(frozen=True)
class ImportedLogs:
    tidy: pd.DataFrame  # run, initializer, seed, epoch, val_acc, val_loss, train_loss, diverged + factors
    factors: list[str]  # factor columns, which define the cells
    provenance: dict  # source, format, mapping, run_pattern, steps_per_epoch, sha256, files, imported_at


def parse_map(items: list[str] | None) -> dict[str, str]:
    """`["val_acc=val/acc", ...]` (the CLI's --map) -> {"val_acc": "val/acc"}; names checked."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ImportCSVError(f"--map {item!r} is not NAME=COLUMN; write e.g. --map val_acc=val/acc")
        if key not in MAP_KEYS:
            raise ImportCSVError(f"--map {key}: unknown name; use one of {', '.join(MAP_KEYS)}")
        out[key] = value
    return out


def _check_mapping(mapping: dict | None, fmt: str) -> dict[str, str]:
    mapping = dict(mapping or {})
    for key, value in mapping.items():
        if key not in MAP_KEYS:
            raise ImportCSVError(f"--map {key}: unknown name; use one of {', '.join(MAP_KEYS)}")
        if key not in FORMAT_KEYS[fmt]:
            raise ImportCSVError(f"--map {key} does not apply to {fmt} logs; there it may name "
                                 f"{', '.join(FORMAT_KEYS[fmt])}")
        if not isinstance(value, str) or not value.strip():
            raise ImportCSVError(f"--map {key}: give a column, tag or parameter name, e.g. --map {key}=NAME")
    return mapping


def compile_run_pattern(pattern: str) -> re.Pattern:
    """'{initializer}-s{seed}' -> a regex with one group per field; literal text around fields matches as is.

    `seed` matches digits, other fields any text without '/'; fields other than initializer and seed
    become factor columns.
    """
    parts = re.split(r"\{([^{}]*)\}", pattern)
    regex, seen = "", []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            if "{" in part or "}" in part:
                raise ImportCSVError(f"--run-pattern {pattern!r} has an unmatched brace; write fields as "
                                     "{initializer} and {seed}")
            regex += re.escape(part)
            continue
        if not part.isidentifier() or (part in RESERVED and part not in ("initializer", "seed")):
            raise ImportCSVError(f"--run-pattern {pattern!r}: field {{{part}}} is not a usable name; use "
                                 "{initializer}, {seed} or a factor name such as {model}")
        if part in seen:
            raise ImportCSVError(f"--run-pattern {pattern!r}: field {{{part}}} appears twice; keep one")
        seen.append(part)
        regex += f"(?P<{part}>\\d+)" if part == "seed" else f"(?P<{part}>[^/]+?)"
    if not seen:
        raise ImportCSVError(f"--run-pattern {pattern!r} has no fields; write e.g. '{{initializer}}-s{{seed}}'")
    return re.compile(regex)


def _match_run(regex: re.Pattern, pattern: str, name: str) -> dict[str, str]:
    """Fields of the innermost component of the run's path (or of the whole path) that the pattern matches."""
    for candidate in [*reversed(name.split("/")), name]:
        m = regex.fullmatch(candidate)
        if m:
            return m.groupdict()
    raise ImportCSVError(f"run {name!r} does not match --run-pattern {pattern!r}; rename the folder or change "
                         "the pattern")


# ---- tidy and wide CSV -------------------------------------------------------------------------------------

def _bool(value, where: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0", "", "nan"):
        return False
    raise ImportCSVError(f"{where}, column diverged: {value!r} is not true/false; use true, false, 1 or 0")


def _epoch_text(x) -> str:
    """1 for 1.0 (a float64 column of mixed whole and fractional epochs), 2.25 as is."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _check_tidy(raw: pd.DataFrame, src, where: list[str], factors: list[str]) -> pd.DataFrame:
    """Checked tidy frame from `raw` (str columns: REQUIRED, optional ones, factors); `where[i]` names row i."""
    out = pd.DataFrame(index=raw.index)
    for col, integer in (("seed", True), ("epoch", False), ("val_acc", False),
                         *((c, False) for c in OPTIONAL_NUMERIC if c in raw.columns)):
        values = []
        for i, v in raw[col].items():
            try:
                x = float(v) if v.strip() else (math.nan if col in OPTIONAL_NUMERIC else None)
            except ValueError:
                x = None
            if x is None or (col not in OPTIONAL_NUMERIC and not math.isfinite(x)):
                raise ImportCSVError(f"{src}: {where[i]}, column {col}: {v!r} is not a number; fix the value")
            if integer and (x != int(x) or x < 0):
                raise ImportCSVError(f"{src}: {where[i]}, column {col}: {v!r} must be a non-negative integer")
            if col == "epoch" and x < 0:
                raise ImportCSVError(f"{src}: {where[i]}, column epoch: {v!r} is negative; give completed epochs "
                                     "(0 = before training, fractions such as 2.25 allowed)")
            top = MAX_EPOCH if col == "epoch" else MAX_SEED
            if col in ("seed", "epoch") and x > top:
                raise ImportCSVError(f"{src}: {where[i]}, column {col}: {v!r} is above {top}; fix the value")
            if col == "epoch":  # whole epochs as ints, so integer logs give the same frame as ever
                x = int(x) if x.is_integer() else x
            if col == "val_acc" and not 0 <= x <= 1:
                raise ImportCSVError(f"{src}: {where[i]}, column val_acc: {v!r} is outside [0, 1]; give accuracy "
                                     "as a fraction, not a percentage")
            values.append(int(x) if integer else x)
        out[col] = values
    out["initializer"] = raw["initializer"].str.strip()
    empty = out.index[out["initializer"] == ""]
    if len(empty):
        raise ImportCSVError(f"{src}: {where[empty[0]]}, column initializer: empty; name the initializer")
    for c in factors:
        out[c] = raw[c].str.strip()
        empty = out.index[out[c] == ""]
        if len(empty):  # an empty factor would make a cell of its own
            raise ImportCSVError(f"{src}: {where[empty[0]]}, column {c}: empty; give every row a value or "
                                 "drop the column")
    if "run" in raw.columns:
        out["run"] = raw["run"].str.strip()
        empty = out.index[out["run"] == ""]
        if len(empty):
            raise ImportCSVError(f"{src}: {where[empty[0]]}, column run: empty; give every row its run id "
                                 "or drop the column")
        for c in ("initializer", "seed", *factors):  # a run is one arm, seed and cell
            mixed = out.groupby("run")[c].transform("nunique") > 1
            if mixed.any():
                i = mixed.idxmax()
                run = out.at[i, "run"]
                rows = out.index[out["run"] == run]
                other = next(j for j in rows if out.at[j, c] != out.at[rows[0], c])
                raise ImportCSVError(f"{src}: run {run!r} has {c} {raw.at[rows[0], c].strip()!r} "
                                     f"({where[rows[0]]}) and {raw.at[other, c].strip()!r} ({where[other]}); a run "
                                     f"is one {c}: give each its own run id")
    else:  # a run is one initializer x seed x factor combination
        out["run"] = out[["initializer", "seed", *factors]].astype(str).agg("|".join, axis=1)
    div = [_bool(v, f"{src}: {where[i]}") for i, v in raw["diverged"].items()] if "diverged" in raw.columns \
        else [False] * len(raw)
    out["diverged"] = div
    out["diverged"] = out.groupby("run")["diverged"].transform("any")  # a run diverged if any row says so
    dup = out.duplicated(["run", "epoch"], keep="first")
    if dup.any():
        i = dup.idxmax()
        raise ImportCSVError(f"{src}: {where[i]}, columns run/epoch: run {out.at[i, 'run']!r} has epoch "
                             f"{_epoch_text(out.at[i, 'epoch'])} twice; keep one row per run and epoch")
    for c in OPTIONAL_NUMERIC:
        if c not in out.columns:
            out[c] = math.nan
    return out.sort_values(["run", "epoch"]).reset_index(drop=True)


def _read_csv_text(path: Path) -> tuple[pd.DataFrame, list[str]]:
    what = "a CSV file"
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), [])  # pandas renames a repeated column "x" to "x.1"
    except FileNotFoundError:
        raise ImportCSVError(f"{path} not found; give the path of {what}") from None
    except IsADirectoryError:
        raise ImportCSVError(f"{path} is a folder; give the path of {what}, or {FORMAT_HINT}") from None
    except OSError as exc:
        raise ImportCSVError(f"{path} is unreadable ({exc.strerror}); check the path and its permissions") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as exc:
        raise ImportCSVError(f"{path} is not a readable CSV ({str(exc).splitlines()[0]}); fix the file") from None
    names = [c.strip() for c in header]
    repeated = next((c for c in names if names.count(c) > 1), None)
    if repeated is not None:
        raise ImportCSVError(f"{path}: column {repeated!r} appears twice in the header; keep one")
    raw.columns = [c.strip() for c in raw.columns]
    return raw, names


def _csv_logs(path: Path, fmt: str, mapping: dict[str, str]) -> tuple[pd.DataFrame, list[str], dict]:
    raw, names = _read_csv_text(path)
    for key, column in mapping.items():
        if column not in raw.columns:
            raise ImportCSVError(f"{path}: no column {column!r} (--map {key}={column}); columns: "
                                 f"{', '.join(names)}")
    used = {k: mapping.get(k, k) for k in MAP_KEYS if mapping.get(k, k) in raw.columns}
    if fmt == "wide":  # only the named fields: a history export's other columns vary by row
        raw = raw[list(used.values())].copy()
        raw.columns = list(used)
    else:  # a column renamed onto a standard name replaces the column of that name
        raw = raw.drop(columns=[k for k, v in used.items() if v != k and k in raw.columns])
        raw = raw.rename(columns={v: k for k, v in used.items()})
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        hint = f"pass --map {missing[0]}=COLUMN" if fmt == "wide" or mapping else f"required: {', '.join(REQUIRED)}"
        raise ImportCSVError(f"{path}: missing column {missing[0]!r}; columns: {', '.join(names)}; {hint}")
    if raw.empty:
        raise ImportCSVError(f"{path} has a header but no rows; add one row per run and epoch")
    factors = [c for c in raw.columns if c not in RESERVED]
    tidy = _check_tidy(raw, path, [f"row {i + 2}" for i in range(len(raw))], factors)
    return tidy, factors, used


def read_tidy_csv(path: str | Path) -> tuple[pd.DataFrame, list[str]]:
    """(tidy frame with TIDY_COLUMNS plus factors, factor columns). Rows are numbered as in the file (header = 1)."""
    tidy, factors, _ = _csv_logs(Path(path), "tidy", {})
    return tidy, factors


# ---- runs from folders: tensorboard, lightning-csv, mlflow -------------------------------------------------

def _series(events, run: str, name: str, steps_per_epoch: int | None, shift: int = 0) -> dict[float, float]:
    """[(step, value)] in logged order -> {epoch: value}; a step logged twice keeps its last value.

    The epoch is step / steps_per_epoch rounded to 6 decimals (as the run store writes evaluation points),
    else step + shift; an int when whole.
    """
    out, last, first_step = {}, None, {}
    for logged, value in events:
        try:  # integer steps stay exact (int64 steps beyond 2**53 would not survive a float)
            step = int(logged) if isinstance(logged, numbers.Integral) else float(logged)
        except (TypeError, ValueError):
            step = math.nan
        if not math.isfinite(step):
            raise ImportCSVError(f"run {run!r}, {name}: step or epoch {str(logged)!r} is not a number; log it as a "
                                 "number with each metric")
        step = int(step) if float(step).is_integer() else step
        if last is not None and step < last:
            raise ImportCSVError(f"run {run!r}, {name}: step {step} comes after step {last}; steps must increase "
                                 "(a restarted run? keep one log per run)")
        last = step
        if steps_per_epoch:
            if not isinstance(step, int):
                raise ImportCSVError(f"run {run!r}, {name}: step {step} is not a whole number; --steps-per-epoch "
                                     "counts whole steps: drop it if the column holds epochs")
            epoch = eval_point(step, steps_per_epoch)
            if first_step.setdefault(epoch, step) != step:  # only with millions of steps per epoch
                raise ImportCSVError(f"run {run!r}, {name}: steps {first_step[epoch]} and {step} both round to "
                                     f"epoch {epoch}; log fewer evaluations per epoch")
        else:
            epoch = step + shift
        try:
            out[epoch] = float(value)
        except (TypeError, ValueError):
            raise ImportCSVError(f"run {run!r}, {name}: value {value!r} at step {step} is not a number; fix the "
                                 "log") from None
    return out


def _run_rows(run: str, series: dict[str, dict[float, float]], fields: dict[str, str]) -> list[dict]:
    """One raw (str) tidy row per epoch with a val_acc; losses joined on the epoch (NaN when not logged)."""
    losses = [v for k, s in series.items() if k != "val_acc" for v in s.values()]
    diverged = any(not math.isfinite(v) for v in losses)  # a NaN or infinite loss
    if not series["val_acc"]:
        raise ImportCSVError(f"run {run!r} logged no val_acc values; log validation accuracy, or remove the run")
    rows = []
    for epoch, acc in series["val_acc"].items():
        row = {"run": run, **fields, "epoch": str(epoch), "val_acc": repr(acc), "diverged": str(diverged)}
        for k in OPTIONAL_NUMERIC:
            value = series.get(k, {}).get(epoch)
            row[k] = "" if value is None else repr(value)
        rows.append(row)
    return rows


def _identify(run: str, hparams: dict, regex, pattern: str | None, mapping: dict[str, str],
              where: str) -> dict[str, str]:
    """initializer, seed and pattern factors of a run: the run pattern's fields first, then hyperparameters."""
    fields = _match_run(regex, pattern, run) if regex is not None else {}
    for key in ("initializer", "seed"):
        if key in fields:
            continue
        name = mapping.get(key, key)
        value = hparams.get(name)
        if value is None or str(value).strip() == "":
            source = f"--run-pattern {pattern!r} has no {{{key}}}" if pattern else "no --run-pattern given"
            raise ImportCSVError(f"run {run!r}: no {key} found ({source}; {name!r} is not among {where}); pass "
                                 f"--run-pattern '{{initializer}}-s{{seed}}' or --map {key}=NAME")
        if key == "seed" and isinstance(value, float) and value.is_integer():
            value = int(value)
        fields[key] = str(value)
    return fields


def _missing(run: str, what: str, name: str, available, key: str) -> ImportCSVError:
    have = ", ".join(sorted(available)) or "none"
    return ImportCSVError(f"run {run!r} has no {what} {name!r}; it has: {have}; pass --map {key}=NAME")


def _metric_names(mapping: dict[str, str]) -> dict[str, str]:
    return {k: mapping.get(k, k) for k in METRICS}


def _yaml_hparams(path: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ImportCSVError(f"{path} is unreadable ({type(exc).__name__}); fix or remove the file") from None
    return data if isinstance(data, dict) else {}


def _tb_runs(root: Path) -> list[Path]:
    dirs = {p.parent for p in root.rglob("*tfevents*") if p.is_file()}
    return sorted(dirs)


def _tb_load(folder: Path, run: str, read: list[Path]):
    """(EventAccumulator, hparams) of one folder's event files, every value kept."""
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    files = sorted(p for p in folder.iterdir() if p.is_file() and "tfevents" in p.name)
    read.extend(files)
    for f in files:  # the reader stops silently at a bad record: compare what it read with the size
        valid = sum(len(r) + 16 for r in RawEventFileLoader(str(f)).Load())
        if valid != f.stat().st_size:
            raise ImportCSVError(f"{f}: only {valid} of {f.stat().st_size} bytes are readable events; the "
                                 "file is corrupt or was cut off while written: remove it or log the run again")
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0},
                              purge_orphaned_data=False)  # keep every value; a step going back is an error
    acc.Reload()
    hparams = {}
    try:
        for content in acc.PluginTagToContent("hparams").values():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            for key, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                if kind in ("number_value", "string_value", "bool_value"):
                    hparams[key] = getattr(value, kind)
    except KeyError:  # no hparams logged
        pass
    tags = acc.Tags()
    if not tags["scalars"] and not tags["tensors"] and not hparams:
        raise ImportCSVError(f"run {run!r}: its event files hold no scalars (empty or unreadable); remove the "
                             "folder or log the run again")
    return acc, hparams


def _tensorboard(root: Path, mapping, regex, pattern, steps_per_epoch, read: list[Path]) -> list[dict]:
    """Scalars (or scalar tensors, as TF2 writes them) of each run folder, read with `EventAccumulator`.

    torch's `SummaryWriter.add_hparams` logs into a sub-folder of the run: a sub-folder with hparams and no
    `val_acc` gives its hparams to the run above it instead of being a run.
    """
    from tensorboard.util import tensor_util

    runs = _tb_runs(root)
    if not runs:
        raise ImportCSVError(f"{root} holds no TensorBoard event files (events.out.tfevents.*); give the folder "
                             f"of runs, or {FORMAT_HINT}")
    names = _metric_names(mapping)
    loaded = {}
    for folder in runs:
        run = folder.relative_to(root).as_posix() if folder != root else root.name
        loaded[folder] = (run, *_tb_load(folder, run, read))
    for folder in runs:
        run, acc, hparams = loaded[folder]
        tags = acc.Tags()
        if folder.parent in loaded and hparams and names["val_acc"] not in tags["scalars"] + tags["tensors"]:
            loaded[folder.parent][2].update({k: v for k, v in hparams.items() if k not in loaded[folder.parent][2]})
            del loaded[folder]
    rows = []
    for folder, (run, acc, hparams) in loaded.items():
        tags = acc.Tags()
        scalars, tensors = set(tags["scalars"]), set(tags["tensors"])
        yaml_file = folder / "hparams.yaml"  # Lightning's TensorBoardLogger writes one beside the events
        if yaml_file.is_file():
            read.append(yaml_file)
            hparams = {**_yaml_hparams(yaml_file), **hparams}
        fields = _identify(run, hparams, regex, pattern, mapping, "its hparams")
        series = {}
        for key, tag in names.items():
            if tag in scalars:
                events = [(e.step, e.value) for e in acc.Scalars(tag)]
            elif tag in tensors:
                events = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            elif key == "val_acc" or key in mapping:
                raise _missing(run, "tag", tag, scalars | tensors, key)
            else:
                continue
            series[key] = _series(events, run, f"tag {tag!r}", steps_per_epoch)
        rows += _run_rows(run, series, fields)
    return rows


def _lightning(root: Path, mapping, regex, pattern, steps_per_epoch, read: list[Path]) -> list[dict]:
    """Each folder holding a metrics.csv is a run; a row holds the metrics logged at its step, NaN elsewhere."""
    files = sorted(root.rglob("metrics.csv"))
    if not files:
        raise ImportCSVError(f"{root} holds no Lightning CSVLogger metrics.csv; give the logger's save_dir, or "
                             f"{FORMAT_HINT}")
    names = _metric_names(mapping)
    rows = []
    for f in files:
        folder = f.parent
        run = folder.relative_to(root).as_posix() if folder != root else root.name
        read.append(f)
        hparams = {}
        if (folder / "hparams.yaml").is_file():
            read.append(folder / "hparams.yaml")
            hparams = _yaml_hparams(folder / "hparams.yaml")
        fields = _identify(run, hparams, regex, pattern, mapping, "its hparams.yaml")
        try:
            table = pd.read_csv(f)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
            raise ImportCSVError(f"{f} is not a readable CSV ({str(exc).splitlines()[0]}); fix or remove the "
                                 "file") from None
        epoch_col = mapping.get("epoch", "epoch")
        use_step = steps_per_epoch is not None or ("epoch" not in mapping and epoch_col not in table.columns)
        epoch_col = "step" if use_step else epoch_col
        if epoch_col not in table.columns:
            raise _missing(run, "column", epoch_col, table.columns, "epoch")
        # Lightning's own `epoch` column is the 0-based epoch in progress: a metric logged as epoch k is
        # measured after k + 1 completed epochs. A column the user maps, or the step, is taken as given.
        shift = 0 if use_step or "epoch" in mapping else 1
        series = {}
        for key, column in names.items():
            if column not in table.columns:
                if key == "val_acc" or key in mapping:
                    raise _missing(run, "column", column, table.columns, key)
                continue
            logged = table[table[column].notna()]
            if logged[epoch_col].isna().any():
                raise ImportCSVError(f"{f}: a row with {column} has no {epoch_col}; log the epoch with the metric")
            series[key] = _series(zip(logged[epoch_col], logged[column]), run, f"column {column!r}",
                                  steps_per_epoch if use_step else None, shift)
        rows += _run_rows(run, series, fields)
    return rows


@contextmanager
def _file_store_allowed():
    """MLflow 3 refuses its file store unless asked; reading one is what the user asked for."""
    saved = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = saved


def _mlflow_root(path: Path) -> Path:
    return path / "mlruns" if (path / "mlruns").is_dir() and not _is_mlruns(path) else path


def _is_mlruns(path: Path) -> bool:
    return any((d / "meta.yaml").is_file() for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _mlflow(root: Path, mapping, regex, pattern, steps_per_epoch, read: list[Path]) -> list[dict]:
    """Runs of every active experiment; params give initializer and seed, metric histories the values."""
    if not _is_mlruns(root):
        raise ImportCSVError(f"{root} is not an MLflow tracking folder (no experiment with a meta.yaml); give the "
                             f"mlruns folder, or {FORMAT_HINT}")
    trash = root / ".trash"
    had_trash = trash.exists()
    try:
        with _file_store_allowed():
            from mlflow.entities import ViewType
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=root.resolve().as_uri())  # never the default ./mlruns
            try:
                experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
                runs, token = [], None
                while True:
                    page = client.search_runs([e.experiment_id for e in experiments],
                                              run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
                    runs += page
                    token = page.token
                    if not token:
                        break
                names = [r.info.run_name or r.info.run_id for r in runs]
                unique = len(set(names)) == len(names)
                rows = []
                for r, name in zip(runs, names):
                    run = name if unique else r.info.run_id
                    fields = _identify(run, r.data.params, regex, pattern, mapping, "its params")
                    series = {}
                    for key, metric in _metric_names(mapping).items():
                        if metric not in r.data.metrics:
                            if key == "val_acc" or key in mapping:
                                raise _missing(run, "metric", metric, r.data.metrics, key)
                            continue
                        history = client.get_metric_history(r.info.run_id, metric)
                        series[key] = _series([(m.step, m.value) for m in history], run, f"metric {metric!r}",
                                              steps_per_epoch)
                    rows += _run_rows(run, series, fields)
            except MlflowException as exc:
                raise ImportCSVError(f"{root}: MLflow cannot read it ({str(exc).splitlines()[0]}); give a local "
                                     "tracking folder written by mlflow") from None
    finally:
        if not had_trash and trash.is_dir() and not any(trash.iterdir()):
            trash.rmdir()  # the file store makes one on opening; leave the folder as it was
    if not rows:
        raise ImportCSVError(f"{root} holds no MLflow runs; give the tracking folder the runs were logged to")
    read.extend(p for p in root.rglob("*") if p.is_file() and "artifacts" not in p.relative_to(root).parts
                and not p.relative_to(root).parts[0].startswith("."))
    return rows


def detect_format(path: Path) -> str:
    """The format of a log file or folder (see the module docstring); ImportCSVError when it cannot tell."""
    if path.is_file():
        if path.suffix.lower() == ".csv":
            raw, _ = _read_csv_text(path)
            return "tidy" if all(c in raw.columns for c in REQUIRED) else "wide"
    elif path.is_dir():
        if _is_mlruns(_mlflow_root(path)):
            return "mlflow"
        if any(p.is_file() for p in path.rglob("*tfevents*")):
            return "tensorboard"
        if any(path.rglob("metrics.csv")):
            return "lightning-csv"
    if path.is_dir():
        raise ImportCSVError(f"{path} is a folder; give the path of a tidy CSV file, or a folder holding TensorBoard "
                             f"event files, Lightning metrics.csv files or an MLflow mlruns layout; or {FORMAT_HINT}")
    raise ImportCSVError(f"cannot tell the format of {path}; {FORMAT_HINT}")


def _sha256(files: list[Path], base: Path) -> str:
    """SHA-256 over each file's relative path, a NUL, its size, a NUL and its bytes, in sorted path order."""
    h = hashlib.sha256()
    rel = sorted({(p.relative_to(base).as_posix() if p != base else p.name, p) for p in files})
    for name, p in rel:
        data = p.read_bytes()
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def read_logs(path: str | Path, fmt: str | None = None, mapping: dict[str, str] | None = None,
              run_pattern: str | None = None, steps_per_epoch: int | None = None) -> ImportedLogs:
    """Read and check the logs at `path` (a file or folder) into the tidy form; see the module docstring.

    mapping: standard name -> the column, tag, metric or parameter holding it. run_pattern: fields matched on
    each run's folder (or MLflow run) name. steps_per_epoch: the logged step is divided by it to give the
    epoch, fractional between whole epochs (step 10 of 40 = epoch 0.25). A step logged twice keeps the value
    logged last.
    """
    given = path
    path = Path(path)
    if not path.exists():
        raise ImportCSVError(f"{path} not found; give the path of a log file or folder")
    if fmt is None:
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise ImportCSVError(f"unknown format {fmt!r}; {FORMAT_HINT}")
    mapping = _check_mapping(mapping, fmt)
    if steps_per_epoch is not None and (isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int)
                                        or steps_per_epoch < 1):
        raise ImportCSVError(f"--steps-per-epoch must be a positive integer, got {steps_per_epoch!r}")
    if fmt in ("tidy", "wide"):
        if run_pattern is not None or steps_per_epoch is not None:
            raise ImportCSVError(f"--run-pattern and --steps-per-epoch do not apply to {fmt} CSV files; drop them "
                                 "(the CSV's own columns give run, initializer, seed and epoch)")
        if not path.is_file():
            raise ImportCSVError(f"{path} is a folder; give the path of a CSV file, or {FORMAT_HINT}")
        tidy, factors, used = _csv_logs(path, fmt, mapping)
        files, base = [path], path.parent
    else:
        if not path.is_dir():
            raise ImportCSVError(f"{path} is a file; {fmt} logs are a folder of runs: give the folder")
        regex = compile_run_pattern(run_pattern) if run_pattern is not None else None
        files = []
        reader = {"tensorboard": _tensorboard, "lightning-csv": _lightning, "mlflow": _mlflow}[fmt]
        base = _mlflow_root(path) if fmt == "mlflow" else path
        rows = reader(base, mapping, regex, run_pattern, steps_per_epoch, files)
        raw = pd.DataFrame(rows).fillna("")
        factors = [g for g in regex.groupindex if g not in ("initializer", "seed")] if regex is not None else []
        where = [f"run {r!r} epoch {e}" for r, e in zip(raw["run"], raw["epoch"])]
        tidy = _check_tidy(raw, path, where, factors)
        used = {**_metric_names(mapping), **{k: mapping.get(k, k) for k in ("initializer", "seed")
                                            if regex is None or k not in regex.groupindex}}
        used = {k: v for k, v in used.items() if k in ("val_acc", "initializer", "seed") or k in mapping
                or tidy[k].notna().any()}
        if fmt == "lightning-csv":
            used["epoch"] = "step" if steps_per_epoch is not None else mapping.get("epoch", "epoch")
    provenance = {"source": str(Path(given).absolute()), "format": fmt, "mapping": used,
                  "run_pattern": run_pattern, "steps_per_epoch": steps_per_epoch,
                  "sha256": _sha256(files, base), "files": len(set(files)),
                  "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return ImportedLogs(tidy, factors, provenance)


def import_logs(path: str | Path, runs_dir: str | Path, study: str, *, fmt: str | None = None,
                mapping: dict[str, str] | None = None, run_pattern: str | None = None,
                steps_per_epoch: int | None = None, budget_epochs: int | None = None, replace: bool = False) -> dict:
    """Read the logs, then write `<runs_dir>/<study>/imported.csv` and `import.json`; returns the summary.

    The study name must be free, or hold an earlier import and `replace` be set: an import never shares a
    folder with trained runs, whose results it would shadow.
    """
    root = RunStore(runs_dir, study).root
    logs = read_logs(path, fmt, mapping, run_pattern, steps_per_epoch)
    tidy, factors = logs.tidy, logs.factors
    top = tidy["epoch"].max()
    budget = math.ceil(top) if budget_epochs is None else budget_epochs  # the analysis counts whole epochs
    if not 1 <= budget <= MAX_EPOCH:
        raise ImportCSVError(f"budget_epochs must be from 1 to {MAX_EPOCH}, got {budget}; pass --budget-epochs N")
    if top > budget:
        raise ImportCSVError(f"{path}: epochs run to {_epoch_text(top)} but --budget-epochs is {budget}; raise it "
                             f"to {math.ceil(top)} or more")
    if (root / IMPORTED).exists() or (root / "import.json").exists():
        if not replace:
            raise ImportCSVError(f"{root} already holds imported logs; pass --replace to replace them, or choose "
                                 "another --study name")
    elif root.is_dir() and any(root.iterdir()):
        raise ImportCSVError(f"{root} holds a trained study's runs, which an import would hide; choose another "
                             "--study name")
    summary = {"source": str(path), "factors": factors, "budget_epochs": budget, "runs": int(tidy["run"].nunique()),
               "rows": len(tidy), "initializers": sorted(tidy["initializer"].unique()),
               "provenance": logs.provenance}
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


def import_csv(path: str | Path, runs_dir: str | Path, study: str, budget_epochs: int | None = None,
               replace: bool = False) -> dict:
    """`import_logs` of a CSV file (tidy, or wide when its columns say so)."""
    return import_logs(path, runs_dir, study, budget_epochs=budget_epochs, replace=replace)


def load_import_meta(runs_dir: str | Path, study: str) -> dict:
    """The import.json of an imported study (summary plus "provenance"; older imports lack the latter)."""
    root = RunStore(runs_dir, study).root
    if not is_imported(runs_dir, study):
        raise ImportCSVError(f"{root} holds no imported logs; run initstudy import first")
    try:
        return json.loads((root / "import.json").read_text())
    except (OSError, ValueError) as exc:
        raise ImportCSVError(f"imported study {root} is unreadable ({type(exc).__name__}); import the logs again "
                             "with --replace") from None


def load_imported(runs_dir: str | Path, study: str) -> tuple[pd.DataFrame, list[str], int] | None:
    """(tidy, factor columns, budget) of an imported study, or None when the study was not imported.

    `study` may be a preset name or a path to a study file (then never an imported study).
    """
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
