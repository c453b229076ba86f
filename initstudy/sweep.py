"""A sweep: hand a study's unfinished runs to an executor and record each in the run store.

Workers only compute (executors.py); the driver is the only writer of the run
store, and writes every file atomically with `run.json`'s final status last
(store.py). So a worker killed at any moment loses only its run in progress,
and a driver killed at any moment leaves every finished run untouched and at
most some half-written ones, which the next `train` clears and redoes: the
same command trains exactly the missing runs. The caller holds the store's
lock while `run_sweep` writes. Nothing here prints. A study with `loggers` also hands
each finished run to those Lightning loggers (`send_to_loggers`).
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

from .config import RunSpec, Study, expand
from .executors import InProcess, Outcome
from .store import FINISHED, RunStore, cell_factors, factor_columns, run_version

COUNTED = ("done", "diverged", "failed", "invalid", "pending")


@dataclass
class SweepEvent:
    kind: str  # "start", "done", "diverged" or "failed"
    spec: RunSpec
    outcome: Outcome | None = None  # None for "start"

    @property
    def error(self) -> str | None:
        return self.outcome.error if self.outcome else None


@dataclass
class Plan:
    todo: list[RunSpec]  # runs to train now, in study order (invalid finished runs included: they are redone)
    finished: int  # runs already done or diverged
    failed: list[RunSpec]  # runs recorded as failed and left alone (no --retry-failed)

    @property
    def total(self) -> int:
        return len(self.todo) + self.finished + len(self.failed)


def study_dict(study: Study) -> dict:
    d = asdict(study)
    d["initializers"] = [i.to_dict() for i in study.initializers]
    return d


def plan(study: Study, runs_dir: str | Path, retry_failed: bool = False, specs: list[RunSpec] | None = None) -> Plan:
    """What `train` would do now: unfinished runs are trained; failed ones only with `retry_failed`. `specs`:
    the runs to consider (default: the whole grid; a sequential look: its own)."""
    store = RunStore(runs_dir, study.name)
    todo, failed, finished = [], [], 0
    for spec in expand(study) if specs is None else specs:
        if store.is_finished(spec.run_id):
            finished += 1
        elif store.status(spec.run_id) == "failed" and not retry_failed:
            failed.append(spec)
        else:
            todo.append(spec)
    return Plan(todo, finished, failed)


def loggers_root(study: Study, runs_dir: str | Path) -> Path:
    """The folder of the study's Lightning loggers: `loggers_dir` under the runs dir, default <study>/logs."""
    return Path(runs_dir) / (study.loggers_dir or f"{study.name}/logs")


def _folder_name(text: str) -> str:
    return re.sub(r"[^\w.=,+()-]", "_", text)


def log_folder(study: Study, runs_dir: str | Path, kind: str, spec: RunSpec) -> Path:
    """`<loggers root>/<kind>/<cell>/<label>-s<seed>`: one folder per run, the cell as factor=value pairs."""
    cell = ",".join(f"{k}={v}" for k, v in spec.cell)
    return loggers_root(study, runs_dir) / kind / _folder_name(cell) / _folder_name(f"{spec.init.label}-s{spec.seed}")


def send_to_loggers(study: Study, runs_dir: str | Path, spec: RunSpec, history: list[dict]) -> None:
    """Hand a finished run's hyperparameters and metrics (step = evaluation: epoch x evaluations an epoch) to the
    study's Lightning loggers.

    The driver does it when the run's outcome arrives, so every executor logs alike and nodes of a Ray
    cluster need no shared folder. A run trained again replaces its earlier logs.
    """
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    hparams = {"initializer": spec.init.label, "seed": spec.seed, **dict(spec.cell), "run_id": spec.run_id}
    for kind in study.loggers:
        folder = log_folder(study, runs_dir, kind, spec)
        if folder.exists():
            shutil.rmtree(folder)
        if kind == "tensorboard":
            logger = TensorBoardLogger(str(folder.parent), name=folder.name, version="", default_hp_metric=False)
        else:
            logger = CSVLogger(str(folder.parent), name=folder.name, version="")
        logger.log_hyperparams(hparams)
        per_epoch = round(1 / spec.eval_every)  # the step counts evaluations: import with steps_per_epoch
        for row in history:
            logger.log_metrics({k: row[k] for k in ("val_acc", "val_loss", "train_loss") if k in row},
                               step=round(row["epoch"] * per_epoch))
        logger.finalize("success")


def run_sweep(study: Study, runs_dir: str | Path, todo: list[RunSpec], executor=None) -> Iterator[SweepEvent]:
    """Train `todo` on `executor` (default: in this process), yielding an event as each run starts and ends.

    Ends are yielded in completion order. A run that raised is recorded as "failed" with its error
    and traceback, and the sweep goes on.
    """
    if not todo:
        return
    executor = executor or InProcess(study.data_dir, study.accelerator, None)
    store = RunStore(runs_dir, study.name)
    store.save_study(study_dict(study))
    meta = {"study": study.name, "parallel": executor.parallel}
    started = set()
    for kind, spec, outcome in executor.outcomes(todo):
        # Ray reports no start: its runs are marked running when their outcome arrives, just before it is written.
        if kind == "start" or spec.run_id not in started:
            store.start(spec, meta)  # clears what an earlier, killed attempt left behind
            started.add(spec.run_id)
        if kind == "start":
            yield SweepEvent("start", spec)
            continue
        if outcome.status == "failed":
            store.fail(spec, outcome.error, outcome.traceback, outcome.info)
        else:
            store.finish(spec, outcome.status, outcome.history, outcome.info, outcome.diagnostics)
            if study.loggers:
                send_to_loggers(study, runs_dir, spec, outcome.history)
        yield SweepEvent(outcome.status, spec, outcome)


@dataclass
class StudyStatus:
    total: int  # runs in the study
    counts: dict  # done, diverged, failed, invalid, pending (never started, running, or left half-written)
    running: int  # pending runs whose run.json says running: training now, or left by a stopped train
    failures: list[dict] = field(default_factory=list)  # run_id, initializer, seed, error (one line)
    eta_seconds: float | None = None  # to train x median run seconds / runs at once; None before any run finished
    invalid: list[dict] = field(default_factory=list)  # run_id, initializer, seed, reason: finished, unusable files
    versions: dict = field(default_factory=dict)  # initstudy version -> finished runs it recorded

    def to_dict(self) -> dict:
        return asdict(self)


def sweep_status(study: Study, runs_dir: str | Path, specs: list[RunSpec] | None = None) -> StudyStatus:
    """Counts by status of the study's runs (`specs`, default the whole grid), the failures' reasons, and the
    estimated time left.

    The estimate assumes the pace of the last `train`: median seconds of the finished runs,
    divided by how many runs that train had going at once.
    """
    store = RunStore(runs_dir, study.name)
    counts = dict.fromkeys(COUNTED, 0)
    running, failures, invalid, versions, seconds, last = 0, [], [], {}, [], (0.0, 1)
    for spec in expand(study) if specs is None else specs:
        info = store.info(spec.run_id)
        state = info.get("status")
        reason = store.invalid_reason(spec.run_id) if state in FINISHED else None
        if state in FINISHED and not reason:
            counts[state] += 1
            version = run_version(info)
            versions[version] = versions.get(version, 0) + 1
            if isinstance(info.get("seconds"), (int, float)):
                seconds.append(info["seconds"])
            last = max(last, (info.get("finished", 0.0), info.get("parallel", 1)))
        elif reason:
            counts["invalid"] += 1
            invalid.append({"run_id": spec.run_id, "initializer": spec.init.label, "seed": spec.seed,
                            "reason": reason})
        elif state == "failed":
            counts["failed"] += 1
            error = str(info.get("error") or "no error recorded").splitlines()[0]  # older records held the traceback
            failures.append({"run_id": spec.run_id, "initializer": spec.init.label, "seed": spec.seed,
                             "error": error})
        else:
            counts["pending"] += 1
            running += state == "running"
    eta, todo = None, counts["pending"] + counts["invalid"]
    if not todo:
        eta = 0.0
    elif seconds:
        eta = round(todo * statistics.median(seconds) / max(1, last[1]), 1)
    return StudyStatus(sum(counts.values()), counts, running, failures, eta, invalid, versions)


# ---------------------------------------------------------------- group-sequential studies: which runs a look needs

SEQUENTIAL_FILE = "sequential.json"  # in the study's folder: the design and every look's decisions


def cell_key(factors: dict) -> str:
    """A cell's factors as one JSON text: how the sequential record names a cell."""
    return json.dumps(factors, sort_keys=True, default=str)


def spec_cells(study: Study) -> list[tuple[RunSpec, str]]:
    """Every run of the grid with its cell's key (factor columns of the whole grid, as the analysis has them)."""
    specs = expand(study)
    columns = factor_columns(specs)
    return [(s, cell_key(cell_factors(s, columns))) for s in specs]


def look_specs(study: Study, look: int, cells: set[str] | None = None) -> list[RunSpec]:
    """The runs look `look` (0-based) of a sequential study needs: its first seeds in the cells `cells` (keys;
    None: every cell)."""
    seeds = set(study.seeds[:study.sequential.looks[look]])
    return [s for s, key in spec_cells(study) if s.seed in seeds and (cells is None or key in cells)]


def read_sequential(runs_dir: str | Path, study: str) -> dict | None:
    """The recorded design and decisions of a sequential study, or None before its first look."""
    path = RunStore(runs_dir, study).root / SEQUENTIAL_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        from .errors import StoreError

        raise StoreError(f"{path} cannot be read ({exc}); delete it and run `initstudy train` again, which "
                         "decides every look again from the finished runs") from None


def continuing_cells(record: dict | None) -> set[str] | None:
    """Cells whose claim tests are not all decided after the recorded looks (None: no look yet, every cell)."""
    if not record or not record.get("looks"):
        return None
    last = record["looks"][-1]
    return {t["key"] for t in last["tests"] if t["decision"]["action"] == "continue"}


def planned_specs(study: Study, record: dict | None) -> list[RunSpec]:
    """The runs a sequential study has asked for so far: in each cell its seeds up to the last look it was
    analysed at, and for the cells that go on, the next look's."""
    looks = study.sequential.looks
    upto: dict[str, int] = {}
    for k, look in enumerate((record or {}).get("looks", [])):
        for key in look["cells"]:
            upto[key] = k
    going = continuing_cells(record)
    done = len((record or {}).get("looks", []))
    out = []
    for spec, key in spec_cells(study):
        k = 0 if going is None else min(done, len(looks) - 1) if key in going else upto.get(key)
        if k is not None and spec.seed in study.seeds[:looks[k]]:
            out.append(spec)
    return out
