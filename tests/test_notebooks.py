"""The notebooks execute through papermill on the project's kernel, and stay thin."""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import outputs_text

from rkdo_core.layout import THEORY_NOTEBOOK
from rkdo_core.runs.notebooks import (
    NOTEBOOK_DIR,
    default_kernel,
    execute_notebook,
    notebook_parameters,
    notebook_path,
    render_html,
    run_theory,
)

# small enough for CI: a few seconds of compute after the kernel starts
SMALL = dict(n=6, d=1, alpha=0.5, k=3, lr=0.5, lr_overshoot=2.0, steps=6, seed=1, n_draws=40)

# printed check lines the executed notebook must contain (prefixes; values vary)
EXPECTED_LINES = [
    "Lemma 1: holds — worst ratio",
    "Lemma 1 by α:",
    "Lemma 2 [unrestricted]: holds",
    "Theorem 3 [unrestricted]: holds",
    "Theorem 3 [capacity]: holds",
    "Theorem 3 [inexact]: holds",
    "Theorem 3 [frozen]: holds",
    "Eq. 14 [capacity]:",
    "Capacity floor: L* =",
    "Eq. 15 [inexact]:",
    "Frozen: chain against closed form",
    "Alpha trade-off:",
    "I-Con vs RKDO [capacity]:",
    "I-Con vs RKDO [inexact]:",
    "checks hold",
]


@pytest.fixture(scope="module")
def theory_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("theory")
    path = run_theory(out_dir, **SMALL)
    return path, nbformat.read(path, as_version=4)


def test_theory_notebook_executes_without_errors(theory_run):
    path, nb = theory_run
    assert path.name == THEORY_NOTEBOOK and path.is_file()
    errors = [out for cell in nb.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors, errors[0]["ename"] + ": " + errors[0]["evalue"]
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_theory_notebook_prints_every_check(theory_run):
    text = outputs_text(theory_run[1])
    for line in EXPECTED_LINES:
        assert line in text, f"missing printed check {line!r}"
    assert "FAILS" not in text.split("Summary of the checks:")[1].split("checks hold")[0]
    assert "What it means for the paper's loss comparison" in text
    assert len(re.findall(r"image/png", nbformat.writes(theory_run[1]))) >= 6


def test_theory_notebook_writes_checks_json(theory_run):
    # The machine-readable record the claims checklist reads: one entry per check the
    # notebook printed in its summary, same verdicts.
    path, nb = theory_run
    checks = json.loads((path.parent / "checks.json").read_text())
    summary = outputs_text(nb).split("Summary of the checks:")[1].split("checks hold")[0]
    printed = [ln.strip() for ln in summary.splitlines() if ln.startswith("  ")]
    assert len(checks) == len(printed) >= 10
    for entry, line in zip(checks, printed):
        assert set(entry) == {"name", "statement", "holds", "worst", "detail"}
        verdict = "holds" if entry["holds"] else "FAILS"
        assert line == f"{entry['statement']}: {verdict} — {entry['detail']}"
    names = [c["name"] for c in checks]
    assert "Theorem 3 [unrestricted]" in names and "Theorem 3 [frozen]" in names


def test_theory_notebook_records_the_injected_parameters(theory_run):
    nb = theory_run[1]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "n_draws = 40" in injected[0].source
    assert "n = 6, d = 1, α = 0.5, k = 3" in outputs_text(nb)


def test_theory_notebook_is_rendered_to_html(theory_run):
    html = theory_run[0].with_suffix(".html")
    assert html.is_file() and "Lemma 1: holds" in html.read_text(encoding="utf-8")


def test_kernel_runs_this_interpreter_and_imports_rkdo_core(tmp_path):
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, rkdo_core.theory\nprint(sys.prefix)\nprint(rkdo_core.theory.__file__)")])
    src = tmp_path / "probe.ipynb"
    nbformat.write(probe, src)
    out = execute_notebook(src, tmp_path / "probe_out.ipynb", {}, cwd=tmp_path)
    lines = nbformat.read(out, as_version=4).cells[0].outputs[0]["text"].split()
    assert Path(lines[0]).resolve() == Path(sys.prefix).resolve()
    import rkdo_core.theory

    assert Path(lines[1]).resolve() == Path(rkdo_core.theory.__file__).resolve()
    assert default_kernel() in ("rkdo", "python3")


def test_unknown_parameter_is_rejected_before_running(tmp_path):
    with pytest.raises(ValueError, match=r"unknown parameter alhpa=0\.3.*'alpha'"):
        execute_notebook(THEORY_NOTEBOOK, tmp_path / "x.ipynb", {"alhpa": 0.3})
    assert not (tmp_path / "x.ipynb").exists()


def test_notebook_lookup_by_name_and_missing_name():
    assert notebook_path("03_convergence_theory") == NOTEBOOK_DIR / THEORY_NOTEBOOK
    assert set(SMALL) | {"out_dir"} == set(notebook_parameters(THEORY_NOTEBOOK))
    with pytest.raises(FileNotFoundError, match="available"):
        notebook_path("99_missing")


def test_render_html_writes_beside_the_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# hello appendix")])
    src = tmp_path / "a.ipynb"
    nbformat.write(nb, src)
    html = render_html(src)
    assert html == tmp_path / "a.html" and "hello appendix" in html.read_text(encoding="utf-8")


NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_notebook_has_one_parameters_cell_and_no_class(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*class\s+\w", code, re.M), f"{path.name} defines a class"


def test_theory_notebook_defines_no_functions():
    nb = nbformat.read(NOTEBOOK_DIR / THEORY_NOTEBOOK, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(async\s+)?def\s+\w|lambda\b", code, re.M)
    assert "from rkdo_core.theory import" in code
    # committed without outputs: the executed copies are the record
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_mechanism_notebook_defines_no_functions_and_makes_one_call():
    nb = nbformat.read(NOTEBOOK_DIR / "06_mechanism.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*(async\s+)?def\s+\w|lambda\b", code, re.M)
    assert code.count("run_mechanism_analysis(") == 1
    assert "results_dir = None" in code  # synthetic only unless a results folder is given
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_cli_theory_bad_parameters(tmp_path, capsys):
    from rkdo_core.cli import main

    # An unknown name is refused before any kernel starts.
    assert main(["theory", "--out", str(tmp_path), "-p", "alpah", "0.5"]) == 2
    assert "unknown parameter alpah=0.5" in capsys.readouterr().err
    assert not (tmp_path / "03_convergence_theory.ipynb").exists()
    # A value the theory code rejects fails inside the notebook: exit 1, and the message
    # points at the executed notebook, which holds the error.
    assert main(["theory", "--out", str(tmp_path), "-p", "alpha", "1.5", "-p", "n", "6",
                 "-p", "steps", "3", "-p", "n_draws", "10"]) == 1
    err = capsys.readouterr().err
    assert "03_convergence_theory.ipynb failed" in err and "alpha" in err
    executed = json.loads((tmp_path / "03_convergence_theory.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in executed["cells"]
               for o in c.get("outputs", []))


def test_concurrent_notebooks_each_run_in_their_folder_and_leave_the_process_cwd(tmp_path):
    """The local back-end executes runs in threads. papermill's ``cwd`` os.chdir()s the
    whole process, so concurrent executions started kernels in each other's folders and
    left the process in a run folder (relative paths broke after a grid)."""
    import os
    import threading

    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "rkdo", "language": "python", "display_name": "rkdo-suite (.venv)"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(
                    "import os, time\ntime.sleep(0.5)\nopen('where.txt', 'w').write(os.getcwd())")]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, src)
    start = os.getcwd()
    errors = []

    def run(i):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        try:
            execute_notebook(src, folder / "out.ipynb", {"x": i}, cwd=folder)
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and os.getcwd() == start
    for i in range(3):
        assert (tmp_path / f"run{i}" / "where.txt").read_text() == str(
            (tmp_path / f"run{i}").resolve())


def _probe_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {
        "name": "rkdo", "language": "python", "display_name": "rkdo-suite (.venv)"}})
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(nb, path)
    return path


def test_a_shared_kernel_runs_each_notebook_as_a_fresh_one_would(tmp_path):
    """A grid run's two notebooks execute in one kernel (imports once): the second sees
    none of the first's variables, numbers its cells from 1 and runs in the same process."""
    from rkdo_core.runs.notebooks import shared_kernel

    first = _probe_notebook(tmp_path / "first.ipynb",
                            "import os\nsecret = 41 + x\nprint(os.getpid())")
    second = _probe_notebook(tmp_path / "second.ipynb",
                             "import os\nnames = dir()\nprint(sorted(k for k in "
                             "('secret', 'os', 'x') if k in names))\nprint(os.getpid())")
    with shared_kernel(cwd=tmp_path) as k:
        a = execute_notebook(first, tmp_path / "a.ipynb", {"x": 1}, cwd=tmp_path, kernel=k)
        b = execute_notebook(second, tmp_path / "b.ipynb", {"x": 2}, cwd=tmp_path, kernel=k)
        assert k.km.is_alive()
    assert not k.km.is_alive()  # shut down with the block
    with shared_kernel(cwd=tmp_path) as unused:
        pass
    assert unused.km is None  # started only when a notebook asks for it
    nb_a, nb_b = (nbformat.read(p, as_version=4) for p in (a, b))
    pid_a = nb_a.cells[-1].outputs[0]["text"].split()[-1]
    seen, pid_b = nb_b.cells[-1].outputs[0]["text"].strip().splitlines()
    assert seen == "['os', 'x']"  # 'secret' is gone; x is the injected parameter
    assert pid_a == pid_b  # one kernel process
    counts = [c.execution_count for c in nb_b.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))
