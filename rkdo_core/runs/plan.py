"""What a grid would cost before it starts (torch-free): optimizer steps per run and for the
grid, and a time estimate of whole runs from what earlier runs in the folder recorded: the
step times of their training logs, and their whole-run wall time (``run_complete.json``), of
which the part besides the steps is kernel starts, data loading and evaluation (where no
complete run measured it, :data:`RUN_OVERHEAD_S` is assumed and said so).

``rkdo grid --dry-run`` prints it, so a typo such as ``epochs: [1000000]`` (ten million
optimizer steps under the paper preset) is visible before anything runs.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..datasets import facts
from ..layout import RUN_COMPLETE, TRAIN_LOG, run_folders

#: a plan above this many optimizer steps in one run gets a warning line in ``--dry-run``
LARGE_RUN_STEPS = 200_000


def optimizer_steps(cfg: RunConfig) -> int:
    """Optimizer steps a run takes to its largest budget: epochs × steps per epoch (the cap,
    or a full pass ``train_images // batch_size``, as training computes it)."""
    per_epoch = cfg.steps_per_epoch
    if per_epoch is None:
        per_epoch = facts(cfg.dataset).train_images // cfg.batch_size
    return max(cfg.epochs) * per_epoch


#: seconds a run takes besides its optimizer steps (two kernel starts with torch imported,
#: data loading, checkpoints, evaluation of every budget) where no complete run in the folder
#: measured it: a smoke run (4 steps, 64 evaluation images) took ~44 s on a 2-core AMD EPYC
#: (the 6-run smoke grid: 133 s with 2 workers); larger evaluations take longer.
RUN_OVERHEAD_S = 40.0


@dataclass(frozen=True)
class Recorded:
    """What earlier runs in a results folder measured for one (dataset, batch, size, device):
    the median seconds per optimizer step (of ``step_runs`` training logs) and the median
    seconds a complete run spent besides its steps (run_complete.json's whole-run wall time
    minus its logged step times; of ``other_runs`` complete runs), each ``None`` if unknown."""

    step_seconds: float | None
    step_runs: int
    other_seconds: float | None
    other_runs: int


def recorded_times(results_dir: str | Path, dataset: str, batch_size: int, image_size: int,
                   device: str) -> Recorded:
    """Step and per-run times earlier runs in ``results_dir`` with the same dataset, batch
    size, image size and device recorded (see :class:`Recorded`)."""
    steps: list[float] = []
    other: list[float] = []
    for run in run_folders(results_dir):
        cfg_file, log = run / "config.json", run / TRAIN_LOG
        if not (cfg_file.is_file() and log.is_file()):
            continue
        try:
            cfg = json.loads(cfg_file.read_text())
            cfg = cfg.get("config", cfg)
            if (cfg.get("dataset"), cfg.get("batch_size"), cfg.get("image_size"),
                    cfg.get("device")) != (dataset, batch_size, image_size, device):
                continue
            secs = [float(json.loads(line)["seconds"]) for line in log.read_text().splitlines()
                    if line.strip()]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a partial or foreign file says nothing about the step time
        if not secs:
            continue
        steps.append(statistics.median(secs))
        try:
            whole = float(json.loads((run / RUN_COMPLETE).read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not complete (or unreadable): no whole-run time
        other.append(max(0.0, whole - sum(secs)))
    return Recorded(statistics.median(steps) if steps else None, len(steps),
                    statistics.median(other) if other else None, len(other))


def human_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.4 h``, ``12.5 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class CostLine:
    """One dataset's share of a grid: runs, steps per run, and what earlier runs recorded."""

    dataset: str
    runs: int
    steps_per_run: int
    step_seconds: float | None
    from_runs: int
    other_seconds: float | None = None  # per run, besides the steps (None: not measured)
    other_from_runs: int = 0

    @property
    def steps(self) -> int:
        return self.runs * self.steps_per_run

    @property
    def run_seconds(self) -> float | None:
        """Estimated wall time of one run: its steps, plus the measured (else the assumed
        :data:`RUN_OVERHEAD_S`) kernel starts, data loading and evaluation."""
        if self.step_seconds is None:
            return None
        other = RUN_OVERHEAD_S if self.other_seconds is None else self.other_seconds
        return self.steps_per_run * self.step_seconds + other


def grid_cost(configs: list[RunConfig], results_dir: str | Path) -> list[CostLine]:
    """Cost of ``configs`` per (dataset, steps per run), first-seen order."""
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        key = (cfg.dataset, optimizer_steps(cfg), cfg.batch_size, cfg.image_size, cfg.device)
        groups.setdefault(key, []).append(cfg)
    lines = []
    for (dataset, steps, batch, size, device), cfgs in groups.items():
        rec = recorded_times(results_dir, dataset, batch, size, device)
        lines.append(CostLine(dataset, len(cfgs), steps, rec.step_seconds, rec.step_runs,
                              rec.other_seconds, rec.other_runs))
    return lines


def describe_cost(configs: list[RunConfig], results_dir: str | Path,
                  workers: int = 1) -> list[str]:
    """The ``--dry-run`` lines: steps per run and for the grid, and a time estimate that
    includes each run's kernel starts, data loading and evaluation, not only its steps."""
    lines = grid_cost(configs, results_dir)
    out = []
    for c in lines:
        if c.step_seconds is None:
            est = "no step time recorded for it in this folder yet (`rkdo bench` measures one)"
        else:
            other = (f"{c.other_seconds:.0f} s besides the steps: kernel starts, data loading "
                     f"and evaluation (median of {c.other_from_runs} earlier complete run(s) "
                     "here)" if c.other_seconds is not None else
                     f"an assumed {RUN_OVERHEAD_S:.0f} s besides the steps for kernel starts, "
                     "data loading and evaluation (no complete run here measured it; more for "
                     "large evaluations)")
            est = (f"≈ {human_duration(c.run_seconds)} per run: {c.step_seconds:.3g} s/step "
                   f"(median of {c.from_runs} earlier run(s) here) + {other}")
        out.append(f"  {c.dataset}: {c.runs} run(s) × {c.steps_per_run:,} optimizer steps = "
                   f"{c.steps:,} steps; {est}")
        if c.steps_per_run > LARGE_RUN_STEPS:
            out.append(f"  warning: {c.steps_per_run:,} optimizer steps per {c.dataset} run "
                       f"(more than {LARGE_RUN_STEPS:,}); check `epochs:` and "
                       f"`steps_per_epoch` in the params file")
    total = sum(c.steps for c in lines)
    summary = f"  grid: {total:,} optimizer steps"
    if lines and all(c.run_seconds is not None for c in lines):
        runs = sum(c.runs for c in lines)
        at_once = max(1, min(workers, runs))
        secs = max(sum(c.runs * c.run_seconds for c in lines) / at_once,
                   max(c.run_seconds for c in lines))
        summary += (f"; ≈ {human_duration(secs)} with {workers} worker(s) ({runs} runs, "
                    f"{at_once} at a time; training, kernel starts and evaluation included, "
                    "the aggregation not)")
    out.append(summary)
    return out
