"""Bring your own initializer, model and dataset (import paths and entry points), on every executor; loggers.

The example plugin is tests/plugin_example (package `mypkg`, not installed): the tests put its folder on
sys.path, or on PYTHONPATH for the CLI in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from initstudy import plugins
from initstudy.cli import main
from initstudy.config import expand, load_study
from initstudy.store import RunStore

from .conftest import write_study
from .test_bad_input import fails

EXAMPLE = Path(__file__).parent / "plugin_example"
PLUGIN_STUDY = {"dataset": "digits", "models": [{"name": "mypkg.nets:tiny", "width": 4}], "activations": ["relu"],
                "initializers": [{"name": "mypkg.inits:scaled_normal", "scale": 2.0}, "xavier_normal",
                                 "mypkg.inits:layer_sequential"],
                "seeds": 2, "epochs": 1, "threshold": 0.5}


@pytest.fixture(autouse=True)
def example_on_path(monkeypatch):
    """mypkg importable, and each test resolving it afresh (a test may edit or replace it)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    plugins.forget()
    yield
    plugins.forget()


def test_a_study_names_plugins_by_import_path_with_options_checked_against_the_signature(tmp_path):
    study = load_study(str(write_study(tmp_path / "s.yaml", **PLUGIN_STUDY)))
    assert study.models == ("mypkg.nets:tiny",)
    specs = expand(study)
    assert [s.init.label for s in specs[:3]] == ["scaled_normal(scale=2.0)", "xavier_normal", "layer_sequential"]
    assert specs[0].init.options == (("scale", 2.0),) and specs[2].init.options == (("std", 0.05),)
    assert specs[0].model_params == (("width", 4),)
    kinds = {kind for kind, _name, _identity in specs[0].plugins}
    assert kinds == {"model", "initializer"} and {k for k, _n, _i in specs[1].plugins} == {"model"}
    assert dict(specs[0].cell)["width"] == 4


def test_built_in_run_ids_do_not_change(tmp_path):
    """Existing run stores stay valid: ids of built-in runs are those before plugins existed."""
    study = load_study(str(write_study(tmp_path / "s.yaml", models=["simple", "plain", "resnet"], depth=8,
                                       initializers=["zeros", {"name": "normal", "std": 0.1}, "lsuv"])))
    # The ids of this grid at seed 0 as computed by the commit before plugins (3f73fbc).
    assert sorted({s.run_id for s in expand(study) if s.seed == 0}) == [
        "192106170d8e", "1f45ad87c956", "3e943c020285", "4d668f518dfe", "539bfe812ae6", "5fa2efabb28a",
        "620793d478db", "b7bf0c002c38", "cdf391b26b37"]
    assert all("plugins" not in s.to_dict() for s in expand(study))


def test_editing_the_plugin_changes_its_runs_ids_only(tmp_path, monkeypatch):
    copy = tmp_path / "src"
    shutil.copytree(EXAMPLE / "mypkg", copy / "mypkg")
    monkeypatch.syspath_prepend(str(copy))
    path = write_study(tmp_path / "s.yaml", **{**PLUGIN_STUDY, "models": ["simple"]})
    before = {s.init.label: s.run_id for s in expand(load_study(str(path)))}
    with open(copy / "mypkg" / "inits.py", "a") as f:
        f.write("\n# a changed line\n")
    plugins.forget()
    after = {s.init.label: s.run_id for s in expand(load_study(str(path)))}
    assert after["xavier_normal"] == before["xavier_normal"]
    assert after["scaled_normal(scale=2.0)"] != before["scaled_normal(scale=2.0)"]
    assert after["layer_sequential"] != before["layer_sequential"]


BAD_MODULE = '''
def no_generator(weight, *, fan_in, fan_out, gain):
    """W = 0"""

def strict(weight, *, fan_in, fan_out, gain, generator, scale=1.0):
    """W = scale"""

def needs(weight, *, fan_in, fan_out, gain, generator, scale):
    """W = scale"""

NOT_CALLABLE = 3

def two_args(in_channels, image_size):
    return None
'''


@pytest.mark.parametrize("changes, expected", [
    ({"initializers": ["nopkg.inits:x"]}, "module 'nopkg.inits' not found; put the folder that holds it on PYTHONPATH"),
    ({"initializers": ["mypkg.inits:nothing"]}, "module 'mypkg.inits' has no attribute 'nothing'"),
    ({"initializers": ["badplug:NOT_CALLABLE"]}, "badplug:NOT_CALLABLE is a int, not a function"),
    ({"initializers": ["badplug:no_generator"]}, "does not fit the contract: it has no parameter 'generator'"),
    ({"initializers": [{"name": "badplug:strict", "scael": 2}]}, "takes no option 'scael' (its options: scale)"),
    ({"initializers": [{"name": "badplug:strict", "scale": "two"}]}, "option scale must be a number"),
    ({"initializers": ["badplug:needs"]}, "needs option 'scale'"),
    ({"models": [{"name": "mypkg.nets:tiny", "depth": 3}]}, "takes no option 'depth' (its options: width)"),
    ({"models": ["badplug:two_args"]}, "takes 2 positional parameters, the contract passes 4"),
    ({"models": [{"name": "plain", "widht": 3}]}, "model 'plain' takes no parameter 'widht'"),
    ({"initializers": ["no_such_init"]}, "or name your own as package.module:function"),
    ({"dataset": "mypkg.data:missing"}, "module 'mypkg.data' has no attribute 'missing'"),
    ({"loggers": ["wandb"]}, "unknown logger 'wandb'; choose from: csv, tensorboard"),
    ({"loggers_dir": "../outside"}, "must be a folder inside the runs dir"),
    ({"loggers_dir": "/abs/logs"}, "must be a folder inside the runs dir"),
])
def test_a_bad_plugin_is_one_line_at_load_exit_2_and_nothing_trains(tmp_path, monkeypatch, capsys, changes,
                                                                     expected):
    (tmp_path / "badplug.py").write_text(BAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path / "s.yaml", **{**PLUGIN_STUDY, **changes})
    runs = tmp_path / "runs"
    fails(capsys, ["train", "--study", str(path), "--runs-dir", str(runs)], expected)
    assert not runs.exists()


def test_a_plugin_that_raises_during_a_run_fails_that_run_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    (tmp_path / "boom.py").write_text(
        "def init(weight, *, fan_in, fan_out, gain, generator):\n    raise RuntimeError('boom in the plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path / "s.yaml", **{**PLUGIN_STUDY, "models": ["simple"], "seeds": 1,
                                               "initializers": ["boom:init", "xavier_normal"]})
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(path), "--runs-dir", str(runs), "--parallel", "1"]) == 1
    study = load_study(str(path))
    store = RunStore(runs, study.name)
    boom, xavier = expand(study)
    assert store.status(boom.run_id) == "failed"
    assert store.info(boom.run_id)["error"] == "RuntimeError: boom in the plugin"
    assert store.is_finished(xavier.run_id)


def _dist_info(root: Path, version: str = "0.1") -> None:
    """An installed-looking distribution with entry points: what pip leaves in site-packages."""
    info = root / f"mypkg_plugin-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: mypkg-plugin\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(
        "[initstudy.initializers]\nscaled_normal = mypkg.inits:scaled_normal\n\n"
        "[initstudy.models]\ntiny = mypkg.nets:tiny\n\n[initstudy.datasets]\nblobs = mypkg.data:blobs\n")


def test_entry_points_are_used_by_plain_name_and_listed_with_their_distribution(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    _dist_info(site)
    monkeypatch.syspath_prepend(str(site))
    path = write_study(tmp_path / "s.yaml", dataset="blobs", models=[{"name": "tiny", "width": 2}],
                       initializers=[{"name": "scaled_normal", "scale": 0.5}, "xavier_normal"], seeds=1, epochs=1)
    study = load_study(str(path))
    spec = expand(study)[0]
    assert spec.init.label == "scaled_normal(scale=0.5)"
    assert set(spec.plugins) == {("dataset", "blobs", "mypkg-plugin==0.1"), ("model", "tiny", "mypkg-plugin==0.1"),
                                 ("initializer", "scaled_normal", "mypkg-plugin==0.1")}
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["plugins"]
    assert listed["initializer"]["scaled_normal"] == {"target": "mypkg.inits:scaled_normal",
                                                      "distribution": "mypkg-plugin==0.1"}
    assert main(["list"]) == 0
    assert "initializer scaled_normal" in capsys.readouterr().out
    # A new version of the package is a new identity: its runs are trained again.
    shutil.rmtree(site)
    _dist_info(site, "0.2")
    assert expand(load_study(str(path)))[0].run_id != spec.run_id
    # and the study trains (blobs: 300 images of 4x4)
    assert main(["train", "--study", str(path), "--runs-dir", str(tmp_path / "runs"), "--parallel", "1"]) == 0


def test_a_dataset_plugin_that_returns_the_wrong_form_is_one_line_at_load(tmp_path, monkeypatch, capsys):
    (tmp_path / "baddata.py").write_text(
        "import torch\n"
        "def flat(data_dir, split_seed):\n"
        "    return torch.zeros(10, 16), torch.zeros(10, dtype=torch.long), torch.zeros(4, 16),"
        " torch.zeros(4, dtype=torch.long), 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_study(tmp_path / "s.yaml", dataset="baddata:flat", models=["simple"])
    fails(capsys, ["train", "--study", str(path), "--runs-dir", str(tmp_path / "runs")],
           "training images must be float (N, C, H, W) with H = W", "got torch.float32 (10, 16)")


def test_the_report_shows_a_plugin_initializer_docstring_and_module(tmp_path):
    from initstudy.report import methods

    study = load_study(str(write_study(tmp_path / "s.yaml", **PLUGIN_STUDY)))
    inits = {i["label"]: i for i in methods(study)["initializers"]}
    assert inits["scaled_normal(scale=2.0)"]["formula"] == "W ~ N(0, (scale * gain)^2 / fan_in)"
    assert inits["scaled_normal(scale=2.0)"]["source"] == "mypkg.inits (user plugin)"
    assert inits["layer_sequential"]["formula"] == "W ~ N(0, std^2) in every conv and linear layer, biases 0"
    assert inits["xavier_normal"]["source"] == "Glorot & Bengio 2010"
    assert "(mypkg.nets)" in methods(study)["models"][0]["description"]


def test_a_plugin_std_fills_the_diagnostics_theory_column(tmp_path):
    import torch

    from initstudy.initializers import theoretical_std

    spec = expand(load_study(str(write_study(tmp_path / "s.yaml", **PLUGIN_STUDY))))[0]
    layer = torch.nn.Conv2d(3, 8, 3)
    assert theoretical_std(spec.init, layer, "relu") == pytest.approx(2.0 * math.sqrt(2) / math.sqrt(27))
    whole = expand(load_study(str(write_study(tmp_path / "s.yaml", **PLUGIN_STUDY))))[2]
    assert theoretical_std(whole.init, layer, "relu") is None  # no std attribute: the column stays empty


def test_loggers_are_not_part_of_the_run_id(tmp_path):
    plain = load_study(str(write_study(tmp_path / "a.yaml", **PLUGIN_STUDY)))
    logged = load_study(str(write_study(tmp_path / "b.yaml", **PLUGIN_STUDY, loggers=["csv", "tensorboard"],
                                        loggers_dir="elsewhere/logs")))
    assert logged.loggers == ("csv", "tensorboard") and logged.loggers_dir == "elsewhere/logs"
    assert [s.run_id for s in expand(plain)] == [s.run_id for s in expand(logged)]


def test_a_sweep_logged_to_tensorboard_and_imported_gives_the_run_store_analysis(tmp_path):
    import initstudy
    from initstudy.store import tidy_frame

    importing = pytest.importorskip("initstudy.importing")
    if not hasattr(importing, "read_logs"):
        pytest.skip("the TensorBoard importer (importing.read_logs) is not there yet")
    path = write_study(tmp_path / "s.yaml", models=["simple"], seeds=2, epochs=2,
                       loggers=["tensorboard", "csv"])
    runs = tmp_path / "runs"
    assert main(["train", "--study", str(path), "--runs-dir", str(runs), "--parallel", "1"]) == 0
    study = load_study(str(path))
    logs = runs / study.name / "logs"
    run_dirs = sorted(p.name for p in (logs / "tensorboard").iterdir())
    assert run_dirs == ["dataset=digits,model=simple,activation=relu"]
    assert len(list((logs / "csv").rglob("metrics.csv"))) == len(expand(study))
    stored, _factors, _missing = tidy_frame(expand(study), RunStore(runs, study.name))
    cells = logs / "tensorboard" / run_dirs[0]
    imported = importing.read_logs(cells, fmt="tensorboard", run_pattern="{initializer}-s{seed}").tidy
    columns = ["initializer", "seed", "epoch", "val_acc", "val_loss", "train_loss"]
    key = ["initializer", "seed", "epoch"]
    a = stored[columns].astype({"seed": int}).sort_values(key).reset_index(drop=True)
    b = imported[columns].astype({"seed": int}).sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key])
    # TensorBoard keeps float32 scalars
    assert ((a[["val_acc", "val_loss", "train_loss"]] - b[["val_acc", "val_loss", "train_loss"]]).abs()
            .to_numpy().max()) < 1e-6
    settings = {"threshold": study.threshold, "alpha": study.alpha}
    left = initstudy.analyze_frame(a, **settings).to_dict()
    right = initstudy.analyze_frame(b, **settings).to_dict()
    assert _approx_equal(left, right), (left, right)


def _approx_equal(x, y) -> bool:
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_approx_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return isinstance(y, (list, tuple)) and len(x) == len(y) and all(map(_approx_equal, x, y))
    if isinstance(x, float) and isinstance(y, (int, float)):
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-6)
    return x == y


@pytest.mark.slow
def test_a_plugin_study_gives_identical_runs_on_every_executor(tmp_path):
    """mypkg on PYTHONPATH, not installed: threads, two spawned workers and a local Ray instance."""
    path = write_study(tmp_path / "s.yaml", **PLUGIN_STUDY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLE), os.environ.get("PYTHONPATH")]))}
    stores = {}
    for name, extra in (("threads", ["--parallel", "2"]), ("workers", ["--workers", "2"]),
                        ("ray", ["--executor", "ray"])):
        runs = tmp_path / name
        proc = subprocess.run([sys.executable, "-m", "initstudy.cli", "train", "--study", str(path), "--runs-dir",
                               str(runs), "--cpus-per-run", "1", *extra], capture_output=True, text=True,
                              timeout=600, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        study = load_study(str(path))
        store = RunStore(runs, study.name)
        stores[name] = {s.run_id: (store.load(s.run_id).history, store.info(s.run_id)["init_sha256"],
                                   store.info(s.run_id)["final_sha256"]) for s in expand(study)}
    assert len(stores["threads"]) == 6
    assert stores["threads"] == stores["workers"] == stores["ray"]
