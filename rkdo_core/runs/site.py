"""The results folder's HTML site (`rkdo aggregate`): tables, figures, HTML notebooks,
index.html.

1. executes ``notebooks/05_aggregate.ipynb`` into ``DIR/05_aggregate.ipynb`` (it writes
   ``DIR/tables``, ``DIR/figures`` and the manifest ``DIR/aggregate.json``);
2. executes ``notebooks/04_figures.ipynb`` for one run (the first seed) of every
   dataset × protocol × method into ``DIR/diagnostics/`` (loss per step, p/q heat-maps);
3. renders every executed notebook below DIR to HTML (skipping ones already rendered since
   they last changed);
4. writes ``DIR/index.html`` linking runs, tables, figures and notebooks.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..layout import (
    AGGREGATE_NOTEBOOK,
    DIAGNOSTICS_NOTEBOOK,
    GRID_RECORD,
    MANIFEST,
    RUN_COMPLETE,
    RUN_FAILED,
    is_complete,
    run_folders,
    step_accounting,
)
from ..runio import read_json
from .notebooks import execute_notebook, render_html


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


def aggregate_params(results_dir: Path) -> dict[str, Any]:
    """05_aggregate's parameters; the grid's ``aggregate:`` section when the folder has one."""
    params: dict[str, Any] = {"results_dir": str(results_dir), "out_dir": str(results_dir)}
    record = results_dir / GRID_RECORD
    if record.exists():
        params.update(read_json(record).get("aggregate", {}))
    return params


def diagnostic_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first complete seed of every dataset × protocol × method."""
    def seed_key(r):  # numeric seeds in order (42 before 101), odd folder names last
        return (0, r["seed"], "") if isinstance(r["seed"], int) else (1, 0, str(r["seed"]))

    chosen: dict[tuple, dict] = {}
    for r in sorted(runs, key=lambda r: (r["dataset"], r["protocol"], r["method"],
                                         seed_key(r))):
        key = (r["dataset"], r["protocol"], r["method"])
        if r["status"] == "complete" and key not in chosen:
            chosen[key] = r
    return list(chosen.values())


def render_all(results_dir: Path, progress: bool = False) -> list[Path]:
    """HTML beside every executed notebook below ``results_dir`` that lacks a fresh one."""
    todo = []
    for nb in sorted(results_dir.rglob("*.ipynb")):
        if nb.name.startswith(".") or ".ipynb_checkpoints" in nb.parts:
            continue
        out = nb.with_suffix(".html")
        if not out.exists() or out.stat().st_mtime < nb.stat().st_mtime:
            todo.append(nb)
    return [render_html(nb) for nb in tqdm(todo, desc="HTML", disable=not progress)]


def build_site(results_dir: str | Path, *, diagnostics: bool = True,
               progress: bool = True) -> Path:
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
                     aggregate_params(results_dir), cwd=results_dir)
    if diagnostics:
        chosen = diagnostic_runs(runs)
        for r in tqdm(chosen, desc="diagnostics", disable=not progress):
            name = f"{r['dataset']}_{r['protocol']}_{r['method']}_seed{r['seed']}.ipynb"
            execute_notebook(DIAGNOSTICS_NOTEBOOK, results_dir / "diagnostics" / name,
                             {"run_dir": str(r["dir"])}, cwd=r["dir"])
    render_all(results_dir, progress=progress)
    return write_index(results_dir, runs)


# ---- index.html -------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.2em .5em}
figure{margin:1.5em 0}figure img{max-width:100%}figcaption{font-size:.9em;color:#333}
.failed{color:#b00}.incomplete{color:#a60}pre{background:#f6f6f6;padding:.6em;overflow:auto}"""


def _markdown_html(text: str) -> str:
    """A Markdown table as HTML, through mistune (nbconvert's own Markdown renderer)."""
    try:
        import mistune

        return mistune.create_markdown(escape=True, plugins=["table"])(text)
    except (ImportError, AttributeError, TypeError):  # another mistune major version
        return f"<pre>{html.escape(text)}</pre>"


def _link(results_dir: Path, path: Path, text: str) -> str:
    if not path.exists():
        return html.escape(text) + " (missing)"
    return f'<a href="{html.escape(str(path.relative_to(results_dir)))}">{html.escape(text)}</a>'


def _audit_summary(manifest: dict) -> list[str]:
    """The audit in brief, from the manifest: the positive control first (does training help
    at all? where not, downstream verdicts are not testable), then the step-0 / gap
    decomposition and yardstick sentences and each claim's computed verdict (the full
    checklist, with evidence and rules, is a table)."""
    esc = html.escape
    control = manifest.get("positive_control_sentences", [])
    sentences = manifest.get("epoch0_sentences", []) + manifest.get("yardstick_sentences", [])
    claims = manifest.get("claims", [])
    if not sentences and not claims and not control:
        return []
    parts = ["<h2>The audit in brief</h2>"]
    if control:
        parts.append("<h3>Positive control: does training help here?</h3><ul>"
                     + "".join(f"<li>{esc(s)}</li>" for s in control) + "</ul>")
    if sentences:
        parts.append("<ul>" + "".join(f"<li>{esc(s)}</li>" for s in sentences) + "</ul>")
    if claims:
        parts.append("<table><tr><th>claim</th><th>source</th><th>protocol</th>"
                     "<th>verdict</th></tr>")
        parts += [f"<tr><td>{esc(str(c.get('claim')))}</td><td>{esc(str(c.get('source')))}"
                  f"</td><td>{esc(str(c.get('protocol')))}</td>"
                  f"<td><b>{esc(str(c.get('verdict')))}</b></td></tr>" for c in claims]
        parts.append("</table><p>Evidence and the rule behind each verdict: the claims "
                     "checklist table below. A 'caveat' row is our interpretation beside a "
                     "claim, not a verdict on the paper.</p>")
    return parts


def write_index(results_dir: Path, runs: list[dict[str, Any]] | None = None) -> Path:
    runs = find_runs(results_dir) if runs is None else runs
    esc = html.escape
    manifest_path = results_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    grid = read_json(results_dir / GRID_RECORD) if (results_dir / GRID_RECORD).exists() else {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>RKDO reproduction: "
             f"{esc(results_dir.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>RKDO vs I-Con reproduction: {esc(results_dir.name)}</h1>"]
    if grid:
        parts.append(f"<p>Grid <code>{esc(str(grid.get('source')))}</code>: "
                     f"{esc(grid.get('description', ''))}. Datasets {esc(str(grid['datasets']))},"
                     f" methods {esc(str(grid['methods']))}, seeds {esc(str(grid['seeds']))}, "
                     f"budgets {esc(str(grid['epochs']))}, {esc(grid['preset'])} protocol.</p>")
    counts = {s: sum(r["status"] == s for r in runs) for s in ("complete", "failed",
                                                               "incomplete")}
    parts.append(f"<p>{len(runs)} runs: {counts['complete']} complete, {counts['failed']} "
                 f"failed, {counts['incomplete']} incomplete. Every number below comes from "
                 f"the runs' metrics files; the aggregation notebook is "
                 f"{_link(results_dir, results_dir / '05_aggregate.html', '05_aggregate')}.</p>")
    parts += _audit_summary(manifest)
    parts.append("<h2>Tables</h2>")
    for t in manifest.get("tables", []):
        files = [results_dir / f for f in t.get("files", [])]
        parts.append(f"<h3>{esc(t.get('title', t.get('name', '')))}</h3><p>"
                     + " · ".join(_link(results_dir, f, f.suffix[1:]) for f in files) + "</p>")
        md = [f for f in files if f.suffix == ".md" and f.exists()]
        if md:
            parts.append(_markdown_html(md[0].read_text()))
    parts.append("<h2>Figures</h2>")
    for fig in manifest.get("figures", []):
        files = [results_dir / f for f in fig.get("files", [])]
        png = [f for f in files if f.suffix == ".png"]
        img = (f"<img src='{esc(str(png[0].relative_to(results_dir)))}' "
               f"alt='{esc(fig.get('name', ''))}'>") if png else ""
        links = " · ".join(_link(results_dir, f, f.suffix[1:]) for f in files)
        parts.append(f"<figure>{img}<figcaption><b>{esc(fig.get('name', ''))}.</b> "
                     f"{esc(fig.get('caption', ''))} [{links}]</figcaption></figure>")
    diag = sorted((results_dir / "diagnostics").glob("*.html"))
    theory = sorted(results_dir.rglob("03_convergence_theory.html"))
    mechanism = sorted(results_dir.rglob("06_mechanism.html"))
    if diag or theory or mechanism:
        parts.append("<h2>Diagnostics and theory</h2><ul>")
        parts += [f"<li>{_link(results_dir, d, d.stem)} (04_figures: loss per step, p and q "
                  f"heat-maps)</li>" for d in diag]
        parts += [f"<li>{_link(results_dir, t, 'convergence theory (03)')}</li>"
                  for t in theory]
        parts += [f"<li>{_link(results_dir, m, 'why the two loss functions differ (06)')}"
                  f"</li>" for m in mechanism]
        parts.append("</ul>")
    acc = step_accounting(results_dir)
    parts.append("<h2>Runs</h2>")
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
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
