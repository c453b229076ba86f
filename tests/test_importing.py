"""Imported logs from other trainers: good files analyse, malformed ones are refused row by row."""

import json

import pytest

from initstudy.analysis import run_outcomes
from initstudy.cli import main
from initstudy.importing import ImportCSVError, import_csv, load_imported, read_tidy_csv

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


@pytest.mark.parametrize("text, message", [
    # one run id over two initializers (or seeds, or cells) would pool two arms into one run
    ("initializer,seed,epoch,val_acc,run\nhe,0,0,0.1,r1\nxavier,0,1,0.5,r1\n",
     "run 'r1' has initializer 'he' (row 2) and 'xavier' (row 3); a run is one initializer"),
    ("initializer,seed,epoch,val_acc,run\nhe,0,0,0.1,r1\nhe,1,1,0.5,r1\n",
     "run 'r1' has seed '0' (row 2) and '1' (row 3)"),
    ("initializer,seed,epoch,val_acc,run,model\nhe,0,0,0.1,r1,a\nhe,0,1,0.5,r1,b\n", "run 'r1' has model 'a' (row 2)"),
    ("initializer,seed,epoch,val_acc,run\nhe,0,0,0.1,r1\nhe,0,1,0.5,\n", "row 3, column run: empty"),
    ("initializer,seed,epoch,val_acc,activation\nhe,0,0,0.1,relu\nhe,0,1,0.5,\n",
     "row 3, column activation: empty; give every row a value or drop the column"),
    ("initializer,seed,epoch,val_acc\nhe,0,0,0.1\nhe,0,1e300,0.5\n", "row 3, column epoch: '1e300' is above 100000"),
    ("initializer,seed,epoch,val_acc,seed\nhe,0,0,0.1,1\n", "column 'seed' appears twice in the header"),
    ("initializer,seed,epoch,val_acc,model, model\nhe,0,0,0.1,a,b\n", "column 'model' appears twice in the header"),
])
def test_inconsistent_csv_is_refused(tmp_path, text, message):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    with pytest.raises(ImportCSVError) as err:
        read_tidy_csv(src)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_budget_is_bounded(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    with pytest.raises(ImportCSVError, match="budget_epochs must be from 1 to 100000, got 1000000"):
        import_csv(src, tmp_path / "runs", "ext", 1_000_000)
    assert not (tmp_path / "runs").exists()


def test_second_import_needs_replace(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    runs = tmp_path / "runs"
    assert import_csv(src, runs, "ext")["rows"] == 11
    src.write_text(GOOD.split("xavier,1,0")[0])  # 9 rows
    with pytest.raises(ImportCSVError, match="already holds imported logs; pass --replace"):
        import_csv(src, runs, "ext")
    assert len(load_imported(runs, "ext")[0]) == 11  # the first import is intact
    assert import_csv(src, runs, "ext", replace=True)["rows"] == 9
    assert len(load_imported(runs, "ext")[0]) == 9
    assert sorted(p.name for p in (runs / "ext").iterdir()) == ["import.json", "imported.csv"]


def test_import_never_shares_a_trained_studys_folder(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    runs = tmp_path / "runs"
    run = runs / "tiny" / "0123456789ab"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"status": "done"}')
    (runs / "tiny" / "study.json").write_text("{}")
    for replace in (False, True):
        with pytest.raises(ImportCSVError, match="holds a trained study's runs, which an import would hide; choose "
                                                 "another --study name"):
            import_csv(src, runs, "tiny", replace=replace)
    assert sorted(p.name for p in (runs / "tiny").iterdir()) == ["0123456789ab", "study.json"]
    assert load_imported(runs, "tiny") is None


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import initstudy.importing as importing

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(importing, "write_json", full)
    src = tmp_path / "logs.csv"
    src.write_text(GOOD)
    with pytest.raises(OSError, match="No space left"):
        import_csv(src, tmp_path / "runs", "ext")
    assert list((tmp_path / "runs").iterdir()) == []  # no half import, no temporary file


def test_map_onto_a_standard_name_replaces_that_column(tmp_path):
    from initstudy.importing import read_logs

    src = tmp_path / "logs.csv"
    src.write_text("initializer,seed,epoch,val_acc,val_acc_ema\nhe,0,0,0.10,0.2\nhe,0,1,0.90,0.7\n")
    logs = read_logs(src, mapping={"val_acc": "val_acc_ema"})
    assert logs.tidy["val_acc"].tolist() == [0.2, 0.7] and logs.factors == []
    assert logs.provenance["format"] == "tidy" and logs.provenance["mapping"]["val_acc"] == "val_acc_ema"


# ---- fractional epochs: validation several times an epoch -----------------------------------------------------

QUARTERS = [j / 4 for j in range(9)]  # 0, 0.25, ..., 2


def quarter_log(epochs=QUARTERS) -> str:
    return "initializer,seed,epoch,val_acc\n" + "".join(f"{i},{s},{e},{0.1 + 0.4 * e}\n" for i in ("he", "xavier")
                                                       for s in (0, 1) for e in epochs)


def test_fractional_epochs_import_as_given(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(quarter_log())
    tidy, _ = read_tidy_csv(src)
    assert tidy[tidy["run"] == "he|0"]["epoch"].tolist() == QUARTERS
    assert tidy["epoch"].dtype == "float64" and (tidy["epoch"] == 2).sum() == 4  # whole epochs compare equal
    runs = tmp_path / "runs"
    assert import_csv(src, runs, "q")["budget_epochs"] == 2
    back, _, budget = load_imported(runs, "q")
    assert back["epoch"].tolist() == tidy["epoch"].tolist() and budget == 2


def test_integer_epochs_stay_integers(tmp_path):
    src = tmp_path / "logs.csv"
    src.write_text(GOOD.replace("he,0,2,0.95", "he,0,2.0,0.95"))  # a whole epoch written as 2.0 is epoch 2
    tidy, _ = read_tidy_csv(src)
    assert tidy["epoch"].dtype == "int64" and tidy["epoch"].tolist()[:3] == [0, 1, 2]


def test_budget_is_the_last_epoch_rounded_up(tmp_path, capsys):
    src = tmp_path / "logs.csv"
    src.write_text(quarter_log(QUARTERS + [2.25]))
    runs = tmp_path / "runs"
    assert import_csv(src, runs, "q")["budget_epochs"] == 3
    assert main(["import", str(src), "--study", "q2", "--runs-dir", str(runs), "--budget-epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "epochs run to 2.25 but --budget-epochs is 2; raise it to 3" in err[0], err


@pytest.mark.parametrize("epoch, message", [
    ("-0.25", "row 3, column epoch: '-0.25' is negative"),
    ("nan", "row 3, column epoch: 'nan' is not a number"),
    ("inf", "row 3, column epoch: 'inf' is not a number"),
    ("1/4", "row 3, column epoch: '1/4' is not a number"),
    ("0.25x", "row 3, column epoch: '0.25x' is not a number"),
    ("0.0", "row 3, columns run/epoch: run 'he|0' has epoch 0 twice"),  # 0 and 0.0 are one epoch
])
def test_malformed_fractional_epochs(tmp_path, epoch, message):
    src = tmp_path / "bad.csv"
    src.write_text(quarter_log().replace("he,0,0.25,", f"he,0,{epoch},", 1))
    with pytest.raises(ImportCSVError) as err:
        read_tidy_csv(src)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
