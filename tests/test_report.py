"""The report as a reviewer gets it: rendered once from the session's trained tiny study, HTML and PDF."""

import base64
import json
import re
from html.parser import HTMLParser

import pandas as pd
import pytest

from initstudy.cli import main
from initstudy.config import expand, load_study
from initstudy.report import fmt_p

from .conftest import write_study

pytestmark = pytest.mark.slow

CLAIMS = [
    {"claim": "He <b>beats</b> Xavier & co", "a": "kaiming_normal", "b": "xavier_normal",
     "endpoint": "epochs_to_threshold", "direction": "faster", "where": {"activation": "relu"},
     "source": "<script>alert(1)</script>"},
    {"claim": "Zeros stay near chance", "a": "zeros", "endpoint": "final_accuracy", "at_most": 0.2},
    {"claim": "Xavier suits tanh", "a": "xavier_normal", "b": "kaiming_normal", "endpoint": "final_accuracy",
     "direction": "not_worse", "margin": 0.02, "where": {"activation": "tanh"}},
]
SECTIONS = ["contents", "summary", "methods", "results", "cell-1", "why", "claims", "power", "power-mde",
            "power-threats", "details", "details-1", "reproducibility"]


class Page(HTMLParser):
    """Ids, images, links, each table's body cell count and caption, and the text under each h2."""

    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.links, self.tables, self.captions = [], [], [], [], []
        self.section_text, self._section, self._in = {}, None, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in.append(tag)
        if "id" in a:
            self.ids.append(a["id"])
            if tag == "h2":
                self._section = a["id"]
        if tag == "img":
            self.imgs.append(a["src"])
        if tag == "a":
            self.links.append(a)
        if tag == "table":
            self.tables.append(0)
        if tag == "td" and self.tables:
            self.tables[-1] += 1

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._in and self._in[-1] == "caption":
            self.captions.append(data)
        if self._in and self._in[-1] == "figcaption" or self._in[-2:] == ["figcaption", "strong"]:
            self.captions.append(data)
        if self._section:
            self.section_text[self._section] = self.section_text.get(self._section, "") + data


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    """(html, results.json dict, report dir, page) of `report --pdf` on the trained tiny study with claims."""
    _, runs = trained
    study = write_study(tmp_path_factory.mktemp("claims") / "tiny.yaml", claims=CLAIMS)
    assert main(["report", "--study", str(study), "--runs-dir", str(runs), "--pdf"]) == 0
    out = runs / "tiny" / "report"
    html = (out / "report.html").read_text()
    page = Page()
    page.feed(html)
    return html, json.loads((out / "results.json").read_text()), out, page, study


def test_every_section_and_a_numbered_caption_for_every_figure_and_table(report):
    html, _, _, page, _ = report
    assert [s for s in SECTIONS if s not in page.ids] == []
    for kind in ("Figure", "Table"):
        numbers = [int(n) for n in re.findall(rf"<(?:strong|caption)>{kind} (\d+)\.", html)]
        assert numbers == list(range(1, len(numbers) + 1)) and numbers, kind
    assert len(re.findall(r"<strong>Figure \d+\.</strong>", html)) == len(page.imgs)
    # The table of contents links to every section.
    assert {"#" + s for s in ("summary", "methods", "results", "why", "claims", "power", "details",
                              "reproducibility")} <= \
        {a.get("href") for a in page.links}


def test_every_figure_is_a_real_image(report):
    _, _, _, page, _ = report
    # summary, the cell's overview row; in the appendix curves with loss, two pairwise matrices, critical difference;
    # signal propagation
    assert len(page.imgs) == 7
    for src in page.imgs:
        assert src.startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and svg.count("<path") > 10


def test_no_empty_tables(report):
    _, _, _, page, _ = report
    assert len(page.tables) >= 12 and all(n > 0 for n in page.tables)


def page_one(html: str) -> tuple[str, Page]:
    """The HTML before the Methods heading (what a reviewer reads first), parsed."""
    head = html.split('<h2 id="methods"')[0]
    page = Page()
    page.feed(head)
    return head, page


def league_rows(head: str) -> list[list[list[str]]]:
    """Per league table: its body rows as lists of cell texts."""
    tables = re.findall(r'<table class="league">(.*?)</table>', head, re.S)
    return [[[re.sub(r"<[^>]+>", "", td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
             for tr in re.findall(r"<tr>(.*?)</tr>", t.split("<tbody>")[1], re.S)] for t in tables]


def test_page_one_has_the_summary_figure_a_league_table_per_cell_and_the_verdicts(report):
    from initstudy.report import compact_letters

    html, results, _, _, _ = report
    head, page = page_one(html)
    assert 'alt="Figure 1: Final accuracy and time to threshold per initializer' in head
    assert page.imgs and page.imgs[0].startswith("data:image/svg+xml;base64,")
    leagues = league_rows(head)
    assert len(leagues) == len(results["cells"]) >= 1
    for rows, cell in zip(leagues, results["cells"]):
        arms = {a["initializer"]: a for a in cell["arms"]}
        means = [arms[r[1]]["final_acc_mean"] for r in rows]
        assert sorted(arms) == sorted(r[1] for r in rows) and means == sorted(means, reverse=True)
        for rank, name, acc, letters, rmst, *_ in rows:
            a = arms[name]
            assert acc.startswith(f"{a['final_acc_mean']:.3f}") and rmst.startswith(f"{a['rmst']:.2f}")
        primary = "wilcoxon" if cell["design"] == "paired" else "mannwhitney"
        differ = {frozenset((p["a"], p["b"])) for p in cell["final_accuracy"]["pairwise"]
                  if p["test"] == primary and p["pvalue_holm"] is not None and p["pvalue_holm"] < results["alpha"]}
        assert [r[3] for r in rows] == list(compact_letters([r[1] for r in rows], differ).values())
        assert all(re.fullmatch("[a-z]+", r[3]) for r in rows)
        lr = cell["epochs_to_threshold"]["omnibus"][0]  # whether the arms differ at all, in the caption
        if lr["pvalue"] is not None:
            assert ("log-rank " + (f"p = {lr['pvalue']:.3f}" if lr["pvalue"] >= 0.001 else "p &lt; 0.001")) in head
    # the claims table, verdicts in results.json's order; no Holm p-value sentences on page one
    table = re.search(r'<table class="claims">(.*?)</table>', head, re.S).group(1)
    shown = re.findall(r"[✔✘?–] (supported|contradicted|inconclusive|not tested)</span>", table)
    assert shown == [c["verdict"] for c in results["claims"]]
    text = " ".join(page.section_text["summary"].split())
    assert "Holm-adjusted p =" not in text and "pairwise final-accuracy comparisons are significant" not in text
    assert "Underpowered: with 3 paired seeds" in text  # the one design note this cell needs


def test_claims_in_results_json_and_report(report):
    html, results, _, page, _ = report
    claims = results["claims"]
    assert [c["claim"] for c in claims] == [c["claim"] for c in CLAIMS]
    assert claims[2]["verdict"] == "not tested" and "no cell with activation tanh" in claims[2]["reason"]
    assert claims[1]["cells"][0]["test"].startswith("exact sign test")
    assert claims[1]["verdict"] in ("supported", "inconclusive")  # 3 seeds: a sign test cannot go below 1/8
    text = " ".join(page.section_text["claims"].split())
    checked = 0
    for c in claims:
        for cell in c["cells"]:
            if cell["pvalue_holm"] is not None and cell["pvalue_holm"] >= 0.001:
                p = re.escape(f"p = {cell['pvalue_holm']:.3f}")
                assert re.search(re.escape(cell["test"]) + ": .{0,30}?" + p, text), cell["test"]
                checked += 1
    assert checked >= 1
    assert "log-rank" in text and "exact sign test" in text


def test_study_and_claim_text_is_escaped(report):
    html, _, _, _, _ = report
    assert "&lt;with markup &amp; ampersands&gt;" in html and "<with markup" not in html
    assert "He &lt;b&gt;beats&lt;/b&gt; Xavier &amp; co" in html and "<b>beats" not in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_tidy_csv_beside_the_report_and_inlined(report):
    _, _, out, page, study_file = report
    study = load_study(str(study_file))
    tidy = pd.read_csv(out / "tidy.csv")
    assert len(tidy) == len(expand(study)) * (study.epochs + 1)
    assert {"run", "initializer", "seed", "epoch", "val_acc", "train_loss", "diverged"} <= set(tidy.columns)
    link = next(a for a in page.links if a.get("download") == "tidy.csv")
    assert base64.b64decode(link["href"].split(",", 1)[1]) == (out / "tidy.csv").read_bytes()
    # The runs table names every planned run by its id.
    html = report[0]
    assert all(f"<code>{s.run_id}</code>" in html for s in expand(study))


def test_pdf_has_pages_numbers_and_the_sections(report):
    pypdf = pytest.importorskip("pypdf")
    _, _, out, _, _ = report
    pdf = pypdf.PdfReader(out / "report.pdf")
    assert 6 <= len(pdf.pages) < 15  # the bound for the default study's report
    text = "\n".join(p.extract_text() for p in pdf.pages)
    for title in ("1. Summary", "2. Methods", "3. Results", "4. Why", "5. Claims", "6. Power and limits",
                  "Appendix A. Every test", "Appendix B. Reproducibility", "Figure 1.", "Table 1."):
        assert title in text, title
    assert f"page 1 of {len(pdf.pages)}" in text
    first = pdf.pages[0].extract_text()
    assert "Summary" in first and "Figure 1." in first and "League table" in first


def test_pdf_without_system_libraries_is_one_line_and_writes_nothing(trained, tmp_path, monkeypatch, capsys):
    import importlib

    import initstudy.report

    real = importlib.import_module

    def broken(name, *args):
        if name == "weasyprint":
            raise OSError("cannot load library 'libpango-1.0-0': error 0x7e\nmore detail")
        return real(name, *args)

    study_file, runs = trained
    monkeypatch.setattr(initstudy.report.importlib, "import_module", broken)
    study = write_study(tmp_path / "tiny.yaml", name="tiny-nopdf")  # an empty study: the check comes first
    assert main(["report", "--study", str(study), "--runs-dir", str(runs), "--pdf"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load its system libraries (cannot load library 'libpango-1.0-0'" in err[0]
    assert not (runs / "tiny-nopdf").exists()


def test_power_section_shows_the_analysis_minimum_detectable_effects(report):
    _, results, _, page, _ = report
    power = " ".join(page.section_text["power"].split())
    for cell in results["cells"]:
        p = cell["power"]
        assert f"{p['mde_standardized']:.2f}" in power and str(p["seeds_needed"]) in power
        assert ("yes: " + p["reasons"][0]) in power if p["underpowered"] else "no" in power
    # every-pair tables and assumption checks are in the appendix, not the body
    results_text = " ".join(page.section_text["results"].split())
    details = " ".join(page.section_text["details"].split())
    for name in ("pairwise paired t", "effect sizes per pair", "assumption checks", "Best accuracy", "Divergence"):
        assert name in details and name not in results_text
    assert "Outcomes and divergence per initializer" in results_text and "Overview," in results_text


def _table_rows(html: str, caption_start: str) -> list[str]:
    """The body rows (as HTML) of the tables whose caption starts with `caption_start` after its number."""
    rows = []
    for table in re.findall(r"<table[^>]*>.*?</table>", html, re.S):
        cap = re.search(r"<caption>Table \d+\. (.*?)</caption>", table, re.S)
        if cap and cap.group(1).startswith(caption_start):
            rows += re.findall(r"<tr[^>]*>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    return rows


def test_appendix_folds_paired_t_checks_and_omnibus_tests_into_fewer_tables(report):
    html, results, _, page, _ = report
    captions = " ".join(page.captions)
    # no table of their own: paired t-tests and per-pair normality checks sit in the effect-size table, and
    # the omnibus tests of every endpoint (divergence included) in one table per cell
    # nor do the primary pairwise Wilcoxon tests (same pairs and median difference as the effect sizes), and
    # best accuracy's pairwise tests share the log-rank tests' table of pairs
    for gone in ("Final accuracy: pairwise paired t", "Final accuracy: assumption checks",
                 "Epochs-to-threshold: omnibus test", "Best accuracy over the epochs: omnibus", "Divergence: do",
                 "Final accuracy: pairwise wilcoxon", "Best accuracy: pairwise"):
        assert gone not in captions, gone
    paired = [c for c in results["cells"] if c["design"] == "paired"]
    assert paired
    effects = _table_rows(html, "Final accuracy: the pairwise wilcoxon tests (primary")
    pairs = _table_rows(html, "Epochs-to-threshold: pairwise log-rank tests")
    assert len(pairs) == sum(len(c["epochs_to_threshold"]["pairwise"]) for c in results["cells"])
    omnibus = _table_rows(html, "Omnibus tests across the initializers")
    assert len(effects) == sum(len([p for p in c["final_accuracy"]["pairwise"] if p["test"] == "paired_t"])
                               for c in paired)
    assert len(omnibus) == sum(len(c["final_accuracy"]["omnibus"]) + len(c["epochs_to_threshold"]["omnibus"])
                               + len(c["best_accuracy"]["omnibus"]) + (c["divergence"] is not None)
                               for c in results["cells"])
    rows = iter(effects)
    for c in paired:
        checks = {x["target"]: x for x in c["final_accuracy"]["assumptions"]}
        for p in (p for p in c["final_accuracy"]["pairwise"] if p["test"] == "paired_t"):
            row = next(rows)
            assert f"<td>{p['a']}</td><td>{p['b']}</td>" in row
            if p["statistic"] is not None:
                assert f"{p['statistic']:.2f}" in row
            w = next(w for w in c["final_accuracy"]["pairwise"]
                     if w["test"] == "wilcoxon" and (w["a"], w["b"]) == (p["a"], p["b"]))
            # the primary test's own statistic and Holm-adjusted p lead the row
            stat = "–" if w["statistic"] is None else f"{w['statistic']:.2f}"
            assert f'<td class="num">{stat}<br>' in row.split("</td>")[2]
            assert fmt_p(w["pvalue_adjusted"]).replace("<", "&lt;") in row.split("</td>")[3]
            check = checks[f"final_acc differences {p['a']} - {p['b']}"]
            if check["statistic"] is not None:
                assert f"{check['statistic']:.3f}" in row


def test_run_list_has_one_row_per_cell_and_initializer(report):
    html, results, _, _, study_file = report
    study = load_study(str(study_file))
    rows = _table_rows(html, "Runs per cell and initializer")
    assert len(rows) == len(study.models) * len(study.activations) * len(study.initializers)
    for spec in expand(study):  # each run by seed and id, in its cell's and initializer's row
        row = next(r for r in rows if f"<code>{spec.run_id}</code>" in r)
        assert f"<td>{spec.model} / {spec.activation}</td><td>{spec.init.label}</td>" in row
        assert f"{spec.seed}:&nbsp;<code>{spec.run_id}</code>" in row


def test_run_groups_count_statuses_and_flag_runs_not_done():
    from initstudy.report import run_groups

    runs = [{"id": f"r{s}{i}", "cell": "plain / relu", "initializer": i, "seed": s, "version": "0.1.0",
             "status": "failed" if (s, i) == (1, "he") else "done", "seconds": 10.0 + s}
            for s in (2, 0, 1) for i in ("he", "xavier")]
    groups = run_groups(runs)
    assert [g["initializer"] for g in groups] == ["he", "xavier"]
    he = groups[0]
    assert he["statuses"] == {"done": 2, "failed": 1} and he["seconds"] == 11.0 and he["versions"] == ["0.1.0"]
    assert [r["seed"] for r in he["runs"]] == [0, 1, 2] and [r["flag"] for r in he["runs"]] == ["", "failed", ""]
    runs[0]["version"] = "0.0.9"  # seed 2 of he: an older release than the other five runs
    assert [r["flag"] for r in run_groups(runs)[0]["runs"]] == ["", "failed", "initstudy 0.0.9"]
