"""The run store: one folder per run under `<runs_dir>/<study>/<run_id>/`, every file written atomically.

A run folder holds `config.json` (the resolved RunSpec), `diagnostics.json`
(per-layer statistics at init), `metrics.json` (the per-epoch history) and
`run.json` (status, timings, device, versions).
`run.json` is written first with status "running" and rewritten last with the
final status, so a run counts as finished only once all its files are in
place; anything else is redone by the next `train`. One process writes a
study's store at a time: `lock()` holds an exclusive lock on `.lock` that the
operating system releases when the holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .config import RunSpec
from .errors import StoreError

FINISHED = ("done", "diverged")
SCHEMA = "initstudy.run/1"


def write_json(path: Path, data) -> None:
    """Write then rename, so a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    config: dict  # RunSpec.to_dict()
    status: str  # "done" | "diverged"
    history: tuple[dict, ...]  # per-epoch rows, epoch 0 first
    info: dict  # the rest of run.json: seconds, device, diverged_epoch, ...


class RunStore:
    def __init__(self, runs_dir: str | Path, study: str):
        self.root = Path(runs_dir) / study

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
        return self.status(run_id) in FINISHED and (self.run_dir(run_id) / "metrics.json").is_file()

    def start(self, spec: RunSpec, meta: dict) -> None:
        """Clear any half-written attempt and mark the run as running."""
        d = self.run_dir(spec.run_id)
        if d.exists() and not self.is_finished(spec.run_id):
            shutil.rmtree(d)
        write_json(d / "config.json", spec.to_dict())
        write_json(d / "run.json", {"schema": SCHEMA, "run_id": spec.run_id, "status": "running",
                                    "started": time.time(), **meta})

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
        """A finished run; a corrupt one raises StoreError naming the file and the fix."""
        d = self.run_dir(run_id)
        path = d / "run.json"
        try:
            info = _read_json(path)
            path = d / "config.json"
            config = _read_json(path)
            path = d / "metrics.json"
            history = _read_json(path)
        except (OSError, ValueError) as exc:
            raise StoreError(f"run store file {path} is unreadable ({type(exc).__name__}); delete {d} "
                             "and run train again to redo that run") from None
        if not isinstance(history, list) or not all(isinstance(r, dict) and "epoch" in r and "val_acc" in r
                                                    for r in history):
            raise StoreError(f"run store file {d / 'metrics.json'} has no per-epoch val_acc rows; delete {d} "
                             "and run train again")
        return RunRecord(run_id, config, info.get("status"), tuple(history),
                         {k: v for k, v in info.items() if k != "status"})

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


def tidy_frame(specs: list[RunSpec], store: RunStore):
    """(tidy DataFrame, factor columns, missing run ids) for the finished runs among `specs`.

    One row per run and epoch with the cell factors, `initializer` (its label),
    `seed`, `epoch`, `val_acc`, `val_loss`, `train_loss` and `diverged`.
    """
    import pandas as pd

    rows, missing, factor_columns = [], [], []
    for spec in specs:
        factors = dict(spec.cell)
        factor_columns = factor_columns or list(factors)
        if not store.is_finished(spec.run_id):
            missing.append(spec.run_id)
            continue
        rec = store.load(spec.run_id)
        for r in rec.history:
            rows.append({"run": spec.run_id, **factors, "initializer": spec.init.label, "seed": spec.seed,
                         "epoch": int(r["epoch"]), "val_acc": r["val_acc"], "val_loss": r.get("val_loss"),
                         "train_loss": r.get("train_loss"), "diverged": rec.status == "diverged"})
    return pd.DataFrame(rows), factor_columns, missing


def diagnostics_frame(specs: list[RunSpec], store: RunStore):
    """One row per finished run and layer: cell factors, initializer, seed and the diagnostics columns."""
    import pandas as pd

    rows = []
    for spec in specs:
        if not store.is_finished(spec.run_id):
            continue
        for r in store.load_diagnostics(spec.run_id):
            rows.append({**dict(spec.cell), "initializer": spec.init.label, "seed": spec.seed,
                         **{k: v for k, v in r.items() if k != "shape"}})
    return pd.DataFrame(rows)
