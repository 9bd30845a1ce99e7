"""The aggregation trusts only intact files (issue 17, item 3): each run the grid recorded
as complete is checked against the checksums its run_complete.json records (the code of
`rkdo verify`); a run with an altered, missing or half-written file is left out with one
line naming the file, or included and marked on request.

One results folder carries four kinds of damage at once, so two aggregations (the default
and ``include_altered``) cover them all; the cheap readers are tested directly."""

import json
import shutil
from pathlib import Path

import pytest
from helpers import write_synthetic_results

from rkdo_core.reporting.aggregate import aggregate, integrity_problems
from rkdo_core.reporting.results import load_metrics

SEEDS = (1, 2, 3, 4, 5, 6)
IN_PLACE = "digits/paper/rkdo/seed_1"  # one digit of a metrics file changed, same size
GARBLED = "digits/paper/icon/seed_2"  # a metrics file truncated into invalid JSON
MISSING = "digits/paper/rkdo/seed_3"  # a listed metrics file deleted
LEFTOVER = "digits/paper/icon/seed_4"  # a *.tmp of an interrupted atomic write
SUM = "(sha256 differs from the recorded one)"


def _alter_in_place(path: Path) -> None:
    text = path.read_text()
    i = next(i for i, ch in enumerate(text) if ch in "123456789" and i > text.index("linear"))
    path.write_text(text[:i] + ("2" if text[i] != "2" else "3") + text[i + 1:])
    assert len(path.read_text()) == len(text)


def _damage(root: Path) -> None:
    _alter_in_place(root / IN_PLACE / "metrics" / "epoch_002.json")
    garbled = root / GARBLED / "metrics" / "epoch_002.json"
    garbled.write_text(garbled.read_text()[:40] + "{,")
    (root / MISSING / "metrics" / "epoch_005.json").unlink()
    (root / LEFTOVER / "metrics" / ".epoch_001.json.abc.tmp").write_text("{")


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("intact")
    write_synthetic_results(root, datasets=("digits",), seeds=SEEDS, with_incomplete=False)
    return root


@pytest.fixture(scope="module")
def damaged(intact, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("damaged") / "results"
    shutil.copytree(intact, root)
    _damage(root)
    return root


def test_an_intact_folder_has_no_integrity_problem(intact):
    assert integrity_problems(intact) == []


def test_each_damage_is_found_and_named(damaged):
    found = {c.run: c.problems for c in integrity_problems(damaged)}
    assert found == {
        IN_PLACE: [f"altered: metrics/epoch_002.json {SUM}"],
        GARBLED: [found[GARBLED][0]],
        MISSING: ["missing: metrics/epoch_005.json"],
        LEFTOVER: ["partial: leftover temporary file metrics/.epoch_001.json.abc.tmp "
                   "(an interrupted write)"]}
    assert found[GARBLED][0].startswith("altered: metrics/epoch_002.json has ")


def test_the_aggregation_leaves_damaged_runs_out_one_line_each(damaged, tmp_path):
    whole = load_metrics(damaged, exclude=[GARBLED])  # the raw reader takes them ...
    assert {IN_PLACE, LEFTOVER} <= set(whole.run_dir)
    agg = aggregate(damaged, out_dir=tmp_path)  # ... the aggregation uses none
    assert {IN_PLACE, GARBLED, MISSING, LEFTOVER}.isdisjoint(set(agg.df.run_dir))
    assert len(set(agg.df.run_dir)) == 2 * len(SEEDS) - 4
    lines = [ln for ln in agg.describe().splitlines() if "altered files" in ln]
    assert len(lines) == 4 and all(ln.startswith("left out for altered files: ") for ln in lines)
    assert f"{IN_PLACE} — altered: metrics/epoch_002.json {SUM}" in agg.describe()
    assert "skipped 0 incomplete run(s)" in agg.describe()  # each run is listed once
    saved = json.loads((tmp_path / "aggregate.json").read_text())
    assert {e["run"]: e["state"] for e in saved["excluded_runs"]} == {
        IN_PLACE: "altered", GARBLED: "altered", MISSING: "missing", LEFTOVER: "partial"}


def test_include_altered_uses_the_readable_runs_and_marks_their_rows(intact, damaged,
                                                                     tmp_path):
    root = tmp_path / "results"
    shutil.copytree(damaged, root)
    # an unreadable file cannot be used even on request: put the garbled one back whole
    shutil.copy(intact / GARBLED / "metrics" / "epoch_002.json",
                root / GARBLED / "metrics" / "epoch_002.json")
    agg = aggregate(root, out_dir=tmp_path / "agg", include_altered=True)
    rows = agg.df[agg.df.run_dir == IN_PLACE]
    assert len(rows) > 0 and rows.integrity.str.contains("epoch_002.json").all()
    assert GARBLED in set(agg.df.run_dir)  # whole again
    assert (agg.df[~agg.df.run_dir.isin([IN_PLACE, LEFTOVER])].integrity == "").all()
    assert MISSING not in set(agg.df.run_dir)  # incomplete: a listed file is gone
    assert f"INCLUDED despite altered files: {IN_PLACE}" in agg.describe()
    assert IN_PLACE in {e["run"] for e in agg.manifest["included_altered_runs"]}


def test_a_garbled_file_of_an_unchecked_run_is_named(intact, tmp_path):
    """Runs recorded before checksums existed cannot be checked; a garbled file there must
    fail with the file's path, not 'JSONDecodeError: Expecting property name'."""
    root = tmp_path / "results"
    shutil.copytree(intact, root)
    run = root / IN_PLACE
    record = json.loads((run / "run_complete.json").read_text())
    (run / "run_complete.json").write_text(json.dumps({"files": record["files"]}))
    (run / "metrics" / "epoch_002.json").write_text("{'linear_eval': 0.5")
    with pytest.raises(ValueError, match=r"epoch_002\.json: not a readable metrics file"):
        load_metrics(root)


def test_when_every_run_is_altered_the_error_says_so(intact, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(intact, root)
    for f in root.rglob("metrics/epoch_000.json"):
        _alter_in_place(f)
    with pytest.raises(FileNotFoundError, match="left out because their files differ"):
        aggregate(root, out_dir=tmp_path / "agg")


@pytest.mark.slow
def test_rkdo_aggregate_names_the_left_out_runs_in_index_html(damaged, tmp_path, capsys):
    """End to end: `rkdo aggregate` (05_aggregate through papermill, then index.html)."""
    from rkdo_core.cli import main

    root = tmp_path / "results"
    shutil.copytree(damaged, root)
    assert main(["aggregate", str(root), "--no-diagnostics", "--no-progress"]) == 0
    page = (root / "index.html").read_text(encoding="utf-8")
    assert "4 run(s) left out of every table and figure" in page
    for run in (IN_PLACE, GARBLED, MISSING, LEFTOVER):
        assert f"<code>{run}</code>" in page
    assert "metrics/epoch_002.json (sha256 differs from the recorded one)" in page
    executed = (root / "05_aggregate.ipynb").read_text(encoding="utf-8")
    assert f"left out for altered files: {IN_PLACE}" in executed


def test_include_altered_reaches_the_notebook(tmp_path):
    from rkdo_core.cli import build_parser
    from rkdo_core.runs.site import aggregate_params

    assert aggregate_params(tmp_path)["include_altered"] is False
    assert aggregate_params(tmp_path, include_altered=True)["include_altered"] is True
    args = build_parser().parse_args(["aggregate", str(tmp_path), "--include-altered"])
    assert args.include_altered is True
