"""One run: build the model, initialise it from outside, train it with Lightning, return its history.

Seed k of a study derives two independent generators: one drives the
initializer, the other the data order. Every initializer run with seed k
therefore sees the same minibatches in the same order (a paired design), and
the same spec gives the same numbers on CPU.
"""

from __future__ import annotations

import hashlib
import logging
import math
import platform
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from .config import RunSpec
from .data import Dataset, TensorBatches, load_dataset
from .diagnostics import layer_diagnostics
from .errors import StudyError
from .initializers import apply_init
from .models import build_model
from .store import eval_point

# Images per evaluation batch. Not larger: a plain CNN's activations for 256 images (13 MB a layer) no longer
# fit the cache, and evaluating took 1.5-1.7x as long per image as at 128 on one core (0.79 s against 1.45 s
# for 4,000 images, relu); at 1,000 they also passed glibc's 32 MiB mmap ceiling, so each was a fresh mapping
# faulted in page by page. Accuracy and training are the same at any size; a mean loss moves in float32's
# last bits (tests/test_bench.py).
EVAL_BATCH = 128


def versions() -> dict:
    """The library versions a run trained with, for its run.json and the report."""
    from . import __version__

    return {"initstudy": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "pytorch_lightning": pl.__version__, "platform": platform.platform()}


def derive_seed(seed: int, stream: str) -> int:
    """An independent 63-bit seed per (run seed, stream), e.g. 'init' or 'data'."""
    digest = hashlib.sha256(f"initstudy:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def weights_sha256(net: torch.nn.Module) -> str:
    """A fingerprint of a model's state (parameters and buffers: names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def memory_format(net: torch.nn.Module | None, device) -> torch.memory_format:
    """The layout a run's model and images take: channels-last on the CPU for a model with 4-D (conv) weights,
    whose oneDNN kernels are faster in it there; NCHW on a GPU, for a model without conv weights, and for one
    that sets `initstudy_channels_last = False` (its forward, say, `.view`s a conv's output). `net=None`: by
    device only."""
    if torch.device(device).type != "cpu":
        return torch.contiguous_format
    if net is None:
        return torch.channels_last
    conv = getattr(net, "initstudy_channels_last", True) and any(p.dim() == 4 for p in net.parameters())
    return torch.channels_last if conv else torch.contiguous_format


class ProcessSetting:
    """A process-wide setting that runs hold while they train, as a context: the first run in applies it, the
    last run out puts back what it found. Runs training in threads at once thus never undo each other's
    setting, and the caller (a notebook, a test, a user's own training) keeps its own."""

    def __init__(self, apply: Callable[[], object], restore: Callable[[object], None]):
        self._apply, self._restore = apply, restore  # apply() -> the state it replaced; restore(that state)
        self._lock, self._holders, self._saved = threading.Lock(), 0, None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._holders == 0:
                self._saved = self._apply()
            self._holders += 1
        try:
            yield
        finally:
            with self._lock:
                self._holders -= 1
                if self._holders == 0:
                    self._restore(self._saved)
                    self._saved = None


def _tf32_switches() -> list[tuple[object, str, object]]:
    """(owner, attribute, value for true float32) of the switches that let CUDA use TF32. torch >= 2.9 has
    per-backend precisions, and mixing them with the legacy flags makes torch raise, so only one set is used."""
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        return [(b.cuda.matmul, "fp32_precision", "ieee"), (b.cudnn.conv, "fp32_precision", "ieee"),
                (b.cudnn.rnn, "fp32_precision", "ieee")]
    return [(b.cuda.matmul, "allow_tf32", False), (b.cudnn, "allow_tf32", False)]


def _tf32_off() -> list:
    # cuDNN and cuBLAS would use TF32 on Ampere and later by default.
    switches = _tf32_switches()
    saved = [getattr(owner, name) for owner, name, _ in switches]
    for owner, name, value in switches:
        setattr(owner, name, value)
    return saved


def _tf32_restore(saved: list) -> None:
    for (owner, name, _), value in zip(_tf32_switches(), saved):
        setattr(owner, name, value)


# `with float32_reference():` keeps CUDA convolutions and matmuls in true float32 while a run trains, then
# restores the caller's TF32 settings.
float32_reference = ProcessSetting(_tf32_off, _tf32_restore)


@dataclass
class RunResult:
    status: str  # "done" or "diverged"
    # per evaluation: epoch (0 = before training; fractions with eval_every < 1), train_loss (mean since the
    # previous row), val_loss, val_acc
    history: list[dict]
    diverged_epoch: float | None  # evaluation point at which the loss was first seen non-finite
    seconds: float  # wall time of the whole run
    device: str
    diagnostics: list[dict] = field(default_factory=list)  # per layer at init, see diagnostics.py
    init_sha256: str = ""  # weights_sha256 of the initialised model: equal for equal specs, whatever the executor
    final_sha256: str = ""  # weights_sha256 at the end of training


class Stopped(Exception):
    """The sweep asked this run to stop (Ctrl-C while runs train in threads); nothing of it is kept."""


class _Diverged(Exception):
    def __init__(self, epoch: int):
        super().__init__(f"non-finite loss in epoch {epoch}")
        self.epoch = epoch


class EpochLoader:
    """A train loader whose one item is a whole epoch of minibatches, which `training_step` steps through.

    Lightning's loop around a step (fetcher, hooks, progress, logger connector) costs 0.5-1 ms on 2 CPU
    cores, 4-7% of a small CNN's minibatch; handed an epoch at a time, it is paid once an epoch. (A plain
    list would not do: Lightning reads a list of loaders as several loaders, one batch from each a step.)
    """

    def __init__(self, batches: TensorBatches):
        self.batches = batches

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[TensorBatches]:
        yield self.batches


class TensorDataModule(pl.LightningDataModule):
    """Serves a `Dataset` from tensors moved once to the training device; batching is by index."""

    def __init__(self, dataset: Dataset, batch_size: int, data_seed: int,
                 fmt: torch.memory_format = torch.contiguous_format):
        super().__init__()
        self.dataset, self.batch_size, self.fmt = dataset, batch_size, fmt
        self.order = torch.Generator().manual_seed(data_seed)

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        d = self.dataset
        x_train, x_val = d.images(self.fmt)
        self.x_train, self.y_train = x_train.to(device), d.y_train.to(device)
        self.x_val, self.y_val = x_val.to(device), d.y_val.to(device)

    def train_dataloader(self) -> EpochLoader:
        return EpochLoader(TensorBatches(self.x_train, self.y_train, self.batch_size, self.order))

    def val_dataloader(self) -> TensorBatches:
        return TensorBatches(self.x_val, self.y_val, EVAL_BATCH)

    def train_eval_batches(self) -> TensorBatches:
        """The training split in fixed order, for the epoch-0 training loss."""
        return TensorBatches(self.x_train, self.y_train, EVAL_BATCH)


class InitStudyModule(pl.LightningModule):
    """Cross-entropy classification with per-epoch history kept on the module (no logger needed)."""

    def __init__(self, net: torch.nn.Module, spec: RunSpec, stop: threading.Event | None = None,
                 first_row: dict | None = None):
        super().__init__()
        self.net, self.spec, self.stop = net, spec, stop
        self.first_row = first_row  # the epoch-0 row when it is already known (`train_run`)
        # Manual optimization runs the same zero_grad / backward / step as a hand-written loop (the same
        # numbers), minibatch by minibatch inside one Lightning step an epoch (EpochLoader).
        self.automatic_optimization = False
        self.history: list[dict] = []
        self._sums: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _common_step(self, batch, stage: str) -> torch.Tensor:
        if self.stop is not None and self.stop.is_set():
            raise Stopped(f"stopped during {stage}")
        x, y = batch
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        # Sums stay on the device: one sync per epoch instead of one per step.
        self._add(f"{stage}_loss", loss.detach() * len(y))
        self._add(f"{stage}_n", len(y))
        if stage == "val":  # training accuracy is not recorded, so it is not computed
            self._add("val_correct", (logits.argmax(1) == y).sum())
        return loss

    def _add(self, key: str, value) -> None:
        self._sums[key] = self._sums.get(key, 0) + value

    def _epoch_means(self, stage: str) -> dict:
        n = float(self._sums.pop(f"{stage}_n"))
        out = {f"{stage}_loss": float(self._sums.pop(f"{stage}_loss")) / n}
        if stage == "val":
            out["val_acc"] = float(self._sums.pop("val_correct")) / n
        return out

    @torch.no_grad()
    def _evaluate(self, batches, stage: str) -> dict:
        was_training = self.net.training
        self.net.eval()
        for batch in batches:
            self._common_step(batch, stage)
        self.net.train(was_training)
        return self._epoch_means(stage)

    def on_train_start(self) -> None:
        if self.first_row is None:
            dm = self.trainer.datamodule
            self.first_row = {"epoch": 0, **self._evaluate(dm.train_eval_batches(), "train"),
                              **self._evaluate(dm.val_dataloader(), "val")}
        self._record(dict(self.first_row))

    def training_step(self, epoch: TensorBatches, batch_idx) -> None:
        # The minibatch loop a user writes by hand, on the torch optimizer itself: Lightning's manual_backward
        # and optimizer wrapper add hooks per minibatch that a single-device fp32 run has no use for.
        opt = self.optimizers().optimizer
        marks = eval_steps(len(epoch), self.spec.eval_every)
        for step, batch in enumerate(epoch, 1):
            loss = self._common_step(batch, "train")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step in marks:  # a point inside the epoch; the epoch's end is Lightning's validation
                val = self._evaluate(self.trainer.datamodule.val_dataloader(), "val")
                j, k = marks[step]
                self._record({"epoch": eval_point(self.current_epoch * k + j, k), **self._epoch_means("train"), **val})

    def validation_step(self, batch, batch_idx):
        self._common_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._val = self._epoch_means("val")

    def on_train_epoch_end(self) -> None:
        self._record({"epoch": self.current_epoch + 1, **self._epoch_means("train"), **self._val})

    def _record(self, row: dict) -> None:
        """Append an epoch's row, or end the run as diverged when a loss is not finite."""
        if not (math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])):
            raise _Diverged(row["epoch"])
        self.history.append(row)

    def configure_optimizers(self):
        return make_optimizer(self.spec, self.parameters())


def eval_steps(steps: int, eval_every: float) -> dict[int, tuple[int, int]]:
    """Step (1-based) -> (point j, points k per epoch) of the evaluations inside an epoch of `steps` steps,
    at fractions j/k, j = 1..k-1, of its steps (rounded; k <= steps keeps them distinct, from step 1 to
    steps - 1); the epoch's end (j = k) is not among them."""
    k = round(1 / eval_every)
    if k > steps:
        raise StudyError(f"eval_every {eval_every:g} asks for {k} evaluations an epoch but an epoch has only "
                         f"{steps} steps; use eval_every >= 1/{steps} or a smaller batch_size")
    return {round(j * steps / k): (j, k) for j in range(1, k)}


def make_optimizer(spec: RunSpec, params) -> torch.optim.Optimizer:
    """The run's optimizer: Adam, or SGD with momentum; constant learning rate."""
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)


LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


def _silence_lightning() -> tuple:
    levels = {name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS}
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    filters = warnings.catch_warnings()
    filters.__enter__()  # left in `_restore_lightning`, by whichever run is the last to finish
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    return levels, filters


def _restore_lightning(saved: tuple) -> None:
    levels, filters = saved
    filters.__exit__(None, None, None)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


# `with quiet_lightning():` silences Lightning's banners and hints (they would break the sweep's single
# progress bar) while runs train; the caller's logging levels and warning filters come back afterwards.
quiet_lightning = ProcessSetting(_silence_lightning, _restore_lightning)


_GLOBAL_RNG = threading.Lock()


def build_run(spec: RunSpec, dataset: Dataset) -> torch.nn.Module:
    """The model of `spec`, initialised by its initializer from the run's init generator.

    torch's layers draw their default weights from the global generator as they are built; the initializer
    then overwrites every weight it is responsible for from the run's own generator (tests/test_sweep.py).
    The global generator's state is put back afterwards, so building a run leaves it as it was.
    """
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        net = build_model(spec.model, dataset.in_channels, dataset.image_size, dataset.num_classes,
                          spec.activation, **dict(spec.model_params))
    apply_init(net, spec.init, spec.activation, torch.Generator().manual_seed(derive_seed(spec.seed, "init")),
               batch=dataset.probe[0])
    return net


def train_run(spec: RunSpec, data_dir: str | None = None, accelerator: str = "auto",
              dataset: Dataset | None = None, stop: threading.Event | None = None) -> RunResult:
    """Train one run to its epoch budget, or until its loss becomes non-finite ("diverged").

    `dataset` is the run's dataset when the caller already has it (a Ray task gets it from the
    driver); otherwise it is loaded from `data_dir`. Once `stop` is set, the run raises `Stopped`
    at its next minibatch. Runs may train in several threads at once: nothing here draws from
    torch's global generator that a run's numbers depend on (initializers and the data order
    draw from the run's own generators; tests/test_sweep.py checks threads against one by one).

    Process-wide state is held only while the run trains and then put back: TF32 off
    (`float32_reference`), Lightning's loggers and warnings quiet (`quiet_lightning`); torch's
    global generator is left as it was (`build_run`).
    """
    with quiet_lightning(), float32_reference():
        return _train_run(spec, data_dir, accelerator, dataset, stop)


def _train_run(spec: RunSpec, data_dir: str | None, accelerator: str, dataset: Dataset | None,
               stop: threading.Event | None) -> RunResult:
    start = time.perf_counter()
    if dataset is None:
        dataset = load_dataset(spec.dataset, data_dir, spec.split_seed)
    net = build_run(spec, dataset)
    init_sha = weights_sha256(net)
    diagnostics = layer_diagnostics(net, spec.init, spec.activation, *dataset.probe)
    # barebones: none of Lightning's logging, progress, checkpoint or summary machinery runs per step;
    # the module keeps its own per-epoch history instead.
    trainer = pl.Trainer(accelerator="cuda" if accelerator == "gpu" else accelerator, devices=1,
                         max_epochs=spec.epochs, barebones=True, num_sanity_val_steps=0)
    device = str(trainer.strategy.root_device)
    fmt = memory_format(net, device)
    net = net.to(memory_format=fmt)  # after the diagnostics, which thus match `inspect`'s NCHW model
    # Zero and constant inits give every seed the same weights (half the default study's runs), so the same
    # epoch-0 evaluation: a forward pass over all training and validation images, 7-9% of a default run. On
    # the CPU, where equal weights, model and threads give equal bits, a process computes it once
    # (tests/test_sweep.py); a GPU's kernels promise no such thing.
    key = (init_sha, spec.model, spec.model_params, spec.activation, torch.get_num_threads(), EVAL_BATCH,
           str(fmt))
    evaluations = dataset.evaluations if device == "cpu" else {}
    module = InitStudyModule(net, spec, stop, evaluations.get(key))
    dm = TensorDataModule(dataset, spec.batch_size, derive_seed(spec.seed, "data"), fmt)
    status, diverged_epoch = "done", None
    try:
        trainer.fit(module, datamodule=dm)
    except _Diverged as exc:
        status, diverged_epoch = "diverged", exc.epoch
    except SystemExit:
        # Lightning turns Ctrl-C into sys.exit(1) with SIGINT ignored; give the sweep its KeyboardInterrupt back.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt from None
    if module.history:
        evaluations[key] = module.history[0]
    return RunResult(status, module.history, diverged_epoch, time.perf_counter() - start, device, diagnostics,
                     init_sha, weights_sha256(net))
