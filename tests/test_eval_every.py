"""Time to threshold finer than an epoch (`eval_every`): the study key, the training loop's evaluation points,
the run store's checks, and an analysis that resolves an effect smaller than an epoch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from initstudy import analyze_frame
from initstudy.config import expand, load_study
from initstudy.errors import StudyError
from initstudy.store import RunStore, history_problem
from initstudy.training import eval_steps, train_run

SMALL = ["dataset=digits", "models=[simple]", "activations=[relu]", "initializers=[kaiming_normal]", "seeds=1",
         "epochs=2", "batch_size=64"]


def test_eval_every_must_be_one_over_k():
    assert load_study("smoke", ["eval_every=0.25"], build=False).eval_every == 0.25
    for bad in ("0.3", "0", "1.5", "0.001", "'x'"):
        with pytest.raises(StudyError, match="eval_every"):
            load_study("smoke", [f"eval_every={bad}"], build=False)


def test_whole_epoch_runs_keep_their_ids():
    whole, quarter = (expand(load_study("smoke", [f"eval_every={e}"], build=False))[0] for e in (1, 0.25))
    assert "eval_every" not in whole.to_dict() and quarter.to_dict()["eval_every"] == 0.25
    assert whole.run_id != quarter.run_id


def test_eval_steps_spread_over_the_epoch():
    assert eval_steps(63, 1.0) == {}
    assert eval_steps(63, 0.25) == {16: (1, 4), 32: (2, 4), 47: (3, 4)}
    assert len(eval_steps(10, 0.1)) == 9
    with pytest.raises(StudyError, match="only 5 steps"):
        eval_steps(5, 0.1)


def test_fractional_evaluation_measures_without_changing_training():
    whole, half = (train_run(expand(load_study("smoke", [*SMALL, f"eval_every={e}"]))[0], accelerator="cpu")
                   for e in (1, 0.5))
    assert [r["epoch"] for r in whole.history] == [0, 1, 2]
    assert [r["epoch"] for r in half.history] == [0, 0.5, 1, 1.5, 2]
    assert all(isinstance(r["epoch"], int) for r in half.history[::2])
    # Evaluating inside an epoch leaves the training itself alone: same weights, same whole-epoch accuracy.
    assert half.final_sha256 == whole.final_sha256
    assert [r["val_acc"] for r in half.history[::2]] == [r["val_acc"] for r in whole.history]
    assert history_problem(half.history, "done", None, 2, 0.5) is None
    assert "epochs must be 0, 0.5, 1" in history_problem(half.history[:1] + half.history[2:], "done", None, 2, 0.5)
    assert "ends at epoch 1.5" in history_problem(half.history[:-1], "done", None, 2, 0.5)


def test_store_reads_fractional_runs_and_refuses_broken_ones(tmp_path):
    study = load_study("smoke", [*SMALL, "eval_every=0.5"])
    spec = expand(study)[0]
    store = RunStore(tmp_path, study.name)
    result = train_run(spec, accelerator="cpu")
    store.start(spec, {})
    store.finish(spec, result.status, result.history, {"seconds": result.seconds, "device": result.device})
    assert store.invalid_reason(spec.run_id) is None
    metrics = store.run_dir(spec.run_id) / "metrics.json"
    rows = json.loads(metrics.read_text())
    rows[1]["epoch"] = 0.7
    metrics.write_text(json.dumps(rows))
    assert "row 1 has epoch 0.7" in store.invalid_reason(spec.run_id)


def _curves(reach: dict[str, np.ndarray], step: float, budget: int = 3) -> pd.DataFrame:
    """Synthetic logs: run i of arm a climbs linearly from 0.1 and crosses 0.9 at time reach[a][i]; evaluated
    every `step` epochs."""
    rows = []
    points = np.round(np.arange(0, budget + step / 2, step), 6)
    for arm, times in reach.items():
        for seed, t in enumerate(times):
            for e in points:
                rows.append({"initializer": arm, "seed": seed, "epoch": e,
                             "val_acc": float(min(0.99, 0.1 + 0.8 * e / t))})
    return pd.DataFrame(rows)


CLAIM = [{"claim": "a is faster", "a": "a", "b": "b", "endpoint": "epochs_to_threshold",
                     "direction": "faster"}]


def test_an_effect_smaller_than_an_epoch_needs_finer_evaluation():
    rng = np.random.default_rng(7)
    n = 10
    planted = {"a": 1.45 + rng.uniform(-0.15, 0.15, n), "b": 1.9 + rng.uniform(-0.08, 0.08, n)}
    twin = {"a": 1.7 + rng.uniform(-0.2, 0.2, n), "b": 1.7 + rng.uniform(-0.2, 0.2, n)}
    verdict = {}
    for name, reach in (("planted", planted), ("twin", twin)):
        for step in (1, 0.25):
            a = analyze_frame(_curves(reach, step), claims=CLAIM)
            verdict[name, step] = a.verdicts[0].verdict
            if step == 0.25:
                km = {arm.initializer: arm.kaplan_meier for arm in a.results.cells[0].arms}
                assert any(0 < e % 1 for e, _ in km["a"])  # the curve steps at fractions of an epoch
    # Whole epochs: every run of either arm first reaches 0.9 at epoch 2, a tie; quarters separate them.
    assert verdict["planted", 1] == "inconclusive"
    assert verdict["planted", 0.25] == "supported"
    assert verdict["twin", 1] == "inconclusive" and verdict["twin", 0.25] == "inconclusive"


def test_fractional_times_survive_a_round_trip_through_the_loggers(tmp_path):
    """Train with eval_every 0.5 and a TensorBoard logger, import those logs with --steps-per-epoch 2: the
    imported analysis sees the same times to threshold as the trained study's."""
    from initstudy.cli import main

    sets = [a for s in ("eval_every=0.5", "loggers=[tensorboard]", "seeds=2") for a in ("--set", s)]
    assert main(["train", "--study", "smoke", "--runs-dir", str(tmp_path), *sets]) == 0
    assert main(["analyze", "--study", "smoke", "--runs-dir", str(tmp_path), *sets]) == 0
    logs = tmp_path / "smoke" / "logs" / "tensorboard"
    assert main(["import", str(logs), "--study", "back", "--runs-dir", str(tmp_path), "--steps-per-epoch", "2",
                 "--run-pattern", "{cell}/{initializer}-s{seed}", "--settings", str(_settings(tmp_path))]) == 0
    assert main(["analyze", "--study", "back", "--runs-dir", str(tmp_path)]) == 0
    trained, imported = (json.loads((tmp_path / s / "report" / "results.json").read_text()) for s in ("smoke", "back"))
    km = [{arm["initializer"]: pts for arm, pts in
           ((a, r["cells"][0]["epochs_to_threshold"]["kaplan_meier"][a["initializer"]]) for a in r["cells"][0]["arms"])}
          for r in (trained, imported)]
    assert km[0] == km[1]
    assert any(p["epoch"] % 1 for pts in km[0].values() for p in pts)


def _settings(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("threshold: 0.8\n")
    return path
