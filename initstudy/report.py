"""The report: analyse a study's runs, build one context dict, render it once with autoescaping Jinja2.

`build_report` returns the Results and the HTML text; `write_report` puts
`report.html` and `results.json` in `<runs_dir>/<study>/report/`. Figures are
inlined as SVG data URIs so the HTML file stands alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import subprocess
from pathlib import Path

import matplotlib
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from . import plots
from .analysis import CellResult, Results, analyze, run_outcomes
from .config import Study, expand
from .data import DATASET_DESCRIPTIONS, PROBE_IMAGES
from .errors import StoreError
from .initializers import INITIALIZERS, bias_policy, resolve_gain
from .models import MODELS
from .store import RunStore, diagnostics_frame, tidy_frame, write_json
from .sweep import versions

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
matplotlib.rcParams["svg.hashsalt"] = "initstudy"  # stable ids: the same runs give the same SVG


def figure_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def fmt_p(p) -> str:
    if p is None:
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p) -> str:
    """'p = 0.012' or 'p < 0.001', for sentences."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _cell_title(cell: CellResult) -> str:
    return ", ".join(f"{k} {v}" for k, v in cell.factors.items())


def headline(cell: CellResult, alpha: float) -> list[str]:
    """Plain sentences stating what the tests showed, and what they did not."""
    out = []
    arms = sorted(cell.arms, key=lambda a: (a.median_epochs is None, a.median_epochs or 0))
    reached = [a for a in arms if a.median_epochs is not None]
    never = [a.initializer for a in arms if a.n_reached == 0]
    if reached:
        parts = [f"{a.initializer} {a.median_epochs:g}" for a in reached]
        out.append(f"Median epochs to reach {cell.threshold:g} validation accuracy (Kaplan-Meier): "
                   + "; ".join(parts) + ".")
    if never:
        out.append(f"No run of {', '.join(never)} reached {cell.threshold:g} within {cell.budget_epochs} epochs.")
    for t in cell.ett_omnibus:
        if t.pvalue is not None:
            verdict = "differ" if t.pvalue < alpha else "were not shown to differ"
            out.append(f"Epochs-to-threshold {verdict} across initializers (log-rank{', ' + t.note if t.note else ''}: "
                       f"chi2 = {t.statistic:.2f}, df = {t.df:g}, {p_clause(t.pvalue)}).")
    for t in cell.final_omnibus:
        if t.pvalue is not None:
            verdict = "differed" if t.pvalue < alpha else "were not shown to differ"
            out.append(f"Final accuracy {verdict} across initializers ({t.test}: statistic = {t.statistic:.2f}, "
                       f"df = {t.df:g}, {p_clause(t.pvalue)}).")
    sig = [p for p in cell.final_pairwise if p.pvalue_holm is not None and p.pvalue_holm < alpha]
    n_pairs = len(cell.final_pairwise)
    if n_pairs:
        out.append(f"{len(sig)} of {n_pairs} pairwise final-accuracy comparisons are significant after Holm "
                   f"correction at alpha = {alpha:g}.")
    if n_pairs and not sig and len(cell.seeds) < 6 and cell.design == "paired":
        out.append(f"With {len(cell.seeds)} paired seeds the smallest possible two-sided Wilcoxon p-value is "
                   f"{2 / 2 ** len(cell.seeds):.3f}, so no pair can be significant after correction: "
                   "add seeds before reading absence of evidence as evidence of absence.")
    return out


def methods(study: Study) -> dict:
    inits = []
    for spec in study.initializers:
        init = INITIALIZERS[spec.name]
        gains = {a: resolve_gain(spec, a) for a in study.activations}
        inits.append({"label": spec.label, "name": spec.name, "formula": init.formula, "source": init.source,
                      "options": ", ".join(f"{k}={v}" for k, v in spec.options) or "–",
                      "gain": ", ".join(f"{a}: {g:.4g}" for a, g in gains.items()) if init.gain != "fixed" else "–",
                      "bias": bias_policy(spec)})
    models = [{"name": m, "description": MODELS[m].description,
               "params": ", ".join(f"{k}={getattr(study, k)}" for k in MODELS[m].params) or "–"}
              for m in study.models]
    optimizer = (f"SGD with momentum {study.momentum:g}" if study.optimizer == "sgd" else "Adam") + \
        f", learning rate {study.lr:g} (constant), weight decay {study.weight_decay:g}"
    return {"dataset": DATASET_DESCRIPTIONS[study.dataset], "models": models, "initializers": inits,
            "activations": ", ".join(study.activations), "seeds": ", ".join(map(str, study.seeds)),
            "n_seeds": len(study.seeds), "epochs": study.epochs, "batch_size": study.batch_size,
            "optimizer": optimizer, "threshold": study.threshold, "alpha": study.alpha}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def analyze_study(study: Study, runs_dir: str | Path) -> tuple[Results, pd.DataFrame, list[str], list[str]]:
    """(results, tidy frame, factor columns, missing run ids) for a study's finished runs."""
    store = RunStore(runs_dir, study.name)
    specs = expand(study)
    tidy, factor_columns, missing = tidy_frame(specs, store)
    if tidy.empty:
        raise StoreError(f"no finished runs of study {study.name!r} in {store.root}; run "
                         f"`initstudy train --study {study.source}` first (with the same --set options)")
    order = [i.label for i in study.initializers]
    results = analyze(tidy, factor_columns, study.threshold, study.epochs, study.alpha, study.name, order,
                      study.reference, study.target_effect)
    return results, tidy, factor_columns, missing


def render(context: dict, templates_dir: Path = TEMPLATES_DIR) -> str:
    if not (templates_dir / "report.html.j2").is_file():
        raise StoreError(f"report template {templates_dir / 'report.html.j2'} is missing; "
                         "install initstudy from its repository checkout (pip install -e .)")
    env = Environment(loader=FileSystemLoader(templates_dir), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["fmt_p"] = fmt_p
    return env.get_template("report.html.j2").render(**context)


def _in_cell(df: pd.DataFrame, factors: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for k, v in factors.items():
        mask &= df[k] == v
    return df[mask]


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


def build_report(study: Study, runs_dir: str | Path, command: str | None = None) -> tuple[Results, str]:
    results, tidy, factor_columns, missing = analyze_study(study, runs_dir)
    order = [i.label for i in study.initializers]
    store = RunStore(runs_dir, study.name)
    specs = expand(study)
    diag = diagnostics_frame(specs, store)
    cells = []
    for cell in results.cells:
        cell_tidy = _in_cell(tidy, cell.factors)
        outcomes = run_outcomes(cell_tidy, study.threshold, study.epochs)
        present = [i for i in order if i in set(cell_tidy["initializer"])]
        cell_diag = _in_cell(diag, cell.factors) if not diag.empty else diag
        figures = {
            "curves": figure_uri(plots.learning_curves(cell_tidy, present, study.threshold)),
            "final": figure_uri(plots.final_accuracy(outcomes, present)),
            "km": figure_uri(plots.kaplan_meier(cell, outcomes)),
            "signal": None,  # runs recorded without diagnostics (imported or older) have no signal figure
        }
        if not cell_diag.empty:
            figures["signal"] = figure_uri(plots.signal_propagation(cell_diag, present))
        cells.append({"title": _cell_title(cell), "result": cell, "headline": headline(cell, study.alpha),
                      "figures": figures, "signal": signal_rows(cell_diag, cell) if not cell_diag.empty else []})
    n_runs = len(specs)
    statuses = {}
    for spec in specs:
        s = store.status(spec.run_id) or "not started"
        statuses[s] = statuses.get(s, 0) + 1
    context = {
        "study": study, "methods": methods(study), "cells": cells,
        "alpha": study.alpha, "probe_images": PROBE_IMAGES, "n_runs": n_runs, "n_missing": len(missing), "statuses": statuses,
        "versions": versions(), "commit": _git_commit(),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command or f"initstudy train --study {study.source} && initstudy report --study {study.source}",
    }
    return results, render(context)


def write_report(study: Study, runs_dir: str | Path, command: str | None = None) -> tuple[Path, Path, Results]:
    results, html = build_report(study, runs_dir, command)
    out = Path(runs_dir) / study.name / "report"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results.to_dict())
    html_path = out / "report.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(html)
    tmp.replace(html_path)
    return html_path, out / "results.json", results


def results_json(results: Results) -> str:
    return json.dumps(results.to_dict(), indent=1, allow_nan=False)
