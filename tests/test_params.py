"""params/*.yaml: the shipped grids load, and bad grids fail naming file, key and value."""

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rkdo_core.cli import main
from rkdo_core.config import PAPER_BUDGETS, PAPER_SEEDS, ConfigError, grid_from_dict, load_params
from rkdo_core.layout import run_dir_for
from rkdo_core.runs.runner import notebook_params

PARAMS = Path(__file__).resolve().parent.parent / "params"


def test_default_grid_is_the_paper_grid_on_digits():
    spec = load_params(PARAMS / "default.yaml")
    configs = spec.configs()
    assert len(configs) == 10
    assert {c.dataset for c in configs} == {"digits"}
    assert {c.protocol for c in configs} == {"paper"}
    assert sorted({c.seed for c in configs}) == sorted(PAPER_SEEDS)
    assert all(c.epochs == PAPER_BUDGETS for c in configs)
    assert all(c.steps_per_epoch == 10 and c.batch_size == 64 for c in configs)
    # ordered dataset, seed, method: a grid stopped half-way holds complete pairs
    assert [(c.seed, c.method) for c in configs[:2]] == [(42, "rkdo"), (42, "icon")]


def test_paper_and_full_grids():
    paper = load_params(PARAMS / "paper.yaml").configs()
    full = load_params(PARAMS / "full.yaml").configs()
    assert len(paper) == len(full) == 30
    assert {c.dataset for c in paper} == {"cifar10", "cifar100", "stl10"}
    assert all(c.steps_per_epoch is None and c.eval_images is None and
               c.eval_features == "backbone" for c in full)
    assert all(c.steps_per_epoch == 10 and c.eval_images == 704 for c in paper)


def test_smoke_grid_is_small():
    configs = load_params(PARAMS / "smoke.yaml").configs()
    assert all(c.steps_per_epoch * c.max_epochs <= 4 for c in configs)


def test_override_applies_to_every_run(tmp_path):
    spec = load_params(PARAMS / "smoke.yaml")
    configs = spec.configs(data_root=str(tmp_path), device="cpu")
    assert all(c.data_root == str(tmp_path) and c.device == "cpu" for c in configs)


def test_per_dataset_overrides():
    spec = grid_from_dict({"datasets": ["digits", "cifar10"], "seeds": [1], "epochs": [1],
                           "per_dataset": {"cifar10": {"batch_size": 32}}})
    by = {c.dataset: c.batch_size for c in spec.configs()}
    assert by == {"digits": 64, "cifar10": 32}


def test_notebook_params_carry_only_what_differs_from_the_preset(tmp_path):
    spec = load_params(PARAMS / "smoke.yaml")
    cfg = spec.configs()[0]
    p = notebook_params(cfg, tmp_path)
    assert p["overrides"] == {"steps_per_epoch": 2, "batch_size": 16, "eval_images": 64}
    assert (p["dataset"], p["method"], p["seed"], p["epochs"], p["preset"]) == (
        "digits", "rkdo", 42, [1, 2], "paper")
    assert run_dir_for("R", cfg) == Path("R/digits/paper/rkdo/seed_42")


GOOD = {"datasets": ["digits"], "seeds": [1, 2], "epochs": [1, 2]}


@pytest.mark.parametrize("change, key, fragment", [
    ({"dataset": ["digits"]}, "dataset", "unknown key"),
    ({"datasets": ["mnist"]}, "datasets", "cifar10"),
    ({"datasets": []}, "datasets", "non-empty"),
    ({"methods": ["simclr"]}, "methods", "rkdo"),
    ({"seeds": [1, 1]}, "seeds", "repeat"),
    ({"seeds": [-1]}, "seeds", "non-negative"),
    ({"epochs": [2, 1]}, "epochs", "increasing"),
    ({"epochs": []}, "epochs", "non-empty"),
    ({"preset": "fast"}, "preset", "paper"),
    ({"config": {"alpha": 1.5}}, "alpha", "(0, 1]"),
    ({"config": {"aplha": 0.5}}, "config.aplha", "known fields"),
    ({"config": {"seed": 3}}, "config.seed", "grid's own keys"),
    ({"config": [1]}, "config", "mapping"),
    ({"per_dataset": {"mnist": {}}}, "per_dataset.mnist", "unknown dataset"),
    ({"per_dataset": {"digits": {"batch_size": 1}}}, "batch_size", ">= 2"),
    ({"aggregate": {"table4": 2}}, "aggregate", "table4_epoch"),
    ({"aggregate": {"table3_pairs": [[1]]}}, "aggregate.table3_pairs", "pairs"),
])
def test_bad_grid_names_file_key_value(change, key, fragment):
    with pytest.raises(ConfigError) as e:
        grid_from_dict({**GOOD, **change}, source="params/x.yaml")
    msg = str(e.value)
    assert "params/x.yaml" in msg and key in msg and fragment in msg


def test_missing_required_key():
    with pytest.raises(ConfigError, match="seeds.*required"):
        grid_from_dict({"datasets": ["digits"], "epochs": [1]})


def test_not_a_mapping(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("- digits\n- cifar10\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_params(p)
    p.write_text("datasets: [digits\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_params(p)


def test_cli_bad_params_exit_2(tmp_path, capsys):
    assert main(["grid", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [digits]\nseeds: [1]\nepochs: [1]\nconfig: {depth: 0}\n")
    assert main(["grid", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "depth=0" in err and "bad.yaml" in err
    assert not (tmp_path / "r").exists()  # nothing was started
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--set", "alpha=2",
                 "--out", str(tmp_path / "r")]) == 2
    assert "alpha" in capsys.readouterr().err
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--set", "alpah=0.3",
                 "--out", str(tmp_path / "r")]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["grid", str(PARAMS / "smoke.yaml"), "--workers", "0",
                 "--out", str(tmp_path / "r")]) == 2
    assert "workers" in capsys.readouterr().err


# ---- run_one's failure handling, with a fake notebook executor (no kernels) ---------------

def _fake_executor(cfg, fail_first=None, cell_error=False):
    """Stands in for runner._execute: writes the files the notebooks would write."""
    from papermill.exceptions import PapermillExecutionError

    from rkdo_core.layout import expected_files

    calls = []

    def execute(name, run_dir, params, kernel):
        calls.append(name)
        if fail_first is not None and len(calls) == 1:
            raise fail_first
        if cell_error:
            (run_dir / name).write_text("{}")
            raise PapermillExecutionError(2, 2, "source", "ConfigError", "bad value", [])
        for f in expected_files(cfg.epochs):
            (run_dir / f).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / f).write_text("{}")
        return run_dir / name

    return execute, calls


def test_run_one_retries_a_dead_kernel_once(tmp_path, monkeypatch):
    import rkdo_core.layout as layout
    import rkdo_core.runs.runner as runner

    cfg = load_params(PARAMS / "smoke.yaml").configs()[0]
    execute, calls = _fake_executor(cfg, fail_first=RuntimeError("Kernel died before replying"))
    monkeypatch.setattr(runner, "_execute", execute)
    outcome = runner.run_one(cfg, tmp_path)
    assert outcome.status == "complete" and layout.is_complete(tmp_path)
    assert calls == ["01_train.ipynb", "01_train.ipynb", "02_evaluate.ipynb"]
    import json

    done = json.loads((tmp_path / "run_complete.json").read_text())
    assert done["kernel_errors_retried"] == ["RuntimeError: Kernel died before replying"]


def test_run_one_never_retries_a_failing_cell(tmp_path, monkeypatch):
    import json

    import rkdo_core.layout as layout
    import rkdo_core.runs.runner as runner

    cfg = load_params(PARAMS / "smoke.yaml").configs()[0]
    execute, calls = _fake_executor(cfg, cell_error=True)
    monkeypatch.setattr(runner, "_execute", execute)
    outcome = runner.run_one(cfg, tmp_path)
    assert outcome.status == "failed" and calls == ["01_train.ipynb"]
    assert outcome.error == "ConfigError: bad value (cell 2)"
    assert outcome.notebook == tmp_path / "01_train.ipynb"
    assert not layout.is_complete(tmp_path)
    assert json.loads((tmp_path / "run_failed.json").read_text())["error"] == outcome.error


def test_run_one_gives_up_after_two_dead_kernels(tmp_path, monkeypatch):
    import rkdo_core.runs.runner as runner

    cfg = load_params(PARAMS / "smoke.yaml").configs()[0]
    calls = []

    def execute(name, run_dir, params, kernel):
        calls.append(name)
        raise TimeoutError("kernel did not start")

    monkeypatch.setattr(runner, "_execute", execute)
    outcome = runner.run_one(cfg, tmp_path)
    assert outcome.status == "failed" and len(calls) == runner.KERNEL_ATTEMPTS
    assert outcome.error == "TimeoutError: kernel did not start (2 attempts)"
    assert outcome.notebook is None  # no notebook was written
    assert not (tmp_path / "run_complete.json").exists()


def test_interrupted_grid_starts_no_further_run(tmp_path, monkeypatch):
    """Ctrl-C while a grid runs: queued runs are cancelled (a ThreadPoolExecutor's exit
    would otherwise run all of them before the interrupt took effect). The interrupt comes
    with the first run's outcome; every later run lasts until the grid has shut its pool
    down, so none can end (and let another start) before the grid has reacted, however
    fast or loaded the machine."""
    import rkdo_core.layout as layout
    import rkdo_core.runs.backends as backends
    import rkdo_core.runs.grid as grid
    import rkdo_core.runs.runner as runner

    spec = load_params(PARAMS / "smoke.yaml")
    started = []
    shut_down = threading.Event()

    class Pool(ThreadPoolExecutor):
        def shutdown(self, wait=True, *, cancel_futures=False):
            super().shutdown(wait=False, cancel_futures=cancel_futures)
            shut_down.set()  # the queue is emptied now, when the grid asked for that
            super().shutdown(wait=wait)

    def fake_run_one(cfg, run_dir, *, kernel=None, evaluate_only=False):
        started.append(cfg.seed)
        if len(started) > 1:
            # the run the worker took while the interrupt was raised: it waits for the
            # grid's shutdown (bounded only if the grid never shuts its pool down)
            shut_down.wait(timeout=300)
        return runner.RunOutcome(layout.run_label(cfg), run_dir, "complete")

    def interrupt(outcome):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    monkeypatch.setattr(backends, "ThreadPoolExecutor", Pool)
    with pytest.raises(KeyboardInterrupt):
        grid.run_grid(spec, tmp_path, workers=1, progress=False, on_outcome=interrupt)
    # the first run, and at most the one the worker had taken before the queue was emptied
    assert 1 <= len(started) <= 2 < len(spec.configs())
