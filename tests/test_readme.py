"""The README's results block is generated (`rkdo readme`) from the committed
figures/summary.json, which `make reproduce` writes from the aggregation: no typed number."""

import json
import shutil
from pathlib import Path

import pytest
from helpers import write_synthetic_results

from rkdo_core.cli import main
from rkdo_core.reporting.aggregate import aggregate
from rkdo_core.reporting.readme import (
    BEGIN,
    END,
    load_summary,
    readme_block,
    render,
    render_results,
    render_timings,
    summarize,
    timings_block,
    update_readme,
)

ROOT = Path(__file__).resolve().parents[1]


def test_readme_block_is_rendered_from_the_committed_summary():
    summary = ROOT / "figures" / "summary.json"
    assert summary.is_file(), "figures/summary.json is missing: run make reproduce"
    block = readme_block((ROOT / "README.md").read_text(encoding="utf-8"))
    assert block == render(load_summary(summary)), (
        "README.md's results block differs from `rkdo readme`'s rendering of "
        "figures/summary.json: regenerate it (rkdo readme results/default), never edit it")


def test_results_md_is_rendered_from_the_committed_summary():
    summary = load_summary(ROOT / "figures" / "summary.json")
    assert (ROOT / "RESULTS.md").read_text(encoding="utf-8") == render_results(summary), (
        "RESULTS.md differs from `rkdo readme`'s rendering of figures/summary.json: "
        "regenerate it (rkdo readme), never edit it")


def test_readme_timing_table_is_rendered_from_the_recorded_measurements():
    timings = ROOT / "figures" / "timings.json"
    block = timings_block((ROOT / "README.md").read_text(encoding="utf-8"))
    recorded = json.loads(timings.read_text()) if timings.is_file() else {"measurements": []}
    assert block == render_timings(recorded), (
        "README.md's timing table differs from figures/timings.json: re-measure with "
        "`rkdo measure` and regenerate it (rkdo readme), never edit it")


def test_render_timings_shows_each_measurement_with_its_cpu():
    text = render_timings({"measurements": [
        {"command": "make test", "seconds": 425.4, "disk_bytes": 6_300_000_000,
         "disk_path": ".venv", "cpu": "AMD EPYC", "cores": 2, "date": "2026-12-02",
         "note": "venv built"}]})
    assert "| `make test` | 7 m 05 s | 6.3 GB (`.venv`) | AMD EPYC, 2 cores, 2026-12-02; " \
           "venv built |" in text


def test_rkdo_measure_records_time_disk_and_cpu(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"x" * 1000)
    out = tmp_path / "timings.json"
    assert main(["measure", "--name", "make nothing", "--disk", str(folder), "--out",
                 str(out), "--", "true"]) == 0
    entry = json.loads(out.read_text())["measurements"][0]
    assert entry["command"] == "make nothing" and entry["disk_bytes"] == 1000
    assert entry["cpu"] and entry["cores"] >= 1 and entry["seconds"] >= 0
    assert main(["measure", "--name", "make fail", "--out", str(out), "--", "false"]) == 1
    assert [m["command"] for m in json.loads(out.read_text())["measurements"]] == [
        "make nothing"]


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory):
    res = tmp_path_factory.mktemp("readme") / "res"
    write_synthetic_results(res, datasets=("digits",), seeds=(1, 2, 3), epochs=(0, 1, 2))
    aggregate(res, res, table3_pairs=[(1, 2)])
    return res


def test_summary_and_block_carry_the_aggregations_sentences_and_verdicts(aggregated):
    s = summarize(aggregated)
    m = json.loads((aggregated / "aggregate.json").read_text())
    block = render(s)
    assert block.startswith(BEGIN) and block.endswith(END)
    text = render_results(s)
    for sentence in m["positive_control_sentences"]:
        assert f"- {sentence}" in block and f"- {sentence}" in text
    for sentence in m["epoch0_sentences"] + m["yardstick_sentences"]:
        assert f"- {sentence}" in text
    for c in m["claims"]:
        for shown in (block, text):
            row = next(line for line in shown.splitlines()
                       if line.startswith(f"| {c['claim']} |"))
            assert c["verdict"] in row
    assert (aggregated / "tables" / "table1_training_loss.md").read_text().strip() in text


def test_rkdo_readme_rewrites_only_the_block(aggregated, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{BEGIN}\nold typed numbers 1.23\n{END}\n\nafter\n")
    out = tmp_path / "summary.json"
    assert main(["readme", str(aggregated), "--summary", str(out), "--readme", str(readme),
                 "--timings", str(tmp_path / "none.json")]) == 0
    assert (tmp_path / "RESULTS.md").read_text() == render_results(load_summary(out))
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "1.23" not in text and readme_block(text) == render(load_summary(out))
    # idempotent
    update_readme(readme, load_summary(out))
    assert readme.read_text() == text


def test_missing_block_or_aggregation_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no generated results block"):
        readme_block("# no block here")
    with pytest.raises(FileNotFoundError, match="rkdo aggregate"):
        summarize(tmp_path)
    shutil.rmtree(tmp_path)
