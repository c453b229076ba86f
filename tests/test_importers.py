"""Each importer on a log written by the library itself: the tidy table equals what was logged, value for value."""

import ast
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from initstudy.cli import main
from initstudy.importing import ImportCSVError, load_import_meta, load_imported, read_logs

INITS = ["he", "xavier"]
SEEDS = [0, 1]
EPOCHS = 4


def curve(init: str, seed: int, epoch: int) -> float:
    return round(0.1 + 0.2 * epoch + 0.01 * seed + (0.03 if init == "he" else 0.0), 6)


def expected(runs=None, f32=False) -> pd.DataFrame:
    """The logged val_acc per (initializer, seed, epoch), float32-rounded where the format stores float32."""
    rows = [(i, s, e, float(np.float32(curve(i, s, e))) if f32 else curve(i, s, e))
            for i in INITS for s in SEEDS for e in range(EPOCHS)]
    return pd.DataFrame(rows, columns=["initializer", "seed", "epoch", "val_acc"])


def same(tidy: pd.DataFrame, want: pd.DataFrame) -> None:
    got = tidy[["initializer", "seed", "epoch", "val_acc"]].sort_values(["initializer", "seed", "epoch"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True,
                                  check_dtype=False)


def tree(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def write_tb(root: Path, names=lambda i, s: f"{i}-s{s}", extra=None) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    for i in INITS:
        for s in SEEDS:
            w = SummaryWriter(str(root / names(i, s)))
            for e in range(EPOCHS):
                w.add_scalar("val_acc", curve(i, s, e) if e else 0.5, e)  # epoch 0 logged twice below
                if e == 0:
                    w.add_scalar("val_acc", curve(i, s, e), e)  # a step logged twice keeps the last value
                w.add_scalar("val_loss", 2.0 - e * 0.25, e)
            if extra:
                extra(w, i, s)
            w.close()
    return root


def test_tensorboard_summary_writer_with_run_pattern(tmp_path, capsys):
    src = write_tb(tmp_path / "tb", names=lambda i, s: f"{i}-s{s}/cifar")
    runs = tmp_path / "runs"
    # the pattern matches the innermost path component it can: here the parent of each event folder
    assert main(["import", str(src), "--study", "tb", "--runs-dir", str(runs),
                 "--run-pattern", "{initializer}-s{seed}"]) == 0
    assert "imported 4 runs" in capsys.readouterr().out
    tidy, factors, budget = load_imported(runs, "tb")
    same(tidy, expected(f32=True))
    assert factors == [] and budget == EPOCHS - 1
    assert set(tidy["run"]) == {f"{i}-s{s}/cifar" for i in INITS for s in SEEDS}
    assert np.allclose(tidy["val_loss"], 2.0 - tidy["epoch"] * 0.25) and not tidy["diverged"].any()
    meta = load_import_meta(runs, "tb")["provenance"]
    assert meta["format"] == "tensorboard" and meta["run_pattern"] == "{initializer}-s{seed}"
    assert meta["mapping"] == {"val_acc": "val_acc", "val_loss": "val_loss"} and meta["files"] == 4
    assert meta["source"] == str(src.absolute()) and meta["imported_at"].endswith("+00:00")
    # the digest is over relative paths and bytes: it matches a hand computation in sorted path order
    h = hashlib.sha256()
    for p in sorted(src.rglob("*tfevents*"), key=lambda p: p.relative_to(src).as_posix()):
        data = p.read_bytes()
        h.update(f"{p.relative_to(src).as_posix()}\0{len(data)}\0".encode() + data)
    assert meta["sha256"] == h.hexdigest()


def test_tensorboard_pattern_factors_and_steps_per_epoch(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for model in ("cnn", "mlp"):
        w = SummaryWriter(str(tmp_path / "tb" / f"run_{model}_he_seed7"))
        for e in range(3):
            w.add_scalar("acc/val", 0.25 * (e + 1) + (model == "cnn") * 0.1, 100 * e)
        w.close()
    logs = read_logs(tmp_path / "tb", mapping={"val_acc": "acc/val"}, steps_per_epoch=100,
                     run_pattern="run_{model}_{initializer}_seed{seed}")
    assert logs.factors == ["model"] and logs.provenance["steps_per_epoch"] == 100
    got = logs.tidy.set_index(["model", "epoch"])["val_acc"]
    assert got[("cnn", 2)] == float(np.float32(0.85)) and got[("mlp", 0)] == 0.25
    assert set(logs.tidy["seed"]) == {7} and set(logs.tidy["initializer"]) == {"he"}


def test_tensorboard_lightning_logger_hparams(tmp_path):
    from pytorch_lightning.loggers import TensorBoardLogger

    for i in INITS:
        for s in SEEDS:
            logger = TensorBoardLogger(str(tmp_path / "tb"), name=f"exp_{i}_{s}")
            logger.log_hyperparams({"init": i, "seed": s, "lr": 0.1})
            for e in range(EPOCHS):
                logger.log_metrics({"val_acc": curve(i, s, e), "train_loss": 1.0 / (e + 1)}, step=e)
            logger.save()
            logger.finalize("success")
    logs = read_logs(tmp_path / "tb", mapping={"initializer": "init"})  # format detected, hparams give the arms
    assert logs.provenance["format"] == "tensorboard"
    same(logs.tidy, expected(f32=True))
    assert logs.tidy["train_loss"].tolist()[:EPOCHS] == [float(np.float32(1.0 / (e + 1))) for e in range(EPOCHS)]
    assert logs.provenance["mapping"]["initializer"] == "init"


def test_lightning_csv_logger(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    for i in INITS:
        for s in SEEDS:
            logger = CSVLogger(str(tmp_path / "logs"), name=f"{i}_{s}")
            logger.log_hyperparams({"initializer": i, "seed": s})
            for e in range(EPOCHS):  # train and val metrics on rows of their own, as a Trainer logs them
                # a Trainer logs the 0-based epoch in progress: e - 1 at the end of e completed epochs
                logger.log_metrics({"train_loss": 1.0 / (e + 1), "epoch": e - 1}, step=2 * e)
                logger.log_metrics({"val_acc": curve(i, s, e), "epoch": e - 1}, step=2 * e + 1)
            logger.save()
    runs = tmp_path / "runs"
    assert main(["import", str(tmp_path / "logs"), "--study", "light", "--runs-dir", str(runs)]) == 0
    tidy = load_imported(runs, "light")[0]
    same(tidy, expected())
    # logged on rows of their own, joined to val_acc through the epoch column
    assert tidy["train_loss"].tolist() == [1.0 / (e + 1) for _ in range(4) for e in range(EPOCHS)]
    meta = load_import_meta(runs, "light")["provenance"]
    assert meta["format"] == "lightning-csv" and meta["files"] == 8 and meta["mapping"]["epoch"] == "epoch"


def test_mlflow_tracking_folder(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # only for writing the fixture
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("init")
    for i in INITS:
        for s in SEEDS:
            with mlflow.start_run(run_name=f"{i}-{s}"):
                mlflow.log_param("weight_init", i)
                mlflow.log_param("seed", s)
                for e in range(EPOCHS):
                    mlflow.log_metric("val_acc", curve(i, s, e), step=e)
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    before = tree(tmp_path / "mlruns")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    runs = tmp_path / "runs"
    assert main(["import", str(tmp_path / "mlruns"), "--study", "ml", "--runs-dir", str(runs),
                 "--map", "initializer=weight_init"]) == 0
    same(load_imported(runs, "ml")[0], expected())  # mlflow keeps doubles: exact
    assert tree(tmp_path / "mlruns") == before and list(cwd.iterdir()) == []  # nothing written by the reader
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    assert load_import_meta(runs, "ml")["provenance"]["format"] == "mlflow"


def test_wide_csv_with_map(tmp_path):
    rows = [{"name": f"{i}/{s}", "init_name": i, "rng": s, "_step": e, "val/acc": curve(i, s, e),
             "_runtime": 3.5 * e} for i in INITS for s in SEEDS for e in range(EPOCHS)]
    src = tmp_path / "history.csv"
    pd.DataFrame(rows).to_csv(src, index=False)
    runs = tmp_path / "runs"
    assert main(["import", str(src), "--study", "w", "--runs-dir", str(runs), "--map", "val_acc=val/acc",
                 "--map", "epoch=_step", "--map", "initializer=init_name", "--map", "seed=rng",
                 "--map", "run=name"]) == 0
    tidy, factors, _ = load_imported(runs, "w")
    same(tidy, expected())
    assert factors == []  # _runtime names no field: not a factor that would split every row into a cell
    prov = load_import_meta(runs, "w")["provenance"]
    assert prov["format"] == "wide" and prov["mapping"]["val_acc"] == "val/acc" and prov["files"] == 1


def test_tidy_csv_keeps_provenance(tmp_path):
    src = tmp_path / "t.csv"
    expected().to_csv(src, index=False)
    logs = read_logs(src)
    same(logs.tidy, expected())
    assert logs.provenance["format"] == "tidy"
    assert logs.provenance["sha256"] == hashlib.sha256(f"t.csv\0{src.stat().st_size}\0".encode()
                                                        + src.read_bytes()).hexdigest()


def test_importing_needs_neither_torch_nor_lightning_at_module_level():
    tree_ = ast.parse(Path(__import__("initstudy.importing").importing.__file__).read_text())
    top = [n for n in tree_.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("torch", "pytorch_lightning", "lightning", "mlflow",
                                                        "tensorboard")]


# ---- bad input: one line naming the problem and the fix, exit 2, nothing imported ----------------------------

def fails(capsys, tmp_path, argv, *needles):
    runs = tmp_path / "runs"
    assert main(["import", *argv, "--study", "bad", "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    assert not runs.exists()


def test_bad_event_files(tmp_path, capsys):
    src = write_tb(tmp_path / "tb")
    event = next((src / "he-s0").iterdir())
    event.write_bytes(event.read_bytes()[:-7])  # cut off while written
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{seed}"], "bytes are readable events",
          "he-s0")
    event.write_bytes(b"")
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{seed}"], "run 'he-s0'",
          "hold no scalars (empty or unreadable)")


def test_run_folder_not_matching_the_pattern(tmp_path, capsys):
    src = write_tb(tmp_path / "tb")
    (src / "xavier-s1").rename(src / "xavier_seed1")
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{seed}"],
          "run 'xavier_seed1' does not match --run-pattern '{initializer}-s{seed}'")


def test_missing_tag_lists_the_available_ones(tmp_path, capsys):
    src = write_tb(tmp_path / "tb")
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{seed}", "--map", "val_acc=accuracy"],
          "has no tag 'accuracy'; it has: val_acc, val_loss; pass --map val_acc=NAME")


def test_missing_column_lists_the_available_ones(tmp_path, capsys):
    src = tmp_path / "w.csv"
    pd.DataFrame({"initializer": ["he"], "seed": [0], "step": [1], "acc": [0.5]}).to_csv(src, index=False)
    fails(capsys, tmp_path, [str(src)], "missing column 'epoch'; columns: initializer, seed, step, acc; pass --map "
                                        "epoch=COLUMN")
    fails(capsys, tmp_path, [str(src), "--map", "epoch=step", "--map", "val_acc=accuracy"],
          "no column 'accuracy' (--map val_acc=accuracy); columns: initializer, seed, step, acc")


def test_steps_not_increasing(tmp_path, capsys):
    def back(w, i, s):
        w.add_scalar("val_acc", 0.5, 1)

    src = write_tb(tmp_path / "tb", extra=back)
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{seed}"],
          "tag 'val_acc': step 1 comes after step 3; steps must increase")


def test_seed_or_initializer_not_found(tmp_path, capsys):
    src = write_tb(tmp_path / "tb")
    fails(capsys, tmp_path, [str(src)], "run 'he-s0': no initializer found (no --run-pattern given",
          "--run-pattern '{initializer}-s{seed}'")
    fails(capsys, tmp_path, [str(src), "--run-pattern", "{initializer}-s{x}"], "no seed found",
          "--run-pattern '{initializer}-s{x}' has no {seed}")


@pytest.mark.parametrize("args, message", [
    (["--map", "accuracy=acc"], "--map accuracy: unknown name; use one of run, initializer"),
    (["--map", "val_acc"], "--map 'val_acc' is not NAME=COLUMN"),
    (["--steps-per-epoch", "0"], "--steps-per-epoch must be a positive integer, got '0'"),
    (["--steps-per-epoch", "1.5"], "--steps-per-epoch must be a positive integer, got '1.5'"),
    (["--map", "run=x"], "--map run does not apply to tensorboard logs"),
    (["--run-pattern", "{initializer}-s{seed"], "unmatched brace"),
])
def test_bad_options(tmp_path, capsys, args, message):
    src = write_tb(tmp_path / "tb")
    fails(capsys, tmp_path, [str(src), *args], message)


def test_steps_between_whole_epochs_are_fractional_epochs(tmp_path, capsys):
    src = write_tb(tmp_path / "tb")  # steps 0..3 at 2 steps an epoch: epochs 0, 0.5, 1, 1.5
    runs = tmp_path / "runs"
    assert main(["import", str(src), "--study", "half", "--runs-dir", str(runs), "--run-pattern",
                 "{initializer}-s{seed}", "--steps-per-epoch", "2"]) == 0
    tidy, _, budget = load_imported(runs, "half")
    want = expected(f32=True)
    same(tidy, want.assign(epoch=want["epoch"] / 2))
    assert budget == 2  # the last epoch, 1.5, rounded up to a whole epoch


# Validation 4 times an epoch of 40 steps: logged at steps 0, 10, ..., 80 = epochs 0, 0.25, ..., 2.
QUARTER_STEPS = range(0, 81, 10)
QUARTERS = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]


def quarter_acc(init: str, seed: int, step: int) -> float:
    return curve(init, seed, 0) + 0.001 * step


def test_tensorboard_steps_within_an_epoch(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for i in INITS:
        w = SummaryWriter(str(tmp_path / "tb" / f"{i}-s0"))
        for step in QUARTER_STEPS:
            w.add_scalar("val_acc", quarter_acc(i, 0, step), step)
            w.add_scalar("val_loss", 2.0 - step / 100, step)
        w.close()
    tidy = read_logs(tmp_path / "tb", run_pattern="{initializer}-s{seed}", steps_per_epoch=40).tidy
    he = tidy[tidy["initializer"] == "he"]
    assert he["epoch"].tolist() == QUARTERS
    assert he["val_acc"].tolist() == [float(np.float32(quarter_acc("he", 0, s))) for s in QUARTER_STEPS]
    assert he["val_loss"].tolist() == [float(np.float32(2.0 - s / 100)) for s in QUARTER_STEPS]  # joined per point


def test_lightning_csv_steps_within_an_epoch_and_fractional_epoch_column(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    for i in INITS:
        logger = CSVLogger(str(tmp_path / "logs"), name=f"{i}-s0")
        for step in QUARTER_STEPS:  # `progress` is a trainer's own fractional epoch, logged beside the metric
            logger.log_metrics({"val_acc": quarter_acc(i, 0, step), "progress": step / 40}, step=step)
        logger.save()
    by_step = read_logs(tmp_path / "logs", run_pattern="{initializer}-s{seed}", steps_per_epoch=40)
    by_column = read_logs(tmp_path / "logs", run_pattern="{initializer}-s{seed}", mapping={"epoch": "progress"})
    for logs in (by_step, by_column):
        he = logs.tidy[logs.tidy["initializer"] == "he"]
        assert he["epoch"].tolist() == QUARTERS
        assert he["val_acc"].tolist() == [quarter_acc("he", 0, s) for s in QUARTER_STEPS]
    assert by_column.provenance["mapping"]["epoch"] == "progress"
    metrics = next((tmp_path / "logs" / "he-s0").rglob("metrics.csv"))
    metrics.write_text(metrics.read_text().replace("\n0.25,", "\na quarter,"))  # progress is the first column
    with pytest.raises(ImportCSVError) as err:
        read_logs(tmp_path / "logs", run_pattern="{initializer}-s{seed}", mapping={"epoch": "progress"})
    assert "step or epoch 'a quarter' is not a number" in str(err.value) and "\n" not in str(err.value)


def test_mlflow_steps_within_an_epoch(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # only for writing the fixture
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    mlflow.set_experiment("init")
    with mlflow.start_run(run_name="he-s0"):
        for step in QUARTER_STEPS:
            mlflow.log_metric("val_acc", quarter_acc("he", 0, step), step=step)
    mlflow.set_tracking_uri(None)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    tidy = read_logs(tmp_path / "mlruns", run_pattern="{initializer}-s{seed}", steps_per_epoch=40).tidy
    assert tidy["epoch"].tolist() == QUARTERS
    assert tidy["val_acc"].tolist() == [quarter_acc("he", 0, s) for s in QUARTER_STEPS]  # doubles: exact


def test_steps_per_epoch_rounds_to_six_decimals(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path / "tb" / "he-s0"))
    for step in (0, 1, 2, 3):
        w.add_scalar("val_acc", 0.5, step)
    w.close()
    tidy = read_logs(tmp_path / "tb", run_pattern="{initializer}-s{seed}", steps_per_epoch=3).tidy
    assert tidy["epoch"].tolist() == [0, 0.333333, 0.666667, 1]  # as the run store writes a third of an epoch


def test_path_that_does_not_exist_or_cannot_be_told(tmp_path, capsys):
    fails(capsys, tmp_path, [str(tmp_path / "nope")], "nope not found; give the path of a log file or folder")
    (tmp_path / "logs.txt").write_text("x")
    fails(capsys, tmp_path, [str(tmp_path / "logs.txt")], "cannot tell the format",
          "pass --format tidy|wide|tensorboard|lightning-csv|mlflow")
    with pytest.raises(ImportCSVError, match="is a file; tensorboard logs are a folder"):
        read_logs(tmp_path / "logs.txt", fmt="tensorboard")


def test_bench_logs_import_alike_from_tensorboard_and_csv(tmp_path):
    from initstudy.bench import synthetic_logs, synthetic_tensorboard

    tb = read_logs(synthetic_tensorboard(tmp_path / "tb", 2, 3, 4), run_pattern="{initializer}-s{seed}").tidy
    csv_ = read_logs(synthetic_logs(tmp_path / "logs.csv", 2, 3, 4)).tidy
    assert len(tb) == len(csv_) == 2 * 3 * 5
    key = ["initializer", "seed", "epoch"]
    tb, csv_ = tb.sort_values(key).reset_index(drop=True), csv_.sort_values(key).reset_index(drop=True)
    assert (tb[key] == csv_[key]).all().all()
    assert (tb["val_acc"] == csv_["val_acc"].astype(np.float32).astype(float)).all()  # TB stores float32


def test_tensorboard_summary_writer_add_hparams(tmp_path):
    def hparams(w, i, s):  # torch logs these into a time-stamped sub-folder of the run
        w.add_hparams({"initializer": i, "seed": s, "lr": 0.1}, {"hparam/final": curve(i, s, EPOCHS - 1)})

    src = write_tb(tmp_path / "tb", names=lambda i, s: f"run{INITS.index(i)}{s}", extra=hparams)
    assert len(list(src.rglob("*tfevents*"))) == 8
    logs = read_logs(src)
    same(logs.tidy, expected(f32=True))
    assert set(logs.tidy["run"]) == {"run00", "run01", "run10", "run11"} and logs.provenance["files"] == 8


def test_lightning_trainer_epochs_become_completed_epochs(tmp_path):
    """A real Trainer with a CSVLogger: the validation after the first epoch is logged as epoch 0 and
    imported as epoch 1, so epochs-to-threshold counts completed epochs as for every other format."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.loggers import CSVLogger

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.w - batch[0]).pow(2).mean()

        def validation_step(self, batch, batch_idx):
            self.log("val_acc", 0.25 * (self.current_epoch + 1))  # a known value per completed epoch

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=2)
    logger = CSVLogger(str(tmp_path / "logs"), name="he-s3")
    trainer = pl.Trainer(max_epochs=3, logger=logger, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu")
    trainer.fit(Probe(), data, data)
    logs = read_logs(tmp_path / "logs", run_pattern="{initializer}-s{seed}")
    rows = logs.tidy.sort_values("epoch")
    assert rows["epoch"].tolist() == [1, 2, 3]
    assert rows["val_acc"].tolist() == [0.25, 0.5, 0.75]
    assert set(rows["initializer"]) == {"he"} and set(rows["seed"]) == {3}
