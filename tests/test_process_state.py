"""Library code leaves process-wide state as it found it: matplotlib's rcParams, warning filters, logging
levels, TF32 switches and torch's global generator, on import and after a run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings

import pytest
import torch

from initstudy.config import expand, load_study

IMPORT_CHECK = r"""
import json, logging, warnings
import matplotlib, numpy, pandas, pytorch_lightning, scipy.stats, statsmodels.api, torch  # their own doing

def state():
    b = torch.backends
    return {"rc": {k: repr(v) for k, v in matplotlib.rcParams.items()}, "filters": repr(warnings.filters),
            "tf32": [getattr(o, "fp32_precision", None) for o in (b, b.cuda.matmul, b.cudnn, b.cudnn.conv)]
                    + [torch.get_float32_matmul_precision(), b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32],
            "rng": torch.get_rng_state().tolist(), "threads": torch.get_num_threads(),
            "levels": {n: logging.getLogger(n).level for n in ("pytorch_lightning", "lightning.pytorch",
                                                                "lightning_fabric", "weasyprint", "fontTools")}}

before = state()
import initstudy.analysis, initstudy.bench, initstudy.claims, initstudy.cli, initstudy.executors
import initstudy.plots, initstudy.report, initstudy.stats, initstudy.store, initstudy.sweep, initstudy.training
after = state()
print(json.dumps(sorted(k for k in before if before[k] != after[k])))
"""


def tf32_state() -> tuple:
    """TF32 switches in the API this torch has (torch >= 2.9 raises on reading the legacy flags mixed in)."""
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        return tuple(o.fp32_precision for o in (b, b.cuda.matmul, b.cudnn, b.cudnn.conv, b.cudnn.rnn))
    return torch.get_float32_matmul_precision(), b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32


def set_tf32(on: bool) -> None:
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        for o in (b.cuda.matmul, b.cudnn.conv, b.cudnn.rnn):
            o.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.set_float32_matmul_precision("high" if on else "highest")
        b.cudnn.allow_tf32 = on


def true_float32() -> bool:
    """Whether CUDA matmuls and cuDNN convolutions and RNNs compute in IEEE float32 ('none' inherits the
    parent backend's precision, and at the top means IEEE)."""
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        def effective(*chain):
            return next((o.fp32_precision for o in chain if o.fp32_precision != "none"), "ieee")
        return {effective(b.cuda.matmul, b), effective(b.cudnn.conv, b.cudnn, b),
                effective(b.cudnn.rnn, b.cudnn, b)} == {"ieee"}
    return not b.cudnn.allow_tf32 and not b.cuda.matmul.allow_tf32


@pytest.fixture
def keep_tf32():
    """The session's TF32 switches, put back after a test that sets them."""
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        owners = [b.cuda.matmul, b.cudnn.conv, b.cudnn.rnn]
        saved = [o.fp32_precision for o in owners]
        yield
        for o, value in zip(owners, saved):
            o.fp32_precision = value
    else:
        saved = torch.get_float32_matmul_precision(), b.cudnn.allow_tf32
        yield
        torch.set_float32_matmul_precision(saved[0])
        b.cudnn.allow_tf32 = saved[1]


def test_importing_initstudy_changes_no_process_state():
    out = subprocess.run([sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_run_puts_back_tf32_warning_filters_logging_and_the_global_generator(monkeypatch, keep_tf32):
    import initstudy.training as training

    spec = expand(load_study("smoke", ["seeds=[0]", "initializers=[kaiming_normal]", "epochs=1",
                                       "dataset=digits", "accelerator=cpu"]))[0]
    # The caller's own choices, which a run must not keep changed: TF32 on, Lightning's logs at INFO.
    set_tf32(True)
    lightning_log = logging.getLogger("pytorch_lightning")
    level = lightning_log.level
    lightning_log.setLevel(logging.INFO)
    try:
        torch.manual_seed(1234)
        before = (tf32_state(), list(warnings.filters), torch.get_rng_state(), torch.get_num_threads())
        during = []
        build_run = training.build_run
        monkeypatch.setattr(training, "build_run", lambda *a: during.append(true_float32()) or build_run(*a))
        result = training.train_run(spec, accelerator="cpu")
        after = (tf32_state(), list(warnings.filters), torch.get_rng_state(), torch.get_num_threads())
        assert result.status == "done" and len(result.history) == 2
        assert during == [True]  # the run itself trains in true float32
        assert after[0] == before[0] and after[1] == before[1] and after[3] == before[3]
        assert torch.equal(after[2], before[2])  # not reseeded, not advanced
        assert lightning_log.level == logging.INFO
    finally:
        lightning_log.setLevel(level)


def test_overlapping_runs_restore_tf32_only_when_the_last_one_ends(keep_tf32):
    """Runs in threads enter and leave in any order: the first one out must not turn TF32 back on under the
    other, and the last one out puts back the caller's setting."""
    from initstudy.training import float32_reference

    set_tf32(True)
    first, second = float32_reference(), float32_reference()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert true_float32()
    second.__exit__(None, None, None)
    assert not true_float32()


def test_report_figures_get_stable_svg_ids_without_setting_rcparams():
    import matplotlib
    from matplotlib.figure import Figure

    from initstudy.report import figure_uri

    salt = matplotlib.rcParams["svg.hashsalt"]

    def figure():
        fig = Figure()
        fig.subplots().plot([0, 1], [0, 1], label="a")
        return fig

    assert figure_uri(figure()) == figure_uri(figure())  # ids salted the same way each time
    assert matplotlib.rcParams["svg.hashsalt"] == salt
