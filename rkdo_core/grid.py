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

Runs execute in a thread pool of ``workers`` threads; each thread only waits on its own
papermill kernel (a separate process), which does the work. On a CPU every run then gets
``cores // workers`` torch threads unless the params file sets ``threads`` (two 1-thread
runs side by side did 1.38x the work of one 2-thread run on the 2-core machine here).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import GridSpec, RunConfig
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
    status: str  # "complete" | "skipped" | "failed"
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


def run_one(cfg: RunConfig, run_dir: Path, *, kernel: str | None = None) -> RunOutcome:
    """Train + evaluate one run through its notebooks; never raises for a failing run."""
    from papermill.exceptions import PapermillExecutionError

    label = run_label(cfg)
    t0 = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_COMPLETE).unlink(missing_ok=True)
    kernel_errors = []
    for _attempt in range(KERNEL_ATTEMPTS):
        nb = run_dir / TRAIN_NOTEBOOK
        try:
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
        except Exception as e:  # dead kernel, no kernel, disk full, …: maybe once more
            kernel_errors.append((f"{type(e).__name__}: {e}", traceback.format_exc(), nb))
    else:
        msg, tb, nb = kernel_errors[-1]
        if len(kernel_errors) > 1:
            msg += f" ({len(kernel_errors)} attempts)"
        return _failed(label, run_dir, t0, msg, nb if nb.exists() else None, tb=tb)
    seconds = time.perf_counter() - t0
    (run_dir / RUN_FAILED).unlink(missing_ok=True)
    write_json_atomic(run_dir / RUN_COMPLETE, {
        "run": label, "config": cfg.to_dict(), "files": expected_files(cfg),
        "seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kernel_errors_retried": [m for m, _, _ in kernel_errors], "git": git_state()})
    return RunOutcome(label, run_dir, "complete", seconds)


def _failed(label: str, run_dir: Path, t0: float, error: str, notebook: Path | None,
            tb: str | None = None) -> RunOutcome:
    seconds = time.perf_counter() - t0
    write_json_atomic(run_dir / RUN_FAILED, {
        "run": label, "error": error, "notebook": str(notebook) if notebook else None,
        "traceback": tb, "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return RunOutcome(label, run_dir, "failed", seconds, error, notebook)


def _config_change(run_dir: Path, cfg: RunConfig) -> str | None:
    """None when the complete run in ``run_dir`` was made with ``cfg`` (up to data_root and
    threads, see train.same_run_config), else the differing fields as 'field old -> new'."""
    from .train import TRAIN_COMPLETE, run_config_differences

    old = read_json(run_dir / TRAIN_COMPLETE).get("config", {})
    return ", ".join(run_config_differences(old, cfg.to_dict())) or None


def plan_grid(configs: list[RunConfig], out: str | Path
              ) -> list[tuple[RunConfig, Path, str, str]]:
    """(config, run folder, state, detail) per run, without running anything. States:
    ``complete`` (skipped), ``other config`` (complete, but made with other settings:
    refused), ``failed before`` (has run_failed.json: tried again), ``pending``."""
    plan = []
    for cfg in configs:
        run_dir = run_dir_for(out, cfg).resolve()
        if is_complete(run_dir):
            differs = _config_change(run_dir, cfg)
            if differs:
                plan.append((cfg, run_dir, "other config",
                             f"holds a complete run with a different config ({differs}); "
                             "use another --out, or delete the run folder to redo it"))
            else:
                plan.append((cfg, run_dir, "complete", ""))
        elif (run_dir / RUN_FAILED).exists():
            plan.append((cfg, run_dir, "failed before",
                         str(read_json(run_dir / RUN_FAILED).get("error"))))
        else:
            plan.append((cfg, run_dir, "pending", ""))
    return plan


def default_threads(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_grid(spec: GridSpec, out: str | Path, *, workers: int = 1,
             override: dict[str, Any] | None = None, kernel: str | None = None,
             progress: bool = True,
             on_outcome: Callable[[RunOutcome], None] | None = None) -> GridReport:
    """Execute every incomplete run of ``spec`` into ``out``; returns what happened to each.

    ``override`` sets RunConfig fields for every run (e.g. ``data_root``, ``device``).
    """
    from tqdm.auto import tqdm

    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        from .config import ConfigError

        raise ConfigError("workers", workers, "must be a positive integer")
    override = dict(override or {})
    if workers > 1 and "threads" not in spec.config and "threads" not in override:
        override["threads"] = default_threads(workers)
    configs = spec.configs(**override)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / GRID_RECORD, {**spec.to_dict(), "override": override,
                                          "workers": workers})
    report = GridReport(out)
    todo = []
    for cfg, run_dir, state, detail in plan_grid(configs, out):
        if state in ("pending", "failed before"):
            todo.append((cfg, run_dir))
        elif state == "other config":  # never reuse nor overwrite a finished run
            report.outcomes.append(RunOutcome(run_label(cfg), run_dir, "failed",
                                              error=detail, notebook=None))
        else:
            report.outcomes.append(RunOutcome(run_label(cfg), run_dir, "skipped"))
    t0 = time.perf_counter()
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="runs", unit="run",
               disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = []
    try:
        futures = [pool.submit(run_one, cfg, run_dir, kernel=kernel) for cfg, run_dir in todo]
        for fut in as_completed(futures):
            outcome = fut.result()
            report.outcomes.append(outcome)
            bar.update(1)
            bar.set_postfix(failed=report.count("failed"), refresh=False)
            if outcome.status == "failed":
                bar.write(f"FAILED {outcome.label}: {outcome.error}\n"
                          f"       see {outcome.notebook}")
            if on_outcome:
                on_outcome(outcome)
    except BaseException:
        # Ctrl-C (or any error here): start no further run. The runs already executing
        # finish on their own (each is a separate kernel), and only complete runs are
        # marked so; the next invocation resumes with the rest.
        pool.shutdown(wait=False, cancel_futures=True)
        bar.write(f"stopping: {sum(f.cancelled() for f in futures)} queued run(s) will not "
                  "start; the running ones finish first")
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - t0
    order = {run_label(c): i for i, c in enumerate(configs)}
    report.outcomes.sort(key=lambda o: order[o.label])
    return report


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
