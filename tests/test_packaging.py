"""The built wheel holds what `report` and the presets need, and a report renders from it outside the checkout."""

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Runs from the unpacked wheel only: a preset study (package data), synthetic runs, a full report.
REPORT_FROM_WHEEL = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    import initstudy
    from initstudy.config import expand, load_study
    from initstudy.report import templates_dir, write_report
    from initstudy.store import RunStore

    site = Path(sys.argv[1]).resolve()
    assert Path(initstudy.__file__).resolve().parent == site / "initstudy", initstudy.__file__
    assert templates_dir().resolve() == site / "initstudy" / "templates", templates_dir()
    study = load_study("smoke", ["epochs=2", "seeds=2"])
    store, rng = RunStore("runs", study.name), np.random.default_rng(0)
    for spec in expand(study):
        acc = np.clip(0.1 + 0.8 * (1 - np.exp(-np.arange(3))) + rng.normal(0, 0.02, 3), 0, 1)
        store.start(spec, {"study": study.name})
        store.finish(spec, "done", [{"epoch": e, "train_loss": 1.0, "val_loss": 1.0, "val_acc": float(a)}
                                    for e, a in enumerate(acc)], {"seconds": 1.0, "device": "cpu"})
    paths, _ = write_report(study, "runs")
    assert "Weight initialization study: smoke" in paths["html"].read_text()
    print("report ok", initstudy.__version__)
""")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves build/ and egg-info behind, not in the repo)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("initstudy", "templates"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
           "-q", "-w", str(tmp / "dist"), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "setuptools" in proc.stderr:  # no setuptools in this environment: isolated build
        proc = subprocess.run([c for c in cmd if c != "--no-build-isolation"], capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 0, proc.stderr
    (whl,) = (tmp / "dist").glob("initstudy-*.whl")
    return whl


def test_wheel_ships_the_report_template_and_the_preset_studies(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "initstudy/templates/report.html.j2" in names
    assert "initstudy/schemas/results.schema.json" in names
    presets = {p.name for p in (ROOT / "initstudy" / "studies").glob("*.yaml")}
    assert presets and {f"initstudy/studies/{p}" for p in presets} <= names
    assert (ROOT / "templates" / "report.html.j2").read_bytes() == \
        zipfile.ZipFile(wheel).read("initstudy/templates/report.html.j2")


def test_a_report_renders_from_the_unpacked_wheel_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    # The wheel's directory first on the path, so it and not the checkout provides `initstudy`.
    proc = subprocess.run([sys.executable, "-c", REPORT_FROM_WHEEL, str(site)], cwd=work, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "report ok" in proc.stdout
    assert (work / "runs" / "smoke" / "report" / "report.html").is_file()
