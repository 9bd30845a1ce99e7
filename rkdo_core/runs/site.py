"""The results folder's HTML site (`rkdo aggregate`): tables, figures, HTML notebooks,
index.html.

1. executes ``notebooks/05_aggregate.ipynb`` into ``DIR/05_aggregate.ipynb`` (it writes
   ``DIR/tables``, ``DIR/figures`` and the manifest ``DIR/aggregate.json``);
2. executes ``notebooks/04_figures.ipynb`` for one run (the first seed) of every
   dataset × protocol × method into ``DIR/diagnostics/`` (loss per step, p/q heat-maps);
3. renders every executed notebook below DIR to HTML (skipping ones already rendered since
   they last changed); the pages load nothing from outside the folder (MathML, no
   scripts: :func:`rkdo_core.runs.notebooks.render_html`);
4. writes ``DIR/index.html`` linking runs, tables, figures and notebooks.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..datasets import dataset_label
from ..layout import (
    AGGREGATE_NOTEBOOK,
    DIAGNOSTICS_NOTEBOOK,
    GRID_RECORD,
    GRID_RECORDS,
    MANIFEST,
    RUN_COMPLETE,
    RUN_FAILED,
    is_complete,
    run_folders,
    step_accounting,
)
from ..runio import read_json
from .notebooks import OFFLINE_MARKER, execute_notebook, render_html


def find_runs(results_dir: Path) -> list[dict[str, Any]]:
    """Every run folder below ``results_dir`` (:func:`rkdo_core.layout.run_folders`) with its
    status: complete, failed, or incomplete."""
    out = []
    for run in run_folders(results_dir):
        rel = run.relative_to(results_dir)
        parts = rel.parts  # dataset/protocol/method/seed_N
        status = ("complete" if is_complete(run) else
                  "failed" if (run / RUN_FAILED).exists() else "incomplete")
        error = read_json(run / RUN_FAILED).get("error") if status == "failed" else None
        out.append({"dir": run, "rel": rel, "dataset": parts[0] if len(parts) == 4 else "?",
                    "protocol": parts[1] if len(parts) == 4 else "?",
                    "method": parts[2] if len(parts) == 4 else "?",
                    "seed": int(run.name.removeprefix("seed_")) if run.name[5:].isdigit()
                    else run.name, "status": status, "error": error})
    return out


def aggregate_params(results_dir: Path, include_altered: bool = False) -> dict[str, Any]:
    """05_aggregate's parameters; the grid's ``aggregate:`` section when the folder has one."""
    params: dict[str, Any] = {"results_dir": str(results_dir), "out_dir": str(results_dir),
                              "include_altered": include_altered}
    record = results_dir / GRID_RECORD
    if record.exists():
        params.update(read_json(record).get("aggregate", {}))
    return params


def diagnostic_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first complete seed of every dataset × protocol × method."""
    chosen: dict[tuple, dict] = {}
    for r in sorted(runs, key=_run_order):
        key = (r["dataset"], r["protocol"], r["method"])
        if r["status"] == "complete" and key not in chosen:
            chosen[key] = r
    return list(chosen.values())


def _rendered_offline(page: Path) -> bool:
    """The page was rendered by :func:`render_html` as it is now (no CDN scripts)."""
    with open(page, encoding="utf-8", errors="replace") as f:
        return OFFLINE_MARKER in f.read(8192)


def render_all(results_dir: Path, progress: bool = False) -> list[Path]:
    """HTML beside every executed notebook below ``results_dir`` that lacks a fresh one (or
    has one rendered before the pages were made offline)."""
    todo = []
    for nb in sorted(results_dir.rglob("*.ipynb")):
        if nb.name.startswith(".") or ".ipynb_checkpoints" in nb.parts:
            continue
        out = nb.with_suffix(".html")
        if not out.exists() or out.stat().st_mtime < nb.stat().st_mtime \
                or not _rendered_offline(out):
            todo.append(nb)
    return [render_html(nb, results_dir)
            for nb in tqdm(todo, desc="HTML", disable=not progress)]


def build_site(results_dir: str | Path, *, diagnostics: bool = True,
               progress: bool = True, include_altered: bool = False) -> Path:
    """Steps 1-4 of the module docstring; returns the index.html path."""
    results_dir = Path(results_dir).resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {str(results_dir)!r} does not exist; run "
                                "`rkdo grid PARAMS --out DIR` first")
    runs = find_runs(results_dir)
    if not any(r["status"] == "complete" for r in runs):
        raise FileNotFoundError(
            f"no complete run (a seed_N folder with {RUN_COMPLETE}) below {results_dir}; "
            f"found {len(runs)} incomplete or failed run(s). Run `rkdo grid` first")
    execute_notebook(AGGREGATE_NOTEBOOK, results_dir / AGGREGATE_NOTEBOOK,
                     aggregate_params(results_dir, include_altered), cwd=results_dir)
    if diagnostics:
        chosen = diagnostic_runs(runs)
        for r in tqdm(chosen, desc="diagnostics", disable=not progress):
            name = f"{r['dataset']}_{r['protocol']}_{r['method']}_seed{r['seed']}.ipynb"
            execute_notebook(DIAGNOSTICS_NOTEBOOK, results_dir / "diagnostics" / name,
                             {"run_dir": str(r["dir"])}, cwd=r["dir"])
    render_all(results_dir, progress=progress)
    return write_index(results_dir, runs)


# ---- index.html -------------------------------------------------------------------------
# The page fits a 1280-px window (tests/test_browser.py): prose at most 1200 px wide, tables
# in a smaller font with wrapping headers and cells, and a table wider than one panel split
# into panels of columns, each repeating the row's key columns (dataset, protocol, budget,
# ...) — Table 5 has ~40 columns, Table 1 ~20. The page loads nothing from outside.

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
line-height:1.4}
table{border-collapse:collapse;font-size:12.5px;max-width:100%;margin:.4em 0}
td,th{border:1px solid #ccc;padding:.2em .35em;vertical-align:top;overflow-wrap:break-word}
th{background:#f3f3f3;text-align:left;font-weight:600}
td.num{white-space:nowrap}caption{text-align:left;font-size:.85em;color:#555;padding:.2em 0}
.note{font-size:.85em;color:#333}.files{font-size:.9em}
figure{margin:1.5em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#333}
.failed{color:#b00}.incomplete{color:#a60}pre{background:#f6f6f6;padding:.6em;overflow:auto}
.smoke{background:#fff3cd;border:2px solid #c90;padding:.5em .7em;color:#5a4000}
.smoke-tag{background:#fff3cd;border:1px solid #c90;font-size:.8em;padding:0 .3em;
margin-left:.3em;white-space:nowrap}.bottom-line{font-size:1.08em;max-width:60em}
nav#contents ol{margin:.2em 0}nav#contents>ol>li>ol{font-size:.9em;columns:2}"""

#: characters (at the tables' font size, ~7.4 px each) one panel of a table may take, cell
#: padding included: about 1150 px
PANEL_CHARS = 155
#: a column whose cells are longer than this is prose: it wraps, and counts as
#: PROSE_CHARS wide when a table is split into panels
WRAP_CHARS = 40
PROSE_CHARS = 24
#: leading columns that identify a row, repeated in every panel of a split table
KEY_COLUMNS = frozenset({"Dataset", "Protocol", "Epochs", "Epochs (steps)", "Metric",
                         "Probe", "Compute", "RKDO epochs (steps)", "I-Con epochs (steps)",
                         "Claim"})


def _words(values) -> str:
    """A list as prose: ``['digits', 'cifar10']`` -> "digits, cifar10"."""
    if isinstance(values, (list, tuple)):
        return ", ".join(str(v) for v in values)
    return str(values)


def _markdown_html(text: str) -> str:
    """Markdown as HTML, through mistune (nbconvert's own Markdown renderer)."""
    try:
        import mistune

        return mistune.create_markdown(escape=True, plugins=["table"])(text)
    except (ImportError, AttributeError, TypeError):  # another mistune major version
        return f"<pre>{html.escape(text)}</pre>"


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]] | None:
    """The first pipe table of a Markdown text (as :func:`rkdo_core.reporting.fmt.
    table_markdown` writes it, a ``|`` in a cell escaped ``\\|``): header and rows of cell
    strings (cells split at " | ", so an unescaped "||" in a cell, as in tables written
    before they were escaped, stays in its cell); ``None`` where there is none or a row's
    cell count differs from the header's."""
    lines = text.splitlines()

    def cells(line: str) -> list[str]:  # tabulate pads every cell with spaces
        return [c.strip().replace("\\|", "|")
                for c in re.split(r"(?<!\\) \| ", line.strip()[1:-1])]

    for k in range(len(lines) - 1):
        sep = lines[k + 1].strip()
        if lines[k].startswith("|") and sep.startswith("|") and set(sep) <= set("|:- "):
            header = cells(lines[k])
            rows = []
            for line in lines[k + 2:]:
                if not line.startswith("|"):
                    break
                rows.append(cells(line))
            if any(len(r) != len(header) for r in rows):
                return None
            return header, rows
    return None


def _group_prefixes(header: list[str]) -> list[str]:
    """Per column, the "group: " prefix of its header where at least two columns share it
    (Table 5's "I-Con obj.: …", Table 6's "full: …"), else ""."""
    pre = [h.split(": ", 1)[0] if ": " in h else "" for h in header]
    return [p if p and pre.count(p) > 1 else "" for p in pre]


def _col_chars(name: str, values: list[str]) -> float:
    """The characters a column takes: its longest cell, or :data:`PROSE_CHARS` for text
    longer than :data:`WRAP_CHARS` (it wraps), or its header on at most two lines, whichever
    is wider, plus padding."""
    cell = max((len(v) for v in values), default=1)
    cell = cell if cell <= WRAP_CHARS else PROSE_CHARS
    head = max(max((len(w) for w in name.split()), default=1), (len(name) + 1) // 2)
    return min(max(head, cell), WRAP_CHARS) + 1.5


def _together(left: str, right: str) -> bool:
    """Adjacent columns a panel split must not separate: RKDO's and I-Con's side of one
    quantity ("RKDO FLOPs", "I-Con FLOPs"), the paper's columns."""
    return (right.replace("I-Con", "RKDO") == left
            or (left.startswith("Paper") and right.startswith("Paper")))


def table_panels(header: list[str], rows: list[list[str]],
                 budget: float = PANEL_CHARS) -> list[list[int]]:
    """Column indices of each panel: the key columns (:data:`KEY_COLUMNS`, leading) in
    every panel, the others in order — columns sharing a prefix, and RKDO's and I-Con's
    side of a quantity, kept together — as many per panel as fit ``budget`` characters."""
    key = []
    for i, h in enumerate(header):
        if h not in KEY_COLUMNS:
            break
        key.append(i)
    prefix = _group_prefixes(header)
    width = {i: _col_chars(h.split(": ", 1)[1] if prefix[i] else h, [r[i] for r in rows])
             for i, h in enumerate(header)}
    groups: list[list[int]] = []
    for i in range(len(key), len(header)):
        if groups and ((prefix[i] and prefix[groups[-1][0]] == prefix[i])
                       or _together(header[i - 1], header[i])):
            groups[-1].append(i)
        else:
            groups.append([i])
    room = budget - sum(width[i] for i in key)
    sizes = [sum(width[i] for i in g) for g in groups]

    def fill(limit: float) -> list[list[int]]:  # greedy: the fewest panels for a limit
        out: list[list[int]] = []
        current: list[int] = []
        used = 0.0
        for g, w in zip(groups, sizes):
            if current and used + w > limit:
                out.append(current)
                current, used = [], 0.0
            current += g
            used += w
        return out + [current] if current or not out else out

    panels = fill(room)
    # as few panels, of even widths: the smallest limit that needs no more panels
    limit = sum(sizes) / len(panels)
    while limit < room and len(fill(limit)) > len(panels):
        limit += 1.0
    return [key + cols for cols in (fill(limit) if limit < room else panels)]


_NUMBER = r"[-+−]?[\d.,]+(?:e[-+]?\d+| × 10[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)?"


def _is_number(cell: str) -> bool:
    """A number, a mean ± std or a percentage: kept on one line."""
    return bool(re.fullmatch(rf"{_NUMBER}(?: ± {_NUMBER})?(?: %)?", cell))


def _header(name: str, values: list[str]) -> str:
    """A header cell's text, escaped; one longer than its column's cells on two lines
    (split where the longer line is shortest), as :func:`_col_chars` assumes."""
    words = name.split()
    cell = max((len(v) for v in values), default=1)
    if len(words) < 2 or len(name) <= max(cell, 8):
        return html.escape(name)
    k = min(range(1, len(words)), key=lambda k: max(len(" ".join(words[:k])),
                                                    len(" ".join(words[k:]))))
    return html.escape(" ".join(words[:k])) + "<br>" + html.escape(" ".join(words[k:]))


def table_html(header: list[str], rows: list[list[str]]) -> str:
    """A table as HTML panels (:func:`table_panels`), every cell escaped; a panel with
    grouped columns gets a two-row header (the group over its columns)."""
    esc = html.escape
    prefix = _group_prefixes(header)
    panels = table_panels(header, rows)

    def head(i: int, name: str) -> str:
        return _header(name, [r[i] for r in rows])

    out = []
    for n, cols in enumerate(panels, 1):
        parts = ["<table>"]
        if len(panels) > 1:
            parts.append(f"<caption>part {n} of {len(panels)}</caption>")
        if any(prefix[i] for i in cols):
            top, sub = [], []
            k = 0
            while k < len(cols):
                i = cols[k]
                if not prefix[i]:
                    top.append(f"<th rowspan='2'>{head(i, header[i])}</th>")
                    k += 1
                    continue
                span = cols[k:k + next((m for m, j in enumerate(cols[k:])
                                         if prefix[j] != prefix[i]), len(cols) - k)]
                top.append(f"<th colspan='{len(span)}'>{esc(prefix[i])}</th>")
                sub += [f"<th>{head(j, header[j].split(': ', 1)[1])}</th>" for j in span]
                k += len(span)
            parts.append("<thead><tr>" + "".join(top) + "</tr><tr>" + "".join(sub)
                         + "</tr></thead>")
        else:
            parts.append("<thead><tr>" + "".join(f"<th>{head(i, header[i])}</th>" for i in cols)
                         + "</tr></thead>")
        parts.append("<tbody>")
        for r in rows:
            parts.append("<tr>" + "".join(
                f"<td class='num'>{esc(r[i])}</td>" if _is_number(r[i]) else
                f"<td>{esc(r[i])}</td>" for i in cols) + "</tr>")
        parts.append("</tbody></table>")
        out.append("".join(parts))
    return "\n".join(out)


def _table_body(results_dir: Path, entry: dict) -> list[str]:
    """A manifest table as HTML (split into panels where wide) and its note, from its
    Markdown file."""
    esc = html.escape
    files = [results_dir / f for f in entry.get("files", [])]
    md = [f for f in files if f.suffix == ".md" and f.exists()]
    text = md[0].read_text(encoding="utf-8") if md else ""
    parsed = parse_markdown_table(text) if text else None
    parts = []
    if parsed is not None:
        parts.append(table_html(*parsed))
    elif "(no rows)" in text:
        parts.append("<p><i>(no rows)</i></p>")
    elif text:  # not a table this module can read: the Markdown, less title and note
        for shown in (f"**{entry.get('title')}**", entry.get("note")):
            text = text.replace(shown, "", 1) if shown else text
        parts.append(_markdown_html(text))
    if entry.get("note"):
        parts.append(f"<p class='note'>{esc(entry['note'])}</p>")
    return parts


def table_page_path(results_dir: Path, entry: dict) -> Path:
    """``tables/<name>.html``: the table as a page of its own, beside its .csv/.md/.tex."""
    files = [Path(f) for f in entry.get("files", [])]
    folder = files[0].parent if files else Path("tables")
    return results_dir / folder / f"{entry.get('name', 'table')}.html"


def write_table_page(results_dir: Path, entry: dict, banner: str = "") -> Path:
    """The table rendered as HTML on a page of its own (what the index's table link opens,
    rather than the Markdown's raw pipes), with its title, note and source files."""
    esc = html.escape
    out = table_page_path(results_dir, entry)
    files = [results_dir / f for f in entry.get("files", [])]
    links = " · ".join(f'<a href="{esc(f.name)}">{esc(f.suffix[1:])}</a>' for f in files
                       if f.exists())
    title = entry.get("title") or entry.get("name", "")
    page = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
            f'<p><a href="{esc(os.path.relpath(results_dir / "index.html", out.parent))}">'
            "← index</a></p>", f"<h1>{esc(title)}</h1>", banner,
            *_table_body(results_dir, entry),
            f"<p class='files'>Source files: {links}</p>" if links else "", "</body></html>"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(page), encoding="utf-8")
    return out


def _table_section(results_dir: Path, entry: dict, banner: str = "") -> list[str]:
    """One table of the manifest: its title once (a heading), a link to its HTML page and
    its files, the table (split into panels where wide) and its note."""
    esc = html.escape
    files = [results_dir / f for f in entry.get("files", [])]
    name = entry.get("name", "")
    page = write_table_page(results_dir, entry, banner)
    links = [_link(results_dir, page, "table (HTML)")] + [
        _link(results_dir, f, f.suffix[1:]) for f in files]
    return [f"<h3 id='{esc(name)}'>{esc(entry.get('title') or name)}</h3>{banner}"
            f"<p class='files'>" + " · ".join(links) + "</p>",
            *_table_body(results_dir, entry)]


def _link(results_dir: Path, path: Path, text: str) -> str:
    if not path.exists():
        return html.escape(text) + " (missing)"
    return f'<a href="{html.escape(path.relative_to(results_dir).as_posix())}">' \
           f'{html.escape(text)}</a>'


#: the audit in brief, one part per heading: (anchor, heading, manifest key of its sentences)
AUDIT_PARTS = (
    ("audit-control", "Positive control: does training help here?",
     "positive_control_sentences"),
    ("audit-gap", "The loss gap: before training, and split into function and training terms",
     "epoch0_sentences"),
    ("audit-yardstick", "The common yardstick: does RKDO's lower loss survive?",
     "yardstick_sentences"),
)


def _audit_sections(manifest: dict) -> list[tuple[str, str]]:
    """(anchor, heading) of each part of the audit in brief the manifest has."""
    parts = [(a, h) for a, h, key in AUDIT_PARTS if manifest.get(key)]
    if manifest.get("claims"):
        parts.append(("audit-claims", "The claims, verdict by verdict"))
    return parts


def _audit_summary(manifest: dict, banner: str = "") -> list[str]:
    """The audit in brief, from the manifest, one heading per part: the positive control
    first (does training help at all? where not, downstream verdicts are not testable), the
    step-0 / gap decomposition, the yardstick, then each claim's computed verdict (the full
    checklist, with evidence and rules, is a table). ``banner``: the smoke grid's warning,
    repeated on every part; each verdict is tagged too."""
    esc = html.escape
    sections = _audit_sections(manifest)
    if not sections:
        return []
    parts = ["<h2 id='audit'>The audit in brief</h2>"]
    for anchor, heading, key in AUDIT_PARTS:
        if manifest.get(key):
            parts.append(f"<h3 id='{anchor}'>{esc(heading)}</h3>{banner}<ul>"
                         + "".join(f"<li>{esc(s)}</li>" for s in manifest[key]) + "</ul>")
    claims = manifest.get("claims", [])
    if claims:
        tag = f" {_SMOKE_TAG}" if banner else ""
        parts.append(f"<h3 id='audit-claims'>The claims, verdict by verdict</h3>{banner}"
                     "<table><tr><th>claim</th><th>source</th><th>protocol</th>"
                     "<th>verdict</th></tr>")
        parts += [f"<tr><td>{esc(str(c.get('claim')))}</td><td>{esc(str(c.get('source')))}"
                  f"</td><td>{esc(str(c.get('protocol')))}</td>"
                  f"<td><b>{esc(str(c.get('verdict')))}</b>{tag}</td></tr>" for c in claims]
        parts.append("</table><p>Evidence and the rule behind each verdict: the claims "
                     "checklist table below. A 'caveat' row is our interpretation beside a "
                     "claim, not a verdict on the paper.</p>")
    return parts


#: a grid whose largest budget runs fewer optimizer steps than this trains nothing worth a
#: number (the smoke grid: 2 × 2)
SMOKE_STEPS = 20


def is_smoke_grid(grid: dict[str, Any]) -> bool:
    """The grid record (``grid.json``) is the smoke grid (``params/smoke.yaml``), or a grid as
    tiny: its largest budget runs fewer than :data:`SMOKE_STEPS` optimizer steps."""
    if grid.get("name") == "smoke":
        return True
    steps = (grid.get("config") or {}).get("steps_per_epoch")
    epochs = grid.get("epochs") or []
    return isinstance(steps, int) and bool(epochs) and steps * max(epochs) < SMOKE_STEPS


def _smoke_banner(grid: dict[str, Any]) -> str:
    """The warning every verdict of a smoke grid carries ("" for any other grid)."""
    if not is_smoke_grid(grid):
        return ""
    cfg = grid.get("config") or {}
    steps = cfg.get("steps_per_epoch")
    how = (f" ({steps} optimizer step{'s' if steps != 1 else ''} per epoch, budgets "
           f"{_words(grid.get('epochs', []))})" if steps else "")
    return (f"<p class='smoke' role='note'><b>Smoke grid: these numbers mean nothing.</b> "
            f"<code>{html.escape(_shown_source(grid.get('source') or 'params/smoke.yaml'))}</code> "
            f"trains for a few steps{html.escape(how)} to exercise every file; no verdict "
            "below says anything about RKDO or I-Con.</p>")


_SMOKE_TAG = "<span class='smoke-tag'>smoke grid: means nothing</span>"


def _smoke_note(grid: dict[str, Any]) -> str:
    """The short form of :func:`_smoke_banner`, repeated on every part with a verdict."""
    return ("<p class='smoke' role='note'><b>Smoke grid:</b> the numbers and verdicts here "
            "mean nothing.</p>") if is_smoke_grid(grid) else ""


def _bottom_line(manifest: dict, banner: str) -> list[str]:
    """The three plain sentences (computed from the claims' verdicts by the aggregation) the
    page opens with, before any statistics."""
    sentences = manifest.get("bottom_line") or []
    if not sentences:
        return []
    return ["<section id='bottom-line'><h2>Bottom line</h2>", banner,
            "<p class='bottom-line'>" + " ".join(html.escape(x) for x in sentences) + "</p>",
            "</section>"]


def _run_order(r: dict[str, Any]) -> tuple:
    """Runs by dataset, protocol, method, then numeric seeds in numeric order (42 before
    123), odd folder names last."""
    seed = (0, r["seed"], "") if isinstance(r["seed"], int) else (1, 0, str(r["seed"]))
    return (r["dataset"], r["protocol"], r["method"], seed)


def _integrity_summary(manifest: dict) -> list[str]:
    """Runs whose files differ from their recorded checksums: left out of every number below
    (or, with ``rkdo aggregate --include-altered``, included and named here)."""
    esc = html.escape
    excluded = manifest.get("excluded_runs", [])
    included = manifest.get("included_altered_runs", [])
    if not excluded and not included:
        return []
    runs = included or excluded
    head = (f"{len(included)} run(s) INCLUDED although their files differ from the checksums "
            "recorded when they completed (<code>--include-altered</code>); their rows carry "
            "the problem in an <code>integrity</code> column" if included else
            f"{len(excluded)} run(s) left out of every table and figure: their files differ "
            "from the checksums recorded when they completed (<code>rkdo verify</code> lists "
            "the same; <code>rkdo aggregate --include-altered</code> uses them, marked)")
    items = "".join(f"<li><code>{esc(r['run'])}</code> ({esc(r.get('state', ''))}): "
                    f"{esc('; '.join(r.get('problems', [])))}</li>" for r in runs)
    return [f"<h2 id='integrity' class='failed'>Integrity</h2><p class='failed'>{head}:</p>"
            f"<ul>{items}</ul>"]


def _toc(entries: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """The table of contents: (anchor, heading, [(anchor, sub-heading)]) per section."""
    esc = html.escape
    items = []
    for anchor, heading, subs in entries:
        sub = ("<ol>" + "".join(f"<li><a href='#{esc(a)}'>{esc(h)}</a></li>" for a, h in subs)
               + "</ol>") if subs else ""
        items.append(f"<li><a href='#{esc(anchor)}'>{esc(heading)}</a>{sub}</li>")
    return "<nav id='contents' aria-label='contents'><h2>Contents</h2><ol>" + "".join(items) \
        + "</ol></nav>"


def _shown_source(source: Any) -> str:
    """The grid's params file as the page shows it: never an absolute path of the machine
    that ran it (its name below ``params/`` or the file name)."""
    text = str(source)
    if not os.path.isabs(text):
        return text
    path = Path(text)
    return f"{path.parent.name}/{path.name}" if path.parent.name == "params" else path.name


def write_index(results_dir: Path, runs: list[dict[str, Any]] | None = None) -> Path:
    """``results_dir/index.html`` (and each table's page, ``tables/<name>.html``): the
    bottom line and a table of contents first, then the audit in brief (one heading per
    part), the tables, the figures, the notebooks and the runs. On a smoke grid
    (:func:`is_smoke_grid`) every part that carries a verdict says the numbers mean nothing."""
    runs = find_runs(results_dir) if runs is None else runs
    runs = sorted(runs, key=_run_order)
    esc = html.escape
    manifest_path = results_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    grid = read_json(results_dir / GRID_RECORD) if (results_dir / GRID_RECORD).exists() else {}
    banner, note = _smoke_banner(grid), _smoke_note(grid)
    head = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>RKDO reproduction: {esc(results_dir.name)}</title>"
            f"<style>{_CSS}</style></head><body>",
            f"<h1>RKDO vs I-Con reproduction: {esc(results_dir.name)}</h1>", banner]
    head += _bottom_line(manifest, note)
    parts = []
    # every grid that wrote here (grids/*.json), else the last one (grid.json)
    records = [read_json(f) for f in sorted((results_dir / GRID_RECORDS).glob("*.json"))] \
        if (results_dir / GRID_RECORDS).is_dir() else []
    for g in records or ([grid] if grid else []):
        datasets = [dataset_label(d) for d in g.get("datasets", [])]
        parts.append(f"<p>Grid <code>{esc(_shown_source(g.get('source')))}</code>: "
                     f"{esc(g.get('description', ''))}. Datasets {esc(_words(datasets))}; "
                     f"methods {esc(_words(g.get('methods', [])))}; seeds "
                     f"{esc(_words(g.get('seeds', [])))}; budgets "
                     f"{esc(_words(g.get('epochs', [])))} epochs; "
                     f"{esc(str(g.get('preset', '')))} protocol.</p>")
    counts = {s: sum(r["status"] == s for r in runs) for s in ("complete", "failed",
                                                               "incomplete")}
    parts.append(f"<p>{len(runs)} runs: {counts['complete']} complete, {counts['failed']} "
                 f"failed, {counts['incomplete']} incomplete. Every number below comes from "
                 f"the runs' metrics files; the aggregation notebook is "
                 f"{_link(results_dir, results_dir / '05_aggregate.html', '05_aggregate')}.</p>")
    machine = [(name, what) for name, what in (
        ("comparison.csv", "every paired comparison RKDO vs I-Con, per dataset, protocol, "
                           "metric and budget, at full precision"),
        (MANIFEST, "the manifest: tables, figures, captions, sentences and verdicts"))
        if (results_dir / name).exists()]
    if machine:
        parts.append("<p>Machine-readable: " + "; ".join(
            f"{_link(results_dir, results_dir / name, name)} ({esc(what)})"
            for name, what in machine) + ".</p>")
    toc: list[tuple[str, str, list[tuple[str, str]]]] = []
    if manifest.get("bottom_line"):
        toc.append(("bottom-line", "Bottom line", []))
    integrity = _integrity_summary(manifest)
    if integrity:
        toc.append(("integrity", "Integrity", []))
    parts += integrity
    audit = _audit_summary(manifest, note)
    if audit:
        toc.append(("audit", "The audit in brief", _audit_sections(manifest)))
    parts += audit
    tables = manifest.get("tables", [])
    parts.append("<h2 id='tables'>Tables</h2>")
    toc.append(("tables", "Tables", [(t.get("name", ""), t.get("title") or t.get("name", ""))
                                     for t in tables]))
    for t in tables:
        parts += _table_section(results_dir, t, note)
    figures = manifest.get("figures", [])
    parts.append(f"<h2 id='figures'>Figures</h2>{note}")
    toc.append(("figures", "Figures", [(f"figure-{f.get('name', '')}", f.get("name", ""))
                                       for f in figures]))
    for fig in figures:
        files = [results_dir / f for f in fig.get("files", [])]
        png = [f for f in files if f.suffix == ".png"]
        img = (f"<img src='{esc(png[0].relative_to(results_dir).as_posix())}' "
               f"alt='{esc(fig.get('name', ''))}'>") if png else ""
        links = " · ".join(_link(results_dir, f, f.suffix[1:]) for f in files)
        parts.append(f"<figure id='figure-{esc(fig.get('name', ''))}'>{img}<figcaption><b>"
                     f"{esc(fig.get('name', ''))}.</b> {esc(fig.get('caption', ''))} "
                     f"[{links}]</figcaption></figure>")
    diag = sorted((results_dir / "diagnostics").glob("*.html"))
    theory = sorted(results_dir.rglob("03_convergence_theory.html"))
    mechanism = sorted(results_dir.rglob("06_mechanism.html"))
    if diag or theory or mechanism:
        toc.append(("diagnostics", "Diagnostics and theory", []))
        parts.append("<h2 id='diagnostics'>Diagnostics and theory</h2><ul>")
        parts += [f"<li>{_link(results_dir, d, d.stem)} (04_figures: loss per step, p and q "
                  f"heat-maps)</li>" for d in diag]
        parts += [f"<li>{_link(results_dir, t, 'convergence theory (03)')}</li>"
                  for t in theory]
        parts += [f"<li>{_link(results_dir, m, 'why the two loss functions differ (06)')}"
                  f"</li>" for m in mechanism]
        parts.append("</ul>")
    acc = step_accounting(results_dir)
    toc.append(("runs", "Runs", []))
    parts.append("<h2 id='runs'>Runs</h2>")
    if acc["runs"]:
        parts.append(f"<p>The {acc['runs']} complete runs ran "
                     f"{acc['steps_run']:,} optimizer steps: each trained once to its largest "
                     f"budget, the smaller budgets being its checkpoints. Training a separate "
                     f"model per budget (the reference notebook's way) would have needed "
                     f"{acc['steps_separate_runs']:,}.</p>")
    parts.append("<table><tr><th>dataset</th><th>protocol</th><th>method</th>"
                 "<th>seed</th><th>status</th><th>notebooks</th></tr>")
    for r in runs:
        nbs = " · ".join(_link(results_dir, r["dir"] / f"{n}.html", n)
                         for n in ("01_train", "02_evaluate"))
        status = esc(r["status"]) + (f": {esc(r['error'])}" if r["error"] else "")
        parts.append(f"<tr><td>{esc(r['dataset'])}</td><td>{esc(r['protocol'])}</td>"
                     f"<td>{esc(r['method'])}</td><td>{esc(str(r['seed']))}</td>"
                     f"<td class='{esc(r['status'])}'>{status}</td><td>{nbs}</td></tr>")
    parts.append("</table></body></html>")
    out = results_dir / "index.html"
    out.write_text("\n".join([*head, _toc(toc), *parts]), encoding="utf-8")
    return out
