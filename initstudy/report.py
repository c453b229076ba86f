"""The report: build one context dict from a study's analysis, render it once with autoescaping Jinja2.

`build_report` returns a `Report` (results, claim verdicts, HTML text, the tidy
CSV); `write_report` puts `report.html`, `results.json` and `tidy.csv` in
`<runs_dir>/<study>/report/`, and with `pdf=True` also `report.pdf`, printed by
WeasyPrint from the same HTML. Figures are inlined as SVG data URIs and the CSV
as a data: link, so the HTML file stands alone.

Rendering only: the runs, logs and data frames are analysed in `pipeline` (`analyze_study`, and for
imported logs and notebooks `analyze_logs`, which gives an `Analysis`); `write_logs_report` renders an
Analysis with the same cell sections, leaving out what the logs cannot hold (initialization diagnostics)
and stating what they do not record.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import importlib
import io
import json
import logging
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import plots
from .analysis import CellResult, Results, rank_scores, run_outcomes
from .claims import ClaimVerdict, CellVerdict, evaluate_claims
from .config import Study, expand, model_params_for
from .data import PROBE_IMAGES
from .errors import ReportError
from .initializers import bias_policy, resolve_gain
from .pipeline import (Analysis, analyze_study, in_cell, replay_sequential, sequential_summary,
                       sequential_verdicts)
from .replication import ReplicationRow, arm_text, replication_rows
from .stats import accuracy_ci
from .store import FINISHED, NOT_APPLICABLE, RunStore, diagnostics_frame, run_version, write_json
from .sweep import planned_specs, study_dict



def templates_dir() -> Path:
    """The report template's folder: inside the package when installed from a wheel (pyproject.toml maps the
    checkout's top-level templates/ to initstudy/templates), else templates/ beside the package (a checkout,
    or an editable install)."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped if (shipped / "report.html.j2").is_file() else here.parent / "templates"




def figure_uri(fig) -> str:
    buf = io.BytesIO()
    with plots.rc():  # the figures' fonts and stable SVG ids, without touching the caller's rcParams
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.05)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def fmt_epochs(x) -> str:
    """An epoch count: 3, 2.25 (fractions when evaluation is finer than an epoch)."""
    return "–" if x is None else f"{round(x, 2):g}"


def fmt_p(p) -> str:
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


HEADERS = {"pvalue": "p", "pvalue_holm": "p (Holm)", "ci": "95% CI"}  # generic tests table: key -> column header


def table_cell(value, key: str = "") -> str:
    """One value of a generic tests table: p-values as p-values, pairs as intervals, numbers to 3 places."""
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"[{table_cell(value[0])}, {table_cell(value[1])}]"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {table_cell(v, k)}" for k, v in value.items())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key.startswith("p") and ("value" in key or key in ("p", "p_holm")):
        return fmt_p(value)
    if key == "df" or isinstance(value, int):
        return f"{value:g}"
    return f"{value:.3f}"


def p_clause(p) -> str:
    """'p = 0.012' or 'p < 0.001', for sentences."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _factors_title(factors: dict) -> str:
    """'model plain, activation relu'; logs without factor columns are one cell, 'all runs'."""
    return ", ".join(f"{k} {v}" for k, v in factors.items() if v != NOT_APPLICABLE) or "all runs"


def _cell_title(cell: CellResult) -> str:
    return _factors_title(cell.factors)


def compact_letters(order: list[str], differ: set[frozenset]) -> dict[str, str]:
    """Compact letter display by insert-and-absorb (Piepho 2004, J. Comput. Graph. Stat. 13:456): arms that share a
    letter are not shown to differ; arms in `differ` (pairs as frozensets) share none. `order` ranks the arms
    (best first); letters go to groups in the order of their best-ranked member, so the best arm gets 'a'."""
    rank = {a: i for i, a in enumerate(order)}
    columns = [set(order)]
    for pair in sorted(differ, key=lambda p: sorted(rank[x] for x in p)):
        i, j = sorted(pair, key=rank.get)
        grown = []
        for col in columns:
            if i in col and j in col:  # insert: split the column into one without i and one without j
                grown += [col - {i}, col - {j}]
            else:
                grown.append(col)
        # absorb: a column inside another says nothing the other does not
        columns = [c for n, c in enumerate(grown)
                   if c and not any(c < d or (c == d and m < n) for m, d in enumerate(grown))]
    columns.sort(key=lambda c: sorted(rank[x] for x in c))
    names = [LETTERS[n] if n < len(LETTERS) else f"{LETTERS[n % len(LETTERS)]}{n // len(LETTERS)}"
             for n in range(len(columns))]
    sep = "" if len(columns) <= len(LETTERS) else " "
    return {a: sep.join(name for name, col in zip(names, columns) if a in col) for a in order}


LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def league(cell: CellResult, alpha: float) -> list[dict]:
    """The cell's arms ranked by mean final accuracy (diverged runs left out of the mean; an arm with no finished
    run last), each with its 95% t-interval (clipped to [0, 1]), restricted mean epochs to threshold, Kaplan-Meier median and the
    compact letters of the primary pairwise final-accuracy tests after Holm."""
    ranked = sorted(cell.arms, key=lambda a: (a.final_acc_mean is None, -(a.final_acc_mean or 0.0)))
    differ = {frozenset((p.a, p.b)) for p in cell.final_primary if p.pvalue_holm is not None and p.pvalue_holm < alpha}
    letters = compact_letters([a.initializer for a in ranked], differ) if cell.final_primary else {}
    return [{"rank": n, "arm": a, "acc_ci": accuracy_ci(a.final_acc_mean, a.final_acc_sd, a.n_runs - a.n_diverged),
             "letters": letters.get(a.initializer, "–")}
            for n, a in enumerate(ranked, 1)]


def omnibus_line(cell: CellResult) -> str:
    """'log-rank p = 0.050, friedman p = 0.368': do the arms differ at all, per primary endpoint ('' untested)."""
    names = {"logrank": "log-rank"}
    return ", ".join(f"{names.get(t.test, t.test)} {p_clause(t.pvalue)}" for t in cell.omnibus_primary
                     if t.pvalue is not None)


def design_notes(cell: CellResult, alpha: float) -> list[str]:
    """At most two sentences on what the league table cannot say: left-out runs, and a design that cannot
    separate any pair."""
    out = []
    if cell.notes:
        out.append(f"{len(cell.notes)} note(s) on the runs used (left-out seeds or runs, divergence) are in the "
                   "cell's results section.")
    p = cell.power
    floor = min(1.0, p.comparisons * p.min_wilcoxon_p) if p and p.min_wilcoxon_p is not None else None
    if floor is not None and floor >= alpha:
        out.append(f"Underpowered: with {len(cell.seeds)} paired seeds no pair can reach Holm-adjusted p < {alpha:g}"
                   " (the smallest reachable is " + fmt_p(floor) + "), so shared letters here are no evidence of "
                   "equality: add seeds.")
    return out


MAX_PAIRS = 6  # significant pairs spelled out per endpoint; the tables hold the rest


def pair_sentences(cell: CellResult, alpha: float) -> list[str]:
    """One sentence per significant pair (up to MAX_PAIRS per endpoint, smallest p first): who is ahead, by how
    much, and how sure; then the pairs not shown to differ."""
    out = []
    rmst = {a.initializer: a.rmst for a in cell.arms}
    hr = {(h.initializer, h.reference): h for h in cell.ett_cox if h.hazard_ratio is not None}
    for endpoint, pairs in (("ett", cell.ett_pairwise), ("final", cell.final_primary)):
        sig = sorted((p for p in pairs if p.pvalue_holm is not None and p.pvalue_holm < alpha),
                     key=lambda p: p.pvalue_holm)
        for p in sig[:MAX_PAIRS]:
            holm_p = p_clause(p.pvalue_holm).replace("p ", "Holm-adjusted p ", 1)
            if endpoint == "ett":
                a, b = (p.a, p.b) if rmst[p.a] <= rmst[p.b] else (p.b, p.a)
                h = hr.get((a, b)) or hr.get((b, a))
                ratio = ""
                if h is not None:
                    flip = h.initializer == b  # the ratio of a against b is the inverse of b against a
                    lo, hi = (1 / h.ci[1], 1 / h.ci[0]) if flip else h.ci
                    value = 1 / h.hazard_ratio if flip else h.hazard_ratio
                    ratio = f"hazard ratio {value:.2f} [{lo:.2f}, {hi:.2f}]; "
                out.append(f"{a} reached {cell.threshold:g} sooner than {b} (restricted mean {rmst[a]:.2f} vs "
                           f"{rmst[b]:.2f} epochs; {ratio}log-rank, {holm_p}).")
            elif p.effect is not None and p.effect.value is not None:
                e = p.effect
                a, b, sign = (p.a, p.b, 1) if e.value >= 0 else (p.b, p.a, -1)
                ci = "" if e.ci[0] is None else " [{:+.3f}, {:+.3f}]".format(*sorted((sign * e.ci[0], sign * e.ci[1])))
                out.append(f"{a} ended more accurate than {b} (median difference {sign * e.value:+.3f}{ci}; "
                           f"{p.test}, {holm_p}).")
        if len(sig) > MAX_PAIRS:
            out.append(f"{len(sig) - MAX_PAIRS} more {'epochs-to-threshold' if endpoint == 'ett' else 'final-accuracy'}"
                       " pairs differ significantly (see the tables).")
        quiet = [f"{p.a}–{p.b}" for p in pairs if p.pvalue_holm is None or p.pvalue_holm >= alpha]
        if quiet:
            what = "epochs to threshold" if endpoint == "ett" else "final accuracy"
            out.append(f"Not shown to differ in {what} (Holm-adjusted p ≥ {alpha:g}): " + ", ".join(quiet) + ".")
    return out


def methods(study: Study) -> dict:
    from .data import dataset_description
    from .initializers import get_initializer
    from .models import get_model

    inits = []
    for spec in study.initializers:
        init = get_initializer(spec.name)  # a plugin: its docstring's first line as formula, its module as source
        gains = {a: resolve_gain(spec, a) for a in study.activations}
        source = f"{init.module} (user plugin)" if init.module else init.source
        inits.append({"label": spec.label, "name": spec.name, "formula": init.formula or "–", "source": source,
                      "options": ", ".join(f"{k}={v}" for k, v in spec.options) or "–",
                      "gain": ", ".join(f"{a}: {g:.4g}" for a, g in gains.items()) if init.gain != "fixed" else "–",
                      "bias": bias_policy(spec)})
    models = [{"name": m, "description": get_model(m).description,
               "params": ", ".join(f"{k}={v}" for k, v in model_params_for(study, m)) or "–"}
              for m in study.models]
    optimizer = (f"SGD with momentum {study.momentum:g}" if study.optimizer == "sgd" else "Adam") + \
        f", learning rate {study.lr:g} (constant), weight decay {study.weight_decay:g}"
    return {"dataset": dataset_description(study.dataset), "models": models, "initializers": inits,
            "activations": ", ".join(study.activations), "seeds": ", ".join(map(str, study.seeds)),
            "n_seeds": len(study.seeds), "epochs": study.epochs, "eval_every": study.eval_every,
            "batch_size": study.batch_size,
            "optimizer": optimizer, "threshold": study.threshold, "alpha": study.alpha}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render(context: dict, folder: Path | None = None) -> str:
    folder = folder or templates_dir()
    if not (folder / "report.html.j2").is_file():
        raise ReportError(f"report template {folder / 'report.html.j2'} is missing; reinstall initstudy "
                          "(pip install .)")
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["fmt_p"] = fmt_p
    env.filters["fmt_epochs"] = fmt_epochs
    env.filters["as_dict"] = lambda x: x.to_dict() if hasattr(x, "to_dict") else dict(x)
    env.filters["cell"] = table_cell
    env.filters["header"] = lambda key: HEADERS.get(key, key.replace("_", " "))
    return env.get_template("report.html.j2").render(**context)


def signal_rows(diag: pd.DataFrame, cell: CellResult) -> list[dict]:
    """Per initializer: median over seeds of the first and last hidden layers' activation std, their ratio,
    the mean dead-ReLU fraction, beside the Kaplan-Meier median epochs-to-threshold."""
    rows = []
    for arm in cell.arms:
        g = diag[diag["initializer"] == arm.initializer]
        if g.empty:
            continue
        hidden = g[g["index"] < g["index"].max()]  # the head's logits are not a hidden signal
        first = hidden[hidden["index"] == hidden["index"].min()]["activation_std"].median()
        last = hidden[hidden["index"] == hidden["index"].max()]["activation_std"].median()
        dead = g["dead_fraction"].dropna()
        rows.append({"initializer": arm.initializer, "first": first, "last": last,
                     "ratio": (last / first) if first and first > 0 else None,
                     "dead": float(dead.mean()) if len(dead) else None, "median_epochs": arm.median_epochs})
    return rows


PACKAGES = ("initstudy", "torch", "torchvision", "pytorch-lightning", "numpy", "scipy", "pandas", "statsmodels",
            "scikit-learn", "matplotlib", "jinja2", "weasyprint")
VERDICT_MARK = {"supported": "✔", "contradicted": "✘", "inconclusive": "?", "not tested": "–"}


class Numbering:
    """Figure and table numbers in document order: the template takes the next one as it places each."""

    def __init__(self):
        self.figures = self.tables = 0

    def figure(self) -> int:
        self.figures += 1
        return self.figures

    def table(self) -> int:
        self.tables += 1
        return self.tables


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")  # one folder per GPU, each with an `information` file


def _gpu_name() -> str:
    """The first visible GPU, asked of torch when it is loaded anyway, else read from the NVIDIA driver's
    /proc files: the report trains nothing and imports no torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return "none visible"
    for info in sorted(NVIDIA_PROC.glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    return line.partition(":")[2].strip()
        except OSError:
            continue
    return "none visible"


def hardware() -> dict[str, str]:
    """The machine writing the report (training devices come from the run records)."""
    return {"platform": platform.platform(), "CPU": _cpu_model(), "CPU cores": str(os.cpu_count()),
            "accelerator": _gpu_name()}


def average_ranks(outcomes: pd.DataFrame, order: list[str]) -> dict[str, float]:
    """Mean over seeds of each arm's rank of final accuracy within the seed (1 = best, ties averaged, a diverged
    run ranks below every finished one), as Friedman's test ranks them. `outcomes`: one row per run."""
    score = outcomes.assign(score=rank_scores(outcomes))
    wide = score.pivot(index="seed", columns="initializer", values="score")[order]
    return {a: float(r) for a, r in wide.rank(axis=1, ascending=False).mean().items()}


def claim_sentence(claim, v: CellVerdict) -> str:
    """The numbers behind one cell's verdict, in words."""
    p = p_clause(v.pvalue) if v.pvalue is not None else "no p-value"  # the test's name says it is Holm-adjusted
    if claim.b is None:
        return f"{v.note}; median {fmt(v.effect)}; {v.test}: {p}."
    if claim.endpoint == "epochs_to_threshold":
        text = (f"Restricted mean epochs to threshold, {claim.a} − {claim.b}: {fmt(v.effect, 2)}; {v.test}: "
                + (f"chi2 = {v.statistic:.2f}, " if v.statistic is not None else "") + p + ".")
        return text + (f" {v.note}." if v.note else "")
    ci = f" [{fmt(v.ci[0])}, {fmt(v.ci[1])}]" if v.ci[0] is not None else ""
    text = f"Median difference in final accuracy, {claim.a} − {claim.b}: {fmt(v.effect)}{ci}; {v.test}"
    if claim.direction == "not_worse":
        return text + f": {p} ({v.note})."
    return text + f": {p}."


def claim_rows(verdicts: tuple[ClaimVerdict, ...]) -> list[dict]:
    rows = []
    for v in verdicts:
        c = v.claim
        if c.b is None:
            bound = f"at most {c.at_most:g}" if c.at_most is not None else f"at least {c.at_least:g}"
            what = f"{c.a}: final accuracy {bound}"
        else:
            what = f"{c.a} {c.direction.replace('_', ' ')} than {c.b} ({c.endpoint.replace('_', ' ')}" + \
                (f", margin {c.margin:g})" if c.margin is not None else ")")
        where = "; ".join(f"{k}: {', '.join(map(str, vals))}" for k, vals in c.where) or "every cell"
        rows.append({"verdict": v, "text": c.text, "what": what, "where": where, "source": c.source,
                     "mark": VERDICT_MARK[v.verdict],
                     "cells": [{"title": _factors_title(cv.factors),
                                "verdict": cv.verdict,
                                "mark": VERDICT_MARK[cv.verdict], "sentence": claim_sentence(c, cv)}
                               for cv in v.cells]})
    return rows


def threats(study: Study, results: Results, n_missing: int, invalid: dict[str, str] | None = None,
            versions: dict[str, int] | None = None) -> list[str]:
    """Threats to validity that apply to this study, derived from its settings.

    `invalid`: run id -> why its finished record cannot be used; `versions`: initstudy version -> analysed runs.
    """
    out = [f"One dataset ({study.dataset}): differences between initializers may not transfer to other data.",
           f"One constant learning rate ({study.lr:g}) and one optimizer ({study.optimizer}) for every initializer: "
           "initialization and step size interact, so an initializer that needs another learning rate is judged "
           "away from its best setting.",
           f"A budget of {study.epochs} epochs: final accuracy is accuracy after {study.epochs} epochs, not at "
           "convergence, and runs that would reach the threshold later are censored.",
           f"Batch size {study.batch_size} and split seed {study.split_seed} are fixed; the endpoints are measured "
           "on one validation split, with no held-out test set."]
    if len(study.models) == 1:
        out.append(f"One architecture ({study.models[0]}): claims about initializers in general are tested on it "
                   "alone.")
    if len(study.activations) == 1:
        out.append(f"One activation ({study.activations[0]}).")
    n = len(study.seeds)
    out.append(f"{n} seeds per arm. Seeds vary both the initial weights and the data order; they are the only "
               "replication, so a result is about this model on this data, over seeds.")
    if n_missing:
        out.append(f"{n_missing} planned runs are unfinished and left out; if they fail for a reason linked to the "
                   "initializer, the results are biased.")
    if invalid:
        shown = "; ".join(f"{run} ({why})" for run, why in list(invalid.items())[:5])
        more = f"; and {len(invalid) - 5} more" if len(invalid) > 5 else ""
        out.append(f"{len(invalid)} run(s) recorded as finished have invalid files and are left out, counted as "
                   f"unfinished: {shown}{more}. `initstudy train` redoes them.")
    if versions and len(versions) > 1:
        out.append("The runs were trained by several initstudy versions ("
                   + ", ".join(f"{v}: {n} runs" for v, n in versions.items()) + "); a run is reused after an "
                   "upgrade, so a change in training between versions would differ between runs. The run list in "
                   "the appendix gives each run's version.")
    if any(c.source for c in study.claims):
        out.append("The claims' sources mostly state no dataset, architecture or budget: each claim is tested in "
                   "this study's setting only, and a verdict here does not settle it elsewhere.")
    return out


def power_rows(results: Results) -> list[dict]:
    """Per cell: what the design can detect at all. Minimum detectable effects from the analysis go here too."""
    rows = []
    for cell in results.cells:
        k, n = len(cell.arms), len(cell.seeds)
        # Holm multiplies the smallest of m pairwise p-values by m: the floor any Wilcoxon pair can reach.
        p = cell.power
        floor = min(1.0, p.comparisons * p.min_wilcoxon_p) if p and p.min_wilcoxon_p is not None else None
        rows.append({"title": _cell_title(cell), "design": cell.design, "seeds": n, "arms": k,
                     "pairs": k * (k - 1) // 2, "floor": floor,
                     "underpowered": floor is not None and floor >= results.alpha})
    return rows


def runs_table(specs, store: RunStore) -> tuple[list[dict], dict[str, int], dict[str, int], dict[str, str],
                                                dict[str, int]]:
    """(one row per planned run, counts by status, counts by training device, invalid run id -> reason,
    initstudy version -> finished runs). A finished run with invalid files has status "invalid"."""
    rows, statuses, devices, invalid, versions = [], {}, {}, {}, {}
    for spec in specs:
        info = store.info(spec.run_id)
        status = info.get("status") or "not started"
        version = None
        if status in FINISHED:
            reason = store.invalid_reason(spec.run_id)
            if reason:
                status, invalid[spec.run_id] = "invalid", reason
            else:
                version = run_version(info)
                versions[version] = versions.get(version, 0) + 1
        statuses[status] = statuses.get(status, 0) + 1
        if info.get("device"):
            devices[info["device"]] = devices.get(info["device"], 0) + 1
        rows.append({"id": spec.run_id, "cell": f"{spec.model} / {spec.activation}", "initializer": spec.init.label,
                     "seed": spec.seed, "status": status, "seconds": info.get("seconds"), "version": version})
    return rows, statuses, devices, invalid, versions


def run_groups(runs: list[dict]) -> list[dict]:
    """The run list compacted to one row per cell and initializer: status counts, median seconds, versions, and
    each run's seed and id by seed, with a `flag` when it is not done or another initstudy version trained it
    than most runs."""
    groups: dict[tuple, list[dict]] = {}
    versions: dict[str, int] = {}
    for r in runs:
        groups.setdefault((r["cell"], r["initializer"]), []).append(r)
        if r["version"]:
            versions[r["version"]] = versions.get(r["version"], 0) + 1
    common = max(versions, key=versions.get) if versions else None
    out = []
    for (cell, init), rows in groups.items():
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        seconds = [r["seconds"] for r in rows if r["seconds"] is not None]
        out.append({"cell": cell, "initializer": init, "statuses": counts,
                    "seconds": float(pd.Series(seconds).median()) if seconds else None,
                    "versions": sorted({r["version"] for r in rows if r["version"]}),
                    "runs": [{**r, "flag": ", ".join(
                        ([r["status"]] if r["status"] != "done" else [])
                        + ([f"initstudy {r['version']}"] if r["version"] and r["version"] != common else []))}
                        for r in sorted(rows, key=lambda r: r["seed"])]})
    return out


def csv_uri(text: str) -> str:
    return "data:text/csv;base64," + base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Report:
    results: Results
    claims: tuple[ClaimVerdict, ...]
    html: str  # self-contained: CSV downloads inlined as data: links
    print_html: str  # the same report with the CSV links pointing at the files beside it (for the PDF)
    tidy_csv: str  # per-epoch rows behind every figure
    diagnostics_csv: str  # per-layer init diagnostics behind the signal figures
    replication: tuple[ReplicationRow, ...] | None = None  # a study's published values beside its own; None: logs
    sequential: dict | None = None  # a sequential study's design and decisions (pipeline.sequential_summary)

    def results_dict(self) -> dict:
        d = {**self.results.to_dict(), "claims": [v.to_dict() for v in self.claims]}
        if self.replication is not None:
            d["replication"] = [r.to_dict() for r in self.replication]
        if self.sequential is not None:
            d["sequential"] = self.sequential
        return d


def cell_sections(results: Results, tidy: pd.DataFrame, order: list[str], diag: pd.DataFrame
                  ) -> tuple[list[dict], list[pd.DataFrame]]:
    """(one template dict per cell: title, result, league table, design notes, figures, signal rows; each cell's
    run outcomes)."""
    alpha, threshold = results.alpha, results.threshold
    cells, finals = [], []
    for cell in results.cells:
        cell_tidy = in_cell(tidy, cell.factors)
        outcomes = run_outcomes(cell_tidy, threshold, cell.budget_epochs)
        finals.append(outcomes)
        present = [i for i in order if i in set(cell_tidy["initializer"])]
        cell_diag = in_cell(diag, cell.factors) if not diag.empty else diag
        rmst = {a.initializer: a.rmst for a in cell.arms}
        figures = {
            "overview": figure_uri(plots.cell_overview(cell_tidy, cell, outcomes, present)),
            "curves": figure_uri(plots.learning_curves(cell_tidy, present, threshold)),
            "matrix_final": None, "matrix_ett": None,  # pairwise matrices need two arms
            "cd": None,  # mean ranks need every arm on every seed: paired cells with three or more arms
            "signal": None,  # runs recorded without diagnostics (imported or older) have no signal figure
        }
        if len(present) > 1:
            figures["matrix_final"] = figure_uri(plots.pairwise_matrix(cell, alpha, "final_accuracy"))
            figures["matrix_ett"] = figure_uri(plots.pairwise_matrix(cell, alpha, "epochs_to_threshold", rmst))
        if cell.design == "paired" and len(present) >= 3:
            o = outcomes[outcomes["seed"].isin(cell.seeds)]  # the seeds the paired tests use
            figures["cd"] = figure_uri(plots.critical_difference(average_ranks(o, present), cell.final_primary,
                                                                  alpha, len(cell.seeds)))
        if not cell_diag.empty:
            figures["signal"] = figure_uri(plots.signal_propagation(cell_diag, present))
        pair_checks = {(pr.a, pr.b): ch for pr in cell.final_primary for ch in cell.final_checks
                       if ch.target.endswith(f" differences {pr.a} - {pr.b}")}  # paired: one check per pair
        cells.append({"title": _cell_title(cell), "result": cell, "league": league(cell, alpha),
                      "pair_checks": pair_checks,
                      "other_checks": [ch for ch in cell.final_checks if ch not in pair_checks.values()],
                      "design_notes": design_notes(cell, alpha), "omnibus": omnibus_line(cell),
                      "figures": figures, "rmst": rmst,
                      "signal": signal_rows(cell_diag, cell) if not cell_diag.empty else []})
    return cells, finals


def summary_figure(cells: list[dict], order: list[str]) -> str:
    """Page 1's figure: every cell's league rows as one forest plot."""
    rows = [{"cell": c["title"], "initializer": r["arm"].initializer, "acc": r["arm"].final_acc_mean,
             "acc_ci": r["acc_ci"], "rmst": r["arm"].rmst, "rmst_ci": r["arm"].rmst_ci}
            for c in cells for r in c["league"]]
    # best first: by mean final accuracy over the cells where the arm has one, arms without one last
    def mean_acc(init):
        accs = [r["acc"] for r in rows if r["initializer"] == init and r["acc"] is not None]
        return (not accs, -sum(accs) / len(accs) if accs else 0.0, order.index(init) if init in order else len(order))
    shown = sorted({r["initializer"] for r in rows}, key=mean_acc)
    return figure_uri(plots.summary_forest(rows, [c["title"] for c in cells], shown))


def shared_context(results: Results, verdicts: tuple[ClaimVerdict, ...], cells: list[dict],
                   order: list[str]) -> dict:
    """The context keys a trained and an imported study's reports fill alike."""
    return {
        "cells": cells, "claims": claim_rows(verdicts), "summary_figure": summary_figure(cells, order),
        "claim_counts": {k: sum(v.verdict == k for v in verdicts) for k in VERDICT_MARK},
        "alpha": results.alpha, "power": power_rows(results), "factorial": results.factorial,
        "mde": [{"title": _cell_title(c), **c.power.to_dict()} for c in results.cells if c.power],
        "versions": package_versions(), "hardware": hardware(), "commit": _git_commit(),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_both(context: dict, results: Results, verdicts: tuple[ClaimVerdict, ...], tidy: pd.DataFrame,
                diag: pd.DataFrame, replication: tuple[ReplicationRow, ...] | None = None) -> Report:
    """The Report: the HTML with the CSVs inlined, and again for print with links to the files beside it."""
    tidy_csv = tidy.to_csv(index=False)
    diag_csv = diag.to_csv(index=False) if not diag.empty else ""
    links = {"tidy": csv_uri(tidy_csv), "diagnostics": csv_uri(diag_csv) if diag_csv else None}
    html = render({**context, "numbering": Numbering(), "csv": links, "for_print": False})
    files = {"tidy": "tidy.csv", "diagnostics": "diagnostics.csv" if diag_csv else None}
    print_html = render({**context, "numbering": Numbering(), "csv": files, "for_print": True})
    return Report(results, verdicts, html, print_html, tidy_csv, diag_csv, replication)


def build_report(study: Study, runs_dir: str | Path, command: str | None = None) -> Report:
    state = specs = None
    if study.sequential is not None:  # the runs its looks asked for; verdicts from its recorded decisions
        state = replay_sequential(study, runs_dir)
        specs = planned_specs(study, state.to_record())
    results, tidy, factor_columns, missing = analyze_study(study, runs_dir, specs)
    order = [i.label for i in study.initializers]
    store = RunStore(runs_dir, study.name)
    specs = expand(study) if specs is None else specs
    diag = diagnostics_frame(specs, store)
    cells, finals = cell_sections(results, tidy, order, diag)
    verdicts = evaluate_claims(study.claims, results, finals)
    sequential = None
    if state is not None:
        verdicts = sequential_verdicts(verdicts, state)
        sequential = sequential_summary(study, state, len(specs) - len(missing), len(study.initializers),
                                        len(results.cells))
    replication = replication_rows(study.replication, results, {s.label: arm_text(s) for s in study.initializers},
                                   verdicts)
    runs, statuses, devices, invalid, run_versions = runs_table(specs, store)
    blob = json.dumps(study_dict(study), sort_keys=True, default=str)
    context = {
        **shared_context(results, verdicts, cells, order),
        "study": study, "methods": methods(study), "imported": None,
        "replication": replication_context(replication), "target_effect": study.target_effect,
        "probe_images": PROBE_IMAGES, "n_runs": len(specs), "n_missing": len(missing),
        "statuses": statuses, "devices": devices, "runs": runs, "run_groups": run_groups(runs),
        "threats": threats(study, results, len(missing), invalid, run_versions), "run_versions": run_versions,
        "study_hash": hashlib.sha256(blob.encode()).hexdigest()[:12],
        "command": command or f"initstudy train --study {study.source} && initstudy report --study {study.source}",
        "sequential": sequential_context(sequential) if sequential else None,
    }
    if sequential:
        context["threats"].append(
            "Sequential design: cells stopped at different looks, so they rest on different numbers of seeds, and an "
            "effect estimated at an early stop tends to overstate the effect (it stopped because it looked large); "
            "the repeated confidence intervals and stage-wise p-values account for the looks, the cell tables' "
            "intervals do not.")
    report = render_both(context, results, verdicts, tidy, diag, replication)
    return replace(report, sequential=sequential)


def sequential_context(seq: dict) -> dict:
    """Template rows of the Methods' sequential design and of the claims' decisions, and the z-path figure."""
    design = seq["design"]
    bounds = []
    if design:
        for k, n in enumerate(design["looks"]):
            bounds.append({"look": k + 1, "seeds": n, "fraction": design["fractions"][k], "spent": design["spent"][k],
                           "bound": design["bounds"][k],
                           "futility": seq["futility"] if k < len(design["looks"]) - 1 else None})
    tests = []
    varying = [k for k in dict.fromkeys(k for t in seq["tests"] for k in t["cell"])
               if len({str(t["cell"].get(k)) for t in seq["tests"]}) > 1]  # the legend names only what differs
    for t in seq["tests"]:
        where = ", ".join(f"{k} {t['cell'][k]}" for k in varying if t["cell"].get(k, NOT_APPLICABLE) != NOT_APPLICABLE)
        tests.append({**t, "label": f"claim {t['claim']}" + (f": {where}" if where else ""),
                      "title": _factors_title(t["cell"])})
    figure = figure_uri(plots.sequential_paths(design, tests)) if design and tests else None
    return {**seq, "bounds": bounds, "rows": tests, "figure": figure}


def replication_context(rows: tuple[ReplicationRow, ...]) -> dict:
    """The replication table: one row per published value, one column per cell holding our mean, rank and the
    claims' verdicts there; mapping notes as numbered footnotes. Empty dict without references."""
    if not rows:
        return {}
    varying = [k for k in dict.fromkeys(k for r in rows for k in r.factors)
               if len({r.factors.get(k) for r in rows}) > 1]  # a cell's header names only what differs
    def cell_key(factors):
        return tuple(sorted((k, str(v)) for k, v in factors.items()))
    cells = {}
    for r in rows:
        cells.setdefault(cell_key(r.factors), ", ".join(str(r.factors[k]) for k in varying) if varying
                         else _factors_title(r.factors))
    by_ref, notes = {}, []
    for r in rows:
        ref = r.reference
        if ref not in by_ref:
            if ref.mapping:
                notes.append(ref.mapping)
            printed = f"{ref.mean:.3f}" + (f" [{ref.low:.3f}, {ref.high:.3f}]" if ref.low is not None else "")
            by_ref[ref] = {"reference": ref, "arm": r.arm, "printed": printed,
                           "runs": "–" if ref.runs is None else ref.runs,
                           "note": len(notes) if ref.mapping else None, "cells": {}}
        by_ref[ref]["cells"][cell_key(r.factors)] = {
            "row": r, "ours": fmt(r.mean) + (f" [{fmt(r.ci[0])}, {fmt(r.ci[1])}]" if r.ci[0] is not None else ""),
            "claims": [{"mark": VERDICT_MARK[c.verdict], "verdict": c.verdict, "claim": c.claim,
                        "number": c.number} for c in r.claims]}
    table = [{**v, "cells": [v["cells"].get(k) for k in cells]} for v in by_ref.values()]
    return {"cells": list(cells.values()), "rows": table, "notes": notes, "n_values": len(rows),
            "sources": list(dict.fromkeys(r.reference.source for r in rows))}


# ---------------------------------------------------------------- imported logs and data frames

UNKNOWN = ("the data set and its split", "the model and its size", "the optimizer, learning rate and schedule",
           "the batch size", "how the initial weights were drawn beyond the initializer's name",
           "whether runs of one seed saw the same data order")


def _provenance_rows(p: dict) -> list[tuple[str, str]]:
    """(what, value) rows of the Methods' source table; values as text, the unknown said so."""
    def text(value):
        if value in (None, "", {}, []):
            return "not recorded"
        if isinstance(value, dict):
            return ", ".join(f"{k} = {v}" for k, v in value.items())
        return str(value)

    rows = [("logs read from", text(p.get("source"))), ("format", text(p.get("format") or "tidy CSV"))]
    if p.get("mapping"):
        rows.append(("column or tag mapping", text(p["mapping"])))
    if p.get("run_pattern"):
        rows.append(("run folder pattern", text(p["run_pattern"])))
    if p.get("steps_per_epoch"):
        rows.append(("steps per epoch", text(p["steps_per_epoch"])))
    rows += [("SHA-256 of what was read", text(p.get("sha256"))), ("imported at", text(p.get("imported_at")))]
    files = p.get("files")
    if isinstance(files, (list, tuple)) and files:  # names, or (newer importers) just how many
        more = " …" if len(files) > 20 else ""
        rows.append((f"files read ({len(files)})", ", ".join(map(str, files[:20])) + more))
    elif files:
        rows.append(("files read", text(files)))
    if p.get("settings"):
        rows.append(("analysis settings", text(p["settings"])))
    return rows


def log_threats(a: Analysis) -> list[str]:
    """Threats to validity of a study known only from its logs."""
    n_seeds = sorted({len(c.seeds) for c in a.results.cells})
    budget = a.results.cells[0].budget_epochs if a.results.cells else a.settings.budget_epochs
    return [
        "The logs do not record " + ", ".join(UNKNOWN[:-1]) + ": the results hold for whatever produced these "
        "runs, and this report cannot say whether every initializer was trained under the same conditions.",
        f"A budget of {budget} epochs: final accuracy is accuracy at the end of the log, not at convergence, and "
        "runs that would reach the threshold later are censored.",
        "Paired tests assume that runs sharing a seed number shared everything but the initializer (data order, "
        "augmentation); the logs cannot show it. Use design: unpaired in the settings if they did not.",
        f"{' to '.join(map(str, n_seeds))} seeds per arm are the only replication.",
        "The threshold and the claims should be fixed before the logs are looked at; the report cannot tell "
        "whether they were.",
    ]


def imported_runs(tidy: pd.DataFrame, factors: tuple[str, ...]) -> list[dict]:
    """One appendix row per run of the logs: run id, cell, initializer, seed, epochs logged, diverged."""
    rows = []
    for run, g in tidy.groupby("run", sort=False):
        first = g.iloc[0]
        rows.append({"id": run, "cell": ", ".join(str(first[f]) for f in factors) or "–",
                     "initializer": first["initializer"], "seed": int(first["seed"]),
                     "status": "diverged" if bool(first["diverged"]) else "logged",
                     "seconds": None, "version": None, "epochs": fmt_epochs(float(g["epoch"].max()))})
    return rows


def build_logs_report(a: Analysis, command: str | None = None) -> Report:
    """The report of an Analysis of logs: every section a trained study has where the logs allow."""
    cells, _finals = cell_sections(a.results, a.tidy, list(a.order), pd.DataFrame())
    p = a.provenance
    runs = imported_runs(a.tidy, a.factors)
    source = p.get("source") or "a data frame"
    context = {
        **shared_context(a.results, a.verdicts, cells, list(a.order)),
        "study": {"name": a.name, "source": source, "target_effect": a.settings.target_effect,
                  "description": f"Training logs read from {source}" if p else "Training logs from a data frame"},
        "methods": {"threshold": a.results.threshold, "alpha": a.results.alpha,
                    "epochs": ", ".join(sorted({str(c.budget_epochs) for c in a.results.cells}))},
        "imported": {"provenance": _provenance_rows(p) if p else [("logs read from", "a data frame "
                                                                    "(initstudy.analyze_frame)")],
                     "unknown": UNKNOWN, "factors": ", ".join(a.factors) or "none",
                     "initializers": ", ".join(a.order),
                     "labels": ", ".join(f"{k} → {v}" for k, v in a.settings.labels),
                     "settings": a.settings.source if a.settings.source != "settings" else ""},
        "target_effect": a.settings.target_effect, "probe_images": PROBE_IMAGES,
        "n_runs": len(runs), "n_missing": 0, "statuses": {}, "devices": {}, "runs": runs,
        "threats": log_threats(a), "run_versions": {},
        "study_hash": (p.get("sha256") or hashlib.sha256(a.tidy.to_csv(index=False).encode()).hexdigest())[:12],
        "command": command or "initstudy.analyze_frame(df) and initstudy.render_report(results, out_dir)",
    }
    return render_both(context, a.results, a.verdicts, a.tidy, pd.DataFrame())


def weasyprint():
    """The weasyprint module, or a ReportError saying what to install."""
    try:
        return importlib.import_module("weasyprint")
    except ImportError:
        raise ReportError("--pdf needs WeasyPrint: pip install weasyprint (or drop --pdf)") from None
    except OSError as exc:  # the Python package is there but pango is not
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"--pdf: WeasyPrint cannot load its system libraries ({first}); install pango "
                          "(e.g. apt-get install libpango-1.0-0 libpangoft2-1.0-0) or drop --pdf") from None


def write_pdf(html: str, path: Path, base_dir: Path) -> int:
    """Print `html` to `path` with WeasyPrint; returns the page count."""
    wp = weasyprint()
    loggers = [logging.getLogger(name) for name in ("weasyprint", "fontTools")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:  # layout chatter (unsupported CSS, font subsetting) is not news; the caller's levels return
        lg.setLevel(logging.ERROR)
    try:
        doc = wp.HTML(string=html, base_url=str(base_dir)).render()
        tmp = path.with_suffix(".pdf.tmp")
        doc.write_pdf(tmp)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    tmp.replace(path)
    return len(doc.pages)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_files(report: Report, out: Path, pdf: bool, results: dict | None = None) -> dict[str, Path]:
    """Put report.html, results.json (`results`, default the report's), tidy.csv, diagnostics.csv when there are
    diagnostics, and with `pdf` report.pdf in `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "report.html", "results": out / "results.json", "tidy": out / "tidy.csv"}
    write_json(paths["results"], report.results_dict() if results is None else results)
    _write_text(paths["tidy"], report.tidy_csv)
    if report.diagnostics_csv:
        paths["diagnostics"] = out / "diagnostics.csv"
        _write_text(paths["diagnostics"], report.diagnostics_csv)
    _write_text(paths["html"], report.html)
    if pdf:
        paths["pdf"] = out / "report.pdf"
        write_pdf(report.print_html, paths["pdf"], out)
    return paths


def write_report(study: Study, runs_dir: str | Path, command: str | None = None,
                 pdf: bool = False) -> tuple[dict[str, Path], Report]:
    """Write report.html, results.json, tidy.csv (and diagnostics.csv, report.pdf); returns (paths, report)."""
    if pdf:
        weasyprint()  # fail before the work, with nothing written
    report = build_report(study, runs_dir, command)
    return write_files(report, Path(runs_dir) / study.name / "report", pdf), report


def write_logs_report(a: Analysis, out: str | Path, command: str | None = None,
                      pdf: bool = False) -> tuple[dict[str, Path], Report]:
    """The report of an Analysis of logs in `out`; results.json is `a.to_dict()`, as `initstudy analyze` writes."""
    if pdf:
        weasyprint()
    report = build_logs_report(a, command)
    return write_files(report, Path(out), pdf, a.to_dict()), report
