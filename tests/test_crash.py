"""Kill `rkdo grid` at several points, resume it, and get the numbers of an uninterrupted run.

One results folder goes through every kill point in turn (the tiny two-run grid of
tests/test_backends.py — the smoke grid's seed 42 — one worker; run A = rkdo/seed_42,
then run B = icon/seed_42):

1. SIGKILL while A trains (its step-0 checkpoint written, train_complete.json not yet):
   the killed grid leaves no kernel behind, and A is not complete;
2. SIGTERM while A evaluates (train_complete.json written): the grid starts no further run
   (B never starts), A finishes and is complete, exit status 130;
3. mid-write, simulated (a kill at the exact instant of a write is impractical): A's last
   metrics file is removed as if its write never landed, and a truncated ``*.tmp`` of an
   atomic write and a truncated ``.partial-`` notebook are left where a killed writer
   leaves them; `rkdo verify` lists all three and A is not complete;
4. SIGINT (what Ctrl-C sends the grid) while A is re-evaluated: A completes without being
   retrained, B does not start;
5. a final uninterrupted invocation runs B; every metrics file and training loss equals the
   uninterrupted smoke grid's (tests/conftest.py), and `rkdo verify` finds nothing wrong.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import results_numbers, same_as_reference, tiny_params

from rkdo_core.cli import main
from rkdo_core.config import load_params
from rkdo_core.layout import is_complete, run_dir_for
from rkdo_core.runs.integrity import verify_results

pytestmark = pytest.mark.slow

RKDO = [sys.executable, "-m", "rkdo_core.cli"]
#: generous bounds on waiting for a file or for kernels to exit (only hit on failure)
WAIT_S = 600


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default disposition and unblocked. An
    ignored or blocked SIGINT is inherited across exec (Python then never raises
    KeyboardInterrupt); in a full test session an earlier in-process test (the Dask /
    submitit back-ends) can leave the test process so, while a user's Ctrl-C reaches a grid
    started from a shell."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(params: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([*RKDO, "grid", str(params), "--out", str(out), "--workers", "1",
                             "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)


def _wait_for(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"grid ended before the kill point:\n{proc.stdout.read()}")
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)


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
    deadline = time.monotonic() + WAIT_S
    while _processes_in(folder):
        assert time.monotonic() < deadline, f"kernels left running: {_processes_in(folder)}"
        time.sleep(0.2)


def _kill(proc: subprocess.Popen, sig: int) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=WAIT_S)
    return proc.returncode, out


def test_killed_grid_resumes_to_the_uninterrupted_numbers(smoke_results, tmp_path):
    params = tiny_params(tmp_path)
    out = (tmp_path / "results").resolve()
    a_cfg, b_cfg = load_params(params).configs()
    a, b = run_dir_for(out, a_cfg), run_dir_for(out, b_cfg)
    assert (a_cfg.method, b_cfg.method) == ("rkdo", "icon")

    # 1. SIGKILL mid-training
    proc = _start(params, out)
    _wait_for(proc, lambda: (a / "checkpoints/epoch_000.pt").exists())
    rc, _ = _kill(proc, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert not (a / "train_complete.json").exists(), "killed after training, not during it"
    _no_orphans(out)
    assert not is_complete(a) and not b.exists()
    assert {c.run: c.state for c in verify_results(out)}[str(a.relative_to(out))] == "partial"

    # 2. SIGTERM mid-evaluation: the running run finishes, no further one starts
    proc = _start(params, out)
    _wait_for(proc, lambda: (a / "train_complete.json").exists())
    rc, log = _kill(proc, signal.SIGTERM)
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
    proc = _start(params, out)
    # (the leftovers are removed first, the planted .partial- before the .tmp; then the
    # evaluation notebook writes a new .partial-)
    _wait_for(proc, lambda: not (a / "metrics/.epoch_001.json.k1ll3d.tmp").exists()
              and (a / ".partial-02_evaluate.ipynb").exists())
    rc, log = _kill(proc, signal.SIGINT)
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
