"""What a new user trips on first (issue 15): file modes, ignored example folders, --set."""

import os
import subprocess
from pathlib import Path

import pytest

from rkdo_core.runio import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    """Results are written via mkstemp (0600); they must get 0666 & ~umask like open()."""
    old = os.umask(mask)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with open(tmp_path / "b.json", "w") as fh:
            fh.write("{}")
    finally:
        os.umask(old)
    got = (tmp_path / "a.json").stat().st_mode & 0o777
    assert got == (tmp_path / "b.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_readme_example_folders_are_ignored_but_the_package_is_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    if subprocess.run(["git", "rev-parse"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("not a git checkout")
    for folder in ("out/x.json", "runs/x.json", "scratch/x.json", "results/x.json"):
        assert ignored(folder), folder
    assert not ignored("rkdo_core/runs/grid.py")


# ---- `rkdo grid --set` on a grid axis: one line naming the params key, not a traceback ----
@pytest.mark.parametrize("setting, key", [("seed=7", "seeds"), ("method=icon", "methods"),
                                          ("dataset=digits", "datasets"), ("epochs=3", "epochs"),
                                          ("protocol=full", "preset")])
def test_set_refuses_grid_axes_naming_the_params_key(tmp_path, capsys, setting, key):
    from rkdo_core.cli import main

    rc = main(["grid", str(ROOT / "params" / "smoke.yaml"), "--out", str(tmp_path),
               "--set", setting, "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"--set='{setting}'" in err[0] and f"`{key}:`" in err[0]


def test_set_lists_only_the_fields_it_accepts(tmp_path, capsys):
    from rkdo_core.cli import main

    assert main(["grid", str(ROOT / "params" / "smoke.yaml"), "--out", str(tmp_path),
                 "--set", "nosuch=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "lr" in err and "seed," not in err and "method," not in err


# ---- `--dry-run` shows the cost: a typo in `epochs:` is visible before anything runs ----
def test_dry_run_prints_optimizer_steps_and_warns_on_huge_plans(tmp_path, capsys):
    import yaml

    from rkdo_core.cli import main

    spec = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    spec["epochs"] = [1000000]
    params = tmp_path / "typo.yaml"
    params.write_text(yaml.safe_dump(spec))
    assert main(["grid", str(params), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    n_runs = len(spec["datasets"]) * len(spec["methods"]) * len(spec["seeds"])
    per_run = 1000000 * spec["config"]["steps_per_epoch"]
    assert "warning:" in out and "optimizer steps per digits run" in out
    assert f"{per_run:,} optimizer steps =" in out
    assert f"grid: {n_runs * per_run:,} optimizer steps" in out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.pt"))


def test_step_estimate_comes_from_recorded_training_logs(tmp_path):
    import json

    from rkdo_core.config import RunConfig
    from rkdo_core.layout import run_dir_for
    from rkdo_core.runs.plan import RUN_OVERHEAD_S, describe_cost, optimizer_steps

    cfg = RunConfig.preset("paper", dataset="digits", method="icon", seed=1, epochs=(1, 3))
    assert optimizer_steps(cfg) == 3 * cfg.steps_per_epoch
    full = RunConfig.preset("full", dataset="digits", method="icon", seed=1, epochs=(2,))
    assert optimizer_steps(full) == 2 * (1257 // full.batch_size)
    # two earlier runs here, median step 0.5 s and 1.5 s -> 1.0 s per step
    for seed, secs in ((1, [0.4, 0.5, 0.9]), (2, [1.5, 1.5, 2.0])):
        run = run_dir_for(tmp_path, RunConfig.preset("paper", dataset="digits",
                                                     method="rkdo", seed=seed))
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
        (run / "train_log.jsonl").write_text("".join(
            json.dumps({"step": i, "seconds": s}) + "\n" for i, s in enumerate(secs)))
    lines = describe_cost([cfg, cfg], tmp_path, workers=2)
    steps = 2 * optimizer_steps(cfg)
    assert f"= {steps:,} steps" in lines[0] and "1 s/step (median of 2 earlier run(s)" in lines[0]
    # neither run is complete: the time besides the steps is the stated assumption
    per_run = optimizer_steps(cfg) * 1.0 + RUN_OVERHEAD_S
    assert lines[-1].startswith(f"  grid: {steps:,} optimizer steps; ≈ {per_run:.0f} s")


def test_dataset_facts_train_images_match_the_loaded_split():
    from rkdo_core.data import load_dataset
    from rkdo_core.datasets import facts

    assert len(load_dataset("digits").train.labels) == facts("digits").train_images


# ---- `rkdo evaluate` on the wrong path says what the path is ----
def test_evaluate_names_what_the_path_is(tmp_path, capsys):
    from helpers import write_synthetic_results

    from rkdo_core.cli import main

    assert main(["evaluate", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["evaluate", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    write_synthetic_results(tmp_path / "res", datasets=("digits",), seeds=(1,),
                            with_incomplete=False)
    assert main(["evaluate", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err
    assert "is a folder of 2 run(s), not one run; pass a run folder, e.g." in err
    assert f"{tmp_path / 'res' / 'digits' / 'paper'}" in err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert "holds no complete training run" in capsys.readouterr().err


def test_help_lists_choices_and_has_no_rst_markup(capsys):
    from rkdo_core.cli import main

    for argv in (["--help"], ["train", "--help"], ["grid", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out, argv
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--dataset {digits,fashion_mnist,cifar10,cifar100,stl10}" in out
    assert "--method {icon,rkdo}" in out
    assert "--no-progress" in out and "no progress bars" in out


def test_each_grid_records_the_exact_environment(smoke_results):
    """`pip freeze`'s list beside grid.json: what produced the numbers, package by package."""
    from importlib.metadata import version

    lines = (smoke_results / "environment.txt").read_text().splitlines()
    assert f"torch=={version('torch')}" in lines and f"papermill=={version('papermill')}" in lines
    assert lines == sorted(lines, key=lambda ln: ln.split("==")[0].lower())
    assert all("==" in ln for ln in lines)


# ---- the exact environment: one lock, used by the Makefile and environment.yml ----
def _pins(text: str) -> dict[str, str]:
    import re

    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", text, re.M)}


def test_the_lock_pins_every_dependency_and_torch_as_the_makefile_does():
    import tomllib

    lock = _pins((ROOT / "constraints.txt").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name = req.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        assert name.replace("_", "-") in lock, f"{name} is not pinned in constraints.txt"
    makefile = (ROOT / "Makefile").read_text()
    assert f"torch=={lock['torch']} torchvision=={lock['torchvision']}" in makefile
    assert "$(PIP_LOCK) $(TORCH_SPEC)" in makefile and '$(PIP_LOCK) -e ".[dev]"' in makefile
    assert "/opt/" not in (ROOT / "constraints.txt").read_text()  # nothing of this machine


def test_environment_yml_installs_through_the_lock_without_the_pytorch_channel():
    import yaml

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "pytorch" not in env["channels"]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    lock = _pins((ROOT / "constraints.txt").read_text())
    assert "-c constraints.txt" in pip
    assert f"torch=={lock['torch']}" in pip and f"torchvision=={lock['torchvision']}" in pip
    post = (ROOT / "postBuild").read_text()
    assert "--name rkdo" in post and os.access(ROOT / "postBuild", os.X_OK)


def test_installed_versions_match_the_lock():
    """The environment the tests run in is the locked one (where it was built by make)."""
    from importlib.metadata import PackageNotFoundError, version

    lock = _pins((ROOT / "constraints.txt").read_text())
    off = {}
    for name in ("torch", "torchvision", "numpy", "scikit-learn", "scipy", "pandas",
                 "papermill", "nbconvert", "matplotlib"):
        try:
            if version(name).split("+")[0] != lock[name]:
                off[name] = (version(name), lock[name])
        except PackageNotFoundError:
            off[name] = (None, lock[name])
    if off and not os.environ.get("RKDO_REQUIRE_LOCK"):
        pytest.skip(f"this environment was not installed through constraints.txt: {off}")
    assert not off


@pytest.mark.parametrize("name", ["cuda", "cuda:7", "bogus:x"])
def test_an_unavailable_device_is_a_config_error_everywhere(name):
    """resolve_device is shared by training, evaluation and bench: one line, not a
    RuntimeError traceback (CUDA absent on this machine)."""
    import torch

    from rkdo_core.config import ConfigError
    from rkdo_core.model import resolve_device

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="device="):
        resolve_device(name)
