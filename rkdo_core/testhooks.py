"""Test-only pause points: a running grid stops at a named stage, so that a test can kill or
interrupt it exactly there (tests/test_crash.py), however fast or loaded the machine is.

Inert unless the environment variable ``RKDO_TEST_PAUSE_AT`` is set (the test suite sets it
for the grids it starts; nothing else does, and a user has no reason to). Then
``RKDO_TEST_PAUSE_DIR`` must name a folder, and each time the process reaches the stage named
by ``RKDO_TEST_PAUSE_AT``, :func:`pause_point` writes ``DIR/reached`` (the stage and the
process id, atomically) and blocks until ``DIR/release`` exists: at once when it already
does. A test kills the process while it waits, or signals it and creates ``release`` when
the process has taken the signal. After :data:`PAUSE_LIMIT_S` without a release it raises
:class:`PauseNotReleased` (a broken test fails instead of hanging).

Stages, and where they fire:

- ``FOLDER/NOTEBOOK cell ID``: the notebook ``NOTEBOOK`` (its file name in notebooks/),
  executing with working folder ``FOLDER`` (for a grid: the run folder, so this is the path
  the run's executed notebook gets), is about to send its cell ``ID`` (the cell's nbformat
  ``id``) to the kernel: the kernel is running, the cells above have run, this one has not
  (:mod:`rkdo_core.runs.notebooks`, in the process that runs papermill).

Standard library and rkdo_core.runio (its atomic write) only; torch-free.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .runio import write_json_atomic

#: the stage to pause at (unset: every pause point is a no-op)
PAUSE_AT = "RKDO_TEST_PAUSE_AT"
#: the folder of the ``reached`` and ``release`` files
PAUSE_DIR = "RKDO_TEST_PAUSE_DIR"
#: the longest a pause waits for its release (seconds); reached only when a test is broken
PAUSE_LIMIT_S = 900.0
#: how often a pause looks for its release file (seconds)
RELEASE_POLL_S = 0.01


class PauseNotReleased(RuntimeError):
    """A test pause was never released."""


def active() -> bool:
    """True when a test has asked for a pause (``RKDO_TEST_PAUSE_AT`` is set)."""
    return bool(os.environ.get(PAUSE_AT))


def pause_point(stage: str) -> None:
    """Pause here when ``stage`` is the stage a test asked for (see the module docstring);
    otherwise return at once."""
    if os.environ.get(PAUSE_AT) != stage or not stage:
        return
    folder = os.environ.get(PAUSE_DIR)
    if not folder:
        raise RuntimeError(f"{PAUSE_AT} is set but {PAUSE_DIR} is not")
    folder = Path(folder)
    write_json_atomic(folder / "reached", {"stage": stage, "pid": os.getpid()})
    deadline = time.monotonic() + PAUSE_LIMIT_S
    while not (folder / "release").exists():
        if time.monotonic() > deadline:
            raise PauseNotReleased(f"test pause at {stage!r}: no {folder / 'release'} "
                                   f"after {PAUSE_LIMIT_S:.0f} s")
        time.sleep(RELEASE_POLL_S)
