"""Fixtures shared across test files: the smoke grid is executed through papermill once
per session and read by the grid, back-end and crash tests (each of its runs starts two
Jupyter kernels, the slowest thing the suite does)."""

from pathlib import Path

import pytest

from rkdo_core.cli import main

PARAMS = Path(__file__).resolve().parent.parent / "params"


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    """params/smoke.yaml run with 2 workers (1 torch thread per run), uninterrupted."""
    out = tmp_path_factory.mktemp("smoke")
    rc = main(["grid", str(PARAMS / "smoke.yaml"), "--out", str(out), "--workers", "2",
               "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def smoke_aggregated(smoke_results) -> Path:
    """The smoke grid after `rkdo aggregate` (tables, figures, rendered notebooks,
    index.html), once per session for every test that reads the site."""
    assert main(["aggregate", str(smoke_results), "--no-progress"]) == 0
    return smoke_results


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module's runs, as the grid gives each of its runs on a
    2-core CPU (two threads stall on a shared CPU). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    from rkdo_core.training.train import thread_setting  # torch only where a module asks

    with thread_setting(1):
        yield
