"""05_aggregate.ipynb executes through papermill on synthetic results and writes the
manifest; it stays thin."""

import hashlib
import json
import os
import re
import shutil

import nbformat
import pandas as pd
import papermill
import pytest
from helpers import outputs_text, write_synthetic_results

from rkdo_core.reporting.claims import VERDICTS
from rkdo_core.reporting.tables import TABLE_NAMES
from rkdo_core.runs.notebooks import NOTEBOOK_DIR, execute_notebook, notebook_parameters

NOTEBOOK = NOTEBOOK_DIR / "05_aggregate.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    results = root / "results"
    rows = write_synthetic_results(results, datasets=("cifar10", "digits"), seeds=(1, 2, 3),
                                   epochs=(0, 1, 2), yardstick=True)
    out_dir = results / "aggregate"
    path = execute_notebook(NOTEBOOK, root / "05_aggregate.ipynb",
                            {"results_dir": str(results), "out_dir": str(out_dir),
                             "table3_pairs": [[1, 2], [1, 5]]}, cwd=root)
    return nbformat.read(path, as_version=4), out_dir, rows


_text = outputs_text


def test_notebook_runs_without_errors(executed):
    nb = executed[0]
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["ename"] + ": " + errors[0]["evalue"]


def test_manifest_lists_existing_files(executed):
    _, out_dir, rows = executed
    m = json.loads((out_dir / "aggregate.json").read_text())
    assert m["n_runs"] == 2 * 2 * 3 and m["seeds"] == [1, 2, 3]
    assert m["datasets"] == ["cifar10", "digits"] and m["epochs"] == [0, 1, 2]
    assert m["skipped_incomplete"] == 1 and m["skipped_runs"] == ["cifar10/paper/rkdo/seed_999"]
    assert [t["name"] for t in m["tables"]] == list(TABLE_NAMES.values())
    assert [f["name"] for f in m["figures"]] == [
        "fig1_loss_improvement_by_dataset", "fig2_loss_improvement_by_budget",
        "fig3_rkdo1_vs_icon2", "fig3_rkdo1_vs_icon5", "fig4_early_learning",
        "fig5_loss_vs_training_length", "fig6_common_yardstick", "fig7_compute_matched"]
    for entry in m["tables"]:
        assert entry["title"] and [f.rsplit(".", 1)[1] for f in entry["files"]] == [
            "csv", "md", "tex"]
    for entry in m["figures"]:
        assert "seeds (1, 2, 3)" in entry["caption"] and "device: cpu" in entry["caption"]
        assert [f.rsplit(".", 1)[1] for f in entry["files"]] == ["png", "pdf"]
    for entry in m["tables"] + m["figures"]:
        for f in entry["files"]:
            assert not f.startswith("/") and (out_dir / f).stat().st_size > 0, f
    # Values come from the files: Table 1's CIFAR-10 epoch-2 RKDO mean, complete runs only.
    t1 = pd.read_csv(out_dir / "tables" / f"{TABLE_NAMES['table1']}.csv")
    expected = rows[(rows.dataset == "cifar10") & (rows.method == "rkdo")
                    & (rows.epoch == 2)].train_loss.mean()
    assert t1[(t1.dataset == "cifar10") & (t1.epochs == 2)].rkdo_mean.iloc[0] == pytest.approx(
        expected)
    # The (1, 5) pair and its baseline (0, 5) have no I-Con at 5 epochs: omitted with the
    # reason; (1, 2) and its untrained baseline (0, 2) kept, per dataset.
    t3 = next(t for t in m["tables"] if t["name"] == TABLE_NAMES["table3"])
    assert len(t3["omitted"]) == 4 and "I-Con at 5 epochs not in the results" in t3["note"]
    assert len(pd.read_csv(out_dir / "tables" / f"{TABLE_NAMES['table3']}.csv")) == 4
    # The audit: the yardstick (RKDO-trained worse on both objectives in these rows) and
    # the claims, verdicts computed.
    assert all("does not survive the common yardstick" in s
               for s in m["yardstick_sentences"]) and len(m["yardstick_sentences"]) == 2
    y = pd.read_csv(out_dir / "tables" / f"{TABLE_NAMES['yardstick']}.csv")
    assert len(y) == 2 * 3 and (y[y.epochs > 0].icon_obj_diff_mean > 0).all()
    assert {c["verdict"] for c in m["claims"]} <= set(VERDICTS)
    assert m["positive_control_sentences"] and m["claims"][0]["source"] == "docs/method.md §6.5"


def test_notebook_prints_counts_sentences_and_captions(executed):
    nb, _, _ = executed
    text = _text(nb)
    assert "12 complete runs below" in text
    assert "skipped 1 incomplete run(s) (no run_complete.json)" in text
    assert text.count("already shows a training-loss gap") == 2
    # the positive control is shown first, before the paired comparison
    assert "positive control" in text and "Table 0. Positive control" in text
    assert text.index("Table 0. Positive control") < text.index("training loss  (mean")
    assert "Table 1. Final training loss" in text and "Figure 5." in text
    assert "Table 5. Common yardstick" in text and "Figure 6 (not in the paper)" in text
    assert "trained with RKDO" in text and "Claims checklist" in text
    assert "flops.json (absent: its claims are 'not testable')" in text
    assert sum("image/png" in o.get("data", {}) for c in nb.cells
               for o in c.get("outputs", [])) == 8  # Figure 3 once per Table 3 pair


def test_notebook_is_thin_and_committed_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    # the parameters as papermill sees them (names and defaults), not the cell's characters
    params = papermill.inspect_notebook(str(NOTEBOOK))
    assert {k: v["default"] for k, v in params.items()} == {
        "results_dir": "None", "out_dir": "None",
        "reported_path": "None", "table4_epoch": "None", "table3_pairs": "None",
        "flops_path": "None", "theory_checks_path": "None", "min_important_difference": "None",
        "include_altered": "False"}
    assert set(notebook_parameters(NOTEBOOK)) == {
        "results_dir", "out_dir", "reported_path", "table4_epoch", "table3_pairs",
        "flops_path", "theory_checks_path", "min_important_difference", "include_altered"}
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "class " not in code and not re.search(r"^\s*def\s", code, re.M)
    assert "from rkdo_core." in code
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code")


def _copy_results(src, dst):
    """A results folder to change freely: every file copied, the checkpoints (never read by
    the aggregation, ~46 MB each) linked."""
    def copy(s, d):
        if s.endswith(".pt"):
            os.symlink(s, d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=copy)


def _snapshot(folder) -> dict[str, str]:
    """Every path below ``folder`` with the sha256 of its bytes (a link: its target)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        out[rel] = (f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir()
                    else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def test_opened_by_hand_it_writes_to_scratch_with_the_grids_settings(
        smoke_aggregated, tmp_path, monkeypatch):
    """05 run as from JupyterLab (no out_dir, no aggregate settings; kernel in notebooks/)
    over an aggregated smoke grid: the results folder stays byte for byte as `rkdo
    aggregate` left it, and the scratch aggregation tests the grid's own Table 3 pairs
    (params/smoke.yaml: [[1, 2]]), not the notebook's former default [[1, 5], [2, 5]]."""
    results = tmp_path / "smoke"
    _copy_results(smoke_aggregated, results)
    grid = json.loads((results / "grid.json").read_text())
    assert grid["aggregate"]["table3_pairs"] == [[1, 2]]
    before = _snapshot(results)
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("RKDO_SCRATCH", str(scratch))
    path = execute_notebook(NOTEBOOK, tmp_path / "by_hand.ipynb",
                            {"results_dir": str(results)}, cwd=NOTEBOOK_DIR)
    assert _snapshot(results) == before, "05 opened by hand rewrote the results folder"
    out = scratch / "aggregate" / "smoke"
    m = json.loads((out / "aggregate.json").read_text())
    t3 = pd.read_csv(out / "tables" / f"{TABLE_NAMES['table3']}.csv")
    trained = t3[t3.rkdo_epochs > 0]
    assert not trained.empty
    assert set(zip(trained.rkdo_epochs, trained.icon_epochs)) == {(1, 2)}
    entry = next(t for t in m["tables"] if t["name"] == TABLE_NAMES["table3"])
    assert not entry.get("omitted")
    # the grid's table4_epoch too, and the printout says where it wrote
    text = _text(nbformat.read(path, as_version=4))
    assert f"written to {out}" in text and "'table3_pairs': [[1, 2]]" in text
    assert "'table4_epoch': 2" in text
