"""A complete run whose metrics come from an older evaluation (before the common yardstick
and FLOPs) is re-evaluated by the grid through 02_evaluate alone — never retrained — and
recorded again, so `rkdo verify` passes and the aggregation sees the new keys."""

import json
from pathlib import Path

import rkdo_core.layout as layout
import rkdo_core.runs.grid as grid
import rkdo_core.runs.runner as runner
from rkdo_core.cli import main
from rkdo_core.config import grid_from_dict
from rkdo_core.layout import EVAL_VERSION

SPEC = grid_from_dict({"datasets": ["digits"], "methods": ["rkdo"], "seeds": [1],
                       "epochs": [1], "config": {"steps_per_epoch": 2, "batch_size": 16,
                                                 "eval_images": 64}})


def executor(version: int, calls: list):
    def fake_execute(name, run_dir, params, kernel):
        calls.append(name)
        cfg = SPEC.configs()[0]
        for f in layout.expected_files(cfg.epochs):
            is_eval = f.startswith("metrics/") or f == layout.EVALUATE_NOTEBOOK
            if is_eval != (name == layout.EVALUATE_NOTEBOOK):
                continue
            p = Path(run_dir) / f
            p.parent.mkdir(parents=True, exist_ok=True)
            body = {"file": f, "config": cfg.to_dict()}
            if f.startswith("metrics/"):
                body["eval_version"] = version
                if version >= 2:
                    body["yardstick_icon"] = 2.5
            p.write_text(json.dumps(body))
        return Path(run_dir) / name
    return fake_execute


def test_stale_evaluation_is_redone_without_retraining(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runner, "_execute", executor(1, calls))
    assert grid.run_grid(SPEC, tmp_path, progress=False).count("complete") == 1
    run = layout.run_dir_for(tmp_path, SPEC.configs()[0])
    train_nb = (run / layout.TRAIN_NOTEBOOK).read_text()
    assert calls == [layout.TRAIN_NOTEBOOK, layout.EVALUATE_NOTEBOOK]
    # an evaluation of the current version is complete; one of an older version is stale
    assert EVAL_VERSION > 1
    [(_, _, state, detail)] = grid.plan_grid(SPEC.configs(), tmp_path)
    assert state == runner.STALE and "re-evaluated, not retrained" in detail
    calls.clear()
    monkeypatch.setattr(runner, "_execute", executor(EVAL_VERSION, calls))
    report = grid.run_grid(SPEC, tmp_path, progress=False)
    assert report.count("complete") == 1 and calls == [layout.EVALUATE_NOTEBOOK]
    assert (run / layout.TRAIN_NOTEBOOK).read_text() == train_nb  # the training record stays
    metrics = json.loads((run / "metrics/epoch_001.json").read_text())
    assert metrics["eval_version"] == EVAL_VERSION and "yardstick_icon" in metrics
    [(_, _, state, _)] = grid.plan_grid(SPEC.configs(), tmp_path)
    assert state == "complete"
    capsys.readouterr()
    assert main(["verify", str(tmp_path)]) == 0  # new checksums recorded
