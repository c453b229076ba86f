"""The benchmark: initstudy's real training path against a minimal raw PyTorch loop, in one process.

Both sides train the same runs (model, initial weights, data order, batch size,
optimizer, epochs, and the same epoch-0 and per-epoch evaluations), alternating
run by run so drift in machine load hits both alike. initstudy's side goes
through everything a sweep does: Lightning, init diagnostics, and the run store.
Analysis and report timings (HTML, and HTML plus PDF) use a synthetic store of 1,000 runs x 50 epochs.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import RunSpec, Study, expand, load_study
from .data import TensorBatches, load_dataset
from .store import RunStore
from .training import EVAL_BATCH, build_run, derive_seed, make_optimizer, train_run

REFERENCE = ["models=[simple, plain]", "activations=[relu]", "depth=6", "width=16", "epochs=3", "seeds=3",
             "batch_size=64", "initializers=[xavier_normal, kaiming_normal, orthogonal, default]", "dataset=mnist5k",
             "lr=0.01"]


def raw_run(spec: RunSpec, data_dir: str | None = None) -> list[dict]:
    """What a user would write by hand: the same run as `train_run`, as a plain loop. Returns its history."""
    dataset = load_dataset(spec.dataset, data_dir, spec.split_seed)
    torch.manual_seed(derive_seed(spec.seed, "torch"))
    net = build_run(spec, dataset)
    opt = make_optimizer(spec, net.parameters())
    order = torch.Generator().manual_seed(derive_seed(spec.seed, "data"))

    @torch.no_grad()
    def evaluate(x, y):
        net.eval()
        loss = correct = 0.0
        for xb, yb in TensorBatches(x, y, EVAL_BATCH):
            out = net(xb)
            loss += float(F.cross_entropy(out, yb)) * len(yb)
            correct += float((out.argmax(1) == yb).sum())
        net.train()
        return loss / len(y), correct / len(y)

    train0, _ = evaluate(dataset.x_train, dataset.y_train)
    val_loss, val_acc = evaluate(dataset.x_val, dataset.y_val)
    history = [{"epoch": 0, "train_loss": train0, "val_loss": val_loss, "val_acc": val_acc}]
    for epoch in range(1, spec.epochs + 1):
        total = 0.0
        for xb, yb in TensorBatches(dataset.x_train, dataset.y_train, spec.batch_size, order):
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yb)
        val_loss, val_acc = evaluate(dataset.x_val, dataset.y_val)
        history.append({"epoch": epoch, "train_loss": total / len(dataset.y_train), "val_loss": val_loss,
                        "val_acc": val_acc})
    return history


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


def run_bench(progress=None) -> dict:
    """All figures of `initstudy bench`; `progress(text)` is called before each step."""
    from .report import analyze_study, build_report, write_pdf

    say = progress or (lambda text: None)
    study = load_study("default", REFERENCE)
    specs = expand(study)
    load_dataset(study.dataset, None, study.split_seed)
    images = sum(s.epochs for s in specs) * len(load_dataset(study.dataset, None, study.split_seed).y_train)
    t_init = t_raw = 0.0
    overhead = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp, study.name)
        # Warm both paths once (imports, allocator, kernels) so neither pays first-call costs.
        raw_run(specs[0])
        train_run(specs[0], None, study.accelerator)
        for i, spec in enumerate(specs, 1):
            say(f"run {i}/{len(specs)}: {spec.model} {spec.init.label} seed {spec.seed}")
            # ABBA order: whichever side runs second in a pair gets a warmer cache, so the sides take turns.
            sides = ["initstudy", "raw"] if i % 2 else ["raw", "initstudy"]
            took = {}
            for side in sides:
                start = time.perf_counter()
                if side == "initstudy":
                    store.start(spec, {"study": study.name})
                    result = train_run(spec, None, study.accelerator)
                    store.finish(spec, result.status, result.history, {"seconds": result.seconds},
                                 result.diagnostics)
                else:
                    raw_run(spec)
                took[side] = time.perf_counter() - start
            t_init, t_raw = t_init + took["initstudy"], t_raw + took["raw"]
            overhead.append(took["initstudy"] - took["raw"])
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
    flops = {m: flops_per_image(next(s for s in specs if s.model == m)) for m in study.models}
    device = result.device
    return {
        "reference": f"{len(specs)} runs: models {', '.join(study.models)} x {len(study.initializers)} initializers "
                     f"x {len(study.seeds)} seeds x {study.epochs} epochs on {study.dataset}, batch {study.batch_size}",
        "device": device, "threads": torch.get_num_threads(),
        "initstudy_img_per_s": images / t_init, "raw_img_per_s": images / t_raw, "ratio": t_raw / t_init,
        "per_run_overhead_s": float(np.median(overhead)), "initstudy_s": t_init, "raw_s": t_raw,
        "peak_rss_mib": _peak_rss_mib(), "flops_per_img": flops,
        "analyze_1000_runs_s": t_analyze, "report_1000_runs_s": t_report,
        "report_pdf_1000_runs_s": t_report + t_pdf, "report_pdf_pages": pages,  # `report --pdf`: HTML, then PDF
    }


TARGETS = {  # figure -> (comparison, bound), the CPU targets
    "ratio": (">=", 0.95),
    "per_run_overhead_s": ("<=", 0.150),
    "analyze_1000_runs_s": ("<=", 30.0),
    "report_1000_runs_s": ("<=", 60.0),
    "report_pdf_1000_runs_s": ("<=", 60.0),
}


def check_targets(figures: dict) -> dict[str, bool]:
    return {k: (figures[k] >= bound if op == ">=" else figures[k] <= bound) for k, (op, bound) in TARGETS.items()}
