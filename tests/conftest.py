"""Shared fixtures: one shrunk study (CPU, tiny data, 2 epochs) and a store trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TINY = {
    "name": "tiny",
    "description": "test study <with markup & ampersands>",
    "dataset": "digits",
    "models": ["simple"],
    "activations": ["relu"],
    "initializers": ["zeros", "xavier_normal", "kaiming_normal"],
    "seeds": 3,
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.05,
    "threshold": 0.5,
    "accelerator": "cpu",
}


def write_study(path: Path, **changes) -> Path:
    data = {**TINY, **changes}
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def study_file(tmp_path) -> Path:
    return write_study(tmp_path / "tiny.yaml")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(study file, runs dir) with the tiny study trained once through the CLI."""
    from initstudy.cli import main

    root = tmp_path_factory.mktemp("trained")
    study = write_study(root / "tiny.yaml")
    runs = root / "runs"
    assert main(["train", "--study", str(study), "--runs-dir", str(runs)]) == 0
    return study, runs
