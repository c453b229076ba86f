"""The benchmark: initstudy's real training path against two raw PyTorch loops.

initstudy trains the reference runs as `initstudy train` does by default (on a 2-core CPU: 2 runs at once in
threads, one torch thread each). The raw loop is the same runs by hand in the same process on the same
schedule, with initstudy's kernels (channels-last on the CPU): their ratio is initstudy's overhead. The
naive loop is the same runs as most users would write them, one after another in a fresh Python process at
torch's default threads, in torch's default NCHW layout: `speedup_vs_naive` is what initstudy saves such a
user. All sides train the same runs (model, initial weights, data order, batch size, optimizer, epochs, and
the same evaluations: epoch 0, then every `eval_every`), taking turns block by block so drift in machine
load hits them alike. initstudy's side goes through everything a sweep does: Lightning, init diagnostics,
and the run store.
Analysis and report timings (HTML, and HTML plus PDF) use a synthetic store of 1,000 runs x 50 epochs.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import RunSpec, Study, expand, load_study
from .data import TensorBatches, load_dataset
from .errors import SweepError
from .executors import InProcess, LocalPool, Outcome, make_executor, visible_gpus
from .store import RunStore, eval_point
from .sweep import run_sweep
from .training import (EVAL_BATCH, build_run, derive_seed, eval_steps, float32_reference, make_optimizer,
                       memory_format, train_run, weights_sha256)

# 40 runs, 20 blocks of 2 on 2 cores: one block's ratio moves by about 8% with a shared machine's load, so
# fewer blocks would leave the figures' intervals wider than the margins to their targets.
REFERENCE = ["models=[simple, plain]", "activations=[relu]", "depth=6", "width=16", "epochs=4", "seeds=5",
             "batch_size=64", "initializers=[xavier_normal, kaiming_normal, orthogonal, default]", "dataset=mnist5k",
             "lr=0.01"]


def raw_run(spec: RunSpec, data_dir: str | None = None, device: str = "cpu",
            naive: bool = False) -> tuple[list[dict], torch.nn.Module]:
    """The same run as `train_run` as a plain loop, with initstudy's kernels. Returns (history, model).

    `naive`: the loop as most users would write it, model and images in torch's default (NCHW) layout.
    Sums stay on the device, as in initstudy's module, so no side waits for the device every step.
    TF32 is off while it runs, as in `train_run`.
    """
    with float32_reference():
        return _raw_loop(spec, data_dir, device, naive)


def _raw_loop(spec: RunSpec, data_dir: str | None, device: str,
              naive: bool) -> tuple[list[dict], torch.nn.Module]:
    dataset = load_dataset(spec.dataset, data_dir, spec.split_seed)
    net = build_run(spec, dataset).to(device)
    fmt = torch.contiguous_format if naive else memory_format(net, device)
    net = net.to(memory_format=fmt)
    opt = make_optimizer(spec, net.parameters())
    order = torch.Generator().manual_seed(derive_seed(spec.seed, "data"))
    x_train, x_val = dataset.images(fmt)
    x_train, y_train = x_train.to(device), dataset.y_train.to(device)
    x_val, y_val = x_val.to(device), dataset.y_val.to(device)

    @torch.no_grad()
    def evaluate(x, y):
        net.eval()
        loss = correct = 0
        for xb, yb in TensorBatches(x, y, EVAL_BATCH):
            out = net(xb)
            loss = loss + F.cross_entropy(out, yb) * len(yb)
            correct = correct + (out.argmax(1) == yb).sum()
        net.train()
        return float(loss) / len(y), float(correct) / len(y)

    train0, _ = evaluate(x_train, y_train)
    val_loss, val_acc = evaluate(x_val, y_val)
    history = [{"epoch": 0, "train_loss": train0, "val_loss": val_loss, "val_acc": val_acc}]
    batches = TensorBatches(x_train, y_train, spec.batch_size, order)
    marks = eval_steps(len(batches), spec.eval_every)
    for epoch in range(1, spec.epochs + 1):
        total = seen = 0
        for step, (xb, yb) in enumerate(batches, 1):
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.detach() * len(yb), seen + len(yb)
            if step in marks or step == len(batches):  # the points inside the epoch, then its end (j = k = 1)
                j, k = marks.get(step, (1, 1))
                val_loss, val_acc = evaluate(x_val, y_val)
                history.append({"epoch": eval_point((epoch - 1) * k + j, k), "train_loss": float(total) / seen,
                                "val_loss": val_loss, "val_acc": val_acc})
                total = seen = 0
    return history, net


def flops_per_image(spec: RunSpec) -> float:
    """Forward plus backward FLOPs per training image (torch's FLOP counter on one batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    dataset = load_dataset(spec.dataset, None, spec.split_seed)
    net = build_run(spec, dataset)
    x, y = dataset.x_train[:spec.batch_size], dataset.y_train[:spec.batch_size]
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(net(x), y).backward()
    return counter.get_total_flops() / len(y)


def _peak_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 / 1024 if sys.platform == "darwin" else rss / 1024


def synthetic_store(runs_dir: Path, n_inits: int = 10, n_seeds: int = 100, epochs: int = 50) -> Study:
    """A study of n_inits x n_seeds runs with plausible learning curves written straight into a store."""
    inits = ", ".join(f"{{name: normal, std: {0.01 * (i + 1):.2f}}}" for i in range(n_inits))
    study = load_study("smoke", [f"initializers=[{inits}]", f"seeds={n_seeds}", f"epochs={epochs}",
                                 "name=bench-synthetic", "threshold=0.9"])
    store = RunStore(runs_dir, study.name)
    rng = np.random.default_rng(0)
    for spec in expand(study):
        arm = [i.label for i in study.initializers].index(spec.init.label)
        rate = 0.05 + 0.02 * arm + rng.normal(0, 0.01)
        acc = 0.1 + 0.85 * (1 - np.exp(-max(rate, 0.005) * np.arange(epochs + 1))) + rng.normal(0, 0.005, epochs + 1)
        history = [{"epoch": e, "train_loss": float(2.3 * np.exp(-rate * e)), "val_loss": float(2.3 * np.exp(-rate * e)),
                    "val_acc": float(np.clip(a, 0, 1))} for e, a in enumerate(acc)]
        store.start(spec, {"study": study.name})
        store.finish(spec, "done", history, {"seconds": 0.0, "device": "synthetic"})
    return study


def synthetic_logs(path: Path, n_inits: int = 10, n_seeds: int = 100, epochs: int = 50) -> Path:
    """A tidy CSV of n_inits x n_seeds runs with plausible learning curves, as another trainer would log them."""
    import pandas as pd

    rng = np.random.default_rng(0)
    arm, seed, epoch = (a.ravel() for a in np.meshgrid(np.arange(n_inits), np.arange(n_seeds),
                                                       np.arange(epochs + 1), indexing="ij"))
    rate = np.maximum(0.05 + 0.02 * arm + rng.normal(0, 0.01, (n_inits * n_seeds)).repeat(epochs + 1), 0.005)
    acc = np.clip(0.1 + 0.85 * (1 - np.exp(-rate * epoch)) + rng.normal(0, 0.005, len(arm)), 0, 1)
    pd.DataFrame({"initializer": [f"init{a}" for a in arm], "seed": seed, "epoch": epoch, "val_acc": acc,
                  "train_loss": 2.3 * np.exp(-rate * epoch)}).to_csv(path, index=False)
    return path


def synthetic_tensorboard(root: Path, n_inits: int = 10, n_seeds: int = 100, epochs: int = 50) -> Path:
    """The runs of `synthetic_logs` as TensorBoard logs: one folder `init{a}-s{seed}` per run, written with
    torch's SummaryWriter (val_acc and train_loss at step = epoch)."""
    import pandas as pd
    from torch.utils.tensorboard import SummaryWriter

    root.mkdir(parents=True, exist_ok=True)
    tidy = pd.read_csv(synthetic_logs(root / "tidy.csv", n_inits, n_seeds, epochs))
    (root / "tidy.csv").unlink()
    for (init, seed), run in tidy.groupby(["initializer", "seed"]):
        with SummaryWriter(str(root / f"{init}-s{seed}")) as w:
            for e, acc, loss in zip(run["epoch"], run["val_acc"], run["train_loss"]):
                w.add_scalar("val_acc", acc, int(e))
                w.add_scalar("train_loss", loss, int(e))
    return root


def import_seconds(tmp: Path) -> dict:
    """Seconds of `initstudy import` of 1,000 runs x 50 epochs from TensorBoard event files and from a CSV."""
    from .importing import import_logs

    tb = synthetic_tensorboard(tmp / "tb")
    start = time.perf_counter()
    import_logs(tb, tmp, "bench-import-tb", run_pattern="{initializer}-s{seed}")
    t_tb = time.perf_counter() - start
    csv_file = synthetic_logs(tmp / "import.csv")
    start = time.perf_counter()
    import_logs(csv_file, tmp, "bench-import-csv")
    return {"import_tensorboard_1000_runs_s": t_tb, "import_csv_1000_runs_s": time.perf_counter() - start}


def imported_report_seconds(tmp: Path) -> float:
    """Seconds of `initstudy report` (HTML) on an import of 1,000 runs x 50 epochs: analysis and report."""
    from .importing import import_logs
    from .pipeline import analyze_imported, imported_settings
    from .report import build_logs_report

    import_logs(synthetic_logs(tmp / "logs.csv"), tmp, "bench-imported")
    start = time.perf_counter()
    build_logs_report(analyze_imported(tmp, "bench-imported", imported_settings(tmp, "bench-imported")))
    return time.perf_counter() - start


PACKED = ["models=[simple]", "initializers=[kaiming_normal]", "epochs=3", "dataset=mnist5k", "batch_size=64",
          "lr=0.01"]  # the small runs packed on one GPU
PACKED_WORKERS = 8  # runs training at once on the one GPU, as worker processes of the local executor
PACKED_RUNS = 4  # timed runs per worker, after one warm-up run each

# Dense float32 peak (no tensor cores) of common GPUs in TFLOP/s, from the vendors' data sheets; the first
# name contained in torch.cuda.get_device_name() wins, so longer names come before their prefixes.
PEAK_FP32_TFLOPS = [
    ("H100 PCIe", 51.2), ("H100 NVL", 60.0), ("H100", 66.9), ("H200 NVL", 60.0), ("H200", 66.9),
    ("A100", 19.5), ("A10G", 31.2), ("A10", 31.2), ("L40S", 91.6), ("L40", 90.5), ("L4", 30.3),
    ("T4", 8.1), ("V100", 15.7), ("RTX 4090", 82.6), ("RTX 3090", 35.6), ("A6000", 38.7),
]


def peak_fp32_tflops(name: str) -> float | None:
    """The float32 peak of the GPU called `name`, or None for one not in PEAK_FP32_TFLOPS."""
    return next((peak for key, peak in PEAK_FP32_TFLOPS if key in name), None)


def pack_runs(specs: list[RunSpec], workers: int, accelerator: str, gpus: list[str],
              threads: int = 1) -> tuple[float, list[tuple[RunSpec, Outcome]]]:
    """Train `specs` on `workers` processes of the local executor at once; (seconds, [(spec, outcome)]).

    The first `workers` specs go one to each worker and pay its start-up (interpreter, torch import,
    CUDA context): the seconds run from the start of the next run to the end of the last.
    """
    if len(specs) <= workers:
        raise SweepError(f"packing needs more than {workers} runs: the first {workers} only warm the workers")
    pool = LocalPool(workers, threads, None, accelerator, gpus)
    started, first, last, done = 0, None, None, []
    for kind, spec, outcome in pool.outcomes(specs):
        if kind == "start":
            started += 1
            if started == workers + 1:
                first = time.perf_counter()
            continue
        if outcome.status == "failed":
            raise SweepError(f"a packed bench run failed: {outcome.error}")
        done.append((spec, outcome))
        last = time.perf_counter()
    return last - first, done


def packed_figures(workers: int = PACKED_WORKERS, runs_per_worker: int = PACKED_RUNS, accelerator: str = "auto",
                   gpus: list[str] | None = None, threads: int = 1, peak_tflops: float | None = None) -> dict:
    """Small runs one at a time against `workers` at once on one device, and their initial weights.

    Both sides train the same timed runs on worker processes; `packed_init_identical` says whether every
    run's initial weights (both sides, warm-up runs too) hash the same as the model built here, standalone.
    """
    study = load_study("default", PACKED + [f"seeds={workers * (1 + runs_per_worker)}"])
    specs = expand(study)
    warm, timed = specs[:workers], specs[workers:]
    gpus = visible_gpus(accelerator)[:1] if gpus is None else gpus
    one_s, one = pack_runs(warm[:1] + timed, 1, accelerator, gpus, threads)
    packed_s, packed = pack_runs(specs, workers, accelerator, gpus, threads)
    dataset = load_dataset(study.dataset, None, study.split_seed)
    standalone = {s.run_id: weights_sha256(build_run(s, dataset)) for s in specs}
    images = len(timed) * study.epochs * len(dataset.y_train)
    flop_per_s = images / packed_s * flops_per_image(specs[0])
    return {"packed_workers": workers, "single_img_per_s": images / one_s, "packed_img_per_s": images / packed_s,
            "packed_speedup": one_s / packed_s,
            "packed_mfu": flop_per_s / (peak_tflops * 1e12) if peak_tflops else None,
            "packed_init_identical": all(o.info["init_sha256"] == standalone[s.run_id] for s, o in one + packed)}


def gpu_figures(device: str, flop_per_s: float, say=lambda text: None) -> dict:
    """Packing and model FLOPs utilisation on a CUDA device; the same keys as None elsewhere."""
    keys = ("gpu", "peak_fp32_tflops", "mfu", "packed_workers", "single_img_per_s", "packed_img_per_s",
            "packed_speedup", "packed_mfu", "packed_init_identical")
    if not device.startswith("cuda"):
        return dict.fromkeys(keys)
    name = torch.cuda.get_device_name(torch.device(device))
    peak = peak_fp32_tflops(name)
    say(f"{PACKED_WORKERS} small runs at once on {name} against one at a time")
    packed = packed_figures(threads=max(1, (os.cpu_count() or 1) // PACKED_WORKERS), peak_tflops=peak)
    return {"gpu": name, "peak_fp32_tflops": peak, "mfu": flop_per_s / (peak * 1e12) if peak else None, **packed}


SHORT = ["dataset=digits", "epochs=1"]  # the same runs made short: 1 epoch of 1,437 8x8 images


def bench_executor(study: Study):
    """The executor `initstudy train` uses for `study` by default, where it trains in this process (runs at
    once in threads on the CPU); one run at a time here otherwise (worker processes, one per GPU)."""
    executor = make_executor(study)
    return executor if isinstance(executor, InProcess) else InProcess(study.data_dir, study.accelerator, None)


def _by_hand(block: list[RunSpec], data_dir: str | None, device: str, naive: bool,
             executor: InProcess | None = None) -> None:
    """`block` by `raw_run`: one run after another, or on `executor`'s schedule (its runs at once in threads,
    its torch threads each)."""
    if executor is None or executor.parallel == 1:
        for spec in block:
            raw_run(spec, data_dir, device, naive=naive)
        return
    before = torch.get_num_threads()
    torch.set_num_threads(executor.threads or before)
    try:
        with ThreadPoolExecutor(executor.parallel) as pool:
            list(pool.map(lambda spec: raw_run(spec, data_dir, device, naive=naive), block))
    finally:
        torch.set_num_threads(before)


def _naive_worker(conn, data_dir: str | None, device: str) -> None:
    while (block := conn.recv()) is not None:
        start = time.perf_counter()
        _by_hand(block, data_dir, device, True)
        conn.send(time.perf_counter() - start)


class NaiveProcess:
    """A fresh Python process that times the naive loop as a user's script runs it: torch's default threads and
    the C library's default allocator (initstudy's threaded executor tunes its own, `executors.one_heap`)."""

    def __init__(self, data_dir: str | None, device: str):
        ctx = multiprocessing.get_context("spawn")  # torch does not survive a fork
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_naive_worker, args=(theirs, data_dir, device), daemon=True,
                                   name="initstudy-bench-naive")
        self.process.start()

    def seconds(self, block: list[RunSpec]) -> float:
        self.conn.send(block)
        try:
            return self.conn.recv()
        except EOFError:
            raise SweepError(f"the naive loop's process died (exit code {self.process.exitcode})") from None

    def close(self) -> None:
        if self.process.is_alive():
            self.conn.send(None)
        self.process.join(10)


def paired_seconds(specs: list[RunSpec], study: Study, runs_dir: str, device: str, say=lambda text: None,
                   sides: tuple[str, ...] = ("initstudy", "raw"), executor: InProcess | None = None,
                   naive: NaiveProcess | None = None) -> dict[str, list[float]]:
    """Seconds per block of runs by each of `sides`: "initstudy" (its sweep on `executor`: Lightning,
    diagnostics, run store), "raw" (`raw_run` on the same schedule: as many runs at once in threads, as many
    torch threads each) and "naive" (`raw_run(naive=True)` one run after another in `naive`'s process, as a
    user's script runs; the side needs it).

    A block is as many runs as the executor trains at once (one run by default). The sides take turns at
    going first (ABBA for two, a rotation for three): a later side gets a warmer cache, and drift in the
    machine's load hits all alike.
    """
    executor = executor or InProcess(study.data_dir, study.accelerator, None)
    blocks = [specs[i:i + executor.parallel] for i in range(0, len(specs), executor.parallel)]
    took = {side: [] for side in sides}
    for i, block in enumerate(blocks, 1):
        say(f"block {i}/{len(blocks)}: " + ", ".join(f"{s.model} {s.init.label} seed {s.seed}" for s in block))
        shift = (i - 1) % len(sides)
        order = sides[::1 if i % 2 else -1] if len(sides) == 2 else sides[shift:] + sides[:shift]
        for side in order:
            start = time.perf_counter()
            if side == "initstudy":
                # The raw loop evaluates every run's epoch 0, so here initstudy reuses no earlier evaluation.
                load_dataset(block[0].dataset, study.data_dir, block[0].split_seed).evaluations.clear()
                for event in run_sweep(study, runs_dir, block, executor):
                    if event.kind == "failed":
                        raise SweepError(f"a bench run failed: {event.error}")
            elif side == "raw":
                _by_hand(block, study.data_dir, device, False, executor)
            else:
                took[side].append(naive.seconds(block))  # timed in that process, without the pipe
                continue
            took[side].append(time.perf_counter() - start)
    return took


def run_bench(progress=None) -> dict:
    """All figures of `initstudy bench`; `progress(text)` is called before each step."""
    from .pipeline import analyze_study
    from .report import build_report, write_pdf

    say = progress or (lambda text: None)
    study = load_study("default", REFERENCE)
    short = load_study("default", REFERENCE + SHORT)
    specs = expand(study)
    n_train = len(load_dataset(study.dataset, None, study.split_seed).y_train)
    images = sum(s.epochs for s in specs) * n_train
    with tempfile.TemporaryDirectory() as tmp:
        # Warm both paths once (imports, allocator, kernels) so neither pays first-call costs; the raw loop
        # then trains on the device Lightning picked.
        device = train_run(specs[0], None, study.accelerator).device
        raw_run(specs[0], None, device)
        naive_process = NaiveProcess(study.data_dir, device)
        try:
            naive_process.seconds(specs[:1])
            load_dataset(short.dataset, None, short.split_seed).probe
            executor = bench_executor(study)
            took = paired_seconds(specs, study, tmp, device, say, ("initstudy", "raw", "naive"), executor,
                                  naive_process)
        finally:
            naive_process.close()
        ours, raw, naive = took["initstudy"], took["raw"], took["naive"]
        # A reference run lasts seconds and varies by a few percent with the machine, more than the fixed
        # cost sought; the same runs cut to 1 short epoch vary by milliseconds, and still pay every per-run cost.
        say("the same runs, 1 epoch of digits each: the fixed cost per run")
        short_took = paired_seconds(expand(short), short, tmp, device, lambda text: say(f"short {text}"))
        short_ours, short_raw = short_took["initstudy"], short_took["raw"]
        say("analysis and report of 1,000 synthetic runs x 50 epochs")
        synth = synthetic_store(Path(tmp))
        start = time.perf_counter()
        analyze_study(synth, tmp)
        t_analyze = time.perf_counter() - start
        start = time.perf_counter()
        report = build_report(synth, tmp)
        t_report = time.perf_counter() - start
        say("PDF of that report")
        start = time.perf_counter()
        pages = write_pdf(report.print_html, Path(tmp) / "bench.pdf", Path(tmp))
        t_pdf = time.perf_counter() - start
        say("report of 1,000 imported runs x 50 epochs")
        t_imported = imported_report_seconds(Path(tmp))
        say("import of 1,000 runs x 50 epochs from TensorBoard event files and from a CSV")
        t_import = import_seconds(Path(tmp))
    t_init, t_raw, t_naive = sum(ours), sum(raw), sum(naive)
    # The machine's noise, as 95% intervals: the ratios over blocks resampled with all their sides (seeded).
    pick = np.random.default_rng(0).integers(0, len(ours), (2000, len(ours)))  # blocks, resampled
    ratio_ci = np.percentile(np.take(raw, pick).sum(1) / np.take(ours, pick).sum(1), [2.5, 97.5])
    naive_ci = np.percentile(np.take(naive, pick).sum(1) / np.take(ours, pick).sum(1), [2.5, 97.5])
    flops = {m: flops_per_image(next(s for s in specs if s.model == m)) for m in study.models}
    train_flops = sum(s.epochs * flops[s.model] for s in specs) * n_train
    figures = {
        "reference": f"{len(specs)} runs: models {', '.join(study.models)} x {len(study.initializers)} initializers "
                     f"x {len(study.seeds)} seeds x {study.epochs} epochs on {study.dataset}, batch {study.batch_size}",
        "device": device, "threads": torch.get_num_threads(), "schedule": executor.where,
        "runs_at_once": executor.parallel, "threads_per_run": executor.threads or torch.get_num_threads(),
        "initstudy_img_per_s": images / t_init, "raw_img_per_s": images / t_raw, "ratio": t_raw / t_init,
        "ratio_ci95": [float(ratio_ci[0]), float(ratio_ci[1])],
        "naive_img_per_s": images / t_naive, "speedup_vs_naive": t_naive / t_init,
        "speedup_vs_naive_ci95": [float(naive_ci[0]), float(naive_ci[1])],
        "initstudy_s": t_init, "raw_s": t_raw, "naive_s": t_naive,
        "reference_extra_per_run_s": (t_init - t_raw) / len(specs),  # mean; moves with the machine's noise
        "per_run_overhead_s": float(np.median(np.subtract(short_ours, short_raw))),
        "short_run_s": float(np.median(short_raw)),
        "peak_rss_mib": _peak_rss_mib(), "flops_per_img": flops,
        "analyze_1000_runs_s": t_analyze, "report_1000_runs_s": t_report,
        "report_pdf_1000_runs_s": t_report + t_pdf, "report_pdf_pages": pages,  # `report --pdf`: HTML, then PDF
        "report_imported_1000_runs_s": t_imported, **t_import,
    }
    figures.update(gpu_figures(device, train_flops / t_init, say))
    return figures


TARGETS = {  # figure -> (comparison, bound), the CPU targets
    "ratio": (">=", 0.95),
    "speedup_vs_naive": (">=", 1.5),  # train's default schedule and kernels against a user's loop
    "per_run_overhead_s": ("<=", 0.150),
    "analyze_1000_runs_s": ("<=", 30.0),
    "report_1000_runs_s": ("<=", 60.0),
    "report_imported_1000_runs_s": ("<=", 60.0),
    "report_pdf_1000_runs_s": ("<=", 60.0),
}
GPU_TARGETS = {  # on a CUDA device (NCHW, as a naive loop): the CPU's ratio, speedup and overhead give way to these
    **{k: v for k, v in TARGETS.items() if k not in ("ratio", "speedup_vs_naive", "per_run_overhead_s")},
    "ratio": (">=", 0.90),
    "packed_speedup": (">=", 4.0),
    "packed_init_identical": ("==", True),
}
_COMPARE = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b}


def targets_for(device: str) -> dict[str, tuple[str, float]]:
    return GPU_TARGETS if device.startswith("cuda") else TARGETS


def check_targets(figures: dict) -> dict[str, bool]:
    return {k: _COMPARE[op](figures[k], bound) for k, (op, bound) in targets_for(figures["device"]).items()}
