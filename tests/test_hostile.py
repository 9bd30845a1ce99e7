"""Hostile input to `rkdo grid`: each gives a clear error naming the problem, before any
work starts where it can be detected then, and never a corrupted results folder.
(More params-file cases: tests/test_params.py.)"""

import errno
import json
import os
from pathlib import Path

import pytest

import rkdo_core.layout as layout
import rkdo_core.runs.grid as grid
import rkdo_core.runs.runner as runner
from rkdo_core.cli import main
from rkdo_core.config import grid_from_dict

GOOD = "datasets: [digits]\nmethods: [rkdo]\nseeds: [1]\nepochs: [1]\n"


def _grid(tmp_path: Path, text: str, *extra: str) -> tuple[int, Path]:
    params = tmp_path / "p.yaml"
    params.write_text(text)
    out = tmp_path / "out"
    return main(["grid", str(params), "--out", str(out), "--no-progress", *extra]), out


def _nothing_started(out: Path) -> bool:
    return not out.exists() or not (out / "grid.json").exists() and not list(out.rglob("*"))


@pytest.mark.parametrize("text, words", [
    (GOOD + "seed: [3]\n", ["seed", "unknown key", "allowed keys"]),
    (GOOD + "config: {lerning_rate: 0.1}\n", ["config.lerning_rate", "known fields"]),
    (GOOD.replace("seeds: [1]", "seeds: [one]"), ["seeds", "'one'", "non-negative integers"]),
    (GOOD + "config: {batch_size: '16'}\n", ["batch_size='16'", "integer >= 2"]),
    (GOOD + "config: {lr: fast}\n", ["lr='fast'", "number"]),
    (GOOD.replace("epochs: [1]", "epochs: '1,2'"), ["epochs", "strictly increasing"]),
    (GOOD.replace("datasets: [digits]", "datasets: []"), ["datasets", "non-empty"]),
    ("", ["empty file", "datasets, seeds and epochs"]),
    ("# only a comment\n", ["empty file"]),
    (GOOD.replace("seeds: [1]", "seeds: [42, 42]"), ["seeds", "[42, 42]", "not repeat"]),
    (GOOD.replace("methods: [rkdo]", "methods: [rkdo, rkdo]"), ["methods", "not repeat"]),
    (GOOD + "seeds: [2, 3]\n", ["seeds", "given twice", "line 5"]),
    (GOOD.replace("epochs: [1]", "epochs: [5, 2, 10]"), ["epochs", "[5, 2, 10]", "increasing"]),
    (GOOD.replace("epochs: [1]", "epochs: [1, 1]"), ["epochs", "increasing"]),
])
def test_bad_params_file_names_the_problem_and_starts_nothing(tmp_path, capsys, text, words):
    rc, out = _grid(tmp_path, text)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "p.yaml" in err
    for w in words:
        assert w in err, (w, err)
    assert _nothing_started(out)


def test_dataset_with_missing_and_truncated_files_is_refused_up_front(tmp_path, capsys):
    root = tmp_path / "data"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(b"\x80\x04 truncated")  # present but truncated
    text = GOOD.replace("[digits]", "[digits, cifar10]")
    rc, out = _grid(tmp_path, text, "--data-root", str(root))
    err = capsys.readouterr().err
    assert rc == 2
    assert "Dataset 'cifar10' is not available" in err
    assert "Missing: data_batch_2, data_batch_3" in err
    assert "corrupt (md5 mismatch, e.g. truncated): data_batch_1" in err
    assert not list(out.rglob("seed_*")) and not (out / "grid.json").exists()


def test_unwritable_results_folder_is_refused_up_front(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    params = tmp_path / "p.yaml"
    params.write_text(GOOD)
    rc = main(["grid", str(params), "--out", str(blocker / "results"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--out" in err and str(blocker / "results") in err and "must be writable" in err
    assert blocker.read_text() == "not a folder"


def test_read_only_results_folder_is_refused_up_front(tmp_path, capsys, monkeypatch):
    """A folder without write permission (simulated: root, which runs the tests here,
    may write anywhere)."""
    import tempfile

    out = tmp_path / "out"
    out.mkdir()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(out))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    params = tmp_path / "p.yaml"
    params.write_text(GOOD)
    rc = main(["grid", str(params), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "must be writable" in err and "Permission denied" in err
    assert list(out.iterdir()) == []
    if os.geteuid() != 0:  # the real thing where permissions apply
        monkeypatch.undo()
        out.chmod(0o500)
        try:
            rc = main(["grid", str(params), "--out", str(out), "--no-progress"])
            assert rc == 2 and "must be writable" in capsys.readouterr().err
        finally:
            out.chmod(0o700)


# ---- a disk that fills while a run writes ----------------------------------------------

SPEC = grid_from_dict({"datasets": ["digits"], "methods": ["rkdo"], "seeds": [1],
                       "epochs": [1]})


def _writes_files(name, run_dir, params, kernel):
    for f in layout.expected_files(SPEC.configs()[0].epochs):
        (run_dir / f).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / f).write_text("{}")
    return run_dir / name


def test_disk_full_while_recording_completion_leaves_the_run_incomplete(tmp_path, monkeypatch):
    real = runner.write_json_atomic

    def full(path, data):
        if Path(path).name == layout.RUN_COMPLETE:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(runner, "_execute", _writes_files)
    monkeypatch.setattr(runner, "write_json_atomic", full)
    cfg = SPEC.configs()[0]
    outcome = runner.run_one(cfg, tmp_path)
    assert outcome.status == "failed"
    assert "disk full: no space left on device" in outcome.error
    assert "run_complete.json" in outcome.error
    assert not (tmp_path / layout.RUN_COMPLETE).exists() and not layout.is_complete(tmp_path)
    assert "disk full" in json.loads((tmp_path / layout.RUN_FAILED).read_text())["error"]
    # once there is space again, the run completes
    monkeypatch.setattr(runner, "write_json_atomic", real)
    assert runner.run_one(cfg, tmp_path).status == "complete" and layout.is_complete(tmp_path)


def test_disk_full_everywhere_is_reported_not_raised(tmp_path, monkeypatch, capsys):
    """The notebook's own write fails (the grid process sees the OSError) and so does
    run_failed.json: the run is reported failed with the reason, the grid goes on, and
    nothing claims the run complete. A full disk is not retried as a dead kernel."""
    calls = []

    def execute(name, run_dir, params, kernel):
        calls.append(name)
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / name))

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "_execute", execute)
    monkeypatch.setattr(runner, "write_json_atomic", full)
    cfg = SPEC.configs()[0]
    outcome = runner.run_one(cfg, tmp_path)
    assert outcome.status == "failed" and calls == [layout.TRAIN_NOTEBOOK]
    assert outcome.error.startswith("disk full: no space left on device")
    assert "run_failed.json could not be written" in outcome.error
    assert not (tmp_path / layout.RUN_COMPLETE).exists()


def test_disk_full_at_the_grid_record_exits_with_a_clear_line(tmp_path, monkeypatch, capsys):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(grid, "write_json_atomic", full)  # the grid's own record
    rc, out = _grid(tmp_path, GOOD)
    err = capsys.readouterr().err
    assert rc == 1 and "rkdo: error: disk full: no space left on device" in err
    assert "grid.json" in err and not list(out.rglob("seed_*"))
