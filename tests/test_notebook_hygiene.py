"""Every committed notebook is clean and speaks the contract its callers use: no outputs or
execution counts, exactly one cell tagged ``parameters``, the project's ``rkdo`` kernel,
and parameter names (as papermill reads them) that include everything the suite passes."""

from pathlib import Path

import nbformat
import pytest

from rkdo_core.config import RunConfig
from rkdo_core.layout import (
    AGGREGATE_NOTEBOOK,
    DIAGNOSTICS_NOTEBOOK,
    EVALUATE_NOTEBOOK,
    THEORY_NOTEBOOK,
    TRAIN_NOTEBOOK,
)
from rkdo_core.runs.notebooks import MECHANISM_NOTEBOOK, NOTEBOOK_DIR, notebook_parameters
from rkdo_core.runs.runner import notebook_params
from rkdo_core.runs.site import aggregate_params

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_six_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == sorted(
        [TRAIN_NOTEBOOK, EVALUATE_NOTEBOOK, THEORY_NOTEBOOK, DIAGNOSTICS_NOTEBOOK,
         AGGREGATE_NOTEBOOK, MECHANISM_NOTEBOOK])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} hold outputs or execution counts"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert nb.metadata["kernelspec"]["name"] == "rkdo"
    assert nb.metadata["kernelspec"]["language"] == "python"


def _names(notebook: str) -> set[str]:
    return set(notebook_parameters(notebook))


def test_the_grid_passes_only_names_01_and_02_declare(tmp_path):
    cfg = RunConfig.preset("full", dataset="digits", method="icon", seed=3, epochs=(1, 2),
                           lr=0.01, steps_per_epoch=3)
    passed = notebook_params(cfg, tmp_path)
    assert set(passed) <= _names(TRAIN_NOTEBOOK)
    assert set(passed["overrides"]) == {"lr", "steps_per_epoch"}
    assert {"run_dir"} <= _names(EVALUATE_NOTEBOOK)


def test_the_aggregation_and_diagnostics_pass_only_declared_names(tmp_path):
    from rkdo_core.config import AGGREGATE_KEYS

    assert set(aggregate_params(tmp_path)) <= _names(AGGREGATE_NOTEBOOK)
    assert set(AGGREGATE_KEYS) <= _names(AGGREGATE_NOTEBOOK)  # a grid's aggregate: section
    assert {"run_dir"} <= _names(DIAGNOSTICS_NOTEBOOK)
    assert {"out_dir"} <= _names(THEORY_NOTEBOOK)
    assert {"out_dir", "results_dir"} <= _names(MECHANISM_NOTEBOOK)
