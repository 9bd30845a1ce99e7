"""Commands that passed when they should not, slow or long answers, the same numbers by hand
as in the grid (issue 25, items 5-7). Everything here is fast: no run trains, no kernel
starts; times are never asserted (they are measured by hand, see the issue's report)."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rkdo_core.cli import main
from rkdo_core.config import RunConfig, load_params

ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params"
SMOKE = PARAMS / "smoke.yaml"


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


# ---- 5. commands that passed when they should not -----------------------------------------

def test_verify_of_a_folder_without_runs_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    rc, out, err = _run(["verify", str(tmp_path / "empty")])
    assert rc == 2 and "no problems" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "empty") in lines[0]
    assert "holds no runs" in lines[0]


@pytest.mark.parametrize("name, what", [
    ("params/reported.yaml", "it holds the paper's reported numbers"),
    ("params/slurm.example.yaml", "it is a SLURM options file"),
    ("README.md", "it is not YAML"),
])
def test_a_file_that_is_not_a_grid_says_so_in_one_line(monkeypatch, name, what):
    monkeypatch.chdir(ROOT)
    rc, out, err = _run(["grid", name, "--dry-run"])
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"rkdo: error: {name} is not a grid (params) file: {what}")
    assert "params/smoke.yaml" in lines[0]
    assert "reported.yaml" not in lines[0].split("grid files:")[1]
    assert "slurm.example.yaml" not in lines[0].split("grid files:")[1]


def test_a_params_typo_suggests_grid_files_only(monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, _, err = _run(["grid", "params/smok.yaml"])
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "did you mean params/smoke.yaml?" in err
    assert "reported.yaml" not in err and "slurm.example.yaml" not in err


# ---- 7. the same numbers by hand as in the grid ---------------------------------------------


