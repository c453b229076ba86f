"""A sweep: train every unfinished run of a study in order, recording each in the run store.

`run_sweep` yields one `SweepEvent` per run as it starts and ends, so the CLI can
draw a progress bar; nothing here prints. A run that raises is recorded as
"failed" with its error and the sweep goes on; Ctrl-C leaves the current run
unfinished (redone next time) and every finished run untouched.
"""

from __future__ import annotations

import platform
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .config import RunSpec, Study, expand
from .data import load_dataset
from .store import RunStore
from .training import RunResult, train_run


@dataclass
class SweepEvent:
    kind: str  # "start", "done", "diverged" or "failed"
    spec: RunSpec
    index: int  # 1-based position among the runs to train now
    total: int  # runs to train now
    result: RunResult | None = None
    error: str | None = None


def versions() -> dict:
    import pytorch_lightning
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": pytorch_lightning.__version__, "platform": platform.platform()}


def study_dict(study: Study) -> dict:
    d = asdict(study)
    d["initializers"] = [i.to_dict() for i in study.initializers]
    return d


def plan(study: Study, runs_dir: str | Path) -> tuple[list[RunSpec], int]:
    """(runs still to train, number already finished)."""
    store = RunStore(runs_dir, study.name)
    specs = expand(study)
    todo = [s for s in specs if not store.is_finished(s.run_id)]
    return todo, len(specs) - len(todo)


def run_sweep(study: Study, runs_dir: str | Path, todo: list[RunSpec] | None = None) -> Iterator[SweepEvent]:
    """Train `todo` (default: every unfinished run), yielding an event before and after each."""
    store = RunStore(runs_dir, study.name)
    if todo is None:
        todo, _ = plan(study, runs_dir)
    if not todo:
        return
    # Load the data before writing anything: a missing dataset fails with nothing written.
    load_dataset(study.dataset, study.data_dir, study.split_seed)
    store.save_study(study_dict(study))
    meta = {"study": study.name, "versions": versions()}
    for index, spec in enumerate(todo, 1):
        yield SweepEvent("start", spec, index, len(todo))
        store.start(spec, meta)
        try:
            result = train_run(spec, study.data_dir, study.accelerator)
        except Exception as exc:  # one bad run must not stop the sweep
            error = f"{type(exc).__name__}: {exc}"
            store.fail(spec, error + "\n" + traceback.format_exc())
            yield SweepEvent("failed", spec, index, len(todo), error=error)
            continue
        store.finish(spec, result.status, result.history,
                     {"diverged_epoch": result.diverged_epoch, "seconds": round(result.seconds, 3),
                      "device": result.device}, result.diagnostics)
        yield SweepEvent(result.status, spec, index, len(todo), result=result)
