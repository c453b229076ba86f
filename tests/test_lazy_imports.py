"""Commands that train nothing (import, analyze, report, status, list) import neither torch nor Lightning."""

from __future__ import annotations

import json
import subprocess
import sys

from initstudy.config import expand, load_study

HEAVY = ("torch", "pytorch_lightning", "lightning", "torchvision")

# Runs each command in order in one fresh interpreter and records, after each, which heavy modules it
# has loaded so far: the first command that imports one shows in its own entry.
SCRIPT = """
import json, sys
from initstudy.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    rc = main(argv)
    out.append({"argv": argv, "rc": rc, "loaded": [m for m in json.loads(sys.argv[2]) if m in sys.modules]})
print("RESULT " + json.dumps(out))
"""


def _run(commands: list[list[str]], watch: tuple[str, ...] = HEAVY) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands), json.dumps(watch)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_read_only_commands_import_no_torch(trained, tmp_path):
    study, runs = trained
    logs = tmp_path / "logs.csv"
    logs.write_text("initializer,seed,epoch,val_acc\n" + "".join(
        f"{i},{s},{e},{0.5 + 0.1 * e + 0.01 * s + (0.05 if i == 'b' else 0):.3f}\n"
        for i in ("a", "b") for s in range(3) for e in (1, 2, 3)))
    own = tmp_path / "runs"
    commands = [
        ["list"],
        ["list", "--json"],
        ["status", "--study", str(study), "--runs-dir", str(runs)],
        ["status", "--study", "default", "--runs-dir", str(own), "--json"],
        ["analyze", "--study", str(study), "--runs-dir", str(runs), "--out", str(tmp_path / "results.json")],
        ["report", "--study", str(study), "--runs-dir", str(runs)],
        ["import", str(logs), "--study", "logs", "--runs-dir", str(own)],
        ["analyze", "--study", "logs", "--runs-dir", str(own), "--threshold", "0.7"],
        ["report", "--study", "logs", "--runs-dir", str(own)],
    ]
    for entry in _run(commands):
        assert entry["rc"] == 0, entry
        assert entry["loaded"] == [], entry
    assert (runs / "tiny" / "report" / "report.html").is_file()
    assert (own / "logs" / "report" / "report.html").is_file()


def test_a_study_read_without_building_has_the_same_runs(tmp_path):
    """status, analyze and report skip the model-building checks; they must find the very runs train writes."""
    overrides = ["models=[simple, plain, resnet]", "depth=8", "activations=[relu, tanh]",
                 "initializers=[zeros, {name: normal, std: 0.1}, lsuv, {name: kaiming_normal, mode: fan_out}]"]
    built, read = load_study("smoke", overrides), load_study("smoke", overrides, build=False)
    assert built == read
    assert [s.run_id for s in expand(built)] == [s.run_id for s in expand(read)]


def test_analyze_loads_the_pipeline_not_the_report(trained, tmp_path):
    """`analyze` (trained or imported) needs the analysis pipeline only: no rendering, templates or figures."""
    study, runs = trained
    logs = tmp_path / "logs.csv"
    logs.write_text("initializer,seed,epoch,val_acc\n" + "".join(
        f"{i},{s},{e},{0.5 + 0.1 * e + 0.01 * s:.3f}\n" for i in ("a", "b") for s in range(3) for e in (1, 2)))
    own = tmp_path / "runs"
    commands = [["analyze", "--study", str(study), "--runs-dir", str(runs), "--out", str(tmp_path / "r.json")],
                ["import", str(logs), "--study", "logs", "--runs-dir", str(own)],
                ["analyze", "--study", "logs", "--runs-dir", str(own)]]
    for entry in _run(commands, ("initstudy.pipeline", "initstudy.report", "initstudy.plots", "matplotlib",
                                 "jinja2")):
        assert entry["rc"] == 0, entry
        assert entry["loaded"] == ["initstudy.pipeline"], entry


def test_the_report_names_the_gpu_without_torch(tmp_path, monkeypatch):
    from initstudy import report

    gpu = tmp_path / "0000:01:00.0"
    gpu.mkdir()
    # the layout of the NVIDIA driver's /proc/driver/nvidia/gpus/<bus id>/information
    (gpu / "information").write_text("Model: \t\t NVIDIA H200\nIRQ:   \t\t 42\nGPU UUID: \t GPU-0\n")
    monkeypatch.setattr(report, "NVIDIA_PROC", tmp_path)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert report.hardware()["accelerator"] == "NVIDIA H200"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert report.hardware()["accelerator"] == "none visible"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(report, "NVIDIA_PROC", tmp_path / "none")
    assert report.hardware()["accelerator"] == "none visible"
