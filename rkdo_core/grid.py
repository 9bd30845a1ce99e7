"""Run a params grid: every (dataset, method, seed) executes 01_train then 02_evaluate with
papermill; the executed notebooks are the record of the run (DESIGN.md "Data flow").

A run counts as complete only when ``run_complete.json`` exists; it is written last, after
the training files, one metrics file per budget (0 included) and both executed notebooks
are in place. Re-running a grid skips complete runs, so a stopped grid resumes where it
was. One failing run does not stop the others: it gets ``run_failed.json`` (the error, the
cell, and the executed notebook that shows it) and the grid reports every failure at the
end. Executed notebooks are written under a temporary name and renamed into place when
their execution ends (successfully or not), so a killed grid never leaves half a notebook
under a record's name.

Where the runs execute is a back-end (rkdo_core.backends: ``local``, ``dask``, ``slurm``);
one task is one run, which takes the run's lock (``RUN/.lock``, flock) so that two grids on
one folder never execute the same run. ``run_complete.json`` records the sha256 and size of
every file it lists (``rkdo verify`` re-checks them). Before any work starts the grid checks
that the results folder is writable and that every dataset's files are present and intact.

Locally, runs execute in a thread pool of ``workers`` threads; each thread only waits on its own
papermill kernel (a separate process), which does the work. On a CPU every run then gets
``cores // workers`` torch threads unless the params file sets ``threads`` (two 1-thread
runs side by side did 1.38x the work of one 2-thread run on the 2-core machine here).
"""

from __future__ import annotations

import errno
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ConfigError, GridSpec, RunConfig
from .integrity import checksums, leftover_temporaries, size_changes
from .runio import git_state, read_json, write_json_atomic

# the completion rule lives with the aggregation (which must not import torch to apply it)
from .stats import RUN_COMPLETE, is_complete

__all__ = ["RUN_COMPLETE", "is_complete", "run_grid", "run_one", "run_dir_for"]

RUN_FAILED = "run_failed.json"
TRAIN_NOTEBOOK = "01_train.ipynb"
EVALUATE_NOTEBOOK = "02_evaluate.ipynb"
GRID_RECORD = "grid.json"


def run_dir_for(out: str | Path, cfg: RunConfig) -> Path:
    """RESULTS/<dataset>/<protocol>/<method>/seed_<seed>"""
    return Path(out) / cfg.dataset / cfg.protocol / cfg.method / f"seed_{cfg.seed}"


def run_label(cfg: RunConfig) -> str:
    return f"{cfg.dataset}/{cfg.protocol}/{cfg.method}/seed_{cfg.seed}"


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


def expected_files(cfg: RunConfig) -> list[str]:
    """Files (relative to the run folder) a complete run holds."""
    from .train import TRAIN_COMPLETE

    budgets = (0, *cfg.epochs)
    return (["config.json", "train_log.jsonl", TRAIN_COMPLETE, TRAIN_NOTEBOOK,
             EVALUATE_NOTEBOOK]
            + [f"checkpoints/epoch_{e:03d}.pt" for e in budgets]
            + [f"metrics/epoch_{e:03d}.json" for e in budgets])


@dataclass
class RunOutcome:
    label: str
    run_dir: Path
    status: str  # "complete" | "skipped" | "failed" | "running elsewhere"
    seconds: float = 0.0
    error: str | None = None
    notebook: Path | None = None  # the executed notebook that shows the error


@dataclass
class GridReport:
    out: Path
    outcomes: list[RunOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def _execute(name: str, run_dir: Path, params: dict[str, Any], kernel: str | None) -> Path:
    """Execute notebook ``name`` into ``run_dir/name`` via a temporary file, renamed into
    place whether or not it fails (the failed notebook is the record of the failure)."""
    from .notebooks import execute_notebook

    final = run_dir / name
    partial = run_dir / f".partial-{name}"
    try:
        execute_notebook(name, partial, params, kernel_name=kernel, cwd=run_dir)
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
    :data:`rkdo_core.train.EVAL_VERSION`), relative to the run folder."""
    from .train import EVAL_VERSION

    stale = []
    for f in sorted((run_dir / "metrics").glob("epoch_*.json")):
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
            if not evaluate_only:
                _execute(TRAIN_NOTEBOOK, run_dir, notebook_params(cfg, run_dir), kernel)
            nb = run_dir / EVALUATE_NOTEBOOK
            _execute(EVALUATE_NOTEBOOK, run_dir, {"run_dir": str(run_dir)}, kernel)
            missing = [f for f in expected_files(cfg) if not (run_dir / f).exists()]
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
        files = expected_files(cfg)
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
    threads, see train.same_run_config), else the differing fields as 'field old -> new'."""
    from .train import TRAIN_COMPLETE, run_config_differences

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


def plan_grid(configs: list[RunConfig], out: str | Path
              ) -> list[tuple[RunConfig, Path, str, str]]:
    """(config, run folder, state, detail) per run, without running anything. States:
    ``complete`` (skipped), ``other config`` (complete, but made with other settings:
    refused), ``altered`` (complete, but a file changed size: refused), ``running
    elsewhere`` (another live process holds its lock: left to it), ``failed before`` (has
    run_failed.json: tried again), :data:`STALE` (re-evaluated, not retrained), ``pending``."""
    from .backends import lock_holder

    plan = []
    for cfg in configs:
        run_dir = run_dir_for(out, cfg).resolve()
        state, detail = complete_state(run_dir, cfg)
        if state in ("pending", "failed before", STALE):
            holder = lock_holder(run_dir)
            if holder:
                state, detail = "running elsewhere", f"locked by {holder}"
        plan.append((cfg, run_dir, state, detail))
    return plan


def check_writable(out: Path) -> None:
    """ConfigError naming the folder when results cannot be written there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rkdo-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError("--out", str(out), "the results folder must be writable; "
                          + describe_os_error(e)) from None


def check_datasets(configs: list[RunConfig]) -> None:
    """Load every dataset the grid needs once, before any run starts: missing or truncated
    files (md5 checked by torchvision) raise DatasetUnavailableError naming them. This also
    downloads a missing dataset once, where the network allows, instead of in every run."""
    from .data import load_dataset

    seen = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.data_root, cfg.image_size)
        if key not in seen:
            seen.add(key)
            load_dataset(cfg.dataset, data_root=cfg.data_root, image_size=cfg.image_size)


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_grid(spec: GridSpec, out: str | Path, *, workers: int = 1,
             override: dict[str, Any] | None = None, kernel: str | None = None,
             progress: bool = True,
             on_outcome: Callable[[RunOutcome], None] | None = None,
             backend: str = "local", scheduler: str | None = None,
             slurm_options: dict[str, Any] | None = None,
             check_data: bool = True) -> GridReport:
    """Execute every incomplete run of ``spec`` into ``out``; returns what happened to each.

    ``override`` sets RunConfig fields for every run (e.g. ``data_root``, ``device``).
    ``backend`` is ``local``, ``dask`` (``scheduler``: a ``tcp://HOST:PORT`` address, else
    an embedded LocalCluster of ``workers`` processes) or ``slurm`` (``slurm_options`` from
    :func:`rkdo_core.backends.load_slurm_options`). Before anything runs, the results folder
    must be writable and (``check_data``) every dataset present and intact.
    """
    from tqdm.auto import tqdm

    from . import backends

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError("workers", workers, "must be a positive integer")
    if backend not in backends.BACKENDS:
        raise ConfigError("--backend", backend, f"allowed: {list(backends.BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ConfigError("--scheduler", scheduler, "only goes with --backend dask")
    override = dict(override or {})
    # cores//workers describes this machine: right for local runs and an embedded cluster
    on_this_machine = backend == "local" or (backend == "dask" and scheduler is None)
    if (on_this_machine and workers > 1 and "threads" not in spec.config
            and "threads" not in override):
        override["threads"] = default_threads(workers)
    configs = spec.configs(**override)
    out = Path(out)
    check_writable(out)
    if check_data:
        check_datasets(configs)
    write_json_atomic(out / GRID_RECORD, {**spec.to_dict(), "override": override,
                                          "workers": workers, "backend": backend})
    report = GridReport(out)
    todo = []
    for cfg, run_dir, state, detail in plan_grid(configs, out):
        if state in ("pending", "failed before", STALE):
            todo.append((cfg, run_dir))
        elif state in ("other config", "altered"):  # never reuse nor overwrite a finished run
            report.outcomes.append(RunOutcome(run_label(cfg), run_dir, "failed",
                                              error=detail, notebook=None))
        elif state == "running elsewhere":
            report.outcomes.append(RunOutcome(run_label(cfg), run_dir, state, error=detail))
        else:
            report.outcomes.append(RunOutcome(run_label(cfg), run_dir, "skipped"))
    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="runs", unit="run",
               disable=not progress, dynamic_ncols=True)

    def done(outcome: RunOutcome) -> None:
        report.outcomes.append(outcome)
        bar.update(1)
        bar.set_postfix(failed=report.count("failed"), refresh=False)
        if outcome.status == "failed":
            bar.write(f"FAILED {outcome.label}: {outcome.error}"
                      + (f"\n       see {outcome.notebook}" if outcome.notebook else ""))
        elif outcome.status == "running elsewhere":
            bar.write(f"running elsewhere: {outcome.label} ({outcome.error}); left to it")
        if on_outcome:
            on_outcome(outcome)

    try:
        with sigterm_as_interrupt():
            if backend == "local":
                backends.execute_local(todo, done, workers=workers, kernel=kernel)
            elif backend == "dask":
                backends.execute_dask(todo, done, workers=workers, kernel=kernel,
                                      scheduler=scheduler)
            else:
                backends.execute_slurm(todo, done, out=out, kernel=kernel,
                                       options=slurm_options)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    order = {run_label(c): i for i, c in enumerate(configs)}
    report.outcomes.sort(key=lambda o: order[o.label])
    return report


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is."""


@contextmanager
def sigterm_as_interrupt():
    """While the grid runs, SIGTERM (a scheduler's pre-emption, `kill`) takes Ctrl-C's path:
    no further run starts, papermill shuts its kernels down, only complete runs are marked.
    A no-op outside the main thread (signal handlers can only be set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def step_accounting(results_dir: str | Path) -> dict[str, int]:
    """Optimizer steps the complete runs below ``results_dir`` ran (one training per run to
    its largest budget), against what training a separate model per budget — the
    reference notebook's way — would have needed for the same budgets. From the runs'
    ``train_complete.json`` files."""
    from .train import TRAIN_COMPLETE

    runs = ran = separate = 0
    for marker in sorted(Path(results_dir).rglob(RUN_COMPLETE)):
        if not is_complete(marker.parent):
            continue
        budgets = read_json(marker.parent / TRAIN_COMPLETE).get("budgets", [])
        steps = [b["steps"] for b in budgets]
        if not steps:
            continue
        runs += 1
        ran += max(steps)
        separate += sum(steps)
    return {"runs": runs, "steps_run": ran, "steps_separate_runs": separate}
