"""One run of a grid: 01_train then 02_evaluate through papermill, its completion record,
and the state of its folder. A grid task (:func:`run_task`) is one call here.

A run counts as complete only when ``run_complete.json`` exists; it is written last, after
the training files, one metrics file per budget (0 included) and both executed notebooks
are in place, and records the sha256 and size of every file it lists (``rkdo verify``
re-checks them). A failing run gets ``run_failed.json`` (the error, the cell, and the
executed notebook that shows it). Executed notebooks are written under a temporary name and
renamed into place when their execution ends (successfully or not), so a killed grid never
leaves half a notebook under a record's name. The file names are those of
:mod:`rkdo_core.layout`.
"""

from __future__ import annotations

import errno
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, run_config_differences
from ..layout import (
    EVAL_VERSION,
    EVALUATE_NOTEBOOK,
    METRICS,
    PARTIAL_PREFIX,
    RUN_COMPLETE,
    RUN_FAILED,
    TRAIN_COMPLETE,
    TRAIN_NOTEBOOK,
    expected_files,
    is_complete,
    run_label,
)
from ..runio import git_state, read_json, write_json_atomic
from .integrity import checksums, leftover_temporaries, size_changes
from .locks import RunLocked, run_lock
from .notebooks import SharedKernel, execute_notebook, shared_kernel


def notebook_params(cfg: RunConfig, run_dir: Path) -> dict[str, Any]:
    """01_train's parameters for ``cfg``: the grid axes by name, every other field that
    differs from the preset in ``overrides`` (so the executed notebook shows exactly what
    this run changed)."""
    base = RunConfig.preset(cfg.protocol).to_dict()
    mine = cfg.to_dict()
    axes = ("dataset", "method", "seed", "epochs", "protocol")
    overrides = {k: v for k, v in mine.items() if k not in axes and v != base[k]}
    return {"run_dir": str(run_dir), "preset": cfg.protocol, "dataset": cfg.dataset,
            "method": cfg.method, "seed": cfg.seed, "epochs": list(cfg.epochs),
            "overrides": overrides}


@dataclass
class RunOutcome:
    label: str
    run_dir: Path
    status: str  # "complete" | "skipped" | "failed" | "running elsewhere"
    seconds: float = 0.0
    error: str | None = None
    notebook: Path | None = None  # the executed notebook that shows the error


def _execute(name: str, run_dir: Path, params: dict[str, Any], kernel: SharedKernel) -> Path:
    """Execute notebook ``name`` into ``run_dir/name`` via a temporary file, renamed into
    place whether or not it fails (the failed notebook is the record of the failure), in
    the run's :class:`SharedKernel` (both notebooks of a run execute in one kernel)."""
    final = run_dir / name
    partial = run_dir / f"{PARTIAL_PREFIX}{name}"
    try:
        execute_notebook(name, partial, params, cwd=run_dir, kernel=kernel)
    finally:
        if partial.exists():
            os.replace(partial, final)
    return final


#: a run whose kernel dies or does not start (not a failing cell) is tried this many times:
#: kernels started concurrently can lose a race for a TCP port, which says nothing about
#: the run. A failing cell is never retried (it would fail the same way).
KERNEL_ATTEMPTS = 2


class _MissingFiles(RuntimeError):
    pass


#: a complete run whose metrics files come from an older evaluation (no common yardstick,
#: no FLOPs): re-evaluated through 02_evaluate, never retrained
STALE = "stale evaluation"


def stale_metrics(run_dir: Path) -> list[str]:
    """The run's metrics files written by an older evaluation (``eval_version`` below
    :data:`rkdo_core.layout.EVAL_VERSION`), relative to the run folder."""
    stale = []
    for f in sorted((run_dir / METRICS).glob("epoch_*.json")):
        try:
            version = read_json(f).get("eval_version", 1)
        except (OSError, ValueError, AttributeError):
            continue  # unreadable: `rkdo verify` reports it; the checksums catch it
        if version < EVAL_VERSION:
            stale.append(f.relative_to(run_dir).as_posix())
    return stale


def run_one(cfg: RunConfig, run_dir: Path, *, kernel: str | None = None,
            evaluate_only: bool = False) -> RunOutcome:
    """Train + evaluate one run through its notebooks; never raises for a failing run.
    ``evaluate_only``: a complete run's stale evaluation (:data:`STALE`) is redone through
    02_evaluate alone; 01_train's executed notebook, the record of the training, stays."""
    # deferred: papermill takes about a second to import; `rkdo verify` never needs it
    from papermill.exceptions import PapermillExecutionError

    label = run_label(cfg)
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_COMPLETE).unlink(missing_ok=True)
    # what an interrupted write left (a .partial- notebook, an atomic write's .tmp): the
    # caller holds the run's lock, so nobody is writing these now
    for leftover in leftover_temporaries(run_dir):
        (run_dir / leftover).unlink(missing_ok=True)
    kernel_errors = []
    for _attempt in range(KERNEL_ATTEMPTS):
        nb = run_dir / TRAIN_NOTEBOOK
        try:
            # one kernel for both notebooks (imports once; namespace cleared in between)
            with shared_kernel(kernel, cwd=run_dir) as shared:
                if not evaluate_only:
                    _execute(TRAIN_NOTEBOOK, run_dir, notebook_params(cfg, run_dir), shared)
                nb = run_dir / EVALUATE_NOTEBOOK
                _execute(EVALUATE_NOTEBOOK, run_dir, {"run_dir": str(run_dir)}, shared)
            missing = [f for f in expected_files(cfg.epochs) if not (run_dir / f).exists()]
            if missing:
                raise _MissingFiles(f"the notebooks ran but these files are missing: {missing}")
            break
        except PapermillExecutionError as e:
            return _failed(label, run_dir, t0, f"{e.ename}: {e.evalue} (cell {e.exec_count})",
                           nb)
        except _MissingFiles as e:
            return _failed(label, run_dir, t0, str(e), nb)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):  # would fail the same way again
                return _failed(label, run_dir, t0, describe_os_error(e), None,
                               tb=traceback.format_exc())
            kernel_errors.append((f"{type(e).__name__}: {e}", traceback.format_exc(), nb))
        except Exception as e:  # dead kernel, no kernel, …: maybe once more
            kernel_errors.append((f"{type(e).__name__}: {e}", traceback.format_exc(), nb))
    else:
        msg, tb, nb = kernel_errors[-1]
        if len(kernel_errors) > 1:
            msg += f" ({len(kernel_errors)} attempts)"
        return _failed(label, run_dir, t0, msg, nb if nb.exists() else None, tb=tb)
    seconds = time.perf_counter() - t0
    try:
        (run_dir / RUN_FAILED).unlink(missing_ok=True)
        files = expected_files(cfg.epochs)
        write_json_atomic(run_dir / RUN_COMPLETE, {
            "run": label, "config": cfg.to_dict(), "files": files,
            "checksums": checksums(run_dir, files),
            "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "kernel_errors_retried": [m for m, _, _ in kernel_errors], "git": git_state()})
    except OSError as e:  # disk full, folder gone or read-only: the run stays incomplete
        (run_dir / RUN_COMPLETE).unlink(missing_ok=True)
        return _failed(label, run_dir, t0, f"could not record the run as complete: "
                       f"{describe_os_error(e)}", None)
    return RunOutcome(label, run_dir, "complete", seconds)


def describe_os_error(e: OSError) -> str:
    """One line for a write error, saying plainly when the disk is full."""
    where = f" ({e.filename})" if getattr(e, "filename", None) else ""
    if e.errno == errno.ENOSPC:
        return f"disk full: no space left on device{where}; free space and re-run the grid"
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded{where}; free space and re-run the grid"
    return f"{type(e).__name__}: {e}"


def _failed(label: str, run_dir: Path, t0: float, error: str, notebook: Path | None,
            tb: str | None = None) -> RunOutcome:
    seconds = time.perf_counter() - t0
    try:
        write_json_atomic(run_dir / RUN_FAILED, {
            "run": label, "error": error, "notebook": str(notebook) if notebook else None,
            "traceback": tb, "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    except OSError as e:  # e.g. the disk is full: the outcome still says what happened
        error += f" (and {RUN_FAILED} could not be written: {describe_os_error(e)})"
    return RunOutcome(label, run_dir, "failed", seconds, error, notebook)


def _config_change(run_dir: Path, cfg: RunConfig) -> str | None:
    """None when the complete run in ``run_dir`` was made with ``cfg`` (up to data_root and
    threads, see config.same_run_config), else the differing fields as 'field old -> new'."""
    old = read_json(run_dir / TRAIN_COMPLETE).get("config", {})
    return ", ".join(run_config_differences(old, cfg.to_dict())) or None


def complete_state(run_dir: Path, cfg: RunConfig) -> tuple[str, str]:
    """``(state, detail)`` of a run folder as far as completeness goes: ``complete``,
    ``other config`` (complete, made with other settings), ``altered`` (complete, but a
    listed file's size differs from the recorded one), :data:`STALE` (complete, metrics from
    an older evaluation: to re-evaluate), ``failed before`` or ``pending``."""
    if is_complete(run_dir):
        try:
            differs = _config_change(run_dir, cfg)
        except (OSError, ValueError) as e:  # train_complete.json gone or unreadable
            return ("altered", f"complete, but its train_complete.json is unreadable ({e}); "
                    "see `rkdo verify`, and delete the run folder to redo it")
        if differs:
            return ("other config",
                    f"holds a complete run with a different config ({differs}); "
                    "use another --out, or delete the run folder to redo it")
        changed = size_changes(run_dir, read_json(run_dir / RUN_COMPLETE))
        if changed:
            return ("altered", f"complete, but {', '.join(changed)} changed size since it was "
                    f"recorded; see `rkdo verify`, and delete the run folder to redo it")
        stale = stale_metrics(run_dir)
        if stale:
            return (STALE, f"{len(stale)} metrics file(s) from an older evaluation (no common "
                    "yardstick / FLOPs): re-evaluated, not retrained")
        return "complete", ""
    if (run_dir / RUN_FAILED).exists():
        try:
            return "failed before", str(read_json(run_dir / RUN_FAILED).get("error"))
        except (OSError, ValueError, AttributeError):
            return "failed before", f"({RUN_FAILED} unreadable)"
    return "pending", ""


def run_task(cfg: RunConfig, run_dir: str | Path, kernel: str | None = None):
    """One grid task: lock, skip when complete, else run. Returns a RunOutcome; a run
    locked by a live process comes back with status ``running elsewhere``."""
    run_dir = Path(run_dir)
    label = run_label(cfg)
    try:
        with run_lock(run_dir):
            state, detail = complete_state(run_dir, cfg)
            if state == "complete":
                return RunOutcome(label, run_dir, "skipped")
            if state in ("other config", "altered"):
                return RunOutcome(label, run_dir, "failed", error=detail)
            return run_one(cfg, run_dir, kernel=kernel, evaluate_only=state == STALE)
    except RunLocked as e:
        return RunOutcome(label, run_dir, "running elsewhere", error=f"locked by {e}")
