"""Sequential studies end to end: the `sequential:` key checked at load, `train` look by look with early stops,
decisions recorded and reproduced on resume, `status`, and the report's sequential block and results.json.

The planted study has two cells: in relu a bound claim (zeros at most 0.5) that its first look decides (4 of 4
runs below the bound: exact sign test p = 2/2^4 = 0.125, z = 1.534 against the first Pocock bound 1.237 at
alpha 0.5/2 per claim test), and in tanh a claim whose log-rank test has no events (threshold 0.999 is never
reached), so it stays undecided to the last look."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
import yaml

from initstudy.analysis import SCHEMA_FILE
from initstudy.cli import main
from initstudy.config import load_study
from initstudy.sequential import boundaries, share_alpha, z_from_p
from initstudy.store import RunStore
from initstudy.sweep import SEQUENTIAL_FILE, look_specs

STUDY = {
    "name": "seqtiny", "dataset": "digits", "models": ["simple"], "activations": ["relu", "tanh"],
    "initializers": ["zeros", "xavier_normal"], "seeds": 5, "epochs": 1, "batch_size": 64, "lr": 0.05,
    "threshold": 0.999, "alpha": 0.5, "accelerator": "cpu",
    "sequential": {"looks": [4, 5], "spending": "pocock"},
    "claims": [
        {"claim": "Zero initialization stays near chance.", "a": "zeros", "endpoint": "final_accuracy",
         "at_most": 0.5, "where": {"activation": "relu"}},
        {"claim": "Xavier reaches the threshold sooner.", "a": "xavier_normal", "b": "zeros",
         "endpoint": "epochs_to_threshold", "direction": "faster", "where": {"activation": "tanh"}},
    ],
}


def _write(path, **changes):
    path.write_text(yaml.safe_dump({**STUDY, **changes}))
    return path


@pytest.fixture(scope="module")
def seq_trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("seq")
    study = _write(root / "seqtiny.yaml")
    runs = root / "runs"
    assert main(["train", "--study", str(study), "--runs-dir", str(runs)]) == 0
    return study, runs


def _record(runs):
    return json.loads((runs / "seqtiny" / SEQUENTIAL_FILE).read_text())


def _copy_with_record(runs, tmp_path, edit):
    """A copy of the trained runs dir whose sequential record `edit(record)` has changed."""
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy)
    rec = _record(copy)
    edit(rec)
    (copy / "seqtiny" / SEQUENTIAL_FILE).write_text(json.dumps(rec))
    return copy


def _decisions(record):
    return [[(t["claim"], t["key"], t["decision"]["action"], t["decision"]["crossed"], round(t["z"], 12))
             for t in look["tests"]] for look in record["looks"]]


@pytest.mark.parametrize("sequential, claims, words", [
    ({"looks": [4, 3], "spending": "pocock"}, None, "strictly increasing"),
    ({"looks": [4, 6], "spending": "pocock"}, None, "the study allows 5"),
    ({"looks": [2, 4], "spending": "haybittle"}, None, "unknown spending function 'haybittle'"),
    ({"looks": [2, 4], "spending": "pocock"}, [], "declares none"),
])
def test_bad_sequential_keys_fail_at_load_with_one_line(tmp_path, capsys, sequential, claims, words):
    changes = {"sequential": sequential} | ({} if claims is None else {"claims": claims})
    study = _write(tmp_path / "bad.yaml", **changes)
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(study), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert not runs.exists()  # nothing written


def test_the_fixed_design_is_unchanged_without_the_key(tmp_path):
    study = load_study(str(_write(tmp_path / "fixed.yaml", sequential=None)), build=False)
    assert study.sequential is None


def test_train_stops_decided_cells_at_their_look(seq_trained):
    study_file, runs = seq_trained
    record = _record(runs)
    design = boundaries([4, 5], 0.25, "pocock")
    assert record["design"]["bounds"] == pytest.approx(design.bounds)
    assert record["alpha_each"] == share_alpha(0.5, 2, "pocock").each == 0.25
    first, second = record["looks"]
    assert [t["claim"] for t in first["tests"]] == [0, 1] and len(first["cells"]) == 2
    relu = first["tests"][0]
    assert relu["cell"]["activation"] == "relu" and relu["pvalue"] == pytest.approx(0.125)
    assert relu["z"] == pytest.approx(z_from_p(0.125, 1)) == pytest.approx(1.5341, abs=1e-4)
    assert relu["decision"]["action"] == "stop" and relu["decision"]["crossed"] == "upper"
    assert relu["decision"]["pvalue"] == pytest.approx(0.125)  # stage-wise p at the first look is the naive p
    # Only the tanh cell went on; its test never crossed (no events) and ended at the last look.
    assert [t["claim"] for t in second["tests"]] == [1] and len(second["cells"]) == 1
    assert second["tests"][0]["decision"] | {"z": 0} == second["tests"][0]["decision"] | {
        "action": "stop", "crossed": "none", "look": 2, "z": 0}
    study = load_study(str(study_file), build=False)
    store = RunStore(runs, "seqtiny")
    five = look_specs(study, 1)
    trained = {(s.activation, s.seed) for s in five if store.is_finished(s.run_id)}
    assert ("relu", 4) not in trained and ("tanh", 4) in trained and len(trained) == 9  # 18 runs of 20
    assert sum(store.is_finished(s.run_id) for s in five) == 18


def test_resumed_train_reproduces_the_recorded_decisions(seq_trained, tmp_path, capsys):
    _study, runs = seq_trained
    study = _write(tmp_path / "seqtiny.yaml")
    before = _decisions(_record(runs))
    # Interrupted after look 1: the record holds one look and the tanh cell's fifth seed is untrained.
    copy = _copy_with_record(runs, tmp_path, lambda rec: rec.update(looks=rec["looks"][:1]))
    spec = next(s for s in look_specs(load_study(str(study), build=False), 1)
                if s.activation == "tanh" and s.seed == 4)
    shutil.rmtree(copy / "seqtiny" / spec.run_id)
    capsys.readouterr()
    assert main(["train", "--study", str(study), "--runs-dir", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "look 2 of 2 (5 seeds per arm): 1 of 10 runs to train" in out  # the finished runs are kept
    assert _decisions(_record(copy)) == before
    # Without its record the same runs give the same decisions, and nothing is trained.
    (copy / "seqtiny" / SEQUENTIAL_FILE).unlink()
    assert main(["train", "--study", str(study), "--runs-dir", str(copy)]) == 0
    assert "to train" not in capsys.readouterr().out
    assert _decisions(_record(copy)) == before


def test_a_record_that_disagrees_with_the_runs_is_refused(seq_trained, tmp_path, capsys):
    _study, runs = seq_trained
    study = _write(tmp_path / "seqtiny.yaml")
    copy = _copy_with_record(runs, tmp_path,
                             lambda rec: rec["looks"][0]["tests"][0]["decision"].update(action="continue"))
    assert main(["train", "--study", str(study), "--runs-dir", str(copy)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "look 1 recorded other decisions" in err and "claim 1" in err
    # A design changed after its looks were taken is refused too.
    changed = _write(tmp_path / "changed.yaml", sequential={"looks": [3, 5], "spending": "pocock"})
    assert main(["train", "--study", str(changed), "--runs-dir", str(runs)]) == 2
    assert "must not change" in capsys.readouterr().err


def test_status_shows_the_look_and_the_decisions(seq_trained, capsys):
    study, runs = seq_trained
    assert main(["status", "--study", str(study), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "18 runs: 18 done" in out and "0 pending" in out  # the grid's 2 unneeded runs are not pending
    assert "look 2 of 2 ended; 2 claim test(s) decided, 0 pending" in out
    assert "decided: claim 1 in model=simple, activation=relu: supported at look 1 (4 seeds), z = 1.53, bound 1.24" in out
    assert "2 runs of the grid not needed" in out
    assert main(["status", "--study", str(study), "--runs-dir", str(runs), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sequential"]["current_look"] == 2 and doc["sequential"]["finished"] is True
    assert [t["claim"] for t in doc["sequential"]["decided"]] == [0, 1]


def test_status_mid_study_shows_the_current_look(seq_trained, tmp_path, capsys):
    _study, runs = seq_trained
    study = _write(tmp_path / "seqtiny.yaml")
    copy = _copy_with_record(runs, tmp_path, lambda rec: rec.update(looks=rec["looks"][:1]))
    assert main(["status", "--study", str(study), "--runs-dir", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "look 2 of 2 in progress; 1 claim test(s) decided, 1 pending" in out
    assert "pending: claim 2 in model=simple, activation=tanh" in out


def test_report_writes_the_design_and_decisions(seq_trained, capsys):
    study, runs = seq_trained
    assert main(["report", "--study", str(study), "--runs-dir", str(runs)]) == 0
    html = (runs / "seqtiny" / "report" / "report.html").read_text()
    assert "Sequential design." in html and "Lan-DeMets Pocock-type" in html and "Bonferroni" in html
    assert "1.237" in html and "1.426" in html  # the bounds table
    assert "Sequential decisions" in html and "upper bound crossed at look 1" in html
    assert "Seeds spent." in html and "trained 18 runs" in html
    doc = json.loads((runs / "seqtiny" / "report" / "results.json").read_text())
    schema = json.loads(SCHEMA_FILE.read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
    assert errors == []
    seq = doc["sequential"]
    assert [(t["claim"], t["verdict"], t["look"], t["crossed"]) for t in seq["tests"]] == [
        (1, "supported", 1, "upper"), (2, "inconclusive", 2, "none")]
    assert seq["seeds"]["runs_trained"] == 18 and seq["seeds"]["runs_max"] == 20
    assert [c["verdict"] for c in doc["claims"]] == ["supported", "inconclusive"]
    cell = doc["claims"][0]["cells"][0]
    assert cell["pvalue_holm"] == pytest.approx(0.125) and "stage-wise" in cell["test"]
    # Broken: a decision the schema does not know is refused.
    seq["tests"][0]["crossed"] = "sideways"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(doc))


def test_a_futility_bound_stops_a_flat_claim_at_the_first_look(tmp_path, capsys):
    # The tanh test has z = 0 (no events): below the non-binding futility bound 0.5, so its cell stops at look
    # 1 with the relu cell, and no run of the fifth seed is trained.
    study = _write(tmp_path / "seqtiny.yaml", sequential={"looks": [4, 5], "spending": "pocock", "futility": 0.5})
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(study), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "2 of 2 claim tests decided" in out and "stopped for futility at look 1" in out
    record = _record(runs)
    assert len(record["looks"]) == 1 and record["design"]["futility"] == 0.5
    assert [t["decision"]["crossed"] for t in record["looks"][0]["tests"]] == ["upper", "futility"]
    store = RunStore(runs, "seqtiny")
    assert not any(store.is_finished(s.run_id) for s in look_specs(load_study(str(study), build=False), 1)
                   if s.seed == 4)
    assert main(["analyze", "--study", str(study), "--runs-dir", str(runs)]) == 0
    seq = json.loads((runs / "seqtiny" / "report" / "results.json").read_text())["sequential"]
    assert seq["futility"] == 0.5 and [t["verdict"] for t in seq["tests"]] == ["supported", "inconclusive"]
    assert seq["seeds"]["runs_trained"] == 16
    assert main(["report", "--study", str(study), "--runs-dir", str(runs)]) == 0
    html = (runs / "seqtiny" / "report" / "report.html").read_text()
    assert "non-binding futility bound stops a claim test at an interim look when |z| &lt; 0.5" in html


def test_the_sequential_preset_is_the_default_study_with_looks():
    import dataclasses

    default, seq = load_study("default", build=False), load_study("sequential", build=False)
    assert default.sequential is None and seq.sequential.looks == (12, 20)
    assert seq.sequential.spending == "pocock" and seq.sequential.futility is None

    def grid(study):
        return {k: v for k, v in dataclasses.asdict(study).items()
                if k not in ("name", "source", "sequential", "seeds", "description")}

    assert grid(seq) == grid(default)  # same grid and claims: keep sequential.yaml in step with default.yaml
    # 12 paired seeds (smallest exact p 2/2^12, z = 3.487) can cross the first look's bound at alpha over the
    # claim tests.
    cells = [{"model": m, "activation": a} for m in seq.models for a in seq.activations]
    arms = {i.label for i in seq.initializers}
    n = sum(sum(all(cell[k] in v for k, v in c.where if k in cell) for cell in cells)
            for c in seq.claims if {c.a, c.b} - {None} <= arms)  # the claim x cell tests
    assert n >= 10
    design = boundaries(seq.sequential.looks, seq.alpha / n, "pocock")
    assert design.bounds[0] < z_from_p(2 / 2 ** 12, 1) and design.bounds[-1] < z_from_p(2 / 2 ** 20, 1)
