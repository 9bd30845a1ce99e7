"""Execute the parameterised notebooks with papermill and render them to HTML (nbconvert).

The executed notebook is the record of a run (docs/design.md): its ``parameters`` cell holds the
defaults, papermill injects the overrides in a cell below it, and the HTML rendering is
what a reader of the supplement opens.

papermill, nbconvert and jupyter_client are imported inside the functions that use them:
each takes a second or more to import, and `rkdo verify` / `rkdo --help` need none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..layout import THEORY_NOTEBOOK

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
                     kernel_name: str | None = None, cwd: str | Path | None = None) -> Path:
    """Execute a notebook with papermill into ``output_path``; returns that path.

    ``parameters`` must name parameters of the notebook's ``parameters`` cell (papermill
    would inject unknown names silently; a typo would then run the defaults). A failing cell
    raises papermill's ``PapermillExecutionError``; the partly executed notebook is still
    written to ``output_path``.
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
    papermill.execute_notebook(
        str(src), str(out), parameters=parameters,
        kernel_name=kernel_name or default_kernel(),
        progress_bar=False, log_output=False,
        cwd=str(cwd) if cwd is not None else None,
        extra_arguments=KERNEL_ARGUMENTS)
    return out



def render_html(ipynb_path: str | Path) -> Path:
    """Render an executed notebook to HTML beside it (same name, ``.html``); returns it."""
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(ipynb_path)
    nb = nbformat.read(src, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    out = src.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def run_theory(out_dir: str | Path, **params: Any) -> Path:
    """Execute 03_convergence_theory into ``out_dir/03_convergence_theory.ipynb`` with
    ``params`` overriding its parameters, and render the HTML beside it. Returns the
    executed notebook's path."""
    out_dir = Path(out_dir)
    out = execute_notebook(THEORY_NOTEBOOK, out_dir / THEORY_NOTEBOOK, params, cwd=out_dir)
    render_html(out)
    return out


def run_mechanism(out_dir: str | Path, **params: Any) -> Path:
    """Execute 06_mechanism into ``out_dir/06_mechanism.ipynb`` with ``params`` overriding its
    parameters (e.g. ``results_dir``), in ``out_dir`` (it writes mechanism.csv and
    fig_mechanism.png/.pdf there), and render the HTML beside it. Returns the executed
    notebook's path. A relative ``results_dir`` is taken relative to the current folder."""
    out_dir = Path(out_dir)
    if params.get("results_dir") is not None:
        params["results_dir"] = str(Path(params["results_dir"]).resolve())
    out = execute_notebook(MECHANISM_NOTEBOOK, out_dir / MECHANISM_NOTEBOOK, params,
                           cwd=out_dir)
    render_html(out)
    return out
