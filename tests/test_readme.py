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
    summarize,
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


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory):
    res = tmp_path_factory.mktemp("readme") / "res"
    write_synthetic_results(res, datasets=("digits",), seeds=(1, 2, 3), epochs=(0, 1, 2))
    aggregate(res, res, table3_pairs=[(1, 2)])
    return res


def test_summary_and_block_carry_the_aggregations_sentences_and_verdicts(aggregated):
    s = summarize(aggregated)
    m = json.loads((aggregated / "aggregate.json").read_text())
    text = render(s)
    assert text.startswith(BEGIN) and text.endswith(END)
    for sentence in (m["positive_control_sentences"] + m["epoch0_sentences"]
                     + m["yardstick_sentences"]):
        assert f"- {sentence}" in text
    for c in m["claims"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {c['claim']} |"))
        assert c["verdict"] in row
    assert (aggregated / "tables" / "table1_training_loss.md").read_text().strip() in text


def test_rkdo_readme_rewrites_only_the_block(aggregated, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{BEGIN}\nold typed numbers 1.23\n{END}\n\nafter\n")
    out = tmp_path / "summary.json"
    assert main(["readme", str(aggregated), "--summary", str(out), "--readme", str(readme)]) == 0
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
