"""The learning curve's request (`rkdo curve`'s options, :class:`CurveSpec`) and the checks
that need neither torch nor the data (:func:`check_spec`): the command line validates its
arguments here and answers a bad one at once, before torch is imported
(`rkdo_core.training.curve` runs the curve)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import METHOD_NAMES, ConfigError

DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params" / "fashion_curve.yaml"
DEFAULT_METHODS = ("icon", "rkdo")
DEFAULT_SEEDS = (42, 123)
DEFAULT_STEPS = (0, 100, 250, 500, 1000, 1500)
DEFAULT_PROBE_IMAGES = 5000
DEFAULT_TEST_IMAGES = 2000
DEFAULT_CSV = Path("figures") / "fashion_learning_curve.csv"
DEFAULT_RUNS_DIR = Path("results") / "fashion_curve"


@dataclass(frozen=True)
class CurveSpec:
    """Everything `rkdo curve` needs (the CLI's options)."""

    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    steps: tuple[int, ...] = DEFAULT_STEPS
    probe_images: int = DEFAULT_PROBE_IMAGES
    test_images: int = DEFAULT_TEST_IMAGES
    params: str | Path = DEFAULT_PARAMS
    csv: str | Path = DEFAULT_CSV
    runs_dir: str | Path = DEFAULT_RUNS_DIR
    workers: int = 1
    threads: int | None = None  # None: 1 per run with workers > 1, else torch's default
    overrides: dict[str, Any] = field(default_factory=dict)  # RunConfig fields (--set)
    data_root: str | None = None
    keep_checkpoints: bool = False
    progress: bool = True


# ---- input checks: one ConfigError naming the field, the value and what is allowed ------

def check_spec(spec: CurveSpec) -> None:
    """Everything that can be checked without the data."""
    bad = [m for m in spec.methods if m not in METHOD_NAMES]
    if not spec.methods or bad:
        raise ConfigError("methods", bad[0] if bad else ",".join(spec.methods),
                          f"allowed methods are {', '.join(METHOD_NAMES)} (comma-separated)")
    if len(set(spec.methods)) != len(spec.methods):
        raise ConfigError("methods", ",".join(spec.methods), "must not repeat a method")
    if not spec.seeds or len(set(spec.seeds)) != len(spec.seeds) or \
            any(not isinstance(s, int) or s < 0 for s in spec.seeds):
        raise ConfigError("seeds", ",".join(map(str, spec.seeds)),
                          "must be distinct non-negative integers, e.g. 42,123")
    steps = list(spec.steps)
    allowed = ("must be distinct non-negative integers in increasing order (optimizer "
               "steps; 0 = the untrained encoder) with at least one > 0, e.g. "
               "0,100,250,500,1000,1500")
    if not steps or any(not isinstance(s, int) or s < 0 for s in steps) or \
            any(b <= a for a, b in zip(steps, steps[1:])) or steps[-1] < 1:
        raise ConfigError("steps", ",".join(map(str, steps)), allowed)
    if not isinstance(spec.workers, int) or spec.workers < 1:
        raise ConfigError("workers", spec.workers, "must be an integer >= 1")
    if spec.threads is not None and (not isinstance(spec.threads, int) or spec.threads < 1):
        raise ConfigError("threads", spec.threads, "must be an integer >= 1")
    for name in ("steps_per_epoch", "epochs", "method", "seed", "threads"):
        if name in spec.overrides:
            raise ConfigError("--set", f"{name}={spec.overrides[name]}",
                              f"{name} is set by `rkdo curve` itself (from --steps, "
                              "--methods, --seeds, --threads); use those options")
