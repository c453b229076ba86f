"""Imported logs from other trainers: good files analyse, malformed ones are refused row by row."""

import json

import pytest

from initstudy.analysis import run_outcomes
from initstudy.cli import main
from initstudy.importing import read_tidy_csv

GOOD = """initializer,seed,epoch,val_acc,activation,val_loss
he,0,0,0.10,relu,2.3
he,0,1,0.92,relu,0.4
he,0,2,0.95,relu,0.3
he,1,0,0.10,relu,2.3
he,1,1,0.91,relu,0.4
he,1,2,0.96,relu,0.3
xavier,0,0,0.10,relu,2.3
xavier,0,1,0.60,relu,1.1
xavier,0,2,0.93,relu,0.5
xavier,1,0,0.10,relu,2.3
xavier,1,1,0.55,relu,1.2
"""


def test_import_then_analyze(tmp_path, capsys):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    runs = tmp_path / "runs"
    assert main(["import", str(src), "--study", "ext", "--runs-dir", str(runs), "--budget-epochs", "4"]) == 0
    assert "imported 4 runs" in capsys.readouterr().out
    assert main(["analyze", "--study", "ext", "--runs-dir", str(runs), "--threshold", "0.9"]) == 0
    results = json.loads((runs / "ext" / "report" / "results.json").read_text())
    cell = results["cells"][0]
    assert cell["factors"] == {"activation": "relu"} and cell["budget_epochs"] == 4
    arms = {a["initializer"]: a for a in cell["arms"]}
    assert arms["he"]["median_epochs"] == 1 and arms["he"]["n_reached"] == 2
    assert arms["xavier"]["n_reached"] == 1
    # The HTML report needs a trained study: an imported one gets a one-line pointer to analyze, exit 2.
    assert main(["report", "--study", "ext", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "imported logs" in err and "initstudy analyze --study ext" in err


def test_short_log_is_censored_at_its_last_epoch(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    tidy, factors = read_tidy_csv(src)
    out = run_outcomes(tidy, 0.9, 4).set_index(["initializer", "seed"])
    # xavier seed 1 logged 1 epoch and never reached 0.9: censored at epoch 1, not imputed as the budget.
    assert (out.loc[("xavier", 1), "time"], out.loc[("xavier", 1), "event"]) == (1.0, 0)
    assert (out.loc[("xavier", 0), "time"], out.loc[("xavier", 0), "event"]) == (2.0, 1)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("initializer,", "init,"), "missing column 'initializer'"),
    (lambda t: t.replace("he,0,1,0.92", "he,0,1,abc"), "row 3, column val_acc: 'abc' is not a number"),
    (lambda t: t.replace("he,0,1,0.92", "he,0,1,92"), "row 3, column val_acc: '92' is outside [0, 1]"),
    (lambda t: t.replace("he,0,2,0.95", "he,0,1,0.95"), "row 4, columns run/epoch"),
    (lambda t: t.replace("he,1,0,0.10", "he,1.5,0,0.10"), "row 5, column seed: '1.5' must be a non-negative integer"),
    (lambda t: t.replace("he,0,1,0.92", "he,0,1,nan"), "row 3, column val_acc: 'nan' is not a number"),
    (lambda t: t.split("\n")[0] + "\n", "has a header but no rows"),
])
def test_malformed_csv_errors_name_row_and_column(tmp_path, capsys, edit, message):
    src = tmp_path / "bad.csv"
    src.write_text(edit(GOOD))
    runs = tmp_path / "runs"
    assert main(["import", str(src), "--study", "ext", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not runs.exists()  # nothing imported
