"""The package's architecture, enforced: layers import only downwards, no import cycles, no
function-local import of a project module (the usual way to hide a cycle), and the
reporting and verification paths never import torch.

Layers, lowest first (``rkdo_core/__init__.py`` states the same):
core (the top-level modules) → training → runs → reporting → tools → cli.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rkdo_core"
LAYERS = {"core": 0, "training": 1, "runs": 2, "reporting": 3, "tools": 4, "cli": 5}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    if parts[1] == "cli":
        return "cli"
    if parts[1] in LAYERS and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "core"


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported rkdo_core module, line, at module level) for every import in ``path``."""
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    top_level = {id(n) for n in tree.body}
    # an import inside `if TYPE_CHECKING:` or try at top level still counts as top level
    for node in tree.body:
        for sub in ast.walk(node):
            if isinstance(node, (ast.If, ast.Try)):
                top_level.add(id(sub))
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] != "rkdo_core":
                continue
            # keep the longest prefix that is a module of the package
            parts = name.split(".")
            while parts and not _is_module(parts):
                parts.pop()
            if parts and ".".join(parts) != module:
                out.append((".".join(parts), node.lineno, id(node) in top_level))
    return out


def _is_module(parts: list[str]) -> bool:
    p = PACKAGE.parent.joinpath(*parts)
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = {m for m, _, _ in _imports(path)}
    return graph


def test_layers_import_only_downwards():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        for target, line, _ in _imports(path):
            if target == "rkdo_core" or (PACKAGE / target.split(".")[-1]).is_dir() and \
                    target.count(".") == 1:
                continue  # a package's own __init__ (docstring only)
            if LAYERS[_layer(target)] > LAYERS[_layer(me)]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {me} "
                             f"({_layer(me)}) imports {target} ({_layer(target)})")
    assert not wrong, "imports against the layer direction:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_function_local_import_of_a_project_module():
    """A function-local import of one of our own modules is how a cycle gets hidden; one is
    allowed only to defer torch (a ``# deferred`` comment on the line says so), e.g. the
    command line's training commands, so that ``rkdo --help`` starts without it."""
    local = sorted({f"{path.relative_to(PACKAGE.parent)}:{line}: {target}"
                    for path in sorted(PACKAGE.rglob("*.py"))
                    for target, line, top in _imports(path)
                    if not top and "# deferred" not in
                    path.read_text().splitlines()[line - 1]})
    assert not local, "function-local imports of project modules:\n" + "\n".join(local)


def test_the_graph_sees_a_planted_cycle_and_a_wrong_layer(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with a cycle and an upward import."""
    pkg = tmp_path / "rkdo_core"
    (pkg / "reporting").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "reporting" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\nfrom .reporting import c\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n\n\n"
                              "def g():\n    from . import a  # deferred: imports torch\n")
    (pkg / "reporting" / "c.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    with pytest.raises(AssertionError, match="rkdo_core.a -> rkdo_core.b -> rkdo_core.a"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="rkdo_core.a \\(core\\) imports "
                                             "rkdo_core.reporting.c \\(reporting\\)"):
        test_layers_import_only_downwards()
    with pytest.raises(AssertionError, match="b.py:2: rkdo_core.a'\\]$"):
        test_no_function_local_import_of_a_project_module()


def _torch_free(code: str, tmp_path: Path) -> dict:
    script = (f"import sys, json\n{code}\n"
              "print(json.dumps({'torch': 'torch' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_reporting_and_verification_never_import_torch(tmp_path):
    code = ("import rkdo_core.reporting.aggregate, rkdo_core.reporting.theory_figures\n"
            "import rkdo_core.runs.integrity, rkdo_core.runs.site, rkdo_core.layout\n"
            "import rkdo_core.datasets, rkdo_core.config")
    assert _torch_free(code, tmp_path) == {"torch": False}


def test_cli_help_verify_and_aggregate_start_without_torch(tmp_path):
    (tmp_path / "empty").mkdir()
    code = ("from rkdo_core.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"assert main(['verify', {str(tmp_path / 'empty')!r}]) == 2\n"
            f"assert main(['aggregate', {str(tmp_path / 'nothing')!r}]) == 2")
    assert _torch_free(code, tmp_path) == {"torch": False}


def test_training_does_import_torch(tmp_path):
    """The subprocess check can see torch (so the two tests above can fail)."""
    assert _torch_free("import rkdo_core.training.train", tmp_path) == {"torch": True}
