"""Fixtures shared across test files: the smoke grid is executed through papermill once
per test run and read by the grid, back-end and crash tests (each of its runs starts two
Jupyter kernels, the slowest thing the suite does).

`make test` runs the files in parallel (pytest-xdist, ``-n``): each worker process has its
own session, so the smoke grid and its aggregation are computed once by whichever worker
asks first, under a file lock in the folder all workers share, and the others read it. The
shared folder is read-only by convention: a test that changes a run copies the grid first
(tests/test_grid.py).
"""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from rkdo_core.cli import main

PARAMS = Path(__file__).resolve().parent.parent / "params"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Each xdist worker gets its share of the cores for in-process torch (read when torch
    # first starts its thread pool, after this): two workers of two threads each on two
    # cores ran the torch-heavy tests up to 6x slower (OpenMP threads spinning against
    # each other). Grids set their runs' threads themselves.
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    _share = max(1, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


def shared_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` once per test run, however many xdist workers ask: the first
    creates ``<shared temp>/<name>`` under a lock and marks it done (``<name>.done``); the
    others wait for the lock and find the mark. A failed ``make`` leaves no mark (the next
    asker retries)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-N/, above each worker's popen-gwK/
    out, done = base / name, base / f"{name}.done"
    with FileLock(str(base / f"{name}.lock")):
        if not done.is_file():
            out.mkdir(exist_ok=True)
            make(out)
            done.touch()
    return out


def _smoke_grid(out: Path) -> None:
    rc = main(["grid", str(PARAMS / "smoke.yaml"), "--out", str(out), "--workers", "2",
               "--no-progress"])
    assert rc == 0


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory) -> Path:
    """params/smoke.yaml run with 2 workers (1 torch thread per run), uninterrupted.
    Shared by every worker: read it, never change it."""
    return shared_once(tmp_path_factory, "smoke", _smoke_grid)


@pytest.fixture(scope="session")
def smoke_aggregated(smoke_results, tmp_path_factory) -> Path:
    """The smoke grid after `rkdo aggregate` (tables, figures, rendered notebooks,
    index.html), once per test run for every test that reads the site."""
    def aggregate(_: Path) -> None:
        assert main(["aggregate", str(smoke_results), "--no-progress"]) == 0

    shared_once(tmp_path_factory, "smoke-aggregated", aggregate)
    return smoke_results


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module's runs, as the grid gives each of its runs on a
    2-core CPU (two threads stall on a shared CPU). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    from rkdo_core.training.train import thread_setting  # torch only where a module asks

    with thread_setting(1):
        yield
