"""`rkdo aggregate` without notebooks: run discovery, diagnostics choice, index.html, errors."""

import json
from pathlib import Path

from helpers import write_synthetic_results

from rkdo_core.cli import main
from rkdo_core.reporting.aggregate import aggregate as aggregate_tables
from rkdo_core.runs.site import diagnostic_runs, find_runs, write_index


def test_find_runs_status_and_diagnostic_choice(tmp_path):
    write_synthetic_results(tmp_path, datasets=("digits",), seeds=(42, 101, 123))
    failed = tmp_path / "digits" / "paper" / "icon" / "seed_7"
    failed.mkdir(parents=True)
    (failed / "run_failed.json").write_text(json.dumps({"error": "Boom: it broke"}))
    runs = {(r["method"], r["seed"]): r for r in find_runs(tmp_path)}
    assert runs[("icon", 7)]["status"] == "failed"
    assert runs[("icon", 7)]["error"] == "Boom: it broke"
    assert runs[("rkdo", 999)]["status"] == "incomplete"  # the unfinished synthetic run
    assert runs[("rkdo", 42)]["status"] == "complete"
    chosen = {(r["method"], r["seed"]) for r in diagnostic_runs(list(runs.values()))}
    # numerically first complete seed (42 before 101; the failed seed 7 is not eligible)
    assert chosen == {("rkdo", 42), ("icon", 42)}


def test_index_links_tables_figures_runs(tmp_path):
    write_synthetic_results(tmp_path, datasets=("digits",), seeds=(42, 101, 123))
    aggregate_tables(tmp_path, tmp_path)
    index = write_index(tmp_path)
    text = index.read_text()
    for entry in json.loads((tmp_path / "aggregate.json").read_text())["figures"]:
        png = next(f for f in entry["files"] if f.endswith(".png"))
        assert f"src='{png}'" in text
    assert "<table>" in text and "Table 1" in text  # tables rendered, not only linked
    assert "7 runs: 6 complete, 0 failed, 1 incomplete" in text
    # the audit in brief: sentences and every claim's verdict, from the manifest
    manifest = json.loads((tmp_path / "aggregate.json").read_text())
    assert "The audit in brief" in text and manifest["claims"]
    assert text.count("<td><b>") == len(manifest["claims"])
    assert "already shows a training-loss gap" in text
    # the positive control comes first in the audit summary
    assert "Positive control: does training help here?" in text
    assert text.index("positive control") < text.index("already shows a training-loss gap")


def test_aggregate_cli_errors(tmp_path, capsys):
    assert main(["aggregate", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    run = empty / "digits" / "paper" / "rkdo" / "seed_1"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert main(["aggregate", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no complete run" in err and "1 incomplete" in err
    assert not (empty / "index.html").exists()
    assert not Path(empty / "05_aggregate.ipynb").exists()
