"""Kill `rkdo grid` at several points, resume it, and get the numbers of an uninterrupted run.

One results folder goes through every kill point in turn (the tiny two-run grid of
tests/test_backends.py — the smoke grid's seed 42 — one worker; run A = rkdo/seed_42,
then run B = icon/seed_42). Every kill point is a test pause (rkdo_core.testhooks): the grid
stops just before papermill sends a given cell of one of A's notebooks to its kernel (the
kernel is up), writes a marker file and waits there until the test releases it or kills it.
No step depends on how fast or how loaded the machine is:

1. SIGKILL while A trains (its kernel paused inside train() just after the step-0
   checkpoint is written): the killed grid leaves no kernel behind, and A is not complete;
2. SIGTERM while A's 02_evaluate kernel runs (paused before its evaluation cell;
   train_complete.json written): the pause is released only once the grid has taken the
   signal (it prints "stopping: ..." after cancelling its queued runs), so the grid starts
   no further run (B never starts), A finishes and is complete, exit status 130;
3. mid-write, simulated (a kill at the exact instant of a write is impractical): A's last
   metrics file is removed as if its write never landed, and a truncated ``*.tmp`` of an
   atomic write and a truncated ``.partial-`` notebook are left where a killed writer
   leaves them; `rkdo verify` lists all three and A is not complete;
4. SIGINT (what Ctrl-C sends the grid) while A is re-evaluated (paused and released as in
   2; the leftovers of 3 are gone by then): A completes without being retrained, B does not
   start;
5. a final uninterrupted invocation runs B; every metrics file and training loss equals the
   uninterrupted smoke grid's (tests/conftest.py), and `rkdo verify` finds nothing wrong.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import results_numbers, same_as_reference, tiny_params

from rkdo_core import testhooks
from rkdo_core.cli import main
from rkdo_core.config import load_params
from rkdo_core.layout import EVALUATE_NOTEBOOK, is_complete, run_dir_for
from rkdo_core.runs.integrity import verify_results
from rkdo_core.runs.notebooks import NOTEBOOK_DIR

pytestmark = pytest.mark.slow

RKDO = [sys.executable, "-m", "rkdo_core.cli"]
#: generous bounds on waiting for a pause, a signal to be taken, a grid or its kernels to
#: exit (each waits for something that must happen; the bound is only hit on failure)
WAIT_S = 600


def _cell_id(notebook: str, code: str) -> str:
    """The id of the code cell of notebooks/NOTEBOOK whose source contains ``code``."""
    cells = json.loads((NOTEBOOK_DIR / notebook).read_text())["cells"]
    ids = [c["id"] for c in cells if c["cell_type"] == "code" and code in "".join(c["source"])]
    assert len(ids) == 1, (notebook, code, ids)
    return ids[0]


def _before_cell(run: Path, notebook: str, code: str) -> str:
    """The test pause stage 'run ``run``'s ``notebook`` is about to execute the cell holding
    ``code``' (rkdo_core.testhooks)."""
    return f"{run}/{notebook} cell {_cell_id(notebook, code)}"


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition and unblocked. An
    ignored or blocked SIGINT is inherited across exec (Python then never raises
    KeyboardInterrupt); in a full test session an earlier in-process test (the Dask /
    submitit back-ends) can leave the test process so, while a user's Ctrl-C reaches a grid
    started from a shell."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(params: Path, out: Path, stage: str, pause: Path) -> subprocess.Popen:
    """`rkdo grid` in a subprocess that pauses at ``stage``: it writes ``pause/reached`` and
    waits for ``pause/release``. Its output goes to ``pause/grid.log``."""
    pause.mkdir()
    env = {**os.environ, testhooks.PAUSE_AT: stage, testhooks.PAUSE_DIR: str(pause)}
    with open(pause / "grid.log", "w") as log:
        return subprocess.Popen([*RKDO, "grid", str(params), "--out", str(out), "--workers",
                                 "1", "--no-progress"], stdout=log, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_default_sigint)


def _log(pause: Path) -> str:
    return (pause / "grid.log").read_text()


def _wait_until(proc: subprocess.Popen, pause: Path, ready, what: str) -> None:
    """Poll ``ready()`` (a condition that, once true, stays true) while the grid lives."""
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"grid ended before {what}:\n{_log(pause)}")
        assert time.monotonic() < deadline, f"{what}: not after {WAIT_S} s\n{_log(pause)}"
        time.sleep(0.02)


def _wait_for_pause(proc: subprocess.Popen, pause: Path) -> None:
    # the grid writes `reached` and then blocks at the stage: it cannot run past the kill
    # point while we poll (the interval only sets how soon we notice)
    _wait_until(proc, pause, (pause / "reached").exists, "the kill point")


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working folder is inside ``folder`` (the kernels of its runs)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(folder)):
                pids.append(int(entry.name))
    return pids


def _no_orphans(folder: Path) -> None:
    # the kernels of a grid that is gone exit on their own (a killed grid's: ipykernel
    # notices its parent is gone): poll until they have, however long that takes
    deadline = time.monotonic() + WAIT_S
    while _processes_in(folder):
        assert time.monotonic() < deadline, f"kernels left running: {_processes_in(folder)}"
        time.sleep(0.2)


def _kill(proc: subprocess.Popen) -> int:
    """SIGKILL the paused grid: it dies at the stage, never released."""
    proc.send_signal(signal.SIGKILL)
    return proc.wait(timeout=WAIT_S)


def _interrupt(proc: subprocess.Popen, sig: int, pause: Path) -> tuple[int, str]:
    """Send ``sig`` to the paused grid; release the pause once the grid has taken it; return
    the grid's exit status and output."""
    proc.send_signal(sig)
    # the grid prints "stopping: ..." once it has cancelled its queued runs; until the
    # release the paused run cannot end, so no queued run can have started before
    _wait_until(proc, pause, lambda: "stopping:" in _log(pause), "the signal was taken")
    (pause / "release").touch()
    return proc.wait(timeout=WAIT_S), _log(pause)


def test_killed_grid_resumes_to_the_uninterrupted_numbers(smoke_results, tmp_path):
    params = tiny_params(tmp_path)
    out = (tmp_path / "results").resolve()
    a_cfg, b_cfg = load_params(params).configs()
    a, b = run_dir_for(out, a_cfg), run_dir_for(out, b_cfg)
    assert (a_cfg.method, b_cfg.method) == ("rkdo", "icon")

    # 1. SIGKILL mid-training: A's kernel pauses inside train() right after writing the
    # step-0 checkpoint (the pause point in rkdo_core/training/train.py)
    pause = tmp_path / "pause1"
    proc = _start(params, out, f"{a} checkpoint 0", pause)
    _wait_for_pause(proc, pause)
    assert _processes_in(out), "no kernel running at the kill point"
    assert (a / "checkpoints" / "epoch_000.pt").is_file()
    assert _kill(proc) == -signal.SIGKILL
    assert not (a / "train_complete.json").exists(), "killed after training, not before it"
    _no_orphans(out)
    assert not is_complete(a) and not b.exists()
    assert {c.run: c.state for c in verify_results(out)}[str(a.relative_to(out))] == "partial"

    # 2. SIGTERM mid-evaluation: the running run finishes, no further one starts
    pause = tmp_path / "pause2"
    proc = _start(params, out, _before_cell(a, EVALUATE_NOTEBOOK, "evaluate_run("), pause)
    _wait_for_pause(proc, pause)
    assert (a / "train_complete.json").exists() and not b.exists()
    rc, log = _interrupt(proc, signal.SIGTERM, pause)
    assert rc == 130, log
    assert "rkdo: interrupted" in log
    assert is_complete(a) and not b.exists()
    _no_orphans(out)
    trained = (a / "train_log.jsonl").stat().st_mtime_ns

    # 3. what a write killed half-way leaves (simulated)
    (a / "metrics/epoch_001.json").unlink()
    (a / "metrics/.epoch_001.json.k1ll3d.tmp").write_text('{"linear_eval": 0.')
    (a / ".partial-02_evaluate.ipynb").write_text('{"cells": [')
    checks = {c.run: c for c in verify_results(out)}
    problems = "\n".join(checks[str(a.relative_to(out))].problems)
    assert "missing: metrics/epoch_001.json" in problems
    assert "metrics/.epoch_001.json.k1ll3d.tmp" in problems
    assert ".partial-02_evaluate.ipynb" in problems
    assert not is_complete(a)

    # 4. SIGINT while A is redone from its last complete stage (evaluation only)
    pause = tmp_path / "pause4"
    proc = _start(params, out, _before_cell(a, EVALUATE_NOTEBOOK, "evaluate_run("), pause)
    _wait_for_pause(proc, pause)
    # the leftovers were removed before A's notebooks started
    assert not (a / "metrics/.epoch_001.json.k1ll3d.tmp").exists()
    assert (a / ".partial-02_evaluate.ipynb").exists()  # papermill's, not the planted one
    rc, log = _interrupt(proc, signal.SIGINT, pause)
    assert rc == 130, log
    assert is_complete(a) and not b.exists()
    assert (a / "train_log.jsonl").stat().st_mtime_ns == trained  # not retrained
    _no_orphans(out)

    # 5. the rest, uninterrupted
    assert main(["grid", str(params), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    assert is_complete(a) and is_complete(b)
    ours = results_numbers(out)
    assert len(ours) == 8 and same_as_reference(ours, smoke_results)
    assert main(["verify", str(out)]) == 0
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".partial-*"))
