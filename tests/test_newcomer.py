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
