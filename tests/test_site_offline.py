"""The supplement as a reader sees it, without a browser: Table 7 follows the params file,
index.html's prose, titles, links, run order and table panels, captions and number formats,
and pages that reference nothing outside the results folder (tests/test_browser.py drives
the same pages in Chromium)."""

import html
import json
import re
import shutil
import sys
import tempfile
from html.parser import HTMLParser

import nbformat
import pandas as pd
import pytest
from helpers import synthetic_rows, write_synthetic_results

from rkdo_core.config import load_params
from rkdo_core.layout import GRID_RECORD, GRID_RECORDS, MANIFEST, repository_dir
from rkdo_core.reporting.aggregate import aggregate, build_tables
from rkdo_core.reporting.fmt import dash_nan, fmt_large, write_table
from rkdo_core.reporting.stats import paired_comparison
from rkdo_core.reporting.tables import TABLE_NAMES, table2
from rkdo_core.runs.notebooks import render_html, tex_html
from rkdo_core.runs.site import (
    PANEL_CHARS,
    _col_chars,
    is_smoke_grid,
    parse_markdown_table,
    render_all,
    table_panels,
    write_index,
)

#: a reference to anything outside the machine: a scheme-qualified or protocol-relative URL
REMOTE = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.I)


def remote_references(page: str) -> list[str]:
    """Every http(s):// text in a page, and every src/href/url()/import() that is not a
    relative path (protocol-relative ``//host`` included)."""
    found = re.findall(r"https?://[^\s\"'<>)]+", page)

    class Refs(HTMLParser):
        def handle_starttag(self, tag, attrs):
            for k, v in attrs:
                if k in ("src", "href", "data", "poster", "action", "srcset") and v \
                        and REMOTE.match(v.strip()):
                    found.append(f"<{tag} {k}={v}>")

    Refs().feed(page)
    found += [m for m in re.findall(r"url\(\s*['\"]?([^'\")]+)", page) if REMOTE.match(m)]
    return found


# ---- item 6: Table 7 ---------------------------------------------------------------------


def test_table7_follows_the_params_pairs_and_names_each_omission_once():
    df = pd.DataFrame(synthetic_rows(datasets=("digits",), epochs=(0, 1, 2)))
    t = build_tables(df, table3_pairs=[[1, 2]])[TABLE_NAMES["compute"]]
    assert t.attrs["title"].startswith("Table 7. ")
    mismatched = t[t.comparison == "mismatched"]
    assert set(zip(mismatched.rkdo_epochs, mismatched.icon_epochs)) == {(1, 2)}
    assert t.attrs["omitted"] == [] and "Omitted" not in t.attrs["note"]
    # the default pairs (1, 5), (2, 5) are not in these results: each said once, with the
    # metrics it is missing for
    t = build_tables(df)[TABLE_NAMES["compute"]]
    omitted = t.attrs["omitted"]
    assert len(omitted) == len(set(omitted)) == 2, omitted
    for pair, text in zip(("RKDO@1 vs I-Con@5", "RKDO@2 vs I-Con@5"), omitted):
        assert pair in text and "(linear eval, 5-NN accuracy)" in text, text
    assert t.attrs["note"].count("RKDO@1 vs I-Con@5") == 1


def test_aggregate_passes_the_params_pairs_to_table7(tmp_path):
    write_synthetic_results(tmp_path, datasets=("digits",), seeds=(1, 2, 3), epochs=(0, 1, 2))
    agg = aggregate(tmp_path, table3_pairs=[[1, 2]])
    entry = next(t for t in agg.manifest["tables"] if t["name"] == TABLE_NAMES["compute"])
    assert entry["title"].startswith("Table 7. ") and entry["omitted"] == []
    csv = pd.read_csv(tmp_path / entry["files"][0])
    assert ((csv.rkdo_epochs == 1) & (csv.icon_epochs == 2)).any()


# ---- item 7: captions and numbers --------------------------------------------------------


def test_large_numbers_read_as_powers_of_ten(tmp_path):
    assert fmt_large(5.67499e9) == "5.67 × 10⁹"
    assert fmt_large(5.67499e9, 6) == "5.67499 × 10⁹"
    assert fmt_large(2e9, 6) == "2 × 10⁹" and fmt_large(9.9996e9) == "1 × 10¹⁰"
    assert fmt_large(12345.6) == "12,346" and fmt_large(float("nan")) == "—"
    df = pd.DataFrame({"FLOPs": [fmt_large(4.313e11, 4)]})
    df.attrs.update(csv=[], display=["FLOPs"], title="t", note="", omitted=[])
    df["x"] = [1.0]
    df.attrs["csv"] = ["x"]
    tex = write_table(df, tmp_path, "t")[2].read_text()
    assert r"4.313 $\times 10^{11}$" in tex and "¹" not in tex  # pdflatex-safe


def test_holm_note_says_something_true_for_an_empty_family():
    df = pd.DataFrame(synthetic_rows(datasets=("digits",), seeds=(1,), epochs=(0, 1, 2)))
    note = table2(paired_comparison(df)).attrs["note"]  # one seed: nothing testable
    assert "over 0 comparisons" not in note
    assert "no comparison of the family (protocol, linear eval, matched) was testable" in note
    df = pd.DataFrame(synthetic_rows(datasets=("digits", "cifar10"), epochs=(0, 1, 2)))
    note = table2(paired_comparison(df)).attrs["note"]
    assert "over 4 comparisons (paper)" in note


def test_dash_nan_keeps_columns_aligned():
    line = "digits        0  5    0.5000 ± 0.0100  nan   0.0625       nan   0.00025"
    out = dash_nan(line)
    assert "nan" not in out and out.count("—") == 2 and len(out) == len(line)
    assert dash_nan("nanometre 1.nan") == "nanometre 1.nan"


# ---- item 7: index.html ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    write_synthetic_results(root, datasets=("digits",), seeds=(42, 123, 456, 1000),
                            yardstick=True)
    (root / GRID_RECORD).write_text(json.dumps({
        "source": "params/x.yaml", "description": "synthetic", "datasets": ["digits"],
        "methods": ["rkdo", "icon"], "seeds": [42, 123, 456, 1000],
        "epochs": [1, 2, 5, 10], "preset": "paper"}))
    aggregate(root, table3_pairs=[[1, 5], [2, 5]])
    return root, write_index(root).read_text(encoding="utf-8")


def test_index_prose_has_no_python_reprs(site):
    _, text = site
    assert "Datasets digits; methods rkdo, icon; seeds 42, 123, 456, 1000; budgets 1, 2, " \
           "5, 10 epochs; paper protocol." in text
    prose = re.search(r"<p>Grid .*?</p>", text).group(0)
    assert "[" not in prose and "'" not in prose and "['" not in text


def test_index_shows_each_table_title_once_and_numbers_table7(site):
    root, text = site
    manifest = json.loads((root / MANIFEST).read_text())
    nav = re.search(r"<nav id='contents'.*?</nav>", text, re.S).group(0)
    body = text.replace(nav, "")  # the contents list each title once more, as links
    for t in manifest["tables"]:
        title = html.escape(t["title"])
        assert body.count(title) == 1 and nav.count(title) == 1, title
        assert f"<b>{title}" not in text and f"**{title}" not in text
    assert "<h3 id='table7_compute_matched'>Table 7. Compute-matched" in text


def test_index_links_comparison_and_manifest(site):
    _, text = site
    assert '<a href="comparison.csv">comparison.csv</a>' in text
    assert '<a href="aggregate.json">aggregate.json</a>' in text


def test_index_runs_table_sorts_seeds_numerically(site):
    _, text = site
    runs = text[text.index("<h2 id='runs'>Runs</h2>"):]
    seeds = [int(s) for s in re.findall(r"<td>rkdo</td><td>(\d+)</td>", runs)]
    assert seeds == [42, 123, 456, 999, 1000]  # 999: the synthetic incomplete run


def test_index_splits_wide_tables_into_panels_that_keep_every_cell(site):
    root, text = site
    wide = (root / "tables" / f"{TABLE_NAMES['yardstick']}.md").read_text()
    header, rows = parse_markdown_table(wide)
    panels = table_panels(header, rows)
    assert len(header) > 10 and len(panels) > 1
    key = panels[0][:3]
    assert [header[i] for i in key] == ["Dataset", "Protocol", "Epochs (steps)"]
    assert sorted({i for p in panels for i in p}) == list(range(len(header)))
    for p in panels:
        assert p[:len(key)] == key
        width = sum(_col_chars(header[i].split(": ", 1)[-1], [r[i] for r in rows])
                    for i in p)
        assert width <= PANEL_CHARS + 1, [header[i] for i in p]
    for r in rows:  # every cell of the Markdown table is on the page
        for cell in r:
            assert f">{cell.replace('&', '&amp;')}<" in text.replace("&#x27;", "'"), cell


def test_a_pipe_in_a_cell_stays_in_its_cell(tmp_path):
    # the claims checklist's evidence quotes KL(p̂||q): the Markdown table broke there
    df = pd.DataFrame({"x": [1.0, 2.0]})
    df["Evidence"] = ["ratio KL(p||q) = 0.99", "a | b"]
    df["Verdict"] = ["holds", "fails"]
    df.attrs.update(csv=["x"], display=["Evidence", "Verdict"], title="t", note="n",
                    omitted=[])
    md = write_table(df, tmp_path, "t")[1].read_text()
    assert "KL(p\\|\\|q)" in md
    assert parse_markdown_table(md) == (["Evidence", "Verdict"],
                                        [["ratio KL(p||q) = 0.99", "holds"],
                                         ["a | b", "fails"]])
    # tables written before the escape: "||" inside a cell still parses
    assert parse_markdown_table("| a | b |\n|:--|:--|\n| KL(p||q) | 2 |") == (
        ["a", "b"], [["KL(p||q)", "2"]])
    assert parse_markdown_table("| a | b |\n|:--|:--|\n| 1 | x | y |") is None


# ---- item 8: offline pages ----------------------------------------------------------------


def test_rendered_notebook_loads_nothing_and_shows_math_as_mathml(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell(
            "# Theory\n\nInline $\\mathrm{KL}(p\\,\\|\\,q) \\le (1-\\alpha)^t$ and display\n\n"
            "$$\\sum_i p_i = 1$$\n\nMoney: a `$HOME` code span stays code."),
        nbformat.v4.new_code_cell("x = 1", outputs=[nbformat.v4.new_output(
            "display_data", data={"text/latex": "$x^2$", "text/plain": "x**2"})]),
    ])
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    page = render_html(src).read_text(encoding="utf-8")
    assert remote_references(page) == []
    assert "<script src" not in page and "require" not in page.lower().replace(
        "required", "")
    assert page.count("<math") == 3 and 'display="block"' in page
    # the TeX stays with each formula (annotation) and nothing is left for a TeX renderer
    assert '<annotation encoding="application/x-tex">\\sum_i p_i = 1</annotation>' in page
    assert "$$" not in page and "<code>$HOME</code>" in page


def test_aggregate_renders_again_a_page_rendered_with_cdn_scripts(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x$")])
    nbformat.write(nb, tmp_path / "a.ipynb")
    old = tmp_path / "a.html"  # newer than its notebook, but from the CDN-loading exporter
    old.write_text('<html><head><script src="https://cdnjs.cloudflare.com/x.js"></script>')
    assert render_all(tmp_path) == [old]
    assert remote_references(old.read_text(encoding="utf-8")) == []
    assert render_all(tmp_path) == []  # fresh and offline: left alone


def test_tex_that_cannot_be_converted_is_shown_as_code(monkeypatch):
    assert tex_html("\\frac{1}{2").startswith(("<math", '<code class="tex">'))
    assert tex_html("a < b").startswith("<math") and "&lt;" in tex_html("a < b")
    monkeypatch.setitem(sys.modules, "latex2mathml.converter", None)  # not installed
    assert tex_html("a < b", True) == '<code class="tex">$$a &lt; b$$</code>'


@pytest.fixture(scope="module")
def aggregated_smoke(smoke_aggregated):
    """The session's smoke grid, aggregated once (tests/conftest.py)."""
    return smoke_aggregated


@pytest.mark.slow
def test_no_page_of_the_supplement_references_a_remote_url(aggregated_smoke):
    pages = sorted(aggregated_smoke.rglob("*.html"))
    notebooks = [p for p in pages if p.name != "index.html"]
    assert len(notebooks) >= 6 * 2 + 1 + 2  # every run's two, 05_aggregate, diagnostics
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert remote_references(text) == [], page
        assert "<script src" not in text, page


# ---- issue 25: the supplement as a reader meets it -------------------------------------


def _ids(text: str) -> set[str]:
    return set(re.findall(r"\bid='([^']+)'", text)) | set(re.findall(r'\bid="([^"]+)"', text))


def test_index_opens_with_the_bottom_line_before_any_statistics(site):
    root, text = site
    manifest = json.loads((root / MANIFEST).read_text())
    line = manifest["bottom_line"]
    assert len(line) == 3 and line[0].startswith("The paper claims that RKDO")
    shown = " ".join(html.escape(x) for x in line)
    assert f"<p class='bottom-line'>{shown}</p>" in text
    start = text.index(shown)
    for jargon in ("Holm", "power", "MDE", "intersection", "p = ", "CI"):
        assert jargon not in shown, jargon
        if jargon in text:
            assert start < text.index(jargon), f"{jargon!r} comes before the bottom line"
    assert start < text.index("<nav id='contents'") < text.index("<h2 id='audit'>")


def test_index_table_of_contents_jumps_to_existing_anchors(site):
    _, text = site
    nav = re.search(r"<nav id='contents'.*?</nav>", text, re.S).group(0)
    targets = re.findall(r"href='#([^']+)'", nav)
    ids = _ids(text)
    assert targets and not [t for t in targets if t not in ids]
    for part in ("bottom-line", "audit", "tables", "figures", "runs",
                 "table7_compute_matched", "claims_checklist"):
        assert part in targets, part
    # the audit in brief: one heading per part, each in the contents
    audit = text[text.index("<h2 id='audit'>"):text.index("<h2 id='tables'>")]
    heads = re.findall(r"<h3 id='([^']+)'>", audit)
    assert heads == ["audit-control", "audit-gap", "audit-yardstick", "audit-claims"]
    assert all(h in targets for h in heads)


def test_each_table_link_opens_an_html_table(site):
    root, text = site
    manifest = json.loads((root / MANIFEST).read_text())
    for t in manifest["tables"]:
        page = root / "tables" / f"{t['name']}.html"
        assert f'<a href="tables/{t["name"]}.html">table (HTML)</a>' in text
        body = page.read_text(encoding="utf-8")
        empty = "(no rows)" in (root / "tables" / f"{t['name']}.md").read_text()
        assert html.escape(t["title"]) in body
        assert ("<p><i>(no rows)</i></p>" if empty else "<table>") in body, t["name"]
        assert not re.search(r"^\|[-:| ]+\|$", body, re.M), "raw Markdown pipes"
        assert '<a href="../index.html">' in body
        for f in t["files"]:  # its source files, linked from beside them
            assert f'<a href="{f.split("/")[-1]}">' in body
        assert remote_references(body) == []
    # Table 5's cells, split into panels on the index, are all on its page too
    md = (root / "tables" / f"{TABLE_NAMES['yardstick']}.md").read_text()
    page = (root / "tables" / f"{TABLE_NAMES['yardstick']}.html").read_text()
    for r in parse_markdown_table(md)[1]:
        for cell in r:
            assert f">{html.escape(cell, quote=False)}<" in page.replace("&#x27;", "'"), cell
    assert "Smoke grid" not in text  # a grid of real budgets: no banner


def test_smoke_grid_is_recognised_from_its_record():
    root = repository_dir("params")
    assert is_smoke_grid(load_params(root / "smoke.yaml").to_dict())
    for name in ("default", "default_full", "paper", "full"):
        assert not is_smoke_grid(load_params(root / f"{name}.yaml").to_dict()), name
    assert is_smoke_grid({"name": "tiny", "config": {"steps_per_epoch": 2}, "epochs": [1, 2]})


def test_smoke_grid_banner_on_every_verdict(tmp_path):
    root = tmp_path / "smoke"
    write_synthetic_results(root, datasets=("digits",), seeds=(42, 123, 456), epochs=(0, 1, 2),
                            yardstick=True)
    (root / GRID_RECORD).write_text(json.dumps(
        load_params(repository_dir("params", "smoke.yaml")).to_dict()))
    aggregate(root, table3_pairs=[[1, 2]])
    text = write_index(root).read_text(encoding="utf-8")
    manifest = json.loads((root / MANIFEST).read_text())
    banner = "Smoke grid: these numbers mean nothing."
    assert text.index(banner) < text.index("<section id='bottom-line'>")
    assert "<code>params/smoke.yaml</code>" in text and str(repository_dir()) not in text
    note = "<p class='smoke' role='note'><b>Smoke grid:</b>"
    bottom = text[text.index("<section id='bottom-line'>"):text.index("</section>")]
    assert note in bottom
    audit = text[text.index("<h2 id='audit'>"):text.index("<h2 id='tables'>")]
    for part in re.split(r"(?=<h3 )", audit)[1:]:  # every part of the audit in brief
        assert note in part, part[:80]
    claims = audit[audit.index("id='audit-claims'"):]
    verdicts = re.findall(r"<td><b>[^<]*</b>(.*?)</td>", claims)
    assert len(verdicts) == len(manifest["claims"])
    assert all("smoke grid: means nothing" in v for v in verdicts)
    tables = text[text.index("<h2 id='tables'>"):text.index("<h2 id='figures'>")]
    assert tables.count(note) == len(manifest["tables"])
    assert note in text[text.index("<h2 id='figures'>"):]
    for t in manifest["tables"]:  # the table pages too
        assert note in (root / "tables" / f"{t['name']}.html").read_text()


def test_rendered_notebooks_show_no_path_of_the_machine_that_built_them(tmp_path):
    results = tmp_path / "results"
    run = results / "digits" / "paper" / "rkdo" / "seed_42"
    run.mkdir(parents=True)
    repo = repository_dir()
    printed = (f"run folder: {run}\nsaved {run}/figures/loss_curve.png\n"
               f"warning from {sys.prefix}/lib/site.py:1\nsource {repo}/notebooks/01_train.ipynb\n"
               f"scratch {tempfile.gettempdir()}/x.json\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"run_dir = {str(run)!r}", outputs=[nbformat.v4.new_output(
            "stream", name="stdout", text=printed)])])
    nbformat.write(nb, run / "01_train.ipynb")
    (page,) = render_all(results)
    text = page.read_text(encoding="utf-8")
    for path in (str(results), str(repo), sys.prefix, tempfile.gettempdir() + "/"):
        assert path not in text, path
    assert "run folder: RESULTS/digits/paper/rkdo/seed_42" in text
    assert "RESULTS/digits/paper/rkdo/seed_42/figures/loss_curve.png" in text
    assert "VENV/lib/site.py" in text and "REPOSITORY/notebooks/01_train.ipynb" in text


@pytest.mark.slow
def test_no_page_of_the_smoke_supplement_shows_a_build_path(aggregated_smoke):
    paths = [str(aggregated_smoke), str(aggregated_smoke.resolve()), str(repository_dir()),
             sys.prefix, tempfile.gettempdir() + "/"]
    for page in sorted(aggregated_smoke.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        assert not [p for p in paths if p in text], page


def test_index_lists_every_grid_that_wrote_into_the_folder(site):
    """digits (paper, full) and Fashion-MNIST grids share results/default: grid.json is only
    the last one, so the index lists each record of grids/ (before: the last grid alone)."""
    root, _ = site
    records = root / GRID_RECORDS
    records.mkdir(exist_ok=True)
    for name, desc, ds in (("default", "digits, paper protocol", "digits"),
                           ("fashion", "Fashion-MNIST, the CPU grid", "fashion_mnist")):
        (records / f"{name}.json").write_text(json.dumps({
            "source": f"params/{name}.yaml", "description": desc, "datasets": [ds],
            "methods": ["rkdo", "icon"], "seeds": [42], "epochs": [1, 2, 5],
            "preset": "full"}))
    try:
        text = write_index(root).read_text(encoding="utf-8")
        grids = re.findall(r"<p>Grid <code>(.*?)</code>: (.*?)\.", text)
        assert grids == [("params/default.yaml", "digits, paper protocol"),
                         ("params/fashion.yaml", "Fashion-MNIST, the CPU grid")]
    finally:
        shutil.rmtree(records)
        write_index(root)
