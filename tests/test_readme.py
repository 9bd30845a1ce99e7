"""The README's results block is generated (`rkdo readme`) from the committed
figures/summary.json, which `make reproduce` writes from the aggregation: no typed number."""

import json
import re
import shutil
from pathlib import Path

import pytest
from helpers import write_synthetic_results

from rkdo_core.cli import main
from rkdo_core.reporting.aggregate import aggregate
from rkdo_core.reporting.claims import (
    CONTROL_FAILS,
    FAILS,
    HOLDS,
    PASSES,
    UNTESTABLE_REGIME,
    UNTESTABLE_SENSITIVITY,
)
from rkdo_core.reporting.readme import (
    BEGIN,
    BOTTOM_LINE_CLAIMS,
    END,
    bottom_line,
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


# ---- the bottom line -------------------------------------------------------------------

#: words of the statistics that must not come before the bottom line
JARGON = ("Holm", "MDE", "80 % power", "intersection", "paired t", "95 % CI", "p = ")


def _first_jargon(text: str) -> int:
    return min((text.index(j) for j in JARGON if j in text), default=len(text))


def test_readme_and_results_md_open_with_the_bottom_line():
    summary = load_summary(ROOT / "figures" / "summary.json")
    line = " ".join(bottom_line(summary))
    for name, text in (("README block", readme_block(
            (ROOT / "README.md").read_text(encoding="utf-8"))),
                       ("RESULTS.md", (ROOT / "RESULTS.md").read_text(encoding="utf-8"))):
        assert f"**Bottom line.** {line}" in text, name
        assert text.index(line) < _first_jargon(text), name
        assert not any(j in line for j in JARGON)
    # RESULTS.md's first screen: no maintenance note and no wide table before it
    results = (ROOT / "RESULTS.md").read_text(encoding="utf-8")
    top = results[:results.index(line)]
    assert "do not edit" not in top and "|" not in top
    assert results.rstrip().endswith("differs from that rendering.*")


def _claims(protocols=("full", "paper"), **verdicts) -> list[dict]:
    """Claims rows as the checklist writes them, one per key of BOTTOM_LINE_CLAIMS and
    protocol; ``verdicts``: key -> verdict, or key -> {protocol: verdict}."""
    text = {"control": "(audit, first) positive control: training helps in this regime",
            "loss": "~30 % lower loss than I-Con at every training length",
            "training_term": "(audit) the loss gap is produced by training with RKDO, not by "
                             "the difference between the two loss functions",
            "yardstick": "(audit) RKDO's lower loss survives the common yardstick",
            "fewer_epochs": "60–80 % fewer epochs to results comparable to longer I-Con "
                            "training"}
    out = []
    for p in protocols:
        for key, (source, _) in BOTTOM_LINE_CLAIMS.items():
            v = verdicts[key]
            out.append({"claim": text[key], "source": source, "protocol": p,
                        "verdict": v[p] if isinstance(v, dict) else v})
    return out


def _line(claims, datasets=("digits",), seeds=(1, 2, 3, 4, 5)) -> list[str]:
    return bottom_line({"claims": claims, "datasets": list(datasets), "seeds": list(seeds),
                        "protocols": sorted({c["protocol"] for c in claims})})


def test_bottom_line_of_the_committed_study_says_what_the_verdicts_say():
    """The digits study: control fails under both protocols, the loss claim holds, its gap
    comes from the loss function and does not survive the yardstick."""
    line = _line(_claims(control=CONTROL_FAILS, loss=HOLDS, training_term=FAILS,
                         yardstick=FAILS, fewer_epochs=UNTESTABLE_REGIME))
    assert line == [
        "The paper claims that RKDO reaches ~30 % lower loss than I-Con at every training "
        "length and needs 60–80 % fewer epochs to results comparable to longer I-Con "
        "training.",
        "Here (digits, 5 seeds), training does not make the encoder better than its "
        "untrained start under either protocol, so the accuracy claims cannot be tested.",
        "RKDO's loss is indeed lower than I-Con's at every training length under both "
        "protocols, but the gap comes from the different loss function, not from better "
        "training: scored with the same fixed losses, the RKDO-trained encoder is no better "
        "than I-Con's."]


def test_bottom_line_takes_the_other_branch_when_the_control_passes():
    line = _line(_claims(control=PASSES, loss=HOLDS, training_term=HOLDS, yardstick=HOLDS,
                         fewer_epochs=HOLDS), datasets=("cifar10", "stl10"))
    assert line[1] == ("Here (CIFAR-10, STL-10, 5 seeds), training makes the encoder better "
                       "than its untrained start under both protocols, and RKDO does reach "
                       "comparable accuracy with fewer epochs.")
    assert "cannot be tested" not in " ".join(line)
    assert line[2].startswith("RKDO's loss is indeed lower") and "comes from training with " \
        "RKDO" in line[2] and "stays ahead" in line[2]
    line = _line(_claims(control=PASSES, loss=FAILS, training_term=FAILS, yardstick=FAILS,
                         fewer_epochs=FAILS))
    assert "but RKDO does not reach comparable accuracy with fewer epochs" in line[1]
    assert line[2].startswith("RKDO's loss is not lower than I-Con's by the claimed margin")
    line = _line(_claims(control=PASSES, loss=HOLDS, training_term=FAILS, yardstick=FAILS,
                         fewer_epochs=UNTESTABLE_SENSITIVITY))
    assert "longer I-Con training is not better than shorter" in line[1]


def test_bottom_line_names_each_protocol_where_they_differ():
    line = _line(_claims(control={"full": PASSES, "paper": CONTROL_FAILS}, loss=HOLDS,
                         training_term=FAILS, yardstick=FAILS,
                         fewer_epochs={"full": HOLDS, "paper": UNTESTABLE_REGIME}),
                 datasets=("cifar10", "stl10"))
    assert line[1] == (
        "Here (CIFAR-10, STL-10, 5 seeds), training makes the encoder better than its "
        "untrained start under the full protocol, and RKDO does reach comparable accuracy "
        "with fewer epochs; training does not make the encoder better than its untrained "
        "start on every dataset under the paper protocol, so the accuracy claims cannot be "
        "tested.")


def test_bottom_line_numbers_are_only_the_papers_and_the_seed_count(aggregated):
    """Generated, not typed: from a real aggregation the manifest and the summary carry the
    same sentences, chosen by the checklist's verdicts, whose only numbers are the paper's
    (quoted from the claims' text) and the number of seeds."""
    s = summarize(aggregated)
    m = json.loads((aggregated / "aggregate.json").read_text())
    assert m["bottom_line"] == bottom_line(s) and len(m["bottom_line"]) == 3
    control = {c["verdict"] for c in m["claims"] if c["source"] == "docs/method.md §6.5"}
    assert ("does not make the encoder better" in m["bottom_line"][1]) == (
        control == {CONTROL_FAILS})
    allowed = set(re.findall(r"\d+", " ".join(c["claim"] for c in m["claims"])))
    assert set(re.findall(r"\d+", " ".join(m["bottom_line"]))) <= allowed | {"3"}
    assert render(s).index("**Bottom line.**") < render(s).index("*Generated from")


def test_bottom_line_names_the_controls_two_failures():
    from rkdo_core.reporting.stats import CONTROL_HURTS, CONTROL_NOT_SHOWN
    line = _line(_claims(control={"full": CONTROL_NOT_SHOWN, "paper": CONTROL_HURTS},
                         loss=HOLDS, training_term=FAILS, yardstick=FAILS,
                         fewer_epochs=UNTESTABLE_REGIME))
    assert "training makes the encoder measurably worse than its untrained start under " \
        "the paper protocol" in line[1]
    assert "training is not shown to make the encoder better than its untrained start " \
        "under the full protocol" in line[1]
    assert "cannot be checked" not in line[1]


def test_claims_table_has_no_empty_column_for_protocol_bound_rows():
    from rkdo_core.reporting.readme import _claims_table
    claims = [{"claim": "a", "protocol": "paper", "verdict": "holds"},
              {"claim": "a", "protocol": "full", "verdict": "fails"},
              {"claim": "theory", "protocol": "any", "verdict": "holds"}]
    text = _claims_table(claims)
    first, second = text.split("\n\n")
    assert first.splitlines()[0] == "| claim | paper protocol | full protocol |"
    assert "| any" not in first and "| a | holds | fails |" in first
    assert second.splitlines()[0] == "| claim (whole study, not per protocol) | verdict |"
    assert "| theory | holds |" in second
    assert all(" |  |" not in ln for ln in text.splitlines())
