"""Checksums in run_complete.json and `rkdo verify`: missing, partial and altered runs are
listed, intact ones pass. Run folders come from run_one with a fake notebook executor (no
kernels), so these tests take about a second."""

import hashlib
import json
from pathlib import Path

import pytest

import rkdo_core.layout as layout
import rkdo_core.runs.grid as grid
import rkdo_core.runs.runner as runner
from rkdo_core.cli import main
from rkdo_core.config import grid_from_dict
from rkdo_core.layout import EVAL_VERSION
from rkdo_core.runs.integrity import check_run, verify_results

SPEC = grid_from_dict({"datasets": ["digits"], "methods": ["rkdo", "icon"], "seeds": [1],
                       "epochs": [1, 2], "config": {"steps_per_epoch": 2, "batch_size": 16,
                                                    "eval_images": 64}})


def fake_execute(name, run_dir, params, kernel):
    """Stands in for runner._execute: writes the files a notebook would, with content that
    differs per file and run."""
    cfg_files = layout.expected_files(SPEC.configs()[0].epochs)
    mine = [f for f in cfg_files
            if (name == layout.TRAIN_NOTEBOOK) != (f.startswith("metrics/")
                                                  or f == layout.EVALUATE_NOTEBOOK)]
    cfg = next(c for c in SPEC.configs() if c.method == Path(run_dir).parts[-2])
    for f in mine:
        p = Path(run_dir) / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"file": f, "run": str(run_dir), "config": cfg.to_dict(),
                                 "eval_version": EVAL_VERSION}))  # a current evaluation
    return Path(run_dir) / name


def make_grid(out: Path, monkeypatch) -> list[Path]:
    monkeypatch.setattr(runner, "_execute", fake_execute)
    report = grid.run_grid(SPEC, out, progress=False)
    assert report.count("complete") == 2
    return [layout.run_dir_for(out, c) for c in SPEC.configs()]


def test_run_complete_records_the_sha256_of_every_file(tmp_path, monkeypatch):
    runs = make_grid(tmp_path, monkeypatch)
    done = json.loads((runs[0] / layout.RUN_COMPLETE).read_text())
    assert set(done["checksums"]) == set(done["files"])
    for f, rec in done["checksums"].items():
        data = (runs[0] / f).read_bytes()
        assert rec == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert all(check_run(r).ok and check_run(r).state == "ok" for r in runs)
    assert main(["verify", str(tmp_path)]) == 0


def test_verify_lists_missing_partial_and_altered(tmp_path, monkeypatch, capsys):
    runs = make_grid(tmp_path, monkeypatch)
    a, b = runs
    # altered with the same size (only the hash can tell) and a missing file in run a
    ckpt = a / "checkpoints/epoch_001.pt"
    text = ckpt.read_text()
    ckpt.write_text(text[:-2] + ("x" if text[-2] != "x" else "y") + text[-1])
    (a / "metrics/epoch_002.json").unlink()
    # run b: an interrupted re-evaluation left a temporary file
    (b / "metrics" / ".epoch_002.json.abc.tmp").write_text('{"half": ')
    # a third run folder that never got a run_complete.json (killed mid-training)
    c = tmp_path / "digits/paper/rkdo/seed_7"
    (c / "checkpoints").mkdir(parents=True)
    (c / "checkpoints/epoch_000.pt").write_text("x")
    (c / ".partial-01_train.ipynb").write_text("{")
    assert main(["verify", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    checks = {ch.run: ch for ch in verify_results(tmp_path)}
    ra, rb, rc = (str(p.relative_to(tmp_path)) for p in (a, b, c))
    assert checks[ra].state == "missing"
    assert "missing: metrics/epoch_002.json" in checks[ra].problems
    assert ("altered: checkpoints/epoch_001.pt (sha256 differs from the recorded one)"
            in checks[ra].problems)
    assert checks[rb].state == "partial" and any(
        "leftover temporary file metrics/.epoch_002.json.abc.tmp" in p
        for p in checks[rb].problems)
    assert checks[rc].state == "partial"
    assert any("no run_complete.json (interrupted" in p for p in checks[rc].problems)
    assert any(".partial-01_train.ipynb" in p for p in checks[rc].problems)
    for run in (ra, rb, rc):
        assert run in out
    assert "3 with problems" in out


def test_size_change_is_altered_and_the_grid_refuses_to_reuse_it(tmp_path, monkeypatch):
    a, b = make_grid(tmp_path, monkeypatch)
    with open(a / "checkpoints/epoch_002.pt", "a") as fh:
        fh.write("more")
    ch = check_run(a)
    assert ch.state == "altered" and any("bytes" in p for p in ch.problems)
    report = grid.run_grid(SPEC, tmp_path, progress=False)
    bad = [o for o in report.outcomes if o.status == "failed"]
    assert len(bad) == 1 and "checkpoints/epoch_002.pt changed size" in bad[0].error
    assert report.count("skipped") == 1


def test_expected_runs_that_never_started_are_missing(tmp_path, monkeypatch):
    make_grid(tmp_path, monkeypatch)
    import shutil

    gone = layout.run_dir_for(tmp_path, SPEC.configs()[1])
    shutil.rmtree(gone)
    checks = {c.run: c for c in verify_results(tmp_path)}
    label = str(gone.relative_to(tmp_path))
    assert checks[label].state == "missing" and "never started" in checks[label].problems[0]


def test_old_runs_without_checksums_are_unchecked_not_altered(tmp_path, monkeypatch, capsys):
    a, _ = make_grid(tmp_path, monkeypatch)
    done = json.loads((a / layout.RUN_COMPLETE).read_text())
    del done["checksums"]
    (a / layout.RUN_COMPLETE).write_text(json.dumps(done))
    ch = check_run(a)
    assert ch.ok and ch.state == "unchecked"
    assert ch.notes == ["no checksums recorded (run made before checksums were)"]
    assert main(["verify", str(tmp_path)]) == 0
    assert "no checksums recorded" in capsys.readouterr().out


def test_failed_run_is_partial_and_quotes_its_error(tmp_path):
    run = tmp_path / "digits/paper/rkdo/seed_1"
    run.mkdir(parents=True)
    (run / layout.RUN_FAILED).write_text(json.dumps({"error": "ValueError: boom (cell 3)"}))
    (ch,) = verify_results(tmp_path)
    assert ch.state == "partial"
    assert ch.problems == ["partial: no run_complete.json (failed: ValueError: boom (cell 3))"]


def test_verify_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("junk", ["", "{", "[]"])
def test_unreadable_run_complete_is_altered(tmp_path, monkeypatch, junk):
    a, _ = make_grid(tmp_path, monkeypatch)
    (a / layout.RUN_COMPLETE).write_text(junk)
    ch = check_run(a)
    assert not ch.ok and "run_complete.json is unreadable" in ch.problems[0]


def test_unreadable_records_do_not_crash_the_plan(tmp_path, monkeypatch):
    a, b = make_grid(tmp_path, monkeypatch)
    (a / "train_complete.json").write_text('{"config": ')  # listed, same size class: junk
    (b / layout.RUN_COMPLETE).unlink()
    (b / layout.RUN_FAILED).write_text("[")
    plan = {d.name + d.parent.name: (state, detail)
            for _, d, state, detail in grid.plan_grid(SPEC.configs(), tmp_path)}
    assert plan["seed_1rkdo"][0] == "altered" and "unreadable" in plan["seed_1rkdo"][1]
    assert plan["seed_1icon"] == ("failed before", "(run_failed.json unreadable)")
