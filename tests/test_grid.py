"""The smoke grid end to end through papermill, then aggregation, resumability, a broken run.

Slow by nature (each run starts two Jupyter kernels); one module-scoped grid is shared.
"""

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps

from rkdo_core.cli import main
from rkdo_core.config import load_params
from rkdo_core.layout import (
    ENVIRONMENT,
    GRID_RECORD,
    RUN_COMPLETE,
    RUN_FAILED,
    expected_files,
    is_complete,
    run_dir_for,
    step_accounting,
)
from rkdo_core.runs.grid import run_grid

PARAMS = Path(__file__).resolve().parent.parent / "params"
SMOKE = load_params(PARAMS / "smoke.yaml")

pytestmark = pytest.mark.slow


def _mtimes(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and "/seed_" in str(p)}


@pytest.fixture(scope="module")
def smoke(smoke_aggregated, tmp_path_factory):
    """A private copy of the session's smoke grid (tests/conftest.py): these tests run
    grids on it (rewriting its grid record, redoing a run's evaluation) while other test
    files, in other xdist workers, read the shared one. Checkpoints are hard links (only
    read here; the suite replaces files by rename, never rewrites them in place)."""
    def copy(src, dst):
        if src.endswith(".pt"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    # after the aggregation (which renders each run's notebooks into its folder): nothing
    # writes to the shared grid while it is copied; the grid's own files only
    out = tmp_path_factory.mktemp("smoke-copy")
    for name in (GRID_RECORD, ENVIRONMENT):
        shutil.copy2(smoke_aggregated / name, out / name)
    for dataset in {cfg.dataset for cfg in SMOKE.configs()}:
        shutil.copytree(smoke_aggregated / dataset, out / dataset, copy_function=copy)
    return out


@pytest.fixture(scope="module")
def aggregated(smoke_aggregated):
    """`rkdo aggregate` of the smoke grid (tests/conftest.py, once per session)."""
    return smoke_aggregated


def test_every_run_complete_with_its_files(smoke):
    configs = SMOKE.configs()
    for cfg in configs:
        run = run_dir_for(smoke, cfg)
        assert is_complete(run), run
        for f in expected_files(cfg.epochs):
            assert (run / f).is_file(), f
        done = json.loads((run / RUN_COMPLETE).read_text())
        assert done["config"]["seed"] == cfg.seed and done["config"]["method"] == cfg.method
        # the grid ran 2 workers on this machine's cores: one thread each (or more cores/2)
        assert json.loads((run / "config.json").read_text())["config"]["threads"] >= 1
    assert not list(smoke.rglob(".partial-*"))
    # concurrent kernels over IPC sockets once collided in the run folders
    assert not list(smoke.rglob("kernel-ipc*"))
    assert not list(smoke.rglob(RUN_FAILED))


def test_executed_notebooks_are_the_record(smoke):
    cfg = SMOKE.configs()[0]
    run = run_dir_for(smoke, cfg)
    nb = nbformat.read(run / "01_train.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert f"seed = {cfg.seed}" in injected[0].source
    assert "steps_per_epoch" in injected[0].source  # overrides shown in the record
    for name in ("01_train.ipynb", "02_evaluate.ipynb"):
        nb = nbformat.read(run / name, as_version=4)
        assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
        streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                          for o in c.get("outputs", []) if o.get("output_type") == "stream")
        assert "\r" not in streams and "it/s" not in streams  # no progress bars in kernels


def test_budgets_are_checkpoints_of_one_training(smoke):
    cfg = SMOKE.configs()[0]
    run = run_dir_for(smoke, cfg)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    # one training to the largest budget: steps_per_epoch * max budget optimizer steps
    assert len(log) == cfg.steps_per_epoch * cfg.max_epochs
    steps = {json.loads((run / f"metrics/epoch_{e:03d}.json").read_text())["steps"]
             for e in (0, *cfg.epochs)}
    assert steps == {0, *(e * cfg.steps_per_epoch for e in cfg.epochs)}


def test_second_invocation_trains_nothing(smoke, capsys):
    before = _mtimes(smoke)
    report = run_grid(SMOKE, smoke, workers=2, progress=False)
    assert report.count("skipped") == len(SMOKE.configs())
    assert report.count("complete") == report.count("failed") == 0
    assert _mtimes(smoke) == before


def test_dry_run_lists_states_and_starts_nothing(smoke, tmp_path, capsys):
    before = _mtimes(smoke)
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--out", str(smoke), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("  complete ") == 6 and "6 runs: 6 complete;" in out
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--out", str(smoke), "--dry-run",
                 "--set", "alpha=0.3"]) == 0
    out = capsys.readouterr().out
    assert "6 runs: 6 other config;" in out  # the config record differs for I-Con too
    assert "alpha 0.5 -> 0.3" in out
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--out", str(tmp_path / "new"),
                 "--dry-run"]) == 0
    assert "6 runs: 6 pending;" in capsys.readouterr().out
    assert not (tmp_path / "new").exists() and _mtimes(smoke) == before


def test_complete_runs_with_another_config_are_neither_reused_nor_touched(smoke, capsys):
    before = _mtimes(smoke)
    report = run_grid(SMOKE, smoke, workers=2, progress=False, override={"lr": 0.002})
    assert report.count("failed") == len(SMOKE.configs())
    assert all("lr 0.001 -> 0.002" in o.error for o in report.failed)
    assert _mtimes(smoke) == before and not list(smoke.rglob(RUN_FAILED))
    # threads and data_root are not part of what a run *is*: a resumed grid with other
    # --workers or another mount point of the data still finds its runs
    report = run_grid(SMOKE, smoke, workers=1, progress=False,
                      override={"threads": 2, "data_root": str(smoke)})
    assert report.count("skipped") == len(SMOKE.configs())


def test_a_run_missing_a_file_is_redone_without_retraining(smoke):
    cfg = SMOKE.configs()[1]
    run = run_dir_for(smoke, cfg)
    log_before = (run / "train_log.jsonl").stat().st_mtime_ns
    (run / "metrics" / "epoch_002.json").unlink()
    assert not is_complete(run)
    # one thread, as the grid ran it: the redone metrics equal the ones other tests read
    report = run_grid(SMOKE, smoke, workers=1, progress=False, override={"threads": 1})
    assert report.count("complete") == 1 and report.count("skipped") == len(SMOKE.configs()) - 1
    assert is_complete(run) and (run / "metrics" / "epoch_002.json").exists()
    assert (run / "train_log.jsonl").stat().st_mtime_ns == log_before  # not retrained


def _recompute(results: Path) -> pd.DataFrame:
    rows = [json.loads(p.read_text()) for p in results.rglob("metrics/epoch_*.json")]
    return pd.DataFrame(rows)


def _find_col(df: pd.DataFrame, *words) -> str:
    for c in df.columns:
        if all(w in c.lower() for w in words):
            return c
    raise AssertionError(f"no column with {words} in {list(df.columns)}")


def test_aggregate_tables_match_a_recomputation(aggregated):
    df = _recompute(aggregated)
    tables = aggregated / "tables"
    checked = 0
    for csv, metric in ((next(tables.glob("table1*.csv")), "train_loss"),
                        (next(tables.glob("table2*.csv")), "linear_eval")):
        t = pd.read_csv(csv)
        t = t[t["dataset"] == "digits"]
        for epoch in (0, 1, 2):
            row = t[t["epochs"] == epoch]
            assert len(row) == 1, (csv.name, epoch)
            row = row.iloc[0]
            wide = df[df.epoch == epoch].pivot(index="seed", columns="method", values=metric)
            r, i = wide["rkdo"].to_numpy(), wide["icon"].to_numpy()
            assert row[_find_col(t, "rkdo", "mean")] == pytest.approx(r.mean(), rel=1e-9)
            assert row[_find_col(t, "icon", "mean")] == pytest.approx(i.mean(), rel=1e-9)
            assert row[_find_col(t, "rkdo", "std")] == pytest.approx(r.std(ddof=1), rel=1e-9)
            pcol = next(c for c in t.columns if c.lower() in ("p", "p_value"))
            if epoch == 0:  # the same untrained encoder: a difference, never a test
                assert pd.isna(row[pcol])
            elif np.ptp(r - i) > 0:
                assert row[pcol] == pytest.approx(sps.ttest_rel(r, i).pvalue, rel=1e-9)
            else:
                assert pd.isna(row[pcol])
            checked += 1
    assert checked == 6


def test_aggregate_writes_every_artifact_and_index_links_resolve(aggregated):
    manifest = json.loads((aggregated / "aggregate.json").read_text())
    assert len(manifest["figures"]) == 7 and len(manifest["tables"]) >= 4
    for entry in manifest["figures"] + manifest["tables"]:
        for f in entry["files"]:
            assert (aggregated / f).stat().st_size > 0, f
    exts = {Path(f).suffix for e in manifest["tables"] for f in e["files"]}
    assert {".csv", ".md", ".tex"} <= exts
    exts = {Path(f).suffix for e in manifest["figures"] for f in e["files"]}
    assert {".png", ".pdf"} <= exts
    for cfg in SMOKE.configs():  # every executed notebook rendered
        for name in ("01_train.html", "02_evaluate.html"):
            assert (run_dir_for(aggregated, cfg) / name).exists()
    assert (aggregated / "05_aggregate.html").exists()
    assert len(list((aggregated / "diagnostics").glob("*.html"))) == 2  # rkdo and icon

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.targets = []

        def handle_starttag(self, tag, attrs):
            self.targets += [v for k, v in attrs if k in ("href", "src")]

    parser = Links()
    parser.feed((aggregated / "index.html").read_text())
    assert len(parser.targets) > 20
    text = (aggregated / "index.html").read_text()
    for target in parser.targets:
        if target.startswith("#"):  # the table of contents: an anchor of the page
            assert f"id='{target[1:]}'" in text, target
        else:
            assert (aggregated / target).exists(), target
    assert "6 runs: 6 complete" in text
    # 6 runs × 2 steps × 2 epochs, against 6 × (2 + 4) for one model per budget
    assert step_accounting(aggregated) == {"runs": 6, "steps_run": 24,
                                           "steps_separate_runs": 36}
    assert "ran 24 optimizer steps" in text and "needed 36" in text


def test_captions_state_what_was_run(aggregated):
    manifest = json.loads((aggregated / "aggregate.json").read_text())
    for fig in manifest["figures"]:
        cap = fig["caption"]
        assert "3 seeds" in cap or "42, 123, 456" in cap, cap
        assert "paper" in cap and "cpu" in cap.lower(), cap
        assert re.search(r"\bsteps?\b", cap), cap


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """digits (fine) and cifar10 with an empty data root (fails inside its notebook)."""
    out = tmp_path_factory.mktemp("broken")
    empty = tmp_path_factory.mktemp("no_data")
    grid = {"datasets": ["digits", "cifar10"], "methods": ["rkdo"], "seeds": [42],
            "epochs": [1], "config": {"steps_per_epoch": 1, "batch_size": 16,
                                      "eval_images": 32, "data_root": str(empty)}}
    path = out / "broken.yaml"
    path.write_text(yaml.safe_dump(grid))
    return out, path, load_params(path)


def test_one_broken_run_does_not_stop_the_others(broken, capsys):
    out, path, spec = broken
    # --no-data-check: the grid would refuse the missing dataset before any run starts
    # (tests/test_hostile.py); here the run itself meets it, as on a worker without the data
    rc = main(["grid", str(path), "--out", str(out / "r"), "--workers", "2", "--no-progress",
               "--no-data-check"])
    assert rc == 1
    err = capsys.readouterr().err
    good, bad = (run_dir_for(out / "r", c) for c in spec.configs())
    assert is_complete(good)
    assert not is_complete(bad) and not (bad / RUN_COMPLETE).exists()
    assert "cifar10/paper/rkdo/seed_42" in err and str(bad / "01_train.ipynb") in err
    assert "DatasetUnavailableError" in err
    failed = json.loads((bad / RUN_FAILED).read_text())
    assert failed["notebook"] == str(bad / "01_train.ipynb")
    nb = nbformat.read(bad / "01_train.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors and errors[0]["ename"] == "DatasetUnavailableError"
    assert "cifar-10-batches-py" in errors[0]["evalue"]  # names the missing folder/files
