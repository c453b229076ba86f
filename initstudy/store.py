"""The run store: one folder per run under `<runs_dir>/<study>/<run_id>/`, every file written atomically.

A run folder holds `config.json` (the resolved RunSpec), `diagnostics.json`
(per-layer statistics at init), `metrics.json` (the per-epoch history) and
`run.json` (status, timings, device, versions, the initstudy version).
`run.json` is written first with status "running" and rewritten last with the
final status, so a run counts as finished only once all its files are in
place; anything else is redone by the next `train`. A finished run is checked
whenever it is read (`invalid_reason`): one whose metrics are not a well-formed
history is reported as invalid and treated as unfinished, never analysed.
One process writes a study's store at a time: `lock()` holds an exclusive
lock on `.lock` that the operating system releases when the holder dies,
however it dies.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .config import RunSpec, check_study_name
from .errors import StoreError

FINISHED = ("done", "diverged")
SCHEMA = "initstudy.run/1"
NOT_APPLICABLE = "n/a"  # a factor column's value for a model that has no such parameter (e.g. depth of simple)
UNKNOWN_VERSION = "unknown version"  # runs recorded before run.json carried the initstudy version


def write_json(path: Path, data) -> None:
    """Write then rename, so a reader sees the old file or the new one, never half of one.

    The file gets the mode of any file this process creates (0o666 less the umask), like the CSV and HTML
    beside it: mkstemp would make it 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_version(info: dict) -> str:
    """The initstudy version a run's run.json records: the worker's when it reports one (`versions`), else the
    driver's that recorded the run; UNKNOWN_VERSION for runs recorded before versions were."""
    worker = info.get("versions")
    version = worker.get("initstudy") if isinstance(worker, dict) else None
    return str(version or info.get("initstudy_version") or UNKNOWN_VERSION)


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def _is_number(x) -> bool:
    """A JSON number (not a bool, not a string); NaN and infinities included."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def history_problem(history, status: str, diverged_epoch=None, epochs=None, eval_every=1) -> str | None:
    """Why `history` (a run's parsed metrics.json) is not a usable record of a `status` run, or None if it is.

    Rows are dicts with epochs 0, e, 2e, ... in order (e = `eval_every`, 1/k of an epoch; whole epochs are
    integers), a val_acc in [0, 1] and finite losses or null; a done run has every point of its budget
    `epochs` (when known). A diverged run stops before its first non-finite row, so its history may end early
    or be empty (a loss already non-finite at epoch 0); rows from `diverged_epoch` on may hold null or
    non-finite values.
    """
    if not isinstance(history, list):
        return f"metrics.json holds {type(history).__name__}, not a list of per-epoch rows"
    if not history and status != "diverged":
        return "metrics.json has no epochs"
    if not _is_number(eval_every) or not 0 < eval_every <= 1:
        return f"config.json has eval_every {eval_every!r}, not a fraction of an epoch"
    per_epoch = round(1 / eval_every)
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            return f"metrics.json row {i} is {type(row).__name__}, not a mapping"
        epoch = row.get("epoch")
        if not _is_number(epoch) or abs(epoch - i / per_epoch) > 1e-6 or i % per_epoch == 0 and \
                not isinstance(epoch, int):
            steps = ", ".join(str(eval_point(j, per_epoch)) for j in range(1, 3))
            return f"metrics.json row {i} has epoch {epoch!r}; epochs must be 0, {steps}, ... in order"
        after = status == "diverged" and (diverged_epoch is None and i == len(history) - 1
                                          or _is_number(diverged_epoch) and epoch >= diverged_epoch)
        for key in ("val_acc", "val_loss", "train_loss"):
            value = row.get(key)
            if after and (value is None or _is_number(value) and not math.isfinite(value)):
                continue
            if key != "val_acc" and value is None:
                continue
            if not _is_number(value) or not math.isfinite(value):
                return f"metrics.json epoch {epoch}: {key} is {value!r}, not a finite number"
            if key == "val_acc" and not 0 <= value <= 1:
                return f"metrics.json epoch {epoch}: val_acc is {value!r}, outside [0, 1]"
    if status == "done" and isinstance(epochs, int) and len(history) != epochs * per_epoch + 1:
        last = history[-1].get("epoch")
        return f"metrics.json ends at epoch {last} but the run was done after {epochs} epochs"
    return None


def eval_point(j: int, per_epoch: int):
    """The epoch of evaluation point (or logged step) j when there are `per_epoch` a epoch, to 6 decimals: an
    int at whole epochs."""
    if j % per_epoch == 0:
        return j // per_epoch
    epoch = round(j / per_epoch, 6)
    return int(epoch) if epoch.is_integer() else epoch


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    config: dict  # RunSpec.to_dict()
    status: str  # "done" | "diverged"
    history: tuple[dict, ...]  # per-epoch rows, epoch 0 first
    info: dict  # the rest of run.json: seconds, device, diverged_epoch, ...


class RunStore:
    def __init__(self, runs_dir: str | Path, study: str):
        self.root = Path(runs_dir) / check_study_name(study)  # never a path outside runs_dir

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def info(self, run_id: str) -> dict:
        """The run's run.json (status, seconds, device, ...), or {} when it has no readable one."""
        try:
            info = _read_json(self.run_dir(run_id) / "run.json")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def status(self, run_id: str) -> str | None:
        """The run's status, or None when it has no readable run.json."""
        return self.info(run_id).get("status")

    def is_finished(self, run_id: str) -> bool:
        """Done or diverged with readable, valid files: a run `train` skips and the analysis uses."""
        return self._read(run_id)[0] is not None

    def invalid_reason(self, run_id: str) -> str | None:
        """Why a run recorded as finished cannot be used (unreadable or malformed files), or None.

        None too for runs that are not recorded as finished (pending, running, failed).
        """
        return self._read(run_id)[1]

    def _read(self, run_id: str) -> tuple[RunRecord | None, str | None]:
        """(the run's record, None) for a usable finished run; (None, reason) for an invalid one; else (None, None)."""
        d = self.run_dir(run_id)
        info = self.info(run_id)
        status = info.get("status")
        if status not in FINISHED:
            return None, None
        files = {}
        for name in ("config.json", "metrics.json"):
            try:
                files[name] = _read_json(d / name)
            except FileNotFoundError:
                return None, f"{name} is missing"
            except (OSError, ValueError) as exc:
                return None, f"{name} is unreadable ({type(exc).__name__})"
        if not isinstance(files["config.json"], dict):
            return None, "config.json is not a mapping"
        reason = history_problem(files["metrics.json"], status, info.get("diverged_epoch"),
                                 files["config.json"].get("epochs"), files["config.json"].get("eval_every", 1))
        if reason:
            return None, reason
        return RunRecord(run_id, files["config.json"], status, tuple(files["metrics.json"]),
                         {k: v for k, v in info.items() if k != "status"}), None

    def start(self, spec: RunSpec, meta: dict) -> None:
        """Clear any half-written attempt and mark the run as running."""
        d = self.run_dir(spec.run_id)
        if d.exists() and not self.is_finished(spec.run_id):
            shutil.rmtree(d)
        write_json(d / "config.json", spec.to_dict())
        # Recorded, not hashed into the run id: an upgrade reuses finished runs, and the report says so.
        write_json(d / "run.json", {"schema": SCHEMA, "run_id": spec.run_id, "status": "running",
                                    "started": time.time(), "initstudy_version": __version__, **meta})

    def finish(self, spec: RunSpec, status: str, history: list[dict], info: dict,
               diagnostics: list[dict] | None = None) -> None:
        d = self.run_dir(spec.run_id)
        if diagnostics is not None:
            write_json(d / "diagnostics.json", diagnostics)
        write_json(d / "metrics.json", history)
        run = _read_json(d / "run.json")
        write_json(d / "run.json", {**run, **info, "status": status, "finished": time.time()})

    def fail(self, spec: RunSpec, error: str, traceback: str | None = None, info: dict | None = None) -> None:
        """Record a run that raised: `error` is one line ("Type: message"), `traceback` the full text."""
        d = self.run_dir(spec.run_id)
        try:
            run = _read_json(d / "run.json")
        except (OSError, ValueError):
            run = {"schema": SCHEMA, "run_id": spec.run_id}
        write_json(d / "run.json", {**run, **(info or {}), "status": "failed", "error": error,
                                    "traceback": traceback, "finished": time.time()})

    @contextlib.contextmanager
    def lock(self):
        """Hold the study's write lock; raises StoreError when another process holds it.

        flock is dropped by the kernel when its holder exits, even by SIGKILL, so a killed
        `train` never leaves a stale lock behind.
        """
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                raise StoreError(f"{self.root} is being written by another `initstudy train` ({holder}); "
                                 "wait for it to finish or stop it, then run this again") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()}")
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, run_id: str) -> RunRecord:
        """A finished, valid run; anything else raises StoreError naming the run and the fix."""
        record, reason = self._read(run_id)
        if record is None:
            d = self.run_dir(run_id)
            what = f"is invalid ({reason})" if reason else f"is not finished (status {self.status(run_id)!r})"
            raise StoreError(f"run {d} {what}; run `initstudy train` again to redo it")
        return record

    def load_diagnostics(self, run_id: str) -> list[dict]:
        """Per-layer init diagnostics of a run ([] for runs recorded without them)."""
        path = self.run_dir(run_id) / "diagnostics.json"
        if not path.exists():
            return []
        try:
            rows = _read_json(path)
        except (OSError, ValueError):
            raise StoreError(f"run store file {path} is unreadable; delete {path.parent} and run train again") from None
        return rows if isinstance(rows, list) else []

    def save_study(self, study_dict: dict) -> None:
        write_json(self.root / "study.json", study_dict)


def factor_columns(specs: list[RunSpec]) -> list[str]:
    """The cell factors of every spec: dataset, model, every model parameter of any spec (first seen first),
    activation. Models with different parameters (plain: depth, width; simple: none) share one list."""
    params: dict[str, None] = {}
    for spec in specs:
        params.update(dict.fromkeys(k for k, _v in spec.model_params))
    return ["dataset", "model", *params, "activation"]


def cell_factors(spec: RunSpec, columns: list[str]) -> dict:
    """The spec's value of each factor column; NOT_APPLICABLE where its model has no such parameter."""
    cell = dict(spec.cell)
    return {c: cell.get(c, NOT_APPLICABLE) for c in columns}


def tidy_frame(specs: list[RunSpec], store: RunStore):
    """(tidy DataFrame, factor columns, missing run ids) for the finished, valid runs among `specs`.

    One row per run and epoch with the cell factors, `initializer` (its label),
    `seed`, `epoch`, `val_acc`, `val_loss`, `train_loss` and `diverged`. Factor
    columns are the union over the specs' models; a model without a parameter
    has NOT_APPLICABLE in its column. Missing runs include invalid ones.
    """
    import pandas as pd

    rows, missing, columns = [], [], factor_columns(specs)
    for spec in specs:
        factors = cell_factors(spec, columns)
        rec, _reason = store._read(spec.run_id)
        if rec is None:
            missing.append(spec.run_id)
            continue
        diverged = rec.status == "diverged"
        # Rows from the divergence on measure nothing; a run that diverged at epoch 0 still counts, as one row
        # without an accuracy, so its arm's divergence rate and censoring see it.
        history = [r for r in rec.history if _is_number(r["val_acc"]) and math.isfinite(r["val_acc"])] or \
            [{"epoch": 0, "val_acc": math.nan}]
        for r in history:
            rows.append({"run": spec.run_id, **factors, "initializer": spec.init.label, "seed": spec.seed,
                         "epoch": r["epoch"], "val_acc": r["val_acc"], "val_loss": r.get("val_loss"),
                         "train_loss": r.get("train_loss"), "diverged": diverged})
    return pd.DataFrame(rows), columns, missing


def diagnostics_frame(specs: list[RunSpec], store: RunStore):
    """One row per finished run and layer: cell factors, initializer, seed and the diagnostics columns."""
    import pandas as pd

    rows, columns = [], factor_columns(specs)
    for spec in specs:
        if not store.is_finished(spec.run_id):
            continue
        for r in store.load_diagnostics(spec.run_id):
            rows.append({**cell_factors(spec, columns), "initializer": spec.init.label, "seed": spec.seed,
                         **{k: v for k, v in r.items() if k != "shape"}})
    return pd.DataFrame(rows)
