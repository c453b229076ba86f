"""End to end through the CLI on the tiny digits study: train, re-run, report, bad input, Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from initstudy.cli import main
from initstudy.config import expand, load_study
from initstudy.store import RunStore

from .conftest import write_study

pytestmark = pytest.mark.slow


def _metrics(runs: Path, study) -> dict:
    store = RunStore(runs, study.name)
    return {s.run_id: store.load(s.run_id).history for s in expand(study)}


def test_train_writes_every_run_with_epoch_zero(trained):
    study_file, runs = trained
    study = load_study(str(study_file))
    store = RunStore(runs, study.name)
    for spec in expand(study):
        rec = store.load(spec.run_id)
        assert rec.status == "done"
        assert [r["epoch"] for r in rec.history] == [0, 1, 2]
        assert set(rec.history[0]) >= {"train_loss", "val_loss", "val_acc"}
        assert rec.config["init"]["name"] == spec.init.name
        assert rec.info["device"] == "cpu"
    # Zeros cannot break symmetry: every unit computes the same thing, accuracy stays near chance.
    zeros = [s for s in expand(study) if s.init.name == "zeros"]
    assert all(max(r["val_acc"] for r in store.load(s.run_id).history) < 0.3 for s in zeros)


def test_rerun_trains_nothing_and_touches_nothing(trained, capsys):
    study_file, runs = trained
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json") if "report" not in p.parts}
    assert main(["train", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    assert "nothing to train" in capsys.readouterr().out
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("*.json") if "report" not in p.parts}
    assert before == after


def test_same_seed_same_metrics_and_unfinished_run_is_redone(trained, tmp_path):
    study_file, runs = trained
    study = load_study(str(study_file))
    fresh = tmp_path / "runs"
    # Leave one run half-written, as a kill would: it must be redone, identically.
    victim = expand(study)[1]
    assert main(["train", "--study", str(study_file), "--runs-dir", str(fresh)]) == 0
    store = RunStore(fresh, study.name)
    (store.run_dir(victim.run_id) / "metrics.json").write_text("[{truncated")
    run_json = store.run_dir(victim.run_id) / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "running"}))
    assert main(["train", "--study", str(study_file), "--runs-dir", str(fresh)]) == 0
    assert _metrics(fresh, study) == _metrics(runs, study)


def test_paired_seeds_share_data_order_and_differ_in_init():
    from initstudy.training import derive_seed

    assert derive_seed(3, "data") != derive_seed(3, "init")
    assert derive_seed(3, "data") != derive_seed(4, "data")
    study = load_study("smoke")
    a, b = [s for s in expand(study) if s.seed == 0][:2]
    # Two arms of one seed differ only in the initializer.
    assert {k: v for k, v in a.to_dict().items() if k != "init"} == \
        {k: v for k, v in b.to_dict().items() if k != "init"}


def test_divergence_is_a_result_and_the_sweep_goes_on(tmp_path, capsys):
    # lr 100 is the largest a study accepts; with N(0, 0.1) weights the loss overflows during epoch 1.
    study = write_study(tmp_path / "div.yaml", initializers=["kaiming_normal", {"name": "normal", "std": 0.1}],
                        seeds=1, lr=100.0, optimizer="sgd")
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(study), "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "diverged" in out
    s = load_study(str(study))
    store = RunStore(runs, s.name)
    statuses = [store.status(spec.run_id) for spec in expand(s)]
    assert "diverged" in statuses and all(x in ("done", "diverged") for x in statuses)
    div = next(spec for spec in expand(s) if store.status(spec.run_id) == "diverged")
    info = json.loads((store.run_dir(div.run_id) / "run.json").read_text())
    assert info["diverged_epoch"] >= 1
    # A real diverged run's record is valid: it ends before its first non-finite row.
    assert store.is_finished(div.run_id) and store.invalid_reason(div.run_id) is None
    assert len(store.load(div.run_id).history) == info["diverged_epoch"]
    assert main(["report", "--study", str(study), "--runs-dir", str(runs)]) == 0


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.tables, self.rows, self._in_tbody = [], [], 0, [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "table":
            self.tables += 1
            self.rows.append(0)
        if tag == "tr" and self.rows:
            self.rows[-1] += 1


def test_report_contents_match_results_json(trained):
    import base64

    study_file, runs = trained
    assert main(["report", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    out = runs / "tiny" / "report"
    html = (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    page = _Collector()
    page.feed(html)
    assert {"summary", "methods", "cell-1", "reproducibility"} <= set(page.ids)
    # curves, Kaplan-Meier, final accuracy, two pairwise matrices, critical difference, signal
    assert len(page.imgs) == 7
    for src in page.imgs:
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and svg.count("<path") > 10
    assert page.tables >= 6 and all(r >= 2 for r in page.rows)  # header plus at least one row each
    # Study text is escaped, not injected.
    assert "&lt;with markup &amp; ampersands&gt;" in html and "<with markup" not in html
    cell = results["cells"][0]
    assert results["schema"] == "initstudy.results/1"
    assert cell["design"] == "paired" and cell["factors"]["dataset"] == "digits"
    lr = cell["epochs_to_threshold"]["omnibus"][0]
    assert lr["test"] == "logrank"
    if lr["pvalue"] is not None:
        p = lr["pvalue"]
        assert (f"p = {p:.3f}" if p >= 0.001 else "p &lt; 0.001") in html
    fr = cell["final_accuracy"]["omnibus"][0]
    assert fr["test"] == "friedman" and f"{fr['statistic']:.3f}" in html
    for pair in cell["final_accuracy"]["pairwise"]:
        assert f"{pair['effect']['value']:.3f}" in html
    for arm in cell["arms"]:
        assert re.search(rf"<td>{re.escape(arm['initializer'])}</td><td class=\"num\">{arm['n_runs']}</td>", html)
    # Same runs, same results, byte for byte.
    first = (out / "results.json").read_bytes()
    assert main(["report", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    assert (out / "results.json").read_bytes() == first


@pytest.mark.parametrize("args, message", [
    (["train", "--study", "nope"], "unknown study 'nope'"),
    (["train", "--study", "smoke", "--set", "initializers=[he]"], "unknown initializer 'he'"),
    (["train", "--study", "smoke", "--set", "lr=0"], "lr must be > 0"),
    (["train", "--study", "smoke", "--set", "epochs=-1"], "epochs must be > 0"),
    (["train", "--study", "smoke", "--set", "dataset=mnist", "--set", "data_dir=/nonexistent"],
     "missing /nonexistent/MNIST/raw/train-images-idx3-ubyte"),
    (["train", "--study", "smoke", "--set", "accelerator=gpu"], None),
    (["report", "--study", "smoke"], "no finished runs of study 'smoke'"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    import torch

    if "accelerator=gpu" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "initstudy.cli", *args, "--runs-dir", str(runs)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"initstudy {args[0]}: error:"), proc.stderr
    if message:
        assert message in lines[0]
    assert not runs.exists() or not any(runs.rglob("*.json"))


def test_bad_yaml_file_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("initializers: [zeros\n")
    assert main(["train", "--study", str(bad), "--runs-dir", str(tmp_path / "runs")]) == 2
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("at_once", [["--parallel", "1"], ["--parallel", "2"]], ids=["one-by-one", "threads"])
def test_ctrl_c_keeps_finished_runs_and_marks_none_finished(tmp_path, at_once):
    study_file = write_study(tmp_path / "long.yaml", name="long", epochs=12, seeds=2)
    runs = tmp_path / "runs"
    study = load_study(str(study_file))
    store = RunStore(runs, study.name)
    # A shell running the suite in the background hands its children SIGINT ignored; give this one the default
    # disposition so Python turns Ctrl-C into KeyboardInterrupt, as it does in a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "initstudy.cli", "train", "--study", str(study_file),
                             "--runs-dir", str(runs), *at_once], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while time.time() < deadline and sum(store.is_finished(s.run_id) for s in expand(study)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    finished = [s for s in expand(study) if store.is_finished(s.run_id)]
    assert 2 <= len(finished) < len(expand(study))
    snapshot = {s.run_id: (store.run_dir(s.run_id) / "metrics.json").read_bytes() for s in finished}
    statuses = {store.status(s.run_id) for s in expand(study) if s not in finished}
    assert statuses <= {None, "running"}
    assert main(["train", "--study", str(study_file), "--runs-dir", str(runs)]) == 0
    assert all(store.is_finished(s.run_id) for s in expand(study))
    assert {k: (store.run_dir(k) / "metrics.json").read_bytes() for k in snapshot} == snapshot


def test_diagnostics_are_recorded_per_run(trained):
    study_file, runs = trained
    study = load_study(str(study_file))
    store = RunStore(runs, study.name)
    for spec in expand(study):
        rows = store.load_diagnostics(spec.run_id)
        assert [r["name"] for r in rows] == ["0", "3", "7"]  # conv, conv, linear in forward order
        if spec.init.name == "zeros":
            assert all(r["activation_std"] == 0 and r["weight_std"] == 0 for r in rows)
            assert rows[0]["dead_fraction"] == 1.0
        else:
            assert all(r["activation_std"] > 0 and r["gradient_std"] > 0 for r in rows)
            assert abs(rows[1]["weight_std"] / rows[1]["weight_std_theory"] - 1) < 0.2


def test_inspect_uses_the_models_own_defaults(capsys):
    # resnet's depth must be 6n + 2; the study default (6) used to make `inspect --model resnet` fail.
    assert main(["inspect", "--model", "resnet", "--init", "fixup", "--bn", "off", "--dataset", "digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_params"]["depth"] == 8
    assert main(["inspect", "--model", "resnet", "--init", "fixup", "--depth", "6", "--dataset", "digits"]) == 2
    assert "6n + 2" in capsys.readouterr().err


def test_inspect_json_and_list_json(capsys):
    assert main(["inspect", "--model", "plain", "--init", "kaiming_normal", "--depth", "5", "--width", "8",
                 "--dataset", "digits", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in out["layers"]] == list(range(6))
    for key in ("name", "weight_std", "activation_std", "gradient_std", "dead_fraction"):
        assert all(key in r for r in out["layers"])
    assert main(["inspect", "--model", "plain", "--init", "delta_orthogonal", "--dataset", "digits"]) == 0
    assert "delta_orthogonal" in capsys.readouterr().out
    assert main(["inspect", "--model", "plain", "--init", "fixup"]) == 2
    assert "fixup needs residual branches" in capsys.readouterr().err
    assert main(["list", "--json"]) == 0
    registry = json.loads(capsys.readouterr().out)
    assert {"lsuv", "zero", "fixup", "delta_orthogonal", "variance_scaling"} <= set(registry["initializers"])
    assert {"simple", "plain", "vgg", "resnet"} == set(registry["models"])
    assert {"relu", "leaky_relu", "tanh", "sigmoid", "selu", "gelu", "identity"} == set(registry["activations"])
