"""Run a params grid: every (dataset, method, seed) executes 01_train then 02_evaluate with
papermill; the executed notebooks are the record of the run (docs/design.md "Data flow").

A run counts as complete only when ``run_complete.json`` exists; it is written last, after
the training files, one metrics file per budget (0 included) and both executed notebooks
are in place. Re-running a grid skips complete runs, so a stopped grid resumes where it
was. One failing run does not stop the others: it gets ``run_failed.json`` (the error, the
cell, and the executed notebook that shows it) and the grid reports every failure at the
end. Executed notebooks are written under a temporary name and renamed into place when
their execution ends (successfully or not), so a killed grid never leaves half a notebook
under a record's name.

Where the runs execute is a back-end (rkdo_core.runs.backends: ``local``, ``dask``, ``slurm``);
one task is one run, which takes the run's lock (``RUN/.lock``, flock) so that two grids on
one folder never execute the same run. ``run_complete.json`` records the sha256 and size of
every file it lists (``rkdo verify`` re-checks them). Before any work starts the grid checks
that the results folder is writable and that every dataset's files are present and intact.

Locally, runs execute in a thread pool of ``workers`` threads; each thread only waits on its own
papermill kernel (a separate process), which does the work. Every run uses the config's
``threads`` (default 1, whatever ``workers`` is: float32 training on a CPU gives other numbers
with another thread count, so a run of the grid and the same run by hand agree only with the
same threads; two 1-thread runs side by side also do more work than one 2-thread run on a
2-core CPU, `rkdo bench` measures the ratio on the machine at hand).

:func:`prepare_grid` is every check made before a run starts; ``rkdo grid --dry-run`` makes
the same checks (creating nothing, downloading nothing) before it prints its plan.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import ConfigError, GridSpec, RunConfig
from ..datasets import facts
from ..errors import DatasetUnavailableError
from ..layout import ENVIRONMENT, GRID_RECORD, GRID_RECORDS, run_dir_for, run_label
from ..runio import installed_packages, write_atomic, write_json_atomic
from . import backends
from .locks import lock_holder
from .runner import STALE, RunOutcome, complete_state, describe_os_error


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


def plan_grid(configs: list[RunConfig], out: str | Path
              ) -> list[tuple[RunConfig, Path, str, str]]:
    """(config, run folder, state, detail) per run, without running anything. States:
    ``complete`` (skipped), ``other config`` (complete, but made with other settings:
    refused), ``altered`` (complete, but a file changed size: refused), ``running
    elsewhere`` (another live process holds its lock: left to it), ``failed before`` (has
    run_failed.json: tried again), :data:`STALE` (re-evaluated, not retrained), ``pending``."""
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


def check_writable(out: Path, *, create: bool = True) -> None:
    """ConfigError naming the folder when results cannot be written there. ``create=False``
    (a dry run) creates nothing that stays: a folder that does not exist yet is checked
    through the nearest existing folder above it, where the real run would create it."""
    try:
        probe_dir = out
        if create:
            out.mkdir(parents=True, exist_ok=True)
        else:
            while not probe_dir.exists() and probe_dir.parent != probe_dir:
                probe_dir = probe_dir.parent
        fd, probe = tempfile.mkstemp(prefix=".rkdo-write-test-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError("--out", str(out), "the results folder must be writable; "
                          + describe_os_error(e)) from None


def check_datasets(configs: list[RunConfig], *, download: bool = True) -> None:
    """Load every dataset the grid needs once, before any run starts: missing or truncated
    files (md5 checked by torchvision) raise DatasetUnavailableError naming them. This also
    downloads a missing dataset once, where the network allows, instead of in every run
    (``download=False``, a dry run: it says that the real run would try to). Bundled datasets
    (digits) have no files to check and are skipped, so their grids never import torch here."""
    seen = set()
    for cfg in configs:
        key = (cfg.dataset, cfg.data_root, cfg.image_size)
        if key in seen or facts(cfg.dataset).bundled:
            continue
        seen.add(key)
        from ..data import load_dataset  # deferred: imports torch, only needed here

        try:
            load_dataset(cfg.dataset, data_root=cfg.data_root, image_size=cfg.image_size,
                         download=download)
        except DatasetUnavailableError as e:
            if download:
                raise
            msg = str(e).replace("call with download=True where the network is reachable",
                                 "run the grid without --dry-run where the network is "
                                 "reachable (it downloads missing files first)")
            raise DatasetUnavailableError(
                f"{msg}\n(--dry-run downloads nothing; --no-data-check skips this check)"
            ) from e


def prepare_grid(spec: GridSpec, out: str | Path, *, workers: int = 1,
                 override: dict[str, Any] | None = None, backend: str = "local",
                 scheduler: str | None = None, check_data: bool = True,
                 dry_run: bool = False) -> list[RunConfig]:
    """Every check made before a run of the grid starts, in order, and the runs' configs:
    ``workers``, ``backend``/``scheduler``, every run's config, a writable results folder,
    and (``check_data``) every dataset present and intact. A ``dry_run`` makes the same
    checks with the same messages but creates no folder and downloads nothing."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError("workers", workers, "must be a positive integer")
    if backend not in backends.BACKENDS:
        raise ConfigError("--backend", backend, f"allowed: {list(backends.BACKENDS)}")
    if scheduler is not None and backend != "dask":
        raise ConfigError("--scheduler", scheduler, "only goes with --backend dask")
    configs = spec.configs(**(override or {}))
    check_writable(Path(out), create=not dry_run)
    if check_data:
        check_datasets(configs, download=not dry_run)
    return configs


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
    :func:`rkdo_core.runs.backends.load_slurm_options`). Before anything runs,
    :func:`prepare_grid` checks everything (the results folder must be writable and, with
    ``check_data``, every dataset present and intact).
    """
    override = dict(override or {})
    configs = prepare_grid(spec, out, workers=workers, override=override, backend=backend,
                           scheduler=scheduler, check_data=check_data)
    out = Path(out)
    record = {**spec.to_dict(), "override": override, "workers": workers, "backend": backend}
    write_json_atomic(out / GRID_RECORD, record)
    write_json_atomic(out / GRID_RECORDS / f"{spec.name or 'grid'}.json", record)
    env = installed_packages().encode()  # the exact environment, beside the grid record
    write_atomic(out / ENVIRONMENT, lambda fh: fh.write(env))
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


