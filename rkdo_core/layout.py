"""The run folder's layout, torch-free: every file name, path function and completion
marker of a run and of a results folder, in one place.

A results folder holds one run folder per (dataset, protocol, method, seed)::

    RESULTS/grid.json                         the last grid invoked on the folder
    RESULTS/aggregate.json                    the aggregation's manifest
    RESULTS/<dataset>/<protocol>/<method>/seed_<seed>/
        .lock                                 held (flock) while a grid works on the run
        config.json  train_log.jsonl          written by training
        checkpoints/epoch_NNN.pt              one per budget, 0 = the untrained encoder
        train_complete.json                   written last by training
        metrics/epoch_NNN.json                one per budget, written by evaluation
        01_train.ipynb  02_evaluate.ipynb     the executed notebooks
        run_complete.json                     written last by the grid (files + checksums)
        run_failed.json                       written by the grid when the run failed

Everything that reads or writes a run folder imports its names from here; nothing here
imports torch, so verification and reporting start fast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from .runio import read_json

# ---- files of a run folder ----------------------------------------------------------------
CONFIG = "config.json"
TRAIN_LOG = "train_log.jsonl"
#: written last by training
TRAIN_COMPLETE = "train_complete.json"
#: written last by the grid when both of a run's notebooks succeeded
RUN_COMPLETE = "run_complete.json"
RUN_FAILED = "run_failed.json"
LOCK_FILE = ".lock"
CHECKPOINTS = "checkpoints"
METRICS = "metrics"
#: per-run diagnostic figures (04_figures)
FIGURES = "figures"
TRAIN_NOTEBOOK = "01_train.ipynb"
EVALUATE_NOTEBOOK = "02_evaluate.ipynb"
#: prefix of a notebook the grid is still executing (renamed into place when done)
PARTIAL_PREFIX = ".partial-"

# ---- files of a results folder ------------------------------------------------------------
GRID_RECORD = "grid.json"
#: every grid that wrote into a results folder, one record each (``grids/<params name>.json``;
#: grid.json is the last one): the site lists them all
GRID_RECORDS = "grids"
#: ``name==version`` of every installed distribution, written by each grid invocation
ENVIRONMENT = "environment.txt"
MANIFEST = "aggregate.json"
THEORY_NOTEBOOK = "03_convergence_theory.ipynb"
DIAGNOSTICS_NOTEBOOK = "04_figures.ipynb"
AGGREGATE_NOTEBOOK = "05_aggregate.ipynb"

#: version of the metrics files evaluation writes; a file of another version (e.g. one
#: written before the yardstick and FLOP keys existed) is recomputed even without ``force``.
#: 2: + yardstick_icon/_rkdo/_images/_seed/_settings, flops_per_step, train_flops.
#: 3: + the neutral yardsticks (EVAL_V3_KEYS, both protocols) and, full protocol, the
#:    encoder measures of EVAL_FULL_KEYS (CV probe, weighted k-NN, cosine 5-NN).
EVAL_VERSION = 3
#: keys every current metrics file holds beyond the paper's metrics.
EVAL_V2_KEYS = ("yardstick_icon", "yardstick_rkdo", "yardstick_images", "yardstick_seed",
                "yardstick_settings", "flops_per_step", "train_flops")
#: neutral yardsticks (rkdo_core.neutral) on the common yardstick's views, both protocols.
EVAL_V3_KEYS = ("yard_alignment", "yard_uniformity", "yard_rankme", "yard_infonce_t01",
                "yard_infonce_t05", "yard_rkdo_fixed")
#: measures of the encoder every current full-protocol metrics file holds.
EVAL_FULL_KEYS = ("linear_cv", "linear_cv_C", "linear_cv_n_iter", "linear_cv_converged",
                  "knn20", "knn5_cosine", "probe_train_images")

#: keys of a metrics file that say how and when it was computed, not what: wall seconds
#: (whole and split) and, for epoch 0, the run whose equal untrained encoder it reused. Two
#: evaluations of one checkpoint agree on every other key.
EVAL_CIRCUMSTANCE_KEYS = ("seconds", "seconds_embed", "seconds_metrics", "seconds_yardstick",
                          "untrained_shared_from")

#: beside the method folders of a dataset/protocol: the untrained encoder's measures, shared
#: by the runs of one seed (training/evaluate.py: UntrainedShare)
UNTRAINED_DIR = ".untrained"

#: files whose presence makes a ``seed_*`` folder a (possibly unfinished) run folder
RUN_MARKERS = (TRAIN_LOG, TRAIN_COMPLETE, CONFIG, TRAIN_NOTEBOOK, RUN_FAILED)


class _RunKey(Protocol):
    dataset: str
    protocol: str
    method: str
    seed: int


def run_label(cfg: _RunKey) -> str:
    """``dataset/protocol/method/seed_N``: a run's name and its folder below the results."""
    return f"{cfg.dataset}/{cfg.protocol}/{cfg.method}/seed_{cfg.seed}"


def run_dir_for(out: str | Path, cfg: _RunKey) -> Path:
    """RESULTS/<dataset>/<protocol>/<method>/seed_<seed>"""
    return Path(out) / run_label(cfg)


# ---- interactive (JupyterLab) defaults ---------------------------------------------------
#: the run 01/02/04 show when opened by hand: dataset, protocol, method, seed
INTERACTIVE_RUN = ("digits", "paper", "rkdo", 42)


def repository_dir(*parts: str) -> Path:
    """``<repository>/<parts>``: the source checkout holding this package (where the
    Makefile writes ``results/``); outside a checkout (an installed package), ``./``."""
    repo = Path(__file__).resolve().parent.parent
    root = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return root.joinpath(*parts)


def scratch_dir(*parts: str) -> Path:
    """``<repository>/scratch/<parts>``: where notebooks opened by hand write (git-ignored,
    never a grid's results folder), whatever the kernel's working folder. Outside a source
    checkout (an installed package) it is ``./scratch``; ``$RKDO_SCRATCH`` replaces it."""
    if os.environ.get("RKDO_SCRATCH"):
        return Path(os.environ["RKDO_SCRATCH"]).joinpath(*parts)
    return repository_dir("scratch", *parts)


def interactive_run_dir(dataset: str = INTERACTIVE_RUN[0], protocol: str = INTERACTIVE_RUN[1],
                        method: str = INTERACTIVE_RUN[2], seed: int = INTERACTIVE_RUN[3]
                        ) -> Path:
    """The scratch run folder of 01_train's parameters when ``run_dir`` is None (and what
    02_evaluate and 04_figures open by default)."""
    return scratch_dir(dataset, protocol, method, f"seed_{seed}")


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"epoch_{epoch:03d}.pt"


def metrics_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / METRICS / f"epoch_{epoch:03d}.json"


def expected_files(epochs: tuple[int, ...] | list[int]) -> list[str]:
    """Files (relative to the run folder) a complete run with these budgets holds."""
    budgets = (0, *epochs)
    return ([CONFIG, TRAIN_LOG, TRAIN_COMPLETE, TRAIN_NOTEBOOK, EVALUATE_NOTEBOOK]
            + [f"{CHECKPOINTS}/epoch_{e:03d}.pt" for e in budgets]
            + [f"{METRICS}/epoch_{e:03d}.json" for e in budgets])


def require_trained_run(run_dir: str | Path, *, name: str = "run_dir",
                        how: str = "`rkdo train`") -> Path:
    """``run_dir`` as a Path when it holds a finished training run; otherwise
    FileNotFoundError with one line saying what the path is instead: missing, a file, a
    results folder (with a run folder to pass), or a run not trained (yet)."""
    run = Path(run_dir)
    shown = f"{name}={str(run_dir)!r}"
    if not run.exists():
        raise FileNotFoundError(f"{shown} does not exist (absolute: {run.resolve()}); give "
                                "the folder a training run wrote to")
    if not run.is_dir():
        raise FileNotFoundError(f"{shown} is a file; give the folder a training run wrote to")
    if (run / TRAIN_COMPLETE).is_file():
        return run
    inner = sorted(p.parent for p in run.rglob(TRAIN_COMPLETE))
    if inner:
        raise FileNotFoundError(
            f"{shown} is a folder of {len(inner)} run(s), not one run; pass a run folder, "
            f"e.g. {inner[0]}")
    raise FileNotFoundError(f"{shown} holds no complete training run ({TRAIN_COMPLETE} is "
                            f"missing); train it first with {how}")


def is_trained(run_dir: str | Path) -> bool:
    return (Path(run_dir) / TRAIN_COMPLETE).exists()


def is_complete(run_dir: str | Path) -> bool:
    """The grid finished this run: ``run_complete.json`` exists and every file it lists
    (``files``, relative to the run folder) still does — the grid's own rule."""
    marker = Path(run_dir) / RUN_COMPLETE
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text()).get("files", [])
    except (ValueError, AttributeError):
        return False
    return all((Path(run_dir) / f).exists() for f in files)


def metrics_files(root: str | Path) -> list[Path]:
    """Every ``RUN/metrics/epoch_*.json`` below ``root``, sorted."""
    return sorted(Path(root).rglob(f"{METRICS}/epoch_*.json"))


def run_folders(results_dir: str | Path) -> list[Path]:
    """Every run folder below ``results_dir``, complete or not: folders with metrics, and
    ``seed_*`` folders with training or grid files. Sorted."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    candidates = {f.parent.parent for f in metrics_files(root)}
    for marker in (*RUN_MARKERS, RUN_COMPLETE):
        candidates |= {f.parent for f in root.rglob(marker) if f.parent.name.startswith("seed_")}
    return sorted(candidates)


def incomplete_runs(results_dir: str | Path) -> list[Path]:
    """The :func:`run_folders` that are not complete (:func:`is_complete`). Sorted."""
    return [d for d in run_folders(results_dir) if not is_complete(d)]


def step_accounting(results_dir: str | Path) -> dict[str, int]:
    """Optimizer steps the complete runs below ``results_dir`` ran (one training per run to
    its largest budget), against what training a separate model per budget — the
    reference notebook's way — would have needed for the same budgets. From the runs'
    ``train_complete.json`` files."""
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
