"""01_train -> 02_evaluate -> 04_figures executed through papermill on one smoke run."""

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from rkdo_core.runs.notebooks import NOTEBOOK_DIR, execute_notebook, notebook_parameters

RUN_NOTEBOOKS = ("01_train.ipynb", "02_evaluate.ipynb", "04_figures.ipynb")
# the parameter names of the shared contract, in the order of the parameters cells
CONTRACT = {
    "01_train.ipynb": ["run_dir", "preset", "dataset", "method", "seed", "epochs", "overrides"],
    "02_evaluate.ipynb": ["run_dir", "force", "embedding_epoch"],
    "04_figures.ipynb": ["run_dir", "epoch", "n_images", "view_seed"],
}
SMOKE = {"steps_per_epoch": 2, "batch_size": 16, "eval_images": 64, "threads": 1,
         "device": "cpu"}


def _streams(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


def _errors(nb) -> list:
    return [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


def _tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The three notebooks as a user opening them in JupyterLab runs them: kernel working
    folder notebooks/, ``run_dir`` left at its default (None), so 01 trains into the
    scratch folder ($RKDO_SCRATCH stands in for <repository>/scratch) and 02/04 find it."""
    root = tmp_path_factory.mktemp("nbrun")
    scratch = root / "scratch"
    run = scratch / "digits" / "paper" / "rkdo" / "seed_42"
    params = {
        "01_train.ipynb": dict(epochs=[1], overrides=SMOKE),
        "02_evaluate.ipynb": {},
        "04_figures.ipynb": dict(n_images=8, view_seed=1),
    }
    before = _tree(NOTEBOOK_DIR)
    old = os.environ.get("RKDO_SCRATCH")
    os.environ["RKDO_SCRATCH"] = str(scratch)
    try:
        out = {}
        for name in RUN_NOTEBOOKS:
            path = execute_notebook(name, root / "executed" / name, params[name],
                                    cwd=NOTEBOOK_DIR)
            out[name] = nbformat.read(path, as_version=4)
    finally:
        if old is None:
            del os.environ["RKDO_SCRATCH"]
        else:
            os.environ["RKDO_SCRATCH"] = old
    assert _tree(NOTEBOOK_DIR) == before, "an interactive run wrote into notebooks/"
    return run, out


def test_run_files_exist(executed):
    run, _ = executed
    for rel in ("config.json", "train_log.jsonl", "train_complete.json",
                "checkpoints/epoch_000.pt", "checkpoints/epoch_001.pt",
                "metrics/epoch_000.json", "metrics/epoch_001.json"):
        assert (run / rel).is_file(), rel
    done = json.loads((run / "train_complete.json").read_text())
    assert [(b["epoch"], b["steps"]) for b in done["budgets"]] == [(0, 0), (1, 2)]
    assert done["config"]["method"] == "rkdo" and done["config"]["threads"] == 1
    m = json.loads((run / "metrics/epoch_001.json").read_text())
    assert m["eval_images"] == 64 and m["steps"] == 2 and 0 <= m["linear_eval"] <= 1


def test_figures_are_written(executed):
    run, _ = executed
    for name in ("loss_curve", "embedding", "fields_rkdo_epoch_001", "fields_icon_epoch_001"):
        png = run / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
        assert png.read_bytes()[:4] == b"\x89PNG"


def test_executed_without_errors_and_with_the_injected_parameters(executed):
    run, nbs = executed
    for name, nb in nbs.items():
        assert not _errors(nb), f"{name}: {_errors(nb)[0]['evalue']}"
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) <= 1 and "run_dir" not in "".join(c.source for c in injected)
        # figures are shown inline, not only saved
        assert "image/png" in nbformat.writes(nb), name


def test_no_progress_bar_flood(executed):
    for name, nb in executed[1].items():
        text = _streams(nb)
        assert "\r" not in text, f"{name}: carriage-return progress lines"
        assert not re.search(r"\d+(\.\d+)?\s*it/s|s/it\b", text), f"{name}: progress bar"
        assert len(text) < 20_000, f"{name}: {len(text)} characters of stream output"


def test_printed_values(executed):
    _, nbs = executed
    train_out = _streams(nbs["01_train.ipynb"])
    run = executed[0]
    assert f"run folder: {run}\n" in train_out  # the default run_dir, resolved to scratch/
    assert "already trained" not in train_out
    assert '"steps_per_epoch": 2' in train_out and "2 optimizer steps per epoch" in train_out
    eval_out = _streams(nbs["02_evaluate.ipynb"])
    assert "paper protocol: 64 test images, projection features" in eval_out
    fig_out = _streams(nbs["04_figures.ipynb"])
    assert "checkpoint epoch 1 (2 optimizer steps)" in fig_out
    assert "labels [" in fig_out and "shape (8, 64)" in fig_out
    # the summed per-step KLs equal each loss function on the batch
    assert re.search(r"rkdo: per-step KL.*= (\S+, ){2}\S+; sum = .*-> equal", fig_out)
    assert re.search(r"icon: per-step KL.*-> equal", fig_out) and "MISMATCH" not in fig_out


@pytest.mark.parametrize("name", RUN_NOTEBOOKS)
def test_source_notebook_is_thin_and_clean(name):
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    assert list(notebook_parameters(name)) == CONTRACT[name]
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert not re.search(r"^\s*class\s+\w", code, re.M)
    assert not re.search(r"^\s*(async\s+)?def\s+\w", code, re.M)
    assert "rkdo_core" in code and "progress=True" not in code
    for c in nb.cells:
        if c.cell_type == "code":
            assert c.outputs == [] and c.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "rkdo"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


def test_bad_parameter_fails_with_the_config_error(tmp_path):
    out = tmp_path / "01_train.ipynb"
    with pytest.raises(PapermillExecutionError, match="ConfigError"):
        execute_notebook("01_train", out, dict(run_dir=str(tmp_path / "run"), method="nope"),
                         cwd=tmp_path)
    (err,) = _errors(nbformat.read(out, as_version=4))
    assert err["ename"] == "ConfigError"
    assert "invalid config value method='nope': allowed methods are ['icon', 'rkdo']" \
        in err["evalue"]
    assert not (tmp_path / "run").exists()  # nothing was trained
