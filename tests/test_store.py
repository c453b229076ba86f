"""The run store without training: runs written straight into a store, then read back, planned, analysed.

A finished run is checked when it is read (invalid ones are reported and redone, never analysed); studies with
several models get one factor column per model parameter; files get the umask's mode; runs record the
initstudy version that wrote them.
"""

import json
import os
import stat

import numpy as np
import pytest

import initstudy
from initstudy.cli import main
from initstudy.config import expand, load_study
from initstudy.errors import ReportError, StoreError, StudyError
from initstudy.executors import Outcome
from initstudy.pipeline import analyze_study
from initstudy.report import build_report, weasyprint, write_report
from initstudy.store import NOT_APPLICABLE, RunStore, history_problem, tidy_frame
from initstudy.sweep import plan, run_sweep, sweep_status

from .conftest import write_study

EPOCHS = 4


def history(spec, study, rng) -> list[dict]:
    """A plausible learning curve: later initializers of the study learn a little faster."""
    arm = [i.label for i in study.initializers].index(spec.init.label)
    acc = 0.1 + (0.6 + 0.1 * arm) * (1 - np.exp(-np.arange(study.epochs + 1))) + rng.normal(0, 0.02, study.epochs + 1)
    return [{"epoch": e, "train_loss": 2.3 / (e + 1), "val_loss": 2.4 / (e + 1), "val_acc": float(np.clip(a, 0, 1))}
            for e, a in enumerate(acc)]


def fake_runs(study, runs_dir, seed: int = 0) -> RunStore:
    """Every run of `study` recorded as done, as a sweep records it, with synthetic histories."""
    store, rng = RunStore(runs_dir, study.name), np.random.default_rng(seed)
    for spec in expand(study):
        store.start(spec, {"study": study.name, "parallel": 1})
        store.finish(spec, "done", history(spec, study, rng), {"seconds": 1.0, "device": "cpu"})
    return store


def tiny(tmp_path, **changes):
    path = write_study(tmp_path / "tiny.yaml", epochs=EPOCHS, **changes)
    return path, load_study(str(path))


# ---------------------------------------------------------------- a finished run is checked when read

BAD_METRICS = {
    "NaN accuracy": '[{"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": NaN}, '
                    '{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.5}]',
    "accuracy 5.0": '[{"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": 0.1}, '
                    '{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 5.0}]',
    "accuracy a string": '[{"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": "0.9"}]',
    "accuracy a bool": '[{"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": true}]',
    "no epochs": "[]",
    "not a list": '{"epoch": 0, "val_acc": 0.5}',
    "epochs from 1": '[{"epoch": 1, "train_loss": 2.3, "val_loss": 2.3, "val_acc": 0.1}]',
    "epoch skipped": '[{"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": 0.1}, '
                     '{"epoch": 2, "train_loss": 1.0, "val_loss": 1.0, "val_acc": 0.5}]',
    "NaN loss": '[{"epoch": 0, "train_loss": NaN, "val_loss": 2.3, "val_acc": 0.1}]',
}
REASONS = {"NaN accuracy": "val_acc is nan", "accuracy 5.0": "outside [0, 1]", "accuracy a string": "'0.9'",
           "accuracy a bool": "val_acc is True", "no epochs": "no epochs", "not a list": "not a list",
           "epochs from 1": "epoch 1", "epoch skipped": "epoch 2", "NaN loss": "train_loss is nan"}


@pytest.mark.parametrize("case", list(BAD_METRICS))
def test_invalid_finished_run_is_reported_never_analysed_and_redone(tmp_path, capsys, case):
    study_file, study = tiny(tmp_path)
    runs = tmp_path / "runs"
    store = fake_runs(study, runs)
    victim = expand(study)[4]
    (store.run_dir(victim.run_id) / "metrics.json").write_text(BAD_METRICS[case])
    assert store.status(victim.run_id) == "done"  # run.json still says finished

    reason = store.invalid_reason(victim.run_id)
    assert reason and REASONS[case] in reason
    assert not store.is_finished(victim.run_id)
    with pytest.raises(StoreError, match="invalid"):
        store.load(victim.run_id)
    # Never analysed: the run is missing from the tidy frame, so from every test.
    tidy, _cols, missing = tidy_frame(expand(study), store)
    assert missing == [victim.run_id] and victim.run_id not in set(tidy["run"])
    results = analyze_study(study, runs)[0]
    arm = next(a for a in results.cells[0].arms if a.initializer == victim.init.label)
    assert arm.n_runs == len(study.seeds) - 1

    # Reported: status counts and names it, with the reason; the report's threats list it.
    st = sweep_status(study, runs)
    assert st.counts["invalid"] == 1 and st.counts["done"] == len(expand(study)) - 1
    assert st.invalid == [{"run_id": victim.run_id, "initializer": victim.init.label, "seed": victim.seed,
                           "reason": reason}]
    assert main(["status", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "1 invalid" in out and f"invalid {victim.run_id}" in out and REASONS[case] in out
    html = build_report(study, runs).html
    assert "have invalid files and are left out" in html and victim.run_id in html

    # Redone: train plans it, and recording it again clears what the folder held.
    p = plan(study, runs)
    assert [s.run_id for s in p.todo] == [victim.run_id] and p.finished == len(expand(study)) - 1
    (store.run_dir(victim.run_id) / "stray.txt").write_text("left by the bad attempt")
    events = list(run_sweep(study, runs, p.todo, _Fake(history(victim, study, np.random.default_rng(1)))))
    assert [e.kind for e in events] == ["start", "done"]
    assert store.is_finished(victim.run_id) and store.invalid_reason(victim.run_id) is None
    assert not (store.run_dir(victim.run_id) / "stray.txt").exists()
    assert sweep_status(study, runs).counts["invalid"] == 0


class _Fake:
    """An executor that 'trains' every run to a given history."""

    parallel = 1

    def __init__(self, rows):
        self.rows = rows

    def outcomes(self, specs):
        for spec in specs:
            yield "start", spec, None
            yield "end", spec, Outcome("done", self.rows, [], {"seconds": 1.0, "device": "cpu"})


def test_real_diverged_histories_and_null_losses_are_valid():
    row = {"epoch": 0, "train_loss": 2.3, "val_loss": 2.3, "val_acc": 0.1}
    ok = [dict(row), {**row, "epoch": 1, "val_acc": 0.6}]
    assert history_problem(ok, "done", None, 1) is None
    assert history_problem([dict(row, train_loss=None)], "done") is None  # a log without training loss
    # training.py stops before the first non-finite row: a diverged history ends early, or is empty when the
    # loss was not finite at epoch 0.
    assert history_problem(ok, "diverged", 2, 10) is None
    assert history_problem([], "diverged", 0, 10) is None
    # Rows from the divergence on may be null or NaN; before it they may not.
    bad_tail = [dict(row), {"epoch": 1, "train_loss": float("nan"), "val_loss": None, "val_acc": None}]
    assert history_problem(bad_tail, "diverged", 1, 10) is None
    assert "val_acc" in history_problem(bad_tail, "diverged", 2, 10)
    assert "val_acc" in history_problem(bad_tail, "done", None, 1)
    # A done run has every epoch of its budget.
    assert "ends at epoch 1" in history_problem(ok, "done", None, 3)


def test_a_run_diverged_at_epoch_0_counts_as_diverged(tmp_path):
    _file, study = tiny(tmp_path)
    runs = tmp_path / "runs"
    store = fake_runs(study, runs)
    victim = expand(study)[0]
    store.finish(victim, "diverged", [], {"diverged_epoch": 0})
    assert store.is_finished(victim.run_id)
    cell = analyze_study(study, runs)[0].cells[0]
    arm = next(a for a in cell.arms if a.initializer == victim.init.label)
    assert arm.n_runs == len(study.seeds) and arm.n_diverged == 1


# ---------------------------------------------------------------- several models in one study

@pytest.mark.parametrize("models, params", [
    (["plain", "simple"], {"plain": {"depth": 3, "width": 8}, "simple": {}}),
    (["simple", "plain"], {"plain": {"depth": 3, "width": 8}, "simple": {}}),
    (["vgg", "plain"], {"vgg": {"depth": 3, "width": 8, "bn": True}, "plain": {"depth": 3, "width": 8}}),
])
def test_studies_with_several_models_keep_each_models_parameters(tmp_path, models, params):
    _file, study = tiny(tmp_path, models=models, depth=3, width=8)
    runs = tmp_path / "runs"
    fake_runs(study, runs)
    results, tidy, columns, missing = analyze_study(study, runs)
    union = [k for m in models for k in params[m]]
    assert columns == ["dataset", "model", *dict.fromkeys(union), "activation"] and not missing
    assert not tidy[columns].isna().any().any()
    assert [c.factors["model"] for c in results.cells] == models
    for cell in results.cells:
        own = params[cell.factors["model"]]
        assert {k: cell.factors[k] for k in columns if k in union} == \
            {k: own.get(k, NOT_APPLICABLE) for k in dict.fromkeys(union)}
        assert len(cell.arms) == 3 and all(a.n_runs == len(study.seeds) for a in cell.arms)
    report = build_report(study, runs)
    for m in models:  # each cell's title names its own parameters only
        own = ", ".join(f"{k} {v}" for k, v in params[m].items())
        assert f"model {m}{', ' + own if own else ''}, activation relu" in report.html
    assert "n/a" not in report.html.split('id="methods"')[1].split('id="results"')[0]
    if "vgg" in models:
        assert "depth=3, width=8, bn=True" in report.html


# ---------------------------------------------------------------- one initializer under two labels

def test_same_initializer_under_two_labels_is_refused(tmp_path, capsys):
    inits = [{"name": "normal", "std": 0.01, "label": "small"}, {"name": "normal", "std": 0.01, "label": "tiny"}]
    study_file = write_study(tmp_path / "dup.yaml", initializers=inits)
    with pytest.raises(StudyError, match="'small' and 'tiny' are the same initializer"):
        load_study(str(study_file))
    assert main(["train", "--study", str(study_file), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "remove one or change an option" in err
    assert not (tmp_path / "runs").exists()
    # Different options, or a default spelled out under another label: two arms, two run ids... or one.
    two = load_study(str(write_study(tmp_path / "ok.yaml", initializers=[
        {"name": "normal", "std": 0.01, "label": "small"}, {"name": "normal", "std": 0.02, "label": "big"}])))
    assert len({s.run_id for s in expand(two)}) == len(expand(two))
    with pytest.raises(StudyError, match="'xavier_normal' and 'x' are the same"):
        load_study(str(write_study(tmp_path / "d2.yaml", initializers=["xavier_normal",
                                                                        {"name": "xavier_normal", "label": "x"}])))


# ---------------------------------------------------------------- file modes

def test_json_csv_html_and_pdf_outputs_get_the_umask_mode(tmp_path):
    _file, study = tiny(tmp_path)
    runs = tmp_path / "runs"
    try:
        weasyprint()
        pdf = True
    except ReportError:  # no pango here: the PDF is checked where it can be printed
        pdf = False
    old = os.umask(0o027)
    try:
        store = fake_runs(study, runs)
        paths, _report = write_report(study, runs, pdf=pdf)
    finally:
        os.umask(old)
    assert ("pdf" in paths) == pdf
    run = store.run_dir(expand(study)[0].run_id)
    files = [run / "run.json", run / "config.json", run / "metrics.json", store.root / "study.json", *paths.values()]
    # mkstemp made the JSON files 0600 whatever the umask; open() gives 0o666 & ~umask, as for the CSV and HTML.
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if p.exists()}
    assert {"results.json", "tidy.csv", "report.html", "run.json"} <= set(modes)
    assert set(modes.values()) == {"0o640"}, modes
    assert not list(store.root.rglob("*.tmp"))


# ---------------------------------------------------------------- the initstudy version of each run

def test_runs_record_the_initstudy_version_and_a_mixed_report_says_so(tmp_path, capsys):
    study_file, study = tiny(tmp_path)
    runs = tmp_path / "runs"
    store = fake_runs(study, runs)
    specs = expand(study)
    assert initstudy.__version__ not in ("", "unknown")
    assert all(store.info(s.run_id)["initstudy_version"] == initstudy.__version__ for s in specs)
    assert all("initstudy_version" not in json.loads((store.run_dir(s.run_id) / "config.json").read_text())
               for s in specs)  # not in the config, so not in the run id: an upgrade reuses runs, visibly
    report = build_report(study, runs)
    assert "several initstudy versions" not in report.html
    assert sweep_status(study, runs).versions == {initstudy.__version__: len(specs)}

    # One run from an older release, one recorded before runs carried a version, and one whose worker (a Ray
    # node) reported another version than the driver that recorded it: the worker's counts.
    for spec, version in ((specs[0], "0.0.9"), (specs[1], None)):
        path = store.run_dir(spec.run_id) / "run.json"
        info = json.loads(path.read_text())
        info.pop("initstudy_version")
        path.write_text(json.dumps({**info, **({"initstudy_version": version} if version else {})}))
    path = store.run_dir(specs[2].run_id) / "run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "versions": {"initstudy": "9.9.9"}}))
    counts = {initstudy.__version__: len(specs) - 3, "0.0.9": 1, "unknown version": 1, "9.9.9": 1}
    assert sweep_status(study, runs).versions == counts
    html = build_report(study, runs).html
    assert "trained by several initstudy versions" in html and "trained by 4 initstudy versions" in html
    appendix = html.split('id="reproducibility"')[1]
    assert "0.0.9: 1 runs" in appendix and "unknown version: 1 runs" in appendix
    # the run list flags each run trained by another version than most, beside its id
    assert f"<code>{specs[0].run_id}</code>&nbsp;<strong>(initstudy 0.0.9)</strong>" in appendix
    assert f"<code>{specs[2].run_id}</code>&nbsp;<strong>(initstudy 9.9.9)</strong>" in appendix
    assert f"<code>{specs[3].run_id}</code>&nbsp;<strong>" not in appendix
    assert main(["status", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    assert "several initstudy versions" in capsys.readouterr().out
