"""Generated reference: `initstudy list --markdown` names everything registered, and the shipped JSON Schema of
results.json accepts what analyze, report and analyze_frame really write, and refuses a broken copy."""

from __future__ import annotations

import copy
import json
import re
import shutil

import jsonschema
import pandas as pd
import pytest

import initstudy
from initstudy.analysis import PRIMARY, SCHEMA, SCHEMA_FILE
from initstudy.claims import CONTRADICTED, INCONCLUSIVE, NOT_TESTED, SUPPORTED
from initstudy.cli import main
from initstudy.config import CLAIM_DIRECTIONS, SETTINGS_KEYS, describe_keys, presets
from initstudy.importing import FORMATS

from .conftest import write_study
from .test_imported_report import planted_logs

# The trained tiny study's claims: a comparison on each endpoint, a non-inferiority and a bound.
CLAIMS = [
    {"claim": "He is faster than Xavier", "a": "kaiming_normal", "b": "xavier_normal",
     "endpoint": "epochs_to_threshold", "direction": "faster", "where": {"activation": "relu"}},
    {"claim": "He ends more accurate than zeros", "a": "kaiming_normal", "b": "zeros", "endpoint": "final_accuracy",
     "direction": "better"},
    {"claim": "Xavier is not worse than He", "a": "xavier_normal", "b": "kaiming_normal",
     "endpoint": "final_accuracy", "direction": "not_worse", "margin": 0.05},
    {"claim": "zeros stays at chance", "a": "zeros", "endpoint": "final_accuracy", "at_most": 0.3},
]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


FRAME_CLAIMS = [
    {"claim": "he is faster than lecun", "a": "he", "b": "lecun", "endpoint": "epochs_to_threshold",
     "direction": "faster"},
    {"claim": "xavier is not worse than he", "a": "xavier", "b": "he", "endpoint": "final_accuracy",
     "direction": "not_worse", "margin": 0.05},
    {"claim": "lecun reaches 0.5", "a": "lecun", "endpoint": "final_accuracy", "at_least": 0.5},
]


def _frame_results() -> dict:
    """analyze_frame's to_dict(), with claims, through JSON as results.json holds it."""
    r = initstudy.analyze_frame(planted_logs({"he": 0.5, "xavier": 0.3, "lecun": 0.2}), threshold=0.8,
                                claims=FRAME_CLAIMS)
    return json.loads(json.dumps(r.to_dict(), allow_nan=False))


# ---------------------------------------------------------------- the schema against real output

def test_trained_study_results_validate(trained, tmp_path, validator):
    """analyze's results.json of the trained tiny study, and report's, which adds the claim verdicts."""
    study, runs = trained
    out = tmp_path / "results.json"
    assert main(["analyze", "--study", str(study), "--runs-dir", str(runs), "--out", str(out)]) == 0
    analyzed = json.loads(out.read_text())
    assert analyzed["schema"] == SCHEMA and analyzed["cells"]
    assert _errors(validator, analyzed) == []
    # The same runs (a copy: the store is shared) and study with claims, which are not part of a run's identity:
    # report writes their verdicts.
    own = tmp_path / "runs"
    shutil.copytree(runs, own, ignore=shutil.ignore_patterns("report"))
    with_claims = write_study(tmp_path / "tiny.yaml", claims=CLAIMS)
    assert main(["report", "--study", str(with_claims), "--runs-dir", str(own)]) == 0
    reported = json.loads((own / "tiny" / "report" / "results.json").read_text())
    assert [c["claim"] for c in reported["claims"]] == [c["claim"] for c in CLAIMS]
    assert _errors(validator, reported) == []


def test_imported_study_results_validate(tmp_path, validator):
    logs = tmp_path / "logs.csv"
    planted_logs({"he": 0.5, "xavier": 0.3}).to_csv(logs, index=False)
    settings = tmp_path / "s.yaml"
    settings.write_text("threshold: 0.8\nclaims:\n  - {claim: he faster, a: he, b: xavier, "
                        "endpoint: epochs_to_threshold, direction: faster}\n")
    runs = tmp_path / "runs"
    assert main(["import", str(logs), "--study", "logs", "--runs-dir", str(runs), "--settings", str(settings)]) == 0
    assert main(["analyze", "--study", "logs", "--runs-dir", str(runs)]) == 0
    doc = json.loads((runs / "logs" / "report" / "results.json").read_text())
    assert doc["claims"][0]["verdict"] == SUPPORTED and doc["source"]["format"] == "tidy"
    assert _errors(validator, doc) == []


def test_notebook_results_validate(validator):
    raw = initstudy.analyze_frame(planted_logs({"he": 0.5, "xavier": 0.3, "lecun": 0.2}), threshold=0.8,
                                  claims=FRAME_CLAIMS).to_dict()
    assert _errors(validator, raw) == []  # as returned (tuples would fail "array"), and as results.json holds it
    doc = _frame_results()
    assert {c["verdict"] for c in doc["claims"]} <= {SUPPORTED, CONTRADICTED, INCONCLUSIVE}
    assert _errors(validator, doc) == []


def test_unpaired_and_single_arm_cells_validate(validator):
    """The other designs: unpaired (Tukey and Games-Howell rows, Welch) and a cell with one initializer."""
    df = planted_logs({"he": 0.5, "xavier": 0.3})
    df = df[~((df["initializer"] == "xavier") & (df["seed"] == 0))]  # seeds differ between arms: unpaired
    single = planted_logs({"he": 0.5}, seeds=3).assign(model="other")
    doc = json.loads(json.dumps(initstudy.analyze_frame(pd.concat([df, single]), threshold=0.8, design="unpaired")
                                .to_dict(), allow_nan=False))
    assert [c["design"] for c in doc["cells"]] == ["unpaired", "single arm"]
    assert {p["test"] for p in doc["cells"][0]["final_accuracy"]["pairwise"]} >= {"tukey_hsd", "games_howell"}
    assert _errors(validator, doc) == []


# ---------------------------------------------------------------- ... and refuses a broken copy

def _drop(key):
    def change(d):
        del d["cells"][0]["arms"][0][key]
    return change


def _set(path, value):
    def change(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize("change", [
    _drop("n_runs"),
    _set(["cells", 0, "design"], "pared"),
    _set(["cells", 0, "arms", 0, "final_acc_mean"], "0.9"),
    _set(["cells", 0, "arms", 0, "n_runs"], 2.5),
    _set(["cells", 0, "final_accuracy", "pairwise", 0, "pvalue"], 1.5),
    _set(["cells", 0, "epochs_to_threshold", "pairwise", 0, "test"], "wilcoxon"),
    _set(["cells", 0, "arms", 0, "median_epochs_ci"], [1.0]),
    _set(["cells", 0, "unexpected"], 1),
    _set(["claims", 0, "verdict"], "likely"),
    _set(["schema"], "initstudy.results/2"),
    lambda d: d.pop("cells"),
], ids=["missing key", "unknown design", "number as text", "fractional count", "p above 1", "wrong test name",
        "half an interval", "unknown key", "unknown verdict", "other version", "no cells"])
def test_a_broken_results_dict_fails(validator, change):
    doc = _frame_results()
    assert _errors(validator, doc) == []
    broken = copy.deepcopy(doc)
    change(broken)
    assert _errors(validator, broken)


def test_schema_enums_follow_the_code():
    """The names the schema fixes are the ones the code uses, so a renamed design or verdict fails here."""
    defs = json.loads(SCHEMA_FILE.read_text())["$defs"]
    assert set(defs["cell"]["properties"]["design"]["enum"]) == set(PRIMARY)
    assert set(defs["claim"]["properties"]["verdict"]["enum"]) == {SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED}
    assert set(defs["claim"]["properties"]["endpoint"]["enum"]) == set(CLAIM_DIRECTIONS)
    assert set(defs["claim"]["properties"]["direction"]["enum"]) == {
        None, *(d for ds in CLAIM_DIRECTIONS.values() for d in ds)}
    assert set(defs["source"]["properties"]["format"]["enum"]) == set(FORMATS)


# ---------------------------------------------------------------- the Markdown reference

def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as rows of cells (escaped pipes kept inside their cell)."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _rows(tables, header: list[str]) -> list[list[str]]:
    (table,) = [t for t in tables if t[0] == header]
    return table[2:]


def _first_column(tables, header: list[str]) -> list[str]:
    return [row[0].strip("`") for row in _rows(tables, header)]


def test_markdown_reference_lists_everything_registered(capsys, monkeypatch):
    from initstudy import plugins
    from initstudy.data import DATASETS
    from initstudy.initializers import INITIALIZERS
    from initstudy.models import ACTIVATIONS, MODELS

    fake = {"initializer": {"scaled_normal": {"target": "mypkg.inits:scaled_normal",
                                              "distribution": "mypkg-plugin==0.1"}}, "model": {}, "dataset": {}}
    monkeypatch.setattr(plugins, "registered", lambda: fake)
    assert main(["list", "--markdown"]) == 0
    text = capsys.readouterr().out
    tables = _tables(text)
    for table in tables:  # well-formed: every row has the header's cells, the second row is the rule
        assert all(len(row) == len(table[0]) for row in table), table[0]
        assert set("".join(table[1])) <= {"-"}
    assert _first_column(tables, ["key", "default", "accepts", "meaning"]) == list(describe_keys())
    assert _first_column(tables, ["key", "meaning"]) == list(SETTINGS_KEYS)
    assert _first_column(tables, ["name", "formula", "gain", "bias", "options", "source"]) == list(INITIALIZERS)
    assert _first_column(tables, ["name", "parameters", "residual", "description"]) == list(MODELS)
    assert _first_column(tables, ["name", "torch layer", "gain"]) == list(ACTIVATIONS)
    assert _first_column(tables, ["name", "description"]) == list(DATASETS)
    (plugin_row,) = _rows(tables, ["kind", "name", "target", "distribution"])
    assert plugin_row == ["initializer", "`scaled_normal`", "`mypkg.inits:scaled_normal`", "mypkg-plugin==0.1"]
    assert all(f"`{p}`" in text for p in presets())
    # formulas, gains and defaults come from the registries
    inits = {r[0]: r for r in _rows(tables, ["name", "formula", "gain", "bias", "options", "source"])}
    row = inits["`kaiming_normal`"]
    assert row[1] == INITIALIZERS["kaiming_normal"].formula and row[4] == '`mode="fan_in"`'
    assert "| `lr` | `0.01` |" in text and "| `initializers` | required |" in text
    # results.json keys come from the schema
    schema = json.loads(SCHEMA_FILE.read_text())
    keys = [[row[0].strip("`") for row in t[2:]] for t in tables if t[0] == ["key", "required", "type", "meaning"]]
    assert keys == [list(schema["properties"]), *(list(schema["$defs"][d]["properties"]) for d in ("cell", "arm",
                                                                                                      "claim"))]


def test_markdown_and_json_are_alternatives(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "--markdown", "--json"])
    assert exc.value.code == 2
