"""Execute the parameterised notebooks with papermill and render them to HTML (nbconvert).

The executed notebook is the record of a run (docs/design.md): its ``parameters`` cell holds the
defaults, papermill injects the overrides in a cell below it, and the HTML rendering is
what a reader of the supplement opens.

papermill, nbconvert and jupyter_client are imported inside the functions that use them:
each takes a second or more to import, and `rkdo verify` / `rkdo --help` need none of them.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import testhooks
from ..layout import THEORY_NOTEBOOK, repository_dir

#: the mechanism notebook (rkdo mechanism)
MECHANISM_NOTEBOOK = "06_mechanism.ipynb"

#: the repository's notebooks/ folder
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: the kernel `make` registers for the project's .venv (Makefile: ipykernel install --name rkdo)
PROJECT_KERNEL = "rkdo"


#: kernels' own log is silenced: at warning level every kernel prints an "unencrypted TCP"
#: notice to the grid's terminal, and jupyter_client interrupts a kernel when shutting it
#: down, which it logs as "KeyboardInterrupt caught in kernel" at error level. Errors of the
#: notebook itself are in the executed notebook (papermill raises on them); a kernel that
#: dies is reported by papermill as such. (IPC transport would avoid the TCP notice, but
#: jupyter_client names its sockets kernel-ipc-N in the kernel's working folder, so
#: concurrent kernels of one grid collided: "Invalid Signature" errors.)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]


def default_kernel() -> str:
    """The project's registered ``rkdo`` kernel when installed, else ``python3``.

    jupyter_client runs a ``python3`` kernelspec whose argv is plain ``python`` with
    ``sys.executable``, so from the venv both resolve to the venv's interpreter.
    """
    from jupyter_client.kernelspec import find_kernel_specs

    return PROJECT_KERNEL if PROJECT_KERNEL in find_kernel_specs() else "python3"


def notebook_path(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else the notebook of that name in :data:`NOTEBOOK_DIR`
    (``.ipynb`` optional)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name if path.suffix == ".ipynb" else path.name + ".ipynb"
    candidate = NOTEBOOK_DIR / name
    if candidate.is_file():
        return candidate
    available = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    raise FileNotFoundError(
        f"notebook {str(name_or_path)!r} not found as a path nor in {NOTEBOOK_DIR}; "
        f"available: {available}")


def notebook_parameters(name_or_path: str | Path) -> dict[str, Any]:
    """The defaults of a notebook's ``parameters`` cell, name -> default (as papermill sees
    them: ``inferred_type_name``, ``default`` as source text)."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook_path(name_or_path))))


def execute_notebook(name_or_path: str | Path, output_path: str | Path,
                     parameters: Mapping[str, Any] | None = None, *,
                     kernel_name: str | None = None, cwd: str | Path | None = None,
                     kernel: SharedKernel | None = None) -> Path:
    """Execute a notebook with papermill into ``output_path``; returns that path.

    ``parameters`` must name parameters of the notebook's ``parameters`` cell (papermill
    would inject unknown names silently; a typo would then run the defaults). A failing cell
    raises papermill's ``PapermillExecutionError``; the partly executed notebook is still
    written to ``output_path``. ``kernel``: a running kernel of :func:`shared_kernel` to
    execute in (its namespace reset first), instead of a kernel started for this notebook
    and shut down after it.
    """
    import papermill

    src = notebook_path(name_or_path)
    parameters = dict(parameters or {})
    known = notebook_parameters(src)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]}={parameters[unknown[0]]!r} for "
                         f"{src.name}; its parameters are {sorted(known)}")
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The kernel's working folder goes to nbclient (resources.metadata.path: the kernel is
    # started there), not to papermill's ``cwd``, which os.chdir()s the whole process: with
    # the local back-end's runs in threads, concurrent chdirs left the process (and the
    # next kernels) in another run's folder, and relative paths after a grid broke.
    kernel_cwd = {"resources": {"metadata": {"path": str(Path(cwd).resolve())}}} \
        if cwd is not None else {}
    if kernel is not None:
        kernel_cwd["km"] = kernel.acquire()
    papermill.execute_notebook(
        str(src), str(out.resolve()), parameters=parameters,
        kernel_name=kernel_name or default_kernel(),
        progress_bar=False, log_output=False,
        extra_arguments=KERNEL_ARGUMENTS, **kernel_cwd,
        **_test_pause_hooks(Path(cwd) if cwd is not None else Path.cwd(), src.name))
    return out


#: what runs between two notebooks of a shared kernel: the user namespace cleared, the
#: execution counter back to 1 (the executed notebook numbers its cells from 1, as in a fresh
#: kernel) and the previous notebook's open figures closed
_RESET_CODE = ("get_ipython().run_line_magic('reset', '-f')\n"
               "get_ipython().execution_count = 1\n"
               "import sys as _sys\n"
               "if 'matplotlib.pyplot' in _sys.modules:\n"
               "    _sys.modules['matplotlib.pyplot'].close('all')\n"
               "del _sys\n")


class SharedKernel:
    """One Jupyter kernel for several notebooks in turn (:func:`shared_kernel`): a grid run
    executes 01_train and 02_evaluate in the same kernel, so torch, scikit-learn and the
    suite are imported once per run instead of once per notebook (a kernel start and its
    imports took ~10 s of a paper run's ~175 s on the 2-core CPU). The kernel starts when
    the first notebook asks for it (:meth:`acquire`); before every later notebook its
    namespace is cleared (``%reset -f``, the execution counter back to 1), so a notebook
    sees none of the previous one's variables, exactly as in a fresh kernel; only the
    imported modules stay loaded."""

    def __init__(self, kernel_name: str | None = None, cwd: str | Path | None = None):
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.km: Any = None

    def acquire(self) -> Any:
        """The running kernel's manager for the next notebook: started on first use, its
        namespace reset on every later one."""
        if self.km is None:
            from jupyter_client.manager import KernelManager

            km = KernelManager(kernel_name=self.kernel_name or default_kernel())
            km.start_kernel(extra_arguments=KERNEL_ARGUMENTS, **(
                {"cwd": str(Path(self.cwd).resolve())} if self.cwd is not None else {}))
            self.km = km
            return km
        kc = self.km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive(_RESET_CODE, silent=True, store_history=False,
                                           timeout=60, output_hook=lambda msg: None)
            if reply["content"].get("status") != "ok":
                raise RuntimeError(f"could not reset the shared kernel: {reply['content']}")
        finally:
            kc.stop_channels()
        return self.km

    def shutdown(self) -> None:
        if self.km is None:
            return
        try:
            self.km.shutdown_kernel(now=not self.km.is_alive())
        except Exception:  # noqa: BLE001 — already dead or gone: nothing left to stop
            pass


@contextmanager
def shared_kernel(kernel_name: str | None = None, cwd: str | Path | None = None):
    """A :class:`SharedKernel` (started in ``cwd`` with the grid's kernel arguments when a
    notebook first needs it) for several notebooks (``execute_notebook(..., kernel=k)``),
    shut down when the block ends, even when a notebook fails or the kernel died."""
    shared = SharedKernel(kernel_name, cwd)
    try:
        yield shared
    finally:
        shared.shutdown()


def _test_pause_hooks(folder: Path, name: str) -> dict[str, Any]:
    """Test-only hook (:mod:`rkdo_core.testhooks`): when a test has set
    ``RKDO_TEST_PAUSE_AT``, nbclient's ``on_cell_execute`` callback, which calls
    :func:`~rkdo_core.testhooks.pause_point` with the stage ``FOLDER/NAME cell ID`` just
    before each code cell is sent to the kernel. Otherwise nothing: papermill runs as if
    this did not exist."""
    if not testhooks.active():
        return {}
    prefix = f"{folder.resolve()}/{name}"

    def before_cell(cell, cell_index, **_):
        testhooks.pause_point(f"{prefix} cell {cell.get('id')}")

    return {"on_cell_execute": before_cell}


# ---- HTML rendering: self-contained, offline pages ----------------------------------------
# nbconvert's lab template loads require.js and MathJax from a CDN (and mermaid.js where a
# notebook has a diagram): an offline reader would see raw TeX. The pages are rendered
# without any script instead: TeX in Markdown (cells and Markdown outputs) and text/latex
# outputs is converted to MathML on this side (latex2mathml), which browsers draw natively
# (Chromium 109+, Firefox, Safari); the TeX source stays in each formula's <annotation>.
# Where latex2mathml is missing or cannot parse a formula, the TeX is shown as code. The CSS
# nbconvert inlines is kept, without its comments (they carry URLs). No page fetches anything.

#: in the <head> of every page rendered this way, near the top: `rkdo aggregate` renders a
#: page again where it lacks it (one rendered before, loading scripts from a CDN)
OFFLINE_MARKER = "rkdo_core offline HTML (MathML, no scripts, no machine paths)"
#: the template: nbconvert's lab template without require.js, widgets, MathJax and mermaid
_OFFLINE_TEMPLATE = "rkdo_offline.html.j2"
_OFFLINE_TEMPLATE_SOURCE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
<meta name="generator" content='""" + OFFLINE_MARKER + """'>
{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}
<style type="text/css">math[display="block"]{display:block;margin:.6em 0;overflow-x:auto}
code.tex{white-space:pre-wrap}</style>
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block data_latex scoped %}
<div class="jp-RenderedLatex jp-OutputArea-output {{ extra_class }}" data-mime-type="text/latex">
{{ output.data['text/latex'] | latex_output_html }}
</div>
{%- endblock data_latex %}
"""


def tex_html(tex: str, display: bool = False) -> str:
    """One TeX formula as MathML (``<math>``, the TeX kept in an ``<annotation>``); where
    latex2mathml is not installed or cannot parse it, the TeX itself as escaped code."""
    import html

    delim = "$$" if display else "$"
    fallback = f'<code class="tex">{html.escape(f"{delim}{tex}{delim}")}</code>'
    try:
        from latex2mathml.converter import convert

        mathml = convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 — ImportError or any parse error: show the TeX
        return fallback
    head, sep, rest = mathml.partition(">")
    body, end, _ = rest.rpartition("</math>")
    if not sep or not end:
        return fallback
    head = head.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")  # implied in HTML
    return (f"{head}><semantics><mrow>{body}</mrow><annotation encoding=\"application/x-tex\">"
            f"{html.escape(tex, quote=False)}</annotation></semantics></math>")


def _latex_output_html(text: str) -> str:
    """A text/latex output (``$…$``, ``$$…$$``, ``\\[…\\]`` or plain TeX) as MathML."""
    t = text.strip()
    for left, right, display in (("$$", "$$", True), ("\\[", "\\]", True),
                                 ("\\(", "\\)", False), ("$", "$", False)):
        if t.startswith(left) and t.endswith(right) and len(t) > len(left) + len(right):
            return tex_html(t[len(left):-len(right)], display)
    return tex_html(t, True)


def _strip_css_comments(page: str) -> str:
    """``/* … */`` removed inside ``<style>`` elements (nbconvert's inlined CSS)."""
    return re.sub(r"(<style[^>]*>)(.*?)(</style>)",
                  lambda m: m.group(1) + re.sub(r"/\*.*?\*/", "", m.group(2), flags=re.S)
                  + m.group(3), page, flags=re.S | re.I)


def offline_exporter():
    """An nbconvert ``HTMLExporter`` whose pages load nothing: no require.js, MathJax,
    widget manager or mermaid.js; math as MathML (:func:`tex_html`)."""
    import jinja2
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    class MathMLRenderer(IPythonRenderer):
        def block_math(self, body: str) -> str:
            return tex_html(body, True)

        def inline_math(self, body: str) -> str:
            return tex_html(body, False)

        def latex_environment(self, name: str, body: str) -> str:
            return tex_html(f"\\begin{{{name}}}{body}\\end{{{name}}}", True)

    class OfflineHTMLExporter(HTMLExporter):
        @jinja2.pass_context
        def markdown2html(self, context, source):
            cell = context.get("cell", {})
            renderer = MathMLRenderer(
                escape=False, attachments=cell.get("attachments", {}),
                embed_images=self.embed_images,
                path=context.get("resources", {}).get("metadata", {}).get("path", ""),
                anchor_link_text=self.anchor_link_text,
                exclude_anchor_links=self.exclude_anchor_links, **self.lexer_options)
            return MarkdownWithMath(renderer=renderer).render(source)

        def default_filters(self):
            yield from super().default_filters()
            yield ("latex_output_html", _latex_output_html)

    return OfflineHTMLExporter(
        template_name="lab", template_file=_OFFLINE_TEMPLATE,
        extra_loaders=[jinja2.DictLoader({_OFFLINE_TEMPLATE: _OFFLINE_TEMPLATE_SOURCE})])


def machine_paths(root: str | Path | None = None) -> list[tuple[str, str]]:
    """(absolute path of the machine that built a page, the name a reader sees instead),
    longest first: the results folder ``root`` -> ``RESULTS`` (the name the docs use), the
    Python environment -> ``VENV``, the source checkout -> ``REPOSITORY``, the temporary
    folder -> ``TMP``, the home folder -> ``~``."""
    pairs = []
    if root is not None:
        pairs += [(str(root), "RESULTS"), (str(Path(root).resolve()), "RESULTS")]
    pairs += [(sys.prefix, "VENV"), (str(repository_dir()), "REPOSITORY"),
              (str(Path(tempfile.gettempdir()).resolve()), "TMP"),
              (tempfile.gettempdir(), "TMP"), (os.path.expanduser("~"), "~")]
    seen: dict[str, str] = {}
    for old, new in pairs:
        old = old.rstrip("/")
        if os.path.isabs(old) and len(old) > 1 and old not in seen:
            seen[old] = new
    return sorted(seen.items(), key=lambda kv: -len(kv[0]))


def strip_machine_paths(text: str, root: str | Path | None = None) -> str:
    """``text`` with the absolute paths of :func:`machine_paths` replaced (a path only where
    it ends at a path separator or a non-path character: /tmpfoo stays)."""
    for old, new in machine_paths(root):
        text = re.sub(re.escape(old) + r"(?![\w.-])", lambda _m, n=new: n, text)
    return text


def render_html(ipynb_path: str | Path, root: str | Path | None = None) -> Path:
    """Render an executed notebook to HTML beside it (same name, ``.html``); returns it.
    The page is self-contained and offline (:func:`offline_exporter`), and shows no
    absolute path of the machine that built it (:func:`strip_machine_paths`; ``root``: the
    results folder, shown as ``RESULTS``)."""
    import nbformat

    src = Path(ipynb_path)
    nb = nbformat.read(src, as_version=4)
    body, _ = offline_exporter().from_notebook_node(nb)
    out = src.with_suffix(".html")
    out.write_text(strip_machine_paths(_strip_css_comments(body), root), encoding="utf-8")
    return out


def run_theory(out_dir: str | Path, **params: Any) -> Path:
    """Execute 03_convergence_theory into ``out_dir/03_convergence_theory.ipynb`` with
    ``params`` overriding its parameters, and render the HTML beside it. Returns the
    executed notebook's path."""
    out_dir = Path(out_dir)
    params = {"out_dir": str(out_dir.resolve()), **params}  # checks.json goes beside it
    out = execute_notebook(THEORY_NOTEBOOK, out_dir / THEORY_NOTEBOOK, params, cwd=out_dir)
    render_html(out)
    return out


def run_mechanism(out_dir: str | Path, **params: Any) -> Path:
    """Execute 06_mechanism into ``out_dir/06_mechanism.ipynb`` with ``params`` overriding its
    parameters (e.g. ``results_dir``), in ``out_dir`` (it writes mechanism.csv and
    fig_mechanism.png/.pdf there), and render the HTML beside it. Returns the executed
    notebook's path. A relative ``results_dir`` is taken relative to the current folder."""
    out_dir = Path(out_dir)
    params = {"out_dir": str(out_dir.resolve()), **params}  # its CSV and figure go here
    if params.get("results_dir") is not None:
        params["results_dir"] = str(Path(params["results_dir"]).resolve())
    out = execute_notebook(MECHANISM_NOTEBOOK, out_dir / MECHANISM_NOTEBOOK, params,
                           cwd=out_dir)
    render_html(out)
    return out
