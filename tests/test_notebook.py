"""The notebook API: `initstudy.analyze_frame` on a data frame, `initstudy.render_report` of its results."""

import dataclasses
import json
import subprocess
import sys

import pytest

import initstudy

from .test_imported_report import planted_logs

CLAIM = {"claim": "He ends more accurate than Xavier", "a": "he", "b": "xavier", "endpoint": "final_accuracy",
         "direction": "better"}


def test_import_initstudy_stays_light():
    code = "import initstudy, sys; assert 'torch' not in sys.modules and 'pandas' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_planted_effect_is_found():
    r = initstudy.analyze_frame(planted_logs({"he": 0.5, "xavier": 0.3, "lecun": 0.2}), threshold=0.8,
                                claims=[CLAIM])
    omnibus = r.omnibus
    friedman = omnibus[(omnibus["endpoint"] == "final_accuracy") & (omnibus["test"] == "friedman")].iloc[0]
    # 6 seeds, every seed ranks the three arms he > xavier > lecun: chi2 = n (k - 1) = 12, p = exp(-6)
    assert friedman["statistic"] == pytest.approx(12.0) and friedman["pvalue"] == pytest.approx(0.00247875, abs=1e-6)
    assert r.claims.loc[0, "verdict"] == "supported"
    arms = r.arms.set_index("initializer")
    assert arms.loc["he", "final_acc_mean"] > arms.loc["xavier", "final_acc_mean"]
    assert {"a", "b", "test", "pvalue_holm", "effect_value", "endpoint"} <= set(r.pairwise.columns)


def test_no_difference_twin_finds_none():
    r = initstudy.analyze_frame(planted_logs({"he": 0.3, "xavier": 0.3, "lecun": 0.3}), threshold=0.8,
                                claims=[CLAIM])
    omnibus = r.omnibus
    primary = omnibus[omnibus["test"].isin(["friedman", "logrank"])]
    assert (primary["pvalue"] > 0.05).all()
    assert r.claims.loc[0, "verdict"] == "inconclusive"


def test_results_are_frozen_and_to_dict_is_results_json(tmp_path):
    r = initstudy.analyze_frame(planted_logs({"he": 0.5, "xavier": 0.3}, seeds=4, epochs=6), threshold=0.8,
                                claims=[CLAIM], order=["xavier", "he"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "other"
    paths = initstudy.render_report(r, tmp_path / "out")
    assert set(paths) == {"html", "results", "tidy"} and all(p.is_file() for p in paths.values())
    assert json.loads(paths["results"].read_text()) == json.loads(json.dumps(r.to_dict()))
    assert r.to_dict()["cells"][0]["initializers"] == ["xavier", "he"] and r.to_dict()["claims"]
    html = paths["html"].read_text()
    assert "initstudy.analyze_frame" in html and "Left out: this section needs" in html


def test_bad_frame_and_bad_settings_raise_one_line_value_errors():
    df = planted_logs({"he": 0.5, "xavier": 0.3}, seeds=3, epochs=4)
    with pytest.raises(ValueError, match=r"^the data frame: row 2, column val_acc: .* outside \[0, 1\]"):
        initstudy.analyze_frame(df.assign(val_acc=df["val_acc"] * 100))
    with pytest.raises(ValueError, match="claim 1 names initializer 'lsuv', which the logs lack"):
        initstudy.analyze_frame(df, claims=[{**CLAIM, "a": "lsuv"}])
    with pytest.raises(ValueError, match="threshold must be > 0 and <= 1"):
        initstudy.analyze_frame(df, threshold=90)
    with pytest.raises(ValueError, match="needs a pandas DataFrame"):
        initstudy.analyze_frame({"initializer": ["he"]})
    with pytest.raises(ValueError, match="unknown table 'runs'"):
        initstudy.analyze_frame(df).to_frame("runs")
