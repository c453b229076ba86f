"""The `initstudy` command: the only module that reads argv, prints, or exits."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import InitStudyError

EXIT_USAGE = 2


def _study_args(p: argparse.ArgumentParser, with_set: bool = True) -> None:
    p.add_argument("--study", default="default", help="preset name or path to a study YAML (default: default)")
    p.add_argument("--runs-dir", default="runs", help="where run folders live (default: runs)")
    if with_set:
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a study key, value as YAML (e.g. --set epochs=3 --set seeds=[0,1])")


def _settings_arg(p: argparse.ArgumentParser, stored: bool = False) -> None:
    p.add_argument("--settings", default=None, metavar="FILE.yaml",
                   help="analysis settings for imported logs (threshold, alpha, reference, target_effect, claims, "
                        "order, labels, factors, budget_epochs, design): "
                        + ("checked against the logs and stored with the import" if stored else
                           "their keys replace those stored with the import, for this call"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="initstudy",
                                     description="Train CNNs under many weight initializers and test the differences.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("train", help="train every unfinished run of a study",
                       description="Train every unfinished run of a study; finished runs are skipped, and so are "
                                   "runs recorded as failed unless --retry-failed is given. A study with a "
                                   "sequential: key trains look by look: every cell to the first look, then only "
                                   "the cells whose claims are undecided, recording each look's decisions.")
    _study_args(p)
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine (default); ray: one Ray task per run")
    p.add_argument("--parallel", type=int, default=None, metavar="N",
                   help="local CPU runs trained at once in threads of this process (default: one per core, "
                        "at most 4; 1 trains one run at a time with every core)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local runs trained at once in worker processes, one GPU each when the study may use "
                        "GPUs (default: one per visible GPU; without GPUs, threads: see --parallel)")
    p.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                   help="torch threads of each run, and the CPUs a Ray task reserves (default: local, the "
                        "cores divided by the runs at once; ray, 1)")
    p.add_argument("--gpus-per-run", type=float, default=None, metavar="X",
                   help="ray: GPUs a run reserves, a fraction packs several runs on one GPU (default: 1 when the "
                        "cluster has GPUs and the study may use them, else 0)")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="ray: the cluster's head, HOST:6379, or auto for the cluster started on this machine "
                        "(default: start a private local Ray instance)")
    p.add_argument("--retry-failed", action="store_true", help="train the runs recorded as failed again")
    p = sub.add_parser("status", help="count a study's runs by status, list failures, estimate the time left",
                       description="Count a study's runs as done, diverged, failed or pending, give each failure's "
                                   "reason and estimate the time left. Reads the run store only; safe while "
                                   "train runs.")
    _study_args(p)
    p.add_argument("--json", action="store_true", help="print {total, counts, running, failures, eta_seconds} as JSON")
    p = sub.add_parser("report", help="analyse a study's runs; write report.html (--pdf: report.pdf), results.json",
                       description="Analyse the finished runs of a study and write DIR/<study>/report/report.html, "
                                   "results.json, tidy.csv and diagnostics.csv (and report.pdf with --pdf).")
    _study_args(p)
    p.add_argument("--pdf", action="store_true", help="also print report.pdf from the same HTML (WeasyPrint)")
    _settings_arg(p)
    p = sub.add_parser("import", help="import per-epoch logs (CSV, TensorBoard, Lightning CSV, MLflow) as a study",
                       description="Read training logs with their own library (a tidy or wide CSV, a folder of "
                                   "TensorBoard runs, Lightning CSVLogger folders, an MLflow mlruns folder), check "
                                   "them and store them as DIR/<study>/imported.csv for `initstudy analyze`.")
    p.add_argument("path", metavar="PATH", help="a CSV file, or a folder of TensorBoard, Lightning CSV or MLflow logs")
    p.add_argument("--format", dest="fmt", default=None, choices=["tidy", "wide", "tensorboard", "lightning-csv",
                                                                   "mlflow"],
                   help="the log format (default: detected from PATH)")
    p.add_argument("--map", action="append", default=[], metavar="NAME=COLUMN",
                   help="the column, tag, metric or parameter holding NAME (val_acc, val_loss, train_loss, epoch, "
                        "initializer, seed, run, diverged); repeatable")
    p.add_argument("--run-pattern", default=None, metavar="PATTERN",
                   help="fields in run folder names, e.g. '{initializer}-s{seed}'; other {name} fields are factors")
    p.add_argument("--steps-per-epoch", default=None, metavar="N",
                   help="logged steps per epoch (default: the step is the epoch)")
    p.add_argument("--study", required=True, help="name to store the imported study under")
    p.add_argument("--runs-dir", default="runs", help="where studies live (default: runs)")
    p.add_argument("--budget-epochs", type=int, default=None,
                   help="the epoch budget runs were given (default: the largest epoch in the file)")
    _settings_arg(p, stored=True)
    p.add_argument("--replace", action="store_true",
                   help="replace an earlier import under the same --study name (a trained study is never replaced)")
    p = sub.add_parser("analyze", help="run the statistics and write results.json (no figures)",
                       description="Analyse a trained or imported study and write results.json "
                                   "(default DIR/<study>/report/results.json).")
    _study_args(p)
    p.add_argument("--threshold", type=float, default=None, help="validation accuracy that counts as reached "
                   "(default: the study's, or 0.9 for imported logs)")
    p.add_argument("--alpha", type=float, default=None, help="significance level (default: the study's, or 0.05)")
    p.add_argument("--out", default=None, help="where to write results.json")
    _settings_arg(p)
    p = sub.add_parser("inspect", help="per-layer signal statistics of one model at initialization, no training",
                       description="Build a model, initialise it, and report per layer the weight std (and what the "
                                   "initializer's formula predicts), the activation and gradient std on a batch of "
                                   "real training images, and the fraction of dead ReLU channels.")
    p.add_argument("--model", required=True, help="model name (initstudy list)")
    p.add_argument("--init", required=True, help="initializer name")
    p.add_argument("--activation", default="relu", help="activation name (default: relu)")
    p.add_argument("--depth", type=int, default=None, help="conv layers (plain, vgg) or 6n+2 (resnet)")
    p.add_argument("--width", type=int, default=None, help="channels (first stage for vgg, resnet)")
    p.add_argument("--bn", choices=("on", "off"), default=None, help="BatchNorm in vgg / resnet")
    p.add_argument("--dataset", default="mnist5k", help="dataset for the batch of real images (default: mnist5k)")
    p.add_argument("--data-dir", default=None, help="directory of torchvision datasets")
    p.add_argument("--seed", type=int, default=0, help="run seed whose init generator draws the weights")
    p.add_argument("--json", action="store_true", help="print {model, init, activation, layers: [...]} as JSON")
    p = sub.add_parser("bench", help="time initstudy's training path against a raw PyTorch loop, and the analysis",
                       description="Train a reference sweep through initstudy and through a minimal raw PyTorch loop, "
                                   "alternating run by run, then time the analysis and report of a synthetic store "
                                   "of 1,000 runs x 50 epochs. Exit code 1 when a CPU target is missed.")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    p = sub.add_parser("list", help="list the registered datasets, models, activations, initializers and presets")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the registries as JSON")
    shape.add_argument("--markdown", action="store_true",
                       help="print the reference (study keys, initializers, models, activations, datasets, plugins, "
                            "results.json) as Markdown tables")
    return parser


def _cmd_list(args) -> int:
    from .config import describe_keys, presets
    from .data import DATASETS
    from .initializers import INITIALIZERS
    from .models import ACTIVATIONS, MODELS
    from .plugins import registered

    registry = {
        "datasets": list(DATASETS),
        "models": {m.name: {"params": m.params, "description": m.description, "residual": m.residual}
                   for m in MODELS.values()},
        "activations": {a.name: {"gain": a.gain} for a in ACTIVATIONS.values()},
        "initializers": {i.name: {"options": i.options, "gain": i.gain, "bias": i.bias, "formula": i.formula,
                                  "source": i.source, "data_dependent": i.name == "lsuv"}
                         for i in INITIALIZERS.values()},
        "studies": presets(),
        "study_keys": describe_keys(),
        # entry points of installed packages, used by plain name; anything else by package.module:attribute
        "plugins": registered(),
    }
    if args.json:
        print(json.dumps(registry, indent=1))
        return 0
    if args.markdown:
        print(_markdown(registry), end="")
        return 0
    print("datasets:     " + ", ".join(registry["datasets"]))
    print("models:")
    for name, m in registry["models"].items():
        params = ", ".join(f"{k}={v}" for k, v in m["params"].items())
        print(f"  {name:<18}{m['description']}" + (f" [{params}]" if params else ""))
    print("activations:  " + ", ".join(f"{k} (gain {v['gain']:.4g})" for k, v in registry["activations"].items()))
    print("initializers:")
    for name, i in registry["initializers"].items():
        opts = ", ".join(f"{k}={v}" for k, v in i["options"].items())
        print(f"  {name:<18}{i['formula']}" + (f" [{opts}]" if opts else ""))
    print("plugins:" + ("" if any(registry["plugins"].values()) else
                        "      none installed (name your own as package.module:attribute)"))
    for kind, entries in registry["plugins"].items():
        for name, p in entries.items():
            print(f"  {kind + ' ' + name:<17} {p['target']} (from {p['distribution']})")
    print("studies:      " + ", ".join(registry["studies"]))
    print("study keys:   " + ", ".join(registry["study_keys"]))
    return 0


def _md(value) -> str:
    """One Markdown table cell: pipes escaped, on one line."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_md(c) for c in row) + " |" for row in rows), ""]


def _markdown(registry: dict) -> str:
    """The reference pages, generated from the registries and the results.json schema (`initstudy list --markdown`)."""
    from .analysis import SCHEMA_FILE
    from .config import (CLAIM_DIRECTIONS, CLAIM_FACTORS, CLAIM_KEYS, REPLICATION_KEYS, SETTINGS_KEYS,
                         study_key_reference)
    from .data import DATASET_DESCRIPTIONS
    from .models import ACTIVATIONS

    def code(x) -> str:
        return f"`{x}`" if x not in (None, "") else ""

    def options(d: dict) -> str:
        return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in d.items())

    gains = {"none": "1 (`gain:` overrides it)", "activation": "the activation's (`gain:` overrides it)",
             "fixed": "none: a fixed scale"}
    out = ["# initstudy reference", "",
           "Generated from the code by `initstudy list --markdown`; regenerate it rather than editing it.", "",
           "## Study keys", "", "A study file is YAML; every key but `initializers` has a default.", ""]
    out += _md_table(["key", "default", "accepts", "meaning"],
                     [[code(k["key"]), code(k["default"]) if k["literal"] else k["default"], k["accepts"], k["help"]]
                      for k in study_key_reference()])
    out += ["Claims (`claims:`) take the keys " + ", ".join(code(k) for k in CLAIM_KEYS) + "; endpoints and "
            "directions: " + "; ".join(f"{code(e)}: {', '.join(code(d) for d in ds)}"
                                       for e, ds in CLAIM_DIRECTIONS.items())
            + "; a bound claim gives `at_most` or `at_least` instead of `b`; `where` restricts "
            + ", ".join(code(f) for f in CLAIM_FACTORS) + ".", "",
            "Published values (`replication:`) take the keys " + ", ".join(code(k) for k in REPLICATION_KEYS)
            + "; `source`, `name` (the source's name for the initializer), `initializer` (a label of the study's "
            "arms) and `mean` are required; accuracies are fractions, `low` and `high` (the printed range) come "
            "together; without `activation` a value is set beside the arm in every activation.", "",
            "## Settings keys for imported logs", "",
            "A settings file (`initstudy import` or `analyze --settings FILE.yaml`) and the keyword arguments of "
            "`initstudy.analyze_frame(...)` take these keys.", ""]
    out += _md_table(["key", "meaning"], [[code(k), h] for k, h in SETTINGS_KEYS.items()])
    out += ["## Initializers", "", "Options are given in the study file as `{name: ..., option: value}`; the "
            "values shown are the defaults.", ""]
    out += _md_table(["name", "formula", "gain", "bias", "options", "source"],
                     [[code(n), i["formula"], gains.get(i["gain"], i["gain"]), code(i["bias"]), options(i["options"]),
                       i["source"] + (" (data-dependent: needs a batch)" if i["data_dependent"] else "")]
                      for n, i in registry["initializers"].items()])
    out += ["## Models", ""]
    out += _md_table(["name", "parameters", "residual", "description"],
                     [[code(n), options(m["params"]), "yes" if m["residual"] else "no", m["description"]]
                      for n, m in registry["models"].items()])
    out += ["## Activations", ""]
    out += _md_table(["name", "torch layer", "gain"],
                     [[code(n), code("nn." + ACTIVATIONS[n].layer), f"{a['gain']:.6g}"]
                      for n, a in registry["activations"].items()])
    out += ["## Datasets", ""]
    out += _md_table(["name", "description"], [[code(n), DATASET_DESCRIPTIONS.get(n, "")]
                                               for n in registry["datasets"]])
    out += ["## Presets", "", "Study files shipped with the package, used by name: "
            + ", ".join(code(n) for n in registry["studies"]) + ".", "", "## Plugins", "",
            "Entry points of installed packages, used by plain name; any other `package.module:attribute` works "
            "too.", ""]
    plugins = [[kind, code(n), code(p["target"]), p["distribution"]]
               for kind, entries in registry["plugins"].items() for n, p in entries.items()]
    out += _md_table(["kind", "name", "target", "distribution"], plugins) if plugins else ["None installed.", ""]
    schema = json.loads(SCHEMA_FILE.read_text())
    out += ["## results.json", "", f"{schema['description']} The full JSON Schema ships as "
            f"`initstudy/schemas/{SCHEMA_FILE.name}`.", ""]
    parts = (("the top level", schema), ("each cell (`cells[]`)", schema["$defs"]["cell"]),
             ("each arm (`cells[].arms[]`)", schema["$defs"]["arm"]),
             ("each claim (`claims[]`)", schema["$defs"]["claim"]))
    for title, part in parts:
        out += [f"Keys of {title}:", ""]
        out += _md_table(["key", "required", "type", "meaning"],
                         [[code(k), "yes" if k in part["required"] else "no", _schema_type(v), v.get("description", "")]
                          for k, v in part["properties"].items()])
    return "\n".join(out)


_SCHEMA_WORDS = {"number_or_null": "number or null", "pvalue": "p-value or null", "interval": "[low, high]"}


def _schema_type(node: dict) -> str:
    """A schema node's type in a few words: its type, enum, constant or the definition it refers to."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return _SCHEMA_WORDS.get(name, name)
    if "const" in node:
        return json.dumps(node["const"])
    if "enum" in node:
        return " | ".join(json.dumps(v) for v in node["enum"])
    if node.get("type") == "array":
        return "array of " + _schema_type(node["items"])
    if "oneOf" in node:
        return " or ".join(_schema_type(n) for n in node["oneOf"])
    return " or ".join(node["type"]) if isinstance(node.get("type"), list) else node.get("type", "any")


def _fmt_s(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _retry_hint(args, n_failed: int) -> str:
    return (f"{n_failed} failed run{'s' if n_failed != 1 else ''} (initstudy status --study {args.study} shows why; "
            "add --retry-failed to train them again)")


def _cmd_train(args) -> int:
    from tqdm import tqdm

    from .config import load_study
    from .data import load_dataset
    from .executors import make_executor
    from .importing import is_imported
    from .store import RunStore
    from .sweep import plan, run_sweep

    study = load_study(args.study, args.overrides)
    if is_imported(args.runs_dir, study.name):
        raise InitStudyError(f"{args.runs_dir}/{study.name} holds imported logs; train under another study name "
                             "(--set name=NEW) so that the two never mix")
    if study.accelerator in ("gpu", "cuda") and args.executor == "local":
        import torch

        if not torch.cuda.is_available():
            raise InitStudyError(f"accelerator {study.accelerator!r} asked for but no CUDA GPU is visible; "
                                 "use --set accelerator=auto (or cpu)")
    if study.sequential is not None:
        return _train_sequential(args, study)
    p = plan(study, args.runs_dir, args.retry_failed)
    if not p.todo:
        if p.failed:
            print(f"study {study.name}: {p.finished} of {p.total} runs finished in {args.runs_dir}/{study.name}, "
                  f"nothing to train; {_retry_hint(args, len(p.failed))}")
            return 1
        print(f"study {study.name}: all {p.total} runs already finished in {args.runs_dir}/{study.name}; "
              f"nothing to train (initstudy report --study {args.study})")
        return 0
    load_dataset(study.dataset, study.data_dir, study.split_seed)  # fail on missing data before any output
    executor = make_executor(study, args.executor, args.workers, args.cpus_per_run, args.gpus_per_run,
                             args.ray_address, args.parallel)
    counts = {"done": 0, "diverged": 0, "failed": 0}
    try:
        with RunStore(args.runs_dir, study.name).lock():
            p = plan(study, args.runs_dir, args.retry_failed)  # again, under the lock: a train that just ended
            skipped = f", {_retry_hint(args, len(p.failed))}" if p.failed else ""
            print(f"study {study.name}: {len(p.todo)} of {p.total} runs to train {executor.where} "
                  f"({p.finished} already finished{skipped}) -> {args.runs_dir}/{study.name}", flush=True)
            start = time.perf_counter()
            bar = tqdm(total=len(p.todo), unit="run", dynamic_ncols=True, file=sys.stderr)
            try:
                for ev in run_sweep(study, args.runs_dir, p.todo, executor):
                    spec = ev.spec
                    if ev.kind == "start":
                        bar.set_postfix_str(f"{spec.init.label} seed {spec.seed} {spec.model}/{spec.activation}")
                        continue
                    counts[ev.kind] += 1
                    if ev.kind == "failed":
                        bar.write(f"run {spec.run_id} ({spec.init.label}, seed {spec.seed}) failed: {ev.error}")
                    bar.update(1)
            finally:
                bar.close()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {sum(counts.values())} runs finished this time and are kept; runs in progress "
              "are left unfinished. Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        executor.close()
    failed = counts["failed"] + len(p.failed)
    print(f"trained {len(p.todo)} runs in {_fmt_s(time.perf_counter() - start)}: {counts['done']} done, "
          f"{counts['diverged']} diverged, {counts['failed']} failed"
          + (f"; {_retry_hint(args, failed)}" if failed else ""))
    return 1 if failed else 0


def _cell_words(cell: dict) -> str:
    """A cell's factors that name it, without the dataset and NOT_APPLICABLE columns."""
    from .store import NOT_APPLICABLE

    return ", ".join(f"{k}={v}" for k, v in cell.items() if k != "dataset" and v != NOT_APPLICABLE) or "the cell"


def _decision_words(t: dict) -> str:
    d = t["decision"]
    what = {"upper": "supported", "lower": "contradicted", "futility": "stopped for futility",
            "none": "inconclusive (no bound crossed by the last look)"}[d["crossed"]]
    return (f"claim {t['claim'] + 1} in {_cell_words(t['cell'])}: {what} at look {d['look']} ({d['seeds']} seeds), "
            f"z = {d['z']:.2f}, bound {d['boundary']:.2f}")


def _train_sequential(args, study) -> int:
    """Train look by look: every cell to the first look, then only the cells whose claim tests are undecided.
    Each look's decisions are recorded; a resumed train decides the looks again from the runs and checks them
    against the record."""
    from tqdm import tqdm

    from .data import load_dataset
    from .executors import make_executor
    from .pipeline import check_record, decide_look, start_sequential
    from .store import RunStore, tidy_frame, write_json
    from .sweep import SEQUENTIAL_FILE, expand, look_specs, plan, read_sequential, run_sweep

    looks = study.sequential.looks
    store = RunStore(args.runs_dir, study.name)
    record_path = store.root / SEQUENTIAL_FILE
    executor = None
    counts = {"done": 0, "diverged": 0, "failed": 0}
    start, trained = time.perf_counter(), 0
    try:
        with store.lock():
            record = read_sequential(args.runs_dir, study.name)
            state = start_sequential(study)
            for k in range(len(looks)):
                p = plan(study, args.runs_dir, args.retry_failed, look_specs(study, k, state.going))
                if p.todo:
                    if executor is None:
                        load_dataset(study.dataset, study.data_dir, study.split_seed)  # fail before training
                        executor = make_executor(study, args.executor, args.workers, args.cpus_per_run,
                                                 args.gpus_per_run, args.ray_address, args.parallel)
                    print(f"study {study.name}: look {k + 1} of {len(looks)} ({looks[k]} seeds per arm): "
                          f"{len(p.todo)} of {p.total} runs to train {executor.where} ({p.finished} already "
                          f"finished) -> {args.runs_dir}/{study.name}", flush=True)
                    bar = tqdm(total=len(p.todo), unit="run", dynamic_ncols=True, file=sys.stderr)
                    try:
                        for ev in run_sweep(study, args.runs_dir, p.todo, executor):
                            if ev.kind == "start":
                                bar.set_postfix_str(f"{ev.spec.init.label} seed {ev.spec.seed} "
                                                    f"{ev.spec.model}/{ev.spec.activation}")
                                continue
                            counts[ev.kind] += 1
                            trained += 1
                            if ev.kind == "failed":
                                bar.write(f"run {ev.spec.run_id} ({ev.spec.init.label}, seed {ev.spec.seed}) "
                                          f"failed: {ev.error}")
                            bar.update(1)
                    finally:
                        bar.close()
                failed = plan(study, args.runs_dir, False, look_specs(study, k, state.going)).failed
                if failed:
                    print(f"study {study.name}: look {k + 1} cannot be analysed: {_retry_hint(args, len(failed))}")
                    return 1
                tidy, columns, _missing = tidy_frame(expand(study), store)
                state = decide_look(study, tidy, columns, state)
                check_record(state, record, record_path)
                if not record or len(record.get("looks", [])) <= k:
                    write_json(record_path, state.to_record())
                    record = state.to_record()
                look = state.looks[-1]
                stopped = [t for t in look["tests"] if t["decision"]["action"] == "stop"]
                print(f"look {k + 1} ({looks[k]} seeds per arm, bound |z| >= {state.design.bounds[k]:.2f}): "
                      f"{len(stopped)} of {len(look['tests'])} claim tests decided"
                      + (f", {len(state.going)} cell(s) go on to look {k + 2}" if state.going else ""), flush=True)
                for t in stopped:
                    print(f"  {_decision_words(t)}")
                if state.finished:
                    break
    except KeyboardInterrupt:
        print(f"\ninterrupted: {trained} runs finished this time and are kept, and the looks decided so far are "
              "recorded. Run the same command again to continue.", file=sys.stderr)
        return 130
    finally:
        if executor is not None:
            executor.close()
    print(f"study {study.name}: the sequential design ended at look {len(state.looks)} of {len(looks)}; trained "
          f"{trained} runs in {_fmt_s(time.perf_counter() - start)}: {counts['done']} done, {counts['diverged']} "
          f"diverged, {counts['failed']} failed (initstudy report --study {args.study})")
    return 0


def _cmd_status(args) -> int:
    from .config import load_study
    from .sweep import sweep_status

    study = load_study(args.study, args.overrides, build=False)  # reads the store only: no torch
    seq = _sequential_status(study, args.runs_dir) if study.sequential is not None else None
    st = sweep_status(study, args.runs_dir, seq["specs"] if seq else None)
    if args.json:
        print(json.dumps({**st.to_dict(), **({"sequential": {k: v for k, v in seq.items() if k != "specs"}}
                                             if seq else {})}, indent=1))
        return 0
    c = st.counts
    print(f"study {study.name} in {args.runs_dir}/{study.name}: {st.total} runs: {c['done']} done, "
          f"{c['diverged']} diverged, {c['failed']} failed, "
          + (f"{c['invalid']} invalid, " if c["invalid"] else "") + f"{c['pending']} pending"
          + (f" ({st.running} marked running: training now, or left by a stopped train)" if st.running else ""))
    for f in st.failures:
        print(f"  failed {f['run_id']} ({f['initializer']}, seed {f['seed']}): {f['error']}")
    for f in st.invalid:
        print(f"  invalid {f['run_id']} ({f['initializer']}, seed {f['seed']}): {f['reason']}; train redoes it")
    if len(st.versions) > 1:
        print("finished runs come from several initstudy versions: "
              + "; ".join(f"{v}: {n}" for v, n in st.versions.items()))
    if c["pending"] or c["invalid"]:
        eta = "unknown until a run has finished" if st.eta_seconds is None else \
            f"about {_fmt_s(st.eta_seconds)} at the last train's pace"
        print(f"time left: {eta}")
    if c["failed"]:
        print(f"retry the failed runs with: initstudy train --study {args.study} --retry-failed")
    if seq:
        plan = study.sequential
        state = ("ended" if seq["finished"] else "in progress" if seq["looks_recorded"] < seq["current_look"]
                 else "decided")
        print(f"sequential design: looks at {', '.join(map(str, plan.looks))} seeds per arm ({plan.spending}"
              + (f", futility |z| < {plan.futility:g}" if plan.futility is not None else "") + f"); look "
              f"{seq['current_look']} of {len(plan.looks)} {state}; {len(seq['decided'])} claim test(s) decided, "
              f"{len(seq['pending'])} pending" + (f"; {seq['not_needed']} runs of the grid not needed: their cells "
                                                 "are decided" if seq["not_needed"] else "")
              + (f"; {seq['later']} more runs if every undecided cell goes on" if seq["later"] else ""))
        for t in seq["decided"]:
            print(f"  decided: {_decision_words(t)}")
        for t in seq["pending"]:
            print(f"  pending: claim {t['claim'] + 1} in {_cell_words(t['cell'])}, z = {t['z']:.2f} at look "
                  f"{t['decision']['look']}")
    return 0


def _sequential_status(study, runs_dir: str) -> dict:
    """Where a sequential study stands by its record: the look being trained, decided and pending claim tests,
    and the runs its looks have asked for (`specs`)."""
    from .sweep import planned_specs, read_sequential, spec_cells

    record = read_sequential(runs_dir, study.name)
    looks = (record or {}).get("looks", [])
    latest = {}
    for look in looks:
        for t in look["tests"]:
            latest[(t["claim"], t["key"])] = t
    decided = [t for t in latest.values() if t["decision"]["action"] == "stop"]
    pending = [t for t in latest.values() if t["decision"]["action"] == "continue"]
    finished = bool(looks) and not pending
    specs = planned_specs(study, record)
    planned = {s.run_id for s in specs}
    going = {t["key"] for t in pending}
    rest = [key for spec, key in spec_cells(study) if spec.run_id not in planned]
    not_needed = sum(key not in going for key in rest) if looks else 0
    return {"looks": list(study.sequential.looks), "spending": study.sequential.spending,
            "futility": study.sequential.futility, "looks_recorded": len(looks),
            "current_look": len(looks) if finished else min(len(looks) + 1, len(study.sequential.looks)),
            "finished": finished, "decided": decided, "pending": pending,
            "not_needed": not_needed, "later": len(rest) - not_needed, "specs": specs}


def _imported_opts(args) -> str:
    import shlex

    return f"--study {shlex.quote(args.study)} --runs-dir {shlex.quote(args.runs_dir)}" + (
        f" --settings {shlex.quote(args.settings)}" if args.settings else "")


def _imported_analysis(args):
    """The Analysis of an imported study under its stored settings, `--settings` and (analyze) --threshold/--alpha."""
    from dataclasses import replace

    from .pipeline import analyze_imported, imported_settings

    settings = imported_settings(args.runs_dir, args.study, args.settings)
    given = {k: v for k in ("threshold", "alpha") if (v := getattr(args, k, None)) is not None}
    return analyze_imported(args.runs_dir, args.study, replace(settings, **given))


def _cmd_report(args) -> int:
    import shlex
    from pathlib import Path

    from .config import load_study
    from .importing import is_imported
    from .report import write_logs_report, write_report

    start = time.perf_counter()
    if is_imported(args.runs_dir, args.study) and not args.overrides:
        analysis = _imported_analysis(args)
        opts = _imported_opts(args)
        source = shlex.quote(str(analysis.provenance.get("source", "LOGS")))
        paths, report = write_logs_report(analysis, Path(args.runs_dir) / args.study / "report",
                                          f"initstudy import {source} --study {shlex.quote(args.study)} && "
                                          f"initstudy report {opts}"
                                          + (" --pdf" if args.pdf else ""), pdf=args.pdf)
    else:
        if args.settings:
            raise InitStudyError(f"--settings applies to imported logs, and {args.study} is a study file; put "
                                 "its settings in the study file or pass --set KEY=VALUE")
        study = load_study(args.study, args.overrides, build=False)
        opts = f"--study {shlex.quote(args.study)} --runs-dir {shlex.quote(args.runs_dir)}" + "".join(
            f" --set {shlex.quote(o)}" for o in args.overrides)
        paths, report = write_report(study, args.runs_dir, f"initstudy train {opts} && initstudy report {opts}"
                                     + (" --pdf" if args.pdf else ""), pdf=args.pdf)
    n_cells = len(report.results.cells)
    print(f"wrote {', '.join(str(p) for p in paths.values())} ({n_cells} cell{'s' if n_cells != 1 else ''}, "
          f"{_fmt_s(time.perf_counter() - start)})")
    return 0


def _cmd_import(args) -> int:
    from .importing import import_logs, parse_map
    from .pipeline import import_settings

    steps = args.steps_per_epoch
    if steps is not None:
        if not steps.strip().isdigit() or int(steps) < 1:
            raise InitStudyError(f"--steps-per-epoch must be a positive integer, got {steps!r}")
        steps = int(steps)
    with import_settings(args.runs_dir, args.study, args.settings):  # settings that do not fit undo the import
        summary = import_logs(args.path, args.runs_dir, args.study, fmt=args.fmt, mapping=parse_map(args.map),
                              run_pattern=args.run_pattern, steps_per_epoch=steps,
                              budget_epochs=args.budget_epochs, replace=args.replace)
    print(f"imported {summary['runs']} runs ({summary['rows']} rows, initializers: "
          f"{', '.join(summary['initializers'])}; factors: {', '.join(summary['factors']) or 'none'}; budget "
          f"{summary['budget_epochs']} epochs) into {args.runs_dir}/{args.study}; "
          f"next: initstudy report --study {args.study} --pdf"
          + ("" if args.settings else " (threshold 0.9 unless a --settings file says otherwise)"))
    return 0


def _cmd_analyze(args) -> int:
    from pathlib import Path

    from .config import load_study
    from .importing import is_imported
    from .pipeline import analyze_study
    from .store import write_json

    for name, value in (("threshold", args.threshold), ("alpha", args.alpha)):
        if value is not None and not 0 < value <= 1:
            raise InitStudyError(f"--{name} must be in (0, 1], got {value}")
    if is_imported(args.runs_dir, args.study) and not args.overrides:
        analysis = _imported_analysis(args)
        results, name, content = analysis.results, args.study, analysis.to_dict()
    else:
        if args.settings:
            raise InitStudyError(f"--settings applies to imported logs, and {args.study} is a study file; put "
                                 "its settings in the study file or pass --set KEY=VALUE")
        extra = [f"{k}={v}" for k, v in (("threshold", args.threshold), ("alpha", args.alpha)) if v is not None]
        study = load_study(args.study, [*args.overrides, *extra], build=False)
        if study.sequential is None:
            results, name = analyze_study(study, args.runs_dir)[0], study.name
            content = results.to_dict()
        else:  # the runs its looks asked for, with the design and its decisions
            from .pipeline import replay_sequential, sequential_summary
            from .sweep import planned_specs

            state = replay_sequential(study, args.runs_dir)
            specs = planned_specs(study, state.to_record())
            results, _tidy, _columns, missing = analyze_study(study, args.runs_dir, specs)
            name = study.name
            content = {**results.to_dict(), "sequential": sequential_summary(
                study, state, len(specs) - len(missing), len(study.initializers), len(results.cells))}
    out = Path(args.out) if args.out else Path(args.runs_dir) / name / "report" / "results.json"
    if out.is_dir():
        raise InitStudyError(f"--out {out} is a folder; give a file path such as {out / 'results.json'}")
    write_json(out, content)
    weak = sum(1 for c in results.cells if c.power and c.power.underpowered)
    print(f"wrote {out} ({len(results.cells)} cell{'s' if len(results.cells) != 1 else ''}, threshold "
          f"{results.threshold:g}" + (f"; {weak} underpowered, see power.reasons" if weak else "") + ")")
    return 0


# The study keys inspect sets, by the option that sets them: its errors name the options.
_INSPECT_OPTIONS = {"models": "--model", "activations": "--activation", "initializers": "--init", "depth": "--depth",
                    "width": "--width", "bn": "--bn", "dataset": "--dataset", "data_dir": "--data-dir"}


def _inspect_words(message: str) -> str:
    """A study error rewritten in inspect's words: --model for models, --data-dir DIR for --set data_dir=DIR."""
    import re

    message = message.replace("--set data_dir=DIR", "--data-dir DIR")
    message = re.sub(r"--set (\w+):", lambda m: _INSPECT_OPTIONS.get(m[1], m[1]) + ":", message)
    message = re.sub(r"^(\w+)(?= must| is empty| lists)", lambda m: _INSPECT_OPTIONS.get(m[1], m[1]), message)
    return re.sub(r"\b(change|lower|fix) (depth|width|data_dir)\b", lambda m: f"{m[1]} {_INSPECT_OPTIONS[m[2]]}",
                  message).replace("--depth or width", "--depth or --width")


def _cmd_inspect(args) -> int:
    from .config import MAX_SEED, expand, load_study
    from .data import load_dataset
    from .diagnostics import layer_diagnostics
    from .models import MODELS
    from .training import build_run

    if not 0 <= args.seed <= MAX_SEED:
        raise InitStudyError(f"--seed must be from 0 to {MAX_SEED}, got {args.seed}")
    # Names are quoted (JSON is YAML), so that a value is one name, never YAML syntax; --init may be a
    # mapping like {name: normal, std: 0.1}.
    init = args.init if args.init.lstrip().startswith("{") else json.dumps(args.init)
    overrides = [f"dataset={json.dumps(args.dataset)}", f"models=[{json.dumps(args.model)}]",
                 f"activations=[{json.dumps(args.activation)}]", f"initializers=[{init}]", f"seeds=[{args.seed}]"]
    # Without --depth / --width a built-in model gets its own defaults (resnet: depth 8), not the study's.
    own = MODELS[args.model].params if args.model in MODELS else {}
    overrides += [f"{k}={v if v is not None else own[k]}" for k, v in (("depth", args.depth), ("width", args.width))
                  if v is not None or k in own]
    if args.bn is not None:
        overrides.append(f"bn={'true' if args.bn == 'on' else 'false'}")
    if args.data_dir:
        overrides.append(f"data_dir={json.dumps(args.data_dir)}")
    try:
        study = load_study("smoke", overrides, context="inspect")  # the same checks as a study file
        dataset = load_dataset(study.dataset, study.data_dir, study.split_seed)
    except InitStudyError as exc:
        raise type(exc)(_inspect_words(str(exc))) from None
    spec = expand(study)[0]
    net = build_run(spec, dataset)
    layers = layer_diagnostics(net, spec.init, spec.activation, *dataset.probe)
    if args.json:
        print(json.dumps({"model": spec.model, "model_params": dict(spec.model_params), "init": spec.init.to_dict(),
                          "activation": spec.activation, "dataset": spec.dataset, "seed": spec.seed,
                          "layers": layers}, indent=1))
        return 0

    def f(x, spec=".3g"):
        return "-" if x is None else format(x, spec)

    print(f"{spec.model} {dict(spec.model_params)} / {spec.init.label} / {spec.activation}, "
          f"batch of {len(dataset.probe[0])} {spec.dataset} training images, seed {spec.seed}")
    print(f"{'#':>3} {'layer':<28}{'fan_in':>7}{'fan_out':>8}{'w std':>10}{'theory':>10}{'act std':>10}"
          f"{'grad std':>10}{'dead':>7}")
    for r in layers:
        print(f"{r['index']:>3} {r['kind'] + ' ' + r['name']:<28}{r['fan_in']:>7}{r['fan_out']:>8}{f(r['weight_std']):>10}"
              f"{f(r['weight_std_theory']):>10}{f(r['activation_std']):>10}{f(r['gradient_std']):>10}"
              f"{f(r['dead_fraction'], '.2f'):>7}")
    return 0


def _cmd_bench(args) -> int:
    from .bench import check_targets, run_bench, targets_for

    figures = run_bench(None if args.json else (lambda text: print(f"bench: {text}", file=sys.stderr, flush=True)))
    ok = check_targets(figures)
    if args.json:
        print(json.dumps({**figures, "targets_met": ok}, indent=1))
    else:
        print(f"reference sweep: {figures['reference']} on {figures['device']} ({figures['threads']} threads)")
        print(f"  initstudy  {figures['initstudy_img_per_s']:10.0f} img/s   ({figures['initstudy_s']:.1f} s; "
              f"as `initstudy train` runs it: {figures['schedule']})")
        print(f"  raw loop   {figures['raw_img_per_s']:10.0f} img/s   ({figures['raw_s']:.1f} s; the same kernels "
              "and schedule by hand)")
        print(f"  naive loop {figures['naive_img_per_s']:10.0f} img/s   ({figures['naive_s']:.1f} s; the loop a user "
              f"would write: NCHW, one run after another at {figures['threads']} torch threads)")
        lo, hi = figures["ratio_ci95"]
        print(f"  ratio {figures['ratio']:.3f} (95% interval over the runs {lo:.3f}-{hi:.3f})")
        lo, hi = figures["speedup_vs_naive_ci95"]
        print(f"  speedup vs naive {figures['speedup_vs_naive']:.3f} (95% interval {lo:.3f}-{hi:.3f})")
        print(f"  extra per run: {figures['per_run_overhead_s'] * 1000:.0f} ms on short runs "
              f"({figures['short_run_s']:.2f} s each by the raw loop), "
              f"{figures['reference_extra_per_run_s'] * 1000:+.0f} ms mean on the reference runs (machine noise included)")
        flops = ", ".join(f"{m} {v / 1e6:.1f} MFLOP" for m, v in figures["flops_per_img"].items())
        print(f"  flops per image (forward + backward): {flops}")
        print(f"  peak RSS {figures['peak_rss_mib']:.0f} MiB")
        print(f"  import of 1,000 runs x 50 epochs: {figures['import_tensorboard_1000_runs_s']:.1f} s from "
              f"TensorBoard event files, {figures['import_csv_1000_runs_s']:.1f} s from a tidy CSV")
        if figures["gpu"]:
            mfu = ", ".join(f"{k} {figures[k]:.2%}" for k in ("mfu", "packed_mfu") if figures[k] is not None)
            print(f"  {figures['packed_workers']} small runs at once on {figures['gpu']}: "
                  f"{figures['packed_img_per_s']:.0f} img/s against {figures['single_img_per_s']:.0f} one at a time; "
                  f"initial weights as standalone: {figures['packed_init_identical']}; "
                  f"{mfu or 'no peak FLOP/s known'}")
        for key, (op, bound) in targets_for(figures["device"]).items():
            value = f"{figures[key]!s:>10}" if isinstance(bound, bool) else f"{figures[key]:10.3f}"
            print(f"  {key:<28}{value}   target {op} {bound!s}   {'ok' if ok[key] else 'MISSED'}")
    return 0 if all(ok.values()) else 1


COMMANDS = {"import": _cmd_import, "analyze": _cmd_analyze, "bench": _cmd_bench, "train": _cmd_train,
            "status": _cmd_status, "report": _cmd_report, "list": _cmd_list, "inspect": _cmd_inspect}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InitStudyError as exc:
        print(f"initstudy {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # a runs dir or output path that is read-only, full, a file, or cannot exist
        where = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else str(exc).splitlines()[0]
        print(f"initstudy {args.command}: error: cannot read or write a file ({where}); check that the path "
              "exists, is writable and its disk has space", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
