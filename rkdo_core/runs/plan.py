"""What a grid would cost before it starts (torch-free): optimizer steps per run and for the
grid, and a time estimate from step times that earlier runs recorded on this machine.

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
from ..layout import TRAIN_LOG, run_folders

#: a plan above this many optimizer steps in one run gets a warning line in ``--dry-run``
LARGE_RUN_STEPS = 200_000


def optimizer_steps(cfg: RunConfig) -> int:
    """Optimizer steps a run takes to its largest budget: epochs × steps per epoch (the cap,
    or a full pass ``train_images // batch_size``, as training computes it)."""
    per_epoch = cfg.steps_per_epoch
    if per_epoch is None:
        per_epoch = facts(cfg.dataset).train_images // cfg.batch_size
    return max(cfg.epochs) * per_epoch


def recorded_step_seconds(results_dir: str | Path, dataset: str, batch_size: int,
                          image_size: int, device: str) -> tuple[float, int] | None:
    """Median seconds per optimizer step over the training logs of earlier runs in
    ``results_dir`` with the same dataset, batch size, image size and device, and the number
    of runs it comes from; ``None`` where no such run has trained here."""
    per_run: list[float] = []
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
        if secs:
            per_run.append(statistics.median(secs))
    if not per_run:
        return None
    return statistics.median(per_run), len(per_run)


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
    """One dataset's share of a grid: runs, steps per run, and the estimate (if any)."""

    dataset: str
    runs: int
    steps_per_run: int
    step_seconds: float | None
    from_runs: int

    @property
    def steps(self) -> int:
        return self.runs * self.steps_per_run


def grid_cost(configs: list[RunConfig], results_dir: str | Path) -> list[CostLine]:
    """Cost of ``configs`` per (dataset, steps per run), first-seen order."""
    groups: dict[tuple, list[RunConfig]] = {}
    for cfg in configs:
        key = (cfg.dataset, optimizer_steps(cfg), cfg.batch_size, cfg.image_size, cfg.device)
        groups.setdefault(key, []).append(cfg)
    lines = []
    for (dataset, steps, batch, size, device), cfgs in groups.items():
        rec = recorded_step_seconds(results_dir, dataset, batch, size, device)
        lines.append(CostLine(dataset, len(cfgs), steps, rec[0] if rec else None,
                              rec[1] if rec else 0))
    return lines


def describe_cost(configs: list[RunConfig], results_dir: str | Path,
                  workers: int = 1) -> list[str]:
    """The ``--dry-run`` lines: steps per run and for the grid, and a time estimate."""
    lines = grid_cost(configs, results_dir)
    out = []
    for c in lines:
        est = ("no step time recorded for it in this folder yet (`rkdo bench` measures one)"
               if c.step_seconds is None else
               f"≈ {human_duration(c.steps * c.step_seconds)} of training at "
               f"{c.step_seconds:.3g} s/step (median of {c.from_runs} earlier run(s) here)")
        out.append(f"  {c.dataset}: {c.runs} run(s) × {c.steps_per_run:,} optimizer steps = "
                   f"{c.steps:,} steps; {est}")
        if c.steps_per_run > LARGE_RUN_STEPS:
            out.append(f"  warning: {c.steps_per_run:,} optimizer steps per {c.dataset} run "
                       f"(more than {LARGE_RUN_STEPS:,}); check `epochs:` and "
                       f"`steps_per_epoch` in the params file")
    total = sum(c.steps for c in lines)
    known = [c for c in lines if c.step_seconds is not None]
    summary = f"  grid: {total:,} optimizer steps"
    if known and len(known) == len(lines):
        secs = sum(c.steps * c.step_seconds for c in lines) / max(1, workers)
        summary += (f"; ≈ {human_duration(secs)} of training with {workers} worker(s) "
                    "(evaluation and kernel starts not included)")
    out.append(summary)
    return out
