"""The report of imported logs: `import` then `report --pdf`, numbers equal to `analyze`'s, text from logs escaped,
settings files checked like study files."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from initstudy.cli import main

from .test_report import Page, league_rows, page_one

# Names, factor values and the file name carry markup that must reach the HTML escaped.
HE, XAVIER, LECUN = "he <script>alert(1)</script>", "xavier & co", 'lecun "q"'
MODEL = "<b>net</b>"
SETTINGS = f"""threshold: 0.8
order: [{json.dumps(HE)}, {json.dumps(XAVIER)}]
claims:
  - {{claim: "He reaches 0.8 sooner", a: {json.dumps(HE)}, b: {json.dumps(XAVIER)}, endpoint: epochs_to_threshold,
     direction: faster}}
"""


def planted_logs(rates: dict[str, float], seeds: int = 6, epochs: int = 10, seed: int = 1) -> pd.DataFrame:
    """Learning curves 0.1 + 0.85 (1 - exp(-rate epoch)) with seed-to-seed noise in the rate."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, rate in rates.items():
        for s in range(seeds):
            r = rate + rng.normal(0, 0.03)
            for e in range(epochs + 1):
                acc = float(np.clip(0.1 + 0.85 * (1 - np.exp(-r * e)) + rng.normal(0, 0.005), 0, 1))
                rows.append({"initializer": name, "seed": s, "epoch": e, "val_acc": acc,
                             "train_loss": 2.3 * np.exp(-r * e), "model": MODEL})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """(runs dir, report dir, html, page, analyze's results.json) of a tidy CSV imported with settings and
    reported with --pdf."""
    root = tmp_path_factory.mktemp("imported")
    src = root / "logs<&>.csv"
    planted_logs({HE: 0.5, XAVIER: 0.3, LECUN: 0.2}).to_csv(src, index=False)
    (root / "s.yaml").write_text(SETTINGS)
    runs = root / "runs"
    assert main(["import", str(src), "--study", "x", "--runs-dir", str(runs), "--settings", str(root / "s.yaml")]) == 0
    assert main(["report", "--study", "x", "--runs-dir", str(runs), "--pdf"]) == 0
    assert main(["analyze", "--study", "x", "--runs-dir", str(runs), "--out", str(root / "analyze.json")]) == 0
    out = runs / "x" / "report"
    html = (out / "report.html").read_text()
    page = Page()
    page.feed(html)
    return runs, out, html, page, json.loads((root / "analyze.json").read_text())


def test_import_then_report_pdf_writes_every_file(imported):
    _, out, _, _, _ = imported
    assert {p.name for p in out.iterdir()} == {"report.html", "report.pdf", "results.json", "tidy.csv"}
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")


def test_results_json_equals_analyze(imported):
    _, out, _, _, analyzed = imported
    results = json.loads((out / "results.json").read_text())
    assert results == analyzed
    assert results["threshold"] == 0.8 and results["claims"][0]["verdict"] == "supported"
    assert results["cells"][0]["initializers"] == [HE, XAVIER, LECUN]  # settings' order, the rest after
    assert results["source"]["format"] == "tidy" and len(results["source"]["sha256"]) == 64


def test_every_section_a_trained_study_has_where_the_logs_allow(imported):
    _, _, html, page, analyzed = imported
    for section in ("summary", "methods", "results", "cell-1", "why", "claims", "power", "power-mde",
                    "power-threats", "reproducibility"):
        assert section in page.ids
    # summary, overview row; in the appendix curves, two pairwise matrices, critical difference: no signal figure
    assert len(page.imgs) == 6 and all(src.startswith("data:image/svg+xml;base64,") for src in page.imgs)
    why = " ".join(page.section_text["why"].split())
    assert "Left out: this section needs each run's per-layer signal statistics at initialization" in why
    assert "Signal propagation at initialization" not in html
    # page one: the league table ranks the planted order, every pair apart (6 seeds, 3 pairs: Holm floor 0.094
    # is above alpha, so the letters say "not shown to differ" and the design note says why)
    head, _ = page_one(html)
    rows = league_rows(head)[0]
    assert [r[1] for r in rows] == ["he &lt;script&gt;alert(1)&lt;/script&gt;", "xavier &amp; co", "lecun &#34;q&#34;"]
    assert [r[3] for r in rows] == ["a", "a", "a"] and "Underpowered: with 6 paired seeds" in head
    assert '<table class="claims">' in head and "supported" in head.split('<table class="claims">')[1]


def test_methods_say_where_the_logs_came_from_and_what_is_unknown(imported):
    runs, _, _, page, analyzed = imported
    methods = " ".join(page.section_text["methods"].split())
    meta = json.loads((runs / "x" / "import.json").read_text())["provenance"]
    assert meta["sha256"] in methods and meta["imported_at"] in methods and "logs<&>.csv" in methods
    assert "formattidy" in methods  # table cells run together in the parsed text
    assert "settings.yaml" in methods and "/s.yaml" not in methods  # the stored copy is what was analysed
    assert "The logs do not record the data set" in methods and "the optimizer, learning rate" in methods
    for invented in ("SGD", "Adam", "batch size 64", "cross-entropy", "Seed k derives"):
        assert invented not in methods
    assert "imported runs" in page.section_text["reproducibility"]


def test_text_from_the_logs_is_escaped(imported):
    _, _, html, _, _ = imported
    assert "<script>" not in html and "<b>net" not in html
    assert "he &lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;net&lt;/b&gt;" in html
    assert "xavier &amp; co" in html and "lecun &#34;q&#34;" in html and "logs&lt;&amp;&gt;.csv" in html
    template = Path(__file__).parents[1] / "templates" / "report.html.j2"
    assert "|safe" not in template.read_text()  # autoescape is the only way text reaches the page


def test_pdf_has_the_sections(imported):
    pypdf = pytest.importorskip("pypdf")
    _, out, _, _, _ = imported
    text = "\n".join(p.extract_text() for p in pypdf.PdfReader(out / "report.pdf").pages)
    for title in ("1. Summary", "2. Methods", "3. Results", "4. Why", "5. Claims", "6. Power and limits",
                  "Appendix A. Every test", "Appendix B. Reproducibility", "Where the logs came from", "Left out"):
        assert title in text, title


def test_tensorboard_folder_imported_then_reported(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    for name, rate in (("he", 0.5), ("xavier", 0.25)):
        for s in range(3):
            w = SummaryWriter(str(tmp_path / "tb" / f"{name}-s{s}"))
            for e in range(6):
                w.add_scalar("val_acc", 0.1 + 0.85 * (1 - np.exp(-(rate + 0.01 * s) * e)), e)
            w.close()
    runs = tmp_path / "runs"
    assert main(["import", str(tmp_path / "tb"), "--study", "tb", "--runs-dir", str(runs),
                 "--run-pattern", "{initializer}-s{seed}"]) == 0
    settings = _write(tmp_path, "threshold: 0.7\n")
    assert main(["report", "--study", "tb", "--runs-dir", str(runs), "--settings", str(settings)]) == 0
    assert main(["analyze", "--study", "tb", "--runs-dir", str(runs), "--settings", str(tmp_path / "s.yaml"),
                 "--out", str(tmp_path / "a.json")]) == 0
    out = runs / "tb" / "report"
    assert json.loads((out / "results.json").read_text()) == json.loads((tmp_path / "a.json").read_text())
    html = (out / "report.html").read_text()
    assert "tensorboard" in html and "{initializer}-s{seed}" in html
    assert "3.1 all runs" in html and "Learning curves, all runs:" in html  # logs without factor columns
    assert "not in the logs" in _svg_text(html)  # no training loss was logged: the panel says so


def _svg_text(html: str) -> str:
    import base64

    uris = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    return "".join(base64.b64decode(uri).decode() for uri in uris)


def _write(folder: Path, text: str, name: str = "s.yaml") -> Path:
    (folder / name).write_text(text)
    return folder / name


BAD_SETTINGS = [
    ("thresh: 0.8\n", "unknown key 'thresh'; valid keys: threshold, alpha"),
    ("threshold: 1.5\n", "threshold must be > 0 and <= 1, got 1.5"),
    ("alpha: yes\n", "alpha must be a number, got True"),
    ("design: blocked\n", "design must be one of auto, paired, unpaired"),
    ("claims:\n  - {claim: c, a: nope, b: he, endpoint: final_accuracy, direction: better}\n",
     "claim 1 names initializer 'nope', which the logs lack; use one of: he, xavier"),
    ("claims:\n  - {claim: c, a: he, b: xavier, endpoint: final_accuracy}\n",
     "direction for final_accuracy must be one of better, worse, not_worse, got None"),
    ("order: [he, lsuv]\n", "order names initializer 'lsuv', which the logs lack"),
    ("labels: {he: X, xavier: X}\n", "labels gives two initializers the label 'X'"),
    ("factors: [depth]\n", "factors names column 'depth', which the logs lack"),
    ("budget_epochs: 2\n", "budget_epochs 2 is below the last logged epoch 5"),
    ("threshold: [0.8\n", "is not valid YAML at line"),
]


@pytest.fixture
def small_import(tmp_path):
    src = tmp_path / "logs.csv"
    planted_logs({"he": 0.5, "xavier": 0.3}, seeds=3, epochs=5).to_csv(src, index=False)
    runs = tmp_path / "runs"
    assert main(["import", str(src), "--study", "s", "--runs-dir", str(runs)]) == 0
    return src, runs


@pytest.mark.parametrize("text, message", BAD_SETTINGS)
def test_bad_settings_are_one_line_exit_2(small_import, tmp_path, capsys, text, message):
    src, runs = small_import
    bad = _write(tmp_path, text, "bad.yaml")
    capsys.readouterr()
    for command in ("report", "analyze"):
        assert main([command, "--study", "s", "--runs-dir", str(runs), "--settings", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (runs / "s" / "report").exists()
    # at import, nothing is imported; a --replace keeps the earlier import as it was
    before = {p.name: p.read_bytes() for p in (runs / "s").iterdir() if p.is_file()}
    for study, replace in (("t", []), ("s", ["--replace"])):
        assert main(["import", str(src), "--study", study, "--runs-dir", str(runs), "--settings", str(bad),
                     *replace]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (runs / "t").exists()
    assert {p.name: p.read_bytes() for p in (runs / "s").iterdir() if p.is_file()} == before


def test_settings_stored_with_the_import_and_overridden_per_call(small_import, tmp_path):
    src, runs = small_import
    stored = _write(tmp_path, "threshold: 0.7\nlabels: {he: Kaiming}\nclaims:\n"
                              "  - {claim: c, a: he, b: xavier, endpoint: final_accuracy, direction: better}\n")
    assert main(["import", str(src), "--study", "s", "--runs-dir", str(runs), "--settings", str(stored),
                 "--replace"]) == 0
    assert (runs / "s" / "settings.yaml").read_text() == stored.read_text()
    out = tmp_path / "a.json"
    assert main(["analyze", "--study", "s", "--runs-dir", str(runs), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    # claims may name an initializer as logged; it is shown by its label
    assert r["threshold"] == 0.7 and r["cells"][0]["initializers"] == ["Kaiming", "xavier"]
    assert r["claims"][0]["a"] == "Kaiming"
    # --settings replaces the stored keys it gives, --threshold replaces both
    _write(tmp_path, "threshold: 0.6\ndesign: unpaired\n", "call.yaml")
    assert main(["analyze", "--study", "s", "--runs-dir", str(runs), "--out", str(out), "--settings",
                 str(tmp_path / "call.yaml")]) == 0
    r = json.loads(out.read_text())
    assert r["threshold"] == 0.6 and r["cells"][0]["design"] == "unpaired" and r["claims"][0]["a"] == "Kaiming"
    assert main(["analyze", "--study", "s", "--runs-dir", str(runs), "--out", str(out), "--settings",
                 str(tmp_path / "call.yaml"), "--threshold", "0.5"]) == 0
    assert json.loads(out.read_text())["threshold"] == 0.5
    # a re-import without settings drops the stored ones
    assert main(["import", str(src), "--study", "s", "--runs-dir", str(runs), "--replace"]) == 0
    assert not (runs / "s" / "settings.yaml").exists()


def test_settings_on_a_study_file_is_refused(tmp_path, capsys):
    bad = _write(tmp_path, "threshold: 0.5\n")
    assert main(["report", "--study", "smoke", "--runs-dir", str(tmp_path / "runs"), "--settings", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--settings applies to imported logs" in err[0]
    assert not re.search(r"Traceback", "\n".join(err))


def test_bench_logs_import_and_report(tmp_path):
    from initstudy.bench import synthetic_logs
    from initstudy.importing import import_logs
    from initstudy.pipeline import analyze_imported, imported_settings
    from initstudy.report import build_logs_report

    import_logs(synthetic_logs(tmp_path / "logs.csv", n_inits=3, n_seeds=4, epochs=5), tmp_path, "b")
    a = analyze_imported(tmp_path, "b", imported_settings(tmp_path, "b"))
    assert len(a.tidy) == 3 * 4 * 6 and a.results.cells[0].design == "paired"
    assert "Kaplan-Meier" in build_logs_report(a).html


TWELVE = {name: 0.62 - 0.035 * k for k, name in enumerate(
    ["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "lecun_normal", "orthogonal(gain=1.41)",
     "normal(std=0.01)", "normal(std=0.05)", "uniform(a=0.1)", "zeros", "trunc_normal(std=0.02)", "lsuv"])}


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of a drawn figure whose boxes overlap (by more than a pixel)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    hidden = set()  # tick labels outside an axis's view are laid out but not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            hidden |= {id(t.label1) for t in axis.get_major_ticks() if not lo - 1e-9 <= t.get_loc() <= hi + 1e-9}
    boxes = [(t.get_text(), t.get_window_extent(renderer).padded(-1))
             for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    return [(a, b) for i, (a, box) in enumerate(boxes) for b, other in boxes[i + 1:] if box.overlaps(other)]


def test_twelve_arms_figures_keep_every_label_apart_and_letters_separate_the_planted_groups():
    from initstudy import plots
    from initstudy.report import cell_sections, league, summary_figure
    from initstudy.analysis import run_outcomes

    frames = [planted_logs(TWELVE, seeds=12, epochs=6, seed=s).assign(model=m) for s, m in ((1, "plain"), (2, "res"))]
    a = initstudy_frame(pd.concat(frames))
    cell = a.results.cells[0]
    assert len(a.results.cells) == 2 and len(cell.arms) == 12
    tidy = a.tidy[a.tidy["model"] == "plain"]
    outcomes = run_outcomes(tidy, cell.threshold, cell.budget_epochs)
    order = list(a.order)
    figures = {"overview": plots.cell_overview(tidy, cell, outcomes, order),
               "curves": plots.learning_curves(tidy, order, cell.threshold),
               "summary": plots.summary_forest([{"cell": "plain", "initializer": x.initializer,
                                                 "acc": x.final_acc_mean, "acc_ci": (None, None), "rmst": x.rmst,
                                                 "rmst_ci": x.rmst_ci} for x in cell.arms], ["plain"], order)}
    for name, fig in figures.items():
        assert overlapping_texts(fig) == [], name
    # 12 paired seeds: Holm's floor 66 * 2 / 2^12 = 0.032 < alpha, so the league table can separate arms
    rows = league(cell, a.results.alpha)
    letters = [r["letters"] for r in rows]
    assert letters[0].startswith("a") and len(set("".join(letters))) >= 3
    assert not set(letters[0]) & set(letters[-1])  # the fastest and slowest planted arms differ
    cells, _ = cell_sections(a.results, a.tidy, order, pd.DataFrame())
    assert summary_figure(cells, order).startswith("data:image/svg+xml;base64,")


def initstudy_frame(df):
    import initstudy

    return initstudy.analyze_frame(df, threshold=0.8)
