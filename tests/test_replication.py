"""Published values beside the study's: the `replication` key, the table's numbers, the literature preset."""

from __future__ import annotations

import json

import jsonschema
import pandas as pd
import pytest

from initstudy.analysis import SCHEMA_FILE, analyze
from initstudy.cli import main
from initstudy.config import Reference, expand, load_study
from initstudy.replication import replication_rows
from initstudy.store import RunStore

from .conftest import write_study
from .test_bad_input import fails

HE = {"source": "web article, table 5", "name": "He initialization", "initializer": "kaiming_normal",
      "activation": "relu", "mean": 0.9755, "low": 0.971, "high": 0.98, "runs": 10, "mapping": "He = kaiming_normal"}
XAVIER = {"source": "web article, table 4", "name": "Xavier initialization", "initializer": "xavier_normal",
          "mean": 0.9506, "low": 0.946, "high": 0.956, "runs": 10}


def test_replication_entries_load_with_their_defaults(tmp_path):
    study = load_study(str(write_study(tmp_path / "s.yaml", replication=[HE, {**XAVIER, "runs": None}])),
                       build=False)
    he, xavier = study.replication
    assert he == Reference("web article, table 5", "He initialization", "kaiming_normal", "relu", 0.9755, 0.971,
                           0.98, 10, "He = kaiming_normal")
    assert xavier.activation is None and xavier.runs is None and xavier.mapping == ""


@pytest.mark.parametrize("change, message", [
    ({"initializer": "he"}, "replication 1 ('He initialization'): initializer 'he' is not an arm of this study; "
                            "use one of: zeros, xavier_normal, kaiming_normal"),
    ({"activation": "tanh"}, "activation 'tanh' is not one of the study's (relu)"),
    ({"mean": 97.6}, "mean must be >= 0 and <= 1, got 97.6"),
    ({"mean": "high"}, "mean must be a number, got 'high'"),
    ({"low": 0.99}, "need low <= mean <= high (fractions), got 0.99, 0.9755, 0.98"),
    ({"high": None}, "give both low and high (the printed range) or neither"),
    ({"runs": 0}, "runs must be > 0 and <= 1e+06, got 0"),
    ({"runs": 2.5}, "runs must be an integer, got 2.5"),
    ({"name": ""}, "'name' must be text (the source's name for it)"),
    ({"std": 0.01}, "unknown key 'std'; valid keys: source, name, initializer"),
    ({"mean": None}, "'mean' is required"),
])
def test_bad_replication_entry_is_one_line_exit_2(tmp_path, capsys, change, message):
    entry = {k: v for k, v in {**HE, **change}.items() if not (k == "mean" and v is None)}
    study = write_study(tmp_path / "s.yaml", replication=[entry])
    fails(capsys, ["train", "--study", str(study), "--runs-dir", str(tmp_path / "runs")], message)
    assert not (tmp_path / "runs").exists()


def test_replication_must_be_a_list(tmp_path, capsys):
    study = write_study(tmp_path / "s.yaml", replication={"he": 0.97})
    fails(capsys, ["train", "--study", str(study), "--runs-dir", str(tmp_path / "runs")],
          "replication must be a list of mappings")


# Final accuracies of five paired seeds; their 95% t-intervals from R 4.x: t.test(x)$conf.int
RELU = {"kaiming_normal": [0.912, 0.934, 0.921, 0.953, 0.940],  # mean 0.932, CI [0.912075258, 0.951924742]
        "xavier_normal": [0.801, 0.844, 0.826, 0.790, 0.835]}  # mean 0.8192, CI [0.7907851495, 0.8476148505]


def _tidy(finals: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    rows = []
    for (activation, init), accs in finals.items():
        for seed, acc in enumerate(accs):
            for epoch, value in enumerate((0.1, (0.1 + acc) / 2, acc)):
                rows.append({"run": f"{activation}-{init}-{seed}", "initializer": init, "seed": seed, "epoch": epoch,
                             "val_acc": value, "val_loss": 1.0, "train_loss": 1.0, "diverged": False,
                             "activation": activation})
    return pd.DataFrame(rows)


def test_table_sets_our_mean_and_t_interval_beside_each_reference_in_each_cell():
    tanh = {"kaiming_normal": [0.5] * 5, "xavier_normal": [0.6, 0.62, 0.61, 0.63, 0.64]}
    tidy = _tidy({**{("relu", k): v for k, v in RELU.items()}, **{("tanh", k): v for k, v in tanh.items()}})
    results = analyze(tidy, ["activation"], 0.9, 2, 0.05, "synthetic", order=["kaiming_normal", "xavier_normal"])
    refs = (Reference("s", "He", "kaiming_normal", "relu", 0.9755, 0.971, 0.98, 10, ""),
            Reference("s", "Xavier", "xavier_normal", None, 0.9506, None, None, None, ""))
    rows = replication_rows(refs, results, {"xavier_normal": "xavier_normal (gain 1)"})
    # He only where its activation is; Xavier in every cell
    assert [(r.reference.name, r.factors["activation"]) for r in rows] == [("He", "relu"), ("Xavier", "relu"),
                                                                           ("Xavier", "tanh")]
    he, xavier, xavier_tanh = rows
    assert he.mean == pytest.approx(0.932) and he.ci == pytest.approx((0.912075258, 0.951924742))
    assert xavier.mean == pytest.approx(0.8192) and xavier.ci == pytest.approx((0.7907851495, 0.8476148505))
    assert (he.runs, he.finished, he.reference_rank, he.rank) == (5, 5, 1, 1)
    assert (xavier.reference_rank, xavier.rank) == (2, 2)
    assert xavier.arm == "xavier_normal (gain 1)" and he.arm == "kaiming_normal"
    # a single reference in its cell ranks first; five equal runs have no interval width
    assert (xavier_tanh.reference_rank, xavier_tanh.rank) == (1, 1)
    assert xavier_tanh.mean == pytest.approx(0.62)


def test_ranks_put_our_ordering_beside_the_sources():
    """The source orders He above Xavier; runs where Xavier is better rank it first on our side."""
    tidy = _tidy({("relu", "kaiming_normal"): RELU["xavier_normal"], ("relu", "xavier_normal"): RELU["kaiming_normal"]})
    results = analyze(tidy, ["activation"], 0.9, 2, 0.05, "synthetic")
    refs = (Reference("s", "He", "kaiming_normal", None, 0.9755, None, None, 10, ""),
            Reference("s", "Xavier", "xavier_normal", None, 0.9506, None, None, 10, ""))
    assert [(r.reference_rank, r.rank) for r in replication_rows(refs, results)] == [(1, 2), (2, 1)]


def test_literature_preset_is_33_arms_with_the_articles_numbers():
    study = load_study("literature", build=False)
    assert study.dataset == "mnist5k" and study.activations == ("relu", "tanh", "sigmoid")
    assert len(study.initializers) == 11
    specs = expand(study)
    assert len({(s.activation, s.init.label) for s in specs}) == 33
    assert len(specs) == 33 * len(study.seeds)
    refs = {r.name: r for r in study.replication}
    assert len(refs) == 10 and all(r.runs == 10 and r.mapping for r in refs.values())
    # the He table (web article, table 5): runs 97.1 to 98.0, mean 97.55
    he = refs["He initialization"]
    assert (he.initializer, he.mean, he.low, he.high) == ("kaiming_normal", 0.9755, 0.971, 0.98)
    assert refs["Zero initialization"].mean == pytest.approx(0.1116)
    assert study.claims and all(c.source for c in study.claims)


STUDY = {"name": "rep", "dataset": "digits", "models": ["simple"], "activations": ["relu", "tanh"],
         "initializers": ["xavier_normal", "kaiming_normal"], "seeds": 3, "epochs": 2, "threshold": 0.5,
         "claims": [{"claim": "He beats Xavier", "a": "kaiming_normal", "b": "xavier_normal",
                     "endpoint": "final_accuracy", "direction": "better"}],
         "replication": [HE, {**XAVIER, "mapping": "Xavier = xavier_normal <b>"}]}


def test_report_of_a_synthetic_store_shows_the_table_and_results_json_validates(tmp_path):
    path = write_study(tmp_path / "rep.yaml", **STUDY)
    study = load_study(str(path), build=False)
    store = RunStore(tmp_path / "runs", study.name)
    for spec in expand(study):
        acc = (0.9 if spec.init.label == "kaiming_normal" else 0.8) + 0.01 * spec.seed
        store.start(spec, {})
        store.finish(spec, "done", [{"epoch": e, "val_acc": v, "val_loss": 1.0, "train_loss": 1.0}
                                    for e, v in enumerate((0.1, 0.5, acc))], {"seconds": 1.0, "device": "cpu"})
    assert main(["report", "--study", str(path), "--runs-dir", str(tmp_path / "runs")]) == 0
    out = tmp_path / "runs" / "rep" / "report"
    html = (out / "report.html").read_text()
    results = json.loads((out / "results.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(results)
    rows = results["replication"]
    assert [(r["name"], r["factors"]["activation"]) for r in rows] == [
        ("He initialization", "relu"), ("Xavier initialization", "relu"), ("Xavier initialization", "tanh")]
    assert rows[0]["ours"]["mean"] == pytest.approx(0.91) and rows[0]["reference"]["rank"] == 1
    assert rows[0]["claims"] == [{"number": 1, "claim": "He beats Xavier", "verdict": rows[0]["claims"][0]["verdict"]}]
    section = html[html.index('<table class="replication">'):]
    table, after = section[:section.index("</table>")], section[section.index("</table>"):]
    # one row per published value (header + 2), one column per cell: He applies to relu only
    assert "Replication: 2 published value(s)" in table and "3 comparison(s) with a cell" in table and table.count("<tr>") == 3
    assert "<th>relu</th><th>tanh</th>" in table
    he_row = table[table.index("<td>He initialization"):].split("</tr>")[0]
    assert he_row.count("0.910 [") == 1 and he_row.rstrip().endswith("<td class=\"num rep\">–</td>")
    assert "0.976 [0.971, 0.980]" in table and 'title="He beats Xavier"' in table and 'href="#claim-1"' in table
    assert "rank 1 (printed 1)" in he_row and "3 / 3 seeds" in he_row
    # mapping notes are numbered footnotes below the table, the study's text escaped
    assert '<a href="#replication-note-2">2</a>' in table and "xavier_normal &lt;b&gt;" not in table
    assert '<li id="replication-note-2">Xavier = xavier_normal &lt;b&gt;</li>' in after[:after.index("Sources:")]
    assert "not on the absolute value" in html[:html.index('<table class="replication">')]
