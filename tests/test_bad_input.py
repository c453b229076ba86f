"""Bad input and failed writes through the CLI: one line on stderr, exit 2, no traceback, nothing written."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from initstudy.cli import main

from .conftest import write_study

CSV = "initializer,seed,epoch,val_acc\nhe,0,0,0.1\nhe,0,1,0.9\nxavier,0,0,0.1\nxavier,0,1,0.5\n"


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def fails(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI, check it exits 2 with one line on stderr holding every `expected`; returns the line."""
    code = main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def csv_file(tmp_path) -> Path:
    src = tmp_path / "logs.csv"
    src.write_text(CSV)
    return src


# ---------------------------------------------------------------- item 9: study names stay inside the runs dir

@pytest.mark.parametrize("name", ["../../x", "ABSOLUTE", "", ".", "..", "a/b"])
def test_import_study_name_cannot_leave_the_runs_dir(tmp_path, capsys, csv_file, name):
    runs = tmp_path / "a" / "b" / "runs"
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    before = tree(tmp_path)
    fails(capsys, ["import", str(csv_file), "--study", name, "--runs-dir", str(runs)],
          f"study name {name!r} is not a plain folder name")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("name", ["..", ".", "../escape", "/abs"])
def test_train_refuses_a_study_file_naming_a_path(tmp_path, capsys, name):
    study = write_study(tmp_path / "s.yaml", name=name)
    before = tree(tmp_path)
    fails(capsys, ["train", "--study", str(study), "--runs-dir", str(tmp_path / "runs")],
          f"study name {name!r} is not a plain folder name")
    assert tree(tmp_path) == before


def test_analyze_and_status_refuse_the_same_names(tmp_path, capsys):
    study = write_study(tmp_path / "s.yaml", name="..")
    for command in ("status", "analyze", "report"):
        fails(capsys, [command, "--study", str(study), "--runs-dir", str(tmp_path / "runs")],
              "study name '..' is not a plain folder name")
    fails(capsys, ["analyze", "--study", "../x", "--runs-dir", str(tmp_path / "runs")], "study file ../x not found")
    assert tree(tmp_path) == ["s.yaml"]


# ---------------------------------------------------------------- item 11: an import never hides trained runs

def test_import_into_a_trained_study_is_refused(tmp_path, capsys, csv_file):
    runs = tmp_path / "runs"
    run = runs / "tiny" / "0123456789ab"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"status": "done"}')
    (runs / "tiny" / "report").mkdir()
    (runs / "tiny" / "report" / "results.json").write_text('{"trained": true}')
    before = tree(tmp_path)
    for extra in ([], ["--replace"]):
        fails(capsys, ["import", str(csv_file), "--study", "tiny", "--runs-dir", str(runs), *extra],
              "holds a trained study's runs", "choose another --study name")
    assert tree(tmp_path) == before
    # analyze reads the trained study, never an import: its results.json is not overwritten by one.
    assert (runs / "tiny" / "report" / "results.json").read_text() == '{"trained": true}'


def test_second_import_needs_replace_and_train_refuses_an_imported_name(tmp_path, capsys, csv_file):
    runs = tmp_path / "runs"
    assert main(["import", str(csv_file), "--study", "ext", "--runs-dir", str(runs)]) == 0
    capsys.readouterr()
    study = write_study(tmp_path / "s.yaml", name="ext")
    before = tree(tmp_path)
    fails(capsys, ["import", str(csv_file), "--study", "ext", "--runs-dir", str(runs)],
          "already holds imported logs; pass --replace")
    fails(capsys, ["train", "--study", str(study), "--runs-dir", str(runs)], "holds imported logs",
          "--set name=NEW")
    assert tree(tmp_path) == before
    assert main(["import", str(csv_file), "--study", "ext", "--runs-dir", str(runs), "--replace"]) == 0


# ---------------------------------------------------------------- item 14: no traceback

@pytest.mark.parametrize("text, message", [
    ("initializer,seed,epoch,val_acc,run\nhe,0,0,0.1,r1\nxavier,0,1,0.5,r1\n", "run 'r1' has initializer 'he'"),
    ("initializer,seed,epoch,val_acc,model\nhe,0,0,0.1,plain\nhe,0,1,0.5,\n", "row 3, column model: empty"),
    ("initializer,seed,epoch,val_acc\nhe,0,0,0.1\nhe,0,1e300,0.5\n", "'1e300' is above 100000"),
    ("initializer,seed,epoch,val_acc,seed\nhe,0,0,0.1,1\n", "column 'seed' appears twice in the header"),
])
def test_bad_csv(tmp_path, capsys, text, message):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    fails(capsys, ["import", str(src), "--study", "ext", "--runs-dir", str(tmp_path / "runs")], message)
    assert tree(tmp_path) == ["bad.csv"]


def test_import_of_a_folder_and_into_a_file(tmp_path, capsys, csv_file):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    before = tree(tmp_path)
    fails(capsys, ["import", str(tmp_path / "folder"), "--study", "ext"], "is a folder; give the path of a tidy CSV")
    fails(capsys, ["import", str(csv_file), "--study", "ext", "--runs-dir", str(tmp_path / "file")],
          "Not a directory", str(tmp_path / "file"))
    fails(capsys, ["import", str(csv_file), "--study", "ext", "--budget-epochs", "1000000000"],
          "budget_epochs must be from 1 to 100000")
    assert tree(tmp_path) == before


def test_analyze_out_a_folder_or_an_impossible_path(tmp_path, capsys, csv_file):
    runs = tmp_path / "runs"
    assert main(["import", str(csv_file), "--study", "ext", "--runs-dir", str(runs)]) == 0
    capsys.readouterr()
    (tmp_path / "out").mkdir()
    (tmp_path / "file").write_text("x")
    before = tree(tmp_path)
    base = ["analyze", "--study", "ext", "--runs-dir", str(runs), "--threshold", "0.8", "--out"]
    fails(capsys, [*base, str(tmp_path / "out")], "is a folder; give a file path such as")
    fails(capsys, [*base, str(tmp_path / "file" / "results.json")], "cannot read or write a file",
          str(tmp_path / "file"))
    assert tree(tmp_path) == before


def test_train_into_a_runs_dir_that_is_a_file(tmp_path, capsys, study_file):
    (tmp_path / "runs").write_text("not a folder")
    before = tree(tmp_path)
    fails(capsys, ["train", "--study", str(study_file), "--runs-dir", str(tmp_path / "runs"), "--set", "seeds=1",
                   "--set", "epochs=1"], "cannot read or write a file", "Not a directory")
    assert tree(tmp_path) == before


def test_full_disk_gives_one_line(tmp_path, capsys, monkeypatch, csv_file):
    import initstudy.importing as importing

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(importing, "write_json", full)
    fails(capsys, ["import", str(csv_file), "--study", "ext", "--runs-dir", str(tmp_path / "runs")],
          "No space left on device", "import.json")
    assert tree(tmp_path) == ["logs.csv", "runs"]  # the runs dir itself, empty: no half import


def test_disk_full_during_train_stops_with_one_line(tmp_path, capsys, monkeypatch):
    import initstudy.store as store

    write_json = store.write_json

    def full_at_metrics(path, data):
        if path.name == "metrics.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_json(path, data)

    monkeypatch.setattr(store, "write_json", full_at_metrics)
    study = write_study(tmp_path / "s.yaml", seeds=1, epochs=1, initializers=["kaiming_normal"])
    code = main(["train", "--study", str(study), "--runs-dir", str(tmp_path / "runs"), "--parallel", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    # the progress bar, then the error as the last line
    assert err.strip().splitlines()[-1].startswith("initstudy train: error: cannot read or write a file (No space "
                                                    "left on device: ")
    (run,) = [p for p in (tmp_path / "runs" / "tiny").iterdir() if p.is_dir()]
    assert not (run / "metrics.json").exists() and '"running"' in (run / "run.json").read_text()  # redone next time


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_runs_dir(tmp_path, capsys, csv_file):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o500)
    try:
        fails(capsys, ["import", str(csv_file), "--study", "ext", "--runs-dir", str(runs)], "Permission denied")
    finally:
        runs.chmod(0o700)
    assert tree(runs) == []


@pytest.mark.parametrize("override, message", [
    ("width=100000", "width must be > 0 and <= 4096, got 100000"),
    ("depth=100000", "depth must be > 0 and <= 200, got 100000"),
    ("seeds=1000000000", "seeds must be a count from 1 to 1000"),
    ("epochs=1e300", "epochs must be an integer, got 1e+300"),
    ("epochs=100000000", "epochs must be > 0 and <= 10000"),
])
def test_sizes_beyond_the_bounds(tmp_path, capsys, study_file, override, message):
    before = tree(tmp_path)
    fails(capsys, ["train", "--study", str(study_file), "--runs-dir", str(tmp_path / "runs"), "--set", override],
          message)
    assert tree(tmp_path) == before


def test_yaml_alias_bomb(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\ninitializers: *a9\n")
    fails(capsys, ["train", "--study", str(bomb), "--runs-dir", str(tmp_path / "runs")],
          "alias *a0 is not supported")
    assert tree(tmp_path) == ["bomb.yaml"]


def test_garbage_mnist_file(tmp_path, capsys):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte"):
        (raw / f).write_bytes(os.urandom(1000))
    fails(capsys, ["inspect", "--model", "simple", "--init", "zeros", "--dataset", "mnist", "--data-dir",
                   str(tmp_path / "data")], "train-images-idx3-ubyte is not a valid MNIST file")


# ---------------------------------------------------------------- item 15: clear, never silent

def test_set_accepts_a_float_with_exponent(tmp_path, capsys, study_file):
    assert main(["status", "--study", str(study_file), "--runs-dir", str(tmp_path / "runs"), "--set", "lr=1e-3",
                 "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_duplicate_yaml_key(tmp_path, capsys, study_file):
    study_file.write_text(study_file.read_text() + "seeds: 5\n")
    fails(capsys, ["status", "--study", str(study_file)], "key 'seeds' appears twice")


def test_preset_name_is_not_shadowed_by_a_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smoke").mkdir()
    assert main(["status", "--study", "smoke", "--runs-dir", "runs", "--json"]) == 0
    assert '"total": 9' in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--model", "[plain"], ["--model", ""], ["--dataset", "mnist"], ["--dataset", "cifar10", "--data-dir", "nowhere"],
    ["--depth", "0"], ["--width", "100000"], ["--model", "resnet", "--depth", "9"], ["--init", "{name: normal"],
    ["--init", "zeros, ones"], ["--seed", "-1"], ["--width", "4096", "--depth", "100"], ["--activation", "swish"],
])
def test_inspect_errors_name_its_own_options(capsys, args):
    import argparse

    from initstudy.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    options = {s for a in sub.choices["inspect"]._actions for s in a.option_strings}
    argv = ["inspect", "--model", "plain", "--init", "zeros", *args]
    line = fails(capsys, argv)
    named = set(re.findall(r"--[a-z][a-z-]*", line))
    assert named <= options, (named - options, line)
    # nor the study keys those options set
    message = line.split("error: ", 1)[1]
    assert not re.search(r"\b(models|activations|initializers|seeds|data_dir)\b|\b(change|lower|fix) (depth|width)\b"
                         r"|^(depth|width) must", message), line
