"""One frozen, validated run configuration (PAPER.md §3 holds every default).

`RunConfig` is the only configuration type of the suite. Every knob of the authors'
notebook is a field; invalid values raise :class:`ConfigError`, whose message names the
field, the value and what is allowed. Two presets exist:

- ``paper``: the authors' notebook protocol — an "epoch" is 10 batches, evaluation on the
  first 704 test images (11 batches of 64) with a seeded 80/20 split for the linear probe,
  metrics on the 64-d projection output.
- ``full``: real epochs (a full pass over the training split), evaluation on the whole
  test set with the linear probe trained on train-set features of the 512-d backbone.

A protocol is a value here, never a hidden ``break`` in a training loop.

Speed fields (see ``rkdo bench`` and README "Performance"): ``matmul_1x1_maps`` and
``fused_adam`` are on by default because they change results only at float32 rounding level
(see their comments below); ``channels_last``, ``fused_views``, ``amp_bf16`` and ``compile``
change numerics more (or cost a long compile) and are off by default; ``threads`` fixes
torch's intra-op thread count for the run (None leaves torch's default). Both default-on
fields off reproduce the earlier loop bit for bit. With them on, a whole default run
(digits, seed 42, 100 steps, 1 thread) ends at loss 1.7538 (RKDO) / 2.4660 (I-Con) instead of
1.7064 / 2.4455, and the linear probe at 0.657 / 0.667 instead of 0.685 / 0.676: the same
size of change as running the earlier code with 2 threads instead of 1 (1.7246 / 2.4374,
0.648 / 0.704), and within one seed-to-seed standard deviation (0.062 / 0.041 for the loss) —
float32 training diverges chaotically from any rounding change; the step-0 loss is unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .data import DATASET_NAMES

METHOD_NAMES = ("icon", "rkdo")
PROTOCOLS = ("paper", "full")
EVAL_FEATURES = ("projection", "backbone")
PAPER_SEEDS = (42, 123, 456, 789, 101)
PAPER_BUDGETS = (1, 2, 5, 10)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names field, value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid config value {field_name}={value!r}: {allowed}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one (dataset, method, seed) run needs. Field names of the loss knobs are
    exactly the keyword names of the loss functions in :mod:`rkdo_core.losses`."""

    dataset: str = "digits"
    method: str = "rkdo"
    seed: int = 42
    protocol: str = "paper"
    epochs: tuple[int, ...] = PAPER_BUDGETS
    steps_per_epoch: int | None = 10
    eval_images: int | None = 704
    eval_features: str = "projection"
    batch_size: int = 64
    image_size: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-5
    temperature: float = 0.5
    debias_alpha: float = 0.2
    alpha: float = 0.5
    depth: int = 3
    beta: float = 0.1
    head_batchnorm: bool = False
    device: str = "auto"
    # ---- speed (rkdo bench measures them; README "Performance") ----------------------
    # At 32x32 input ResNet-18's layer4 sees 1x1 maps, where a 3x3 conv only ever multiplies
    # padding with 8 of its 9 taps; computed as one matmul over the taps that touch the image
    # (exact in real arithmetic; float32 gradients differ from oneDNN's by ~2e-6 relative,
    # while both are ~1e-3 from float64). See model.SmallMapConv2d.
    matmul_1x1_maps: bool = True
    # torch's fused Adam kernel: same gradients, same accuracy against a float64 Adam; ~5 %
    # of parameters differ from the for-loop Adam by one float32 ulp after an update.
    fused_adam: bool = True
    # NHWC activations/weights: a step 1.27x faster on the 2-core CPU, but its batch-norm
    # kernels put step-0 gradients 6e-3 (relative) from float64, NCHW's 1e-3: off by default.
    channels_last: bool = False
    # Both views through one forward pass: a step 1.25x faster, but batch-norm statistics then
    # mix the views (the reference runs one pass per view), which changes the objective.
    fused_views: bool = False
    # bfloat16 autocast for the encoder (the loss stays float32). For GPUs: on a CPU without
    # native bf16 (the 2-core AMD EPYC here) a step is ~28x slower.
    amp_bf16: bool = False
    # torch.compile the encoder (needs a C++ compiler on CPU; the first step compiles for
    # ~75 s here with a cold cache, and later steps were only ~4 % faster on this CPU).
    compile: bool = False
    # torch intra-op threads for this run; None leaves torch's default (all cores).
    threads: int | None = None
    data_root: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Normalise the budget list first (YAML/CLI give lists), then validate everything.
        if isinstance(self.epochs, (list, tuple)):
            object.__setattr__(self, "epochs", tuple(self.epochs))
        _validate(self)

    # ---- construction helpers -------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RunConfig:
        """A preset (``paper`` or ``full``) with field overrides applied on top."""
        if name not in PRESETS:
            raise ConfigError("protocol", name, f"allowed presets are {sorted(PRESETS)}")
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(unknown[0], overrides[unknown[0]], _known_fields_msg())
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping (JSON/YAML); ``protocol`` selects the preset defaults."""
        values = dict(values)
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(unknown[0], values[unknown[0]], _known_fields_msg())
        return cls.preset(values.pop("protocol", "paper"), **values)

    @classmethod
    def from_json(cls, path: str | Path) -> RunConfig:
        data = json.loads(Path(path).read_text())
        return cls.from_dict(data.get("config", data))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["epochs"] = list(self.epochs)
        return d

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    # ---- derived values ---------------------------------------------------------------
    @property
    def max_epochs(self) -> int:
        return self.epochs[-1]

    def loss_temperatures(self) -> list[float]:
        """Scheduled temperatures τ0·(1 − β·t/T) for t = 0..T (PAPER.md eq. 4 schedule)."""
        return [self.temperature * (1.0 - self.beta * t / self.depth)
                for t in range(self.depth + 1)]


PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(protocol="paper", steps_per_epoch=10, eval_images=704,
                  eval_features="projection"),
    "full": dict(protocol="full", steps_per_epoch=None, eval_images=None,
                 eval_features="backbone"),
}


def _known_fields_msg() -> str:
    return "unknown field; known fields are " + ", ".join(f.name for f in fields(RunConfig))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _validate(c: RunConfig) -> None:
    if c.dataset not in DATASET_NAMES:
        raise ConfigError("dataset", c.dataset, f"allowed datasets are {list(DATASET_NAMES)}")
    if c.method not in METHOD_NAMES:
        raise ConfigError("method", c.method, f"allowed methods are {list(METHOD_NAMES)}")
    if c.protocol not in PROTOCOLS:
        raise ConfigError("protocol", c.protocol, f"allowed protocols are {list(PROTOCOLS)}")
    if c.eval_features not in EVAL_FEATURES:
        raise ConfigError("eval_features", c.eval_features,
                          f"allowed values are {list(EVAL_FEATURES)}")
    if not _is_int(c.seed) or c.seed < 0:
        raise ConfigError("seed", c.seed, "must be a non-negative integer")
    _validate_budgets(c.epochs)
    if c.steps_per_epoch is not None and (not _is_int(c.steps_per_epoch) or c.steps_per_epoch < 1):
        raise ConfigError("steps_per_epoch", c.steps_per_epoch,
                          "must be a positive integer, or None for a full pass over the data")
    if c.eval_images is not None and (not _is_int(c.eval_images) or c.eval_images < 10):
        raise ConfigError("eval_images", c.eval_images,
                          "must be an integer >= 10, or None for the whole test set")
    if not _is_int(c.batch_size) or c.batch_size < 2:
        raise ConfigError("batch_size", c.batch_size,
                          "must be an integer >= 2 (each row needs negatives; batch-norm needs 2)")
    if c.image_size is not None and (not _is_int(c.image_size) or c.image_size < 8):
        raise ConfigError("image_size", c.image_size,
                          "must be an integer >= 8, or None for the dataset's default")
    if not _is_number(c.lr) or c.lr < 0:
        raise ConfigError("lr", c.lr, "must be a number >= 0 (0 freezes the model)")
    if not _is_number(c.weight_decay) or c.weight_decay < 0:
        raise ConfigError("weight_decay", c.weight_decay, "must be a number >= 0")
    if not _is_number(c.temperature) or not c.temperature > 0:
        raise ConfigError("temperature", c.temperature, "must be a number > 0")
    if not _is_number(c.debias_alpha) or not 0 <= c.debias_alpha <= 1:
        raise ConfigError("debias_alpha", c.debias_alpha, "must lie in [0, 1]")
    if not _is_number(c.alpha) or not 0 < c.alpha <= 1:
        raise ConfigError("alpha", c.alpha, "must lie in (0, 1]")
    if not _is_int(c.depth) or c.depth < 1:
        raise ConfigError("depth", c.depth, "must be an integer >= 1")
    if not _is_number(c.beta) or not c.beta < 1:
        # The last scheduled temperature is τ0·(1 − β); it must stay positive.
        raise ConfigError("beta", c.beta,
                          f"must be < 1 so that every scheduled temperature "
                          f"τ0·(1 − β·t/{c.depth}) stays > 0")
    for name in ("head_batchnorm", "matmul_1x1_maps", "fused_adam", "channels_last",
                 "fused_views", "amp_bf16", "compile"):
        if not isinstance(getattr(c, name), bool):
            raise ConfigError(name, getattr(c, name), "must be true or false")
    if c.threads is not None and (not _is_int(c.threads) or c.threads < 1):
        raise ConfigError("threads", c.threads,
                          "must be a positive integer, or None for torch's default (all cores)")
    if not isinstance(c.device, str) or not _DEVICE_RE.match(c.device):
        raise ConfigError("device", c.device, "allowed: auto, cpu, cuda, cuda:N, mps")
    if c.data_root is not None and not isinstance(c.data_root, str):
        raise ConfigError("data_root", c.data_root, "must be a path string or None")


def _validate_budgets(epochs: Any) -> None:
    allowed = ("must be a non-empty list of strictly increasing positive integers, "
               "e.g. [1, 2, 5, 10]")
    if not isinstance(epochs, Sequence) or isinstance(epochs, str) or len(epochs) == 0:
        raise ConfigError("epochs", epochs, allowed)
    if not all(_is_int(e) and e > 0 for e in epochs):
        raise ConfigError("epochs", list(epochs), allowed)
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ConfigError("epochs", list(epochs), allowed)


def parse_int_list(text: str, field_name: str) -> tuple[int, ...]:
    """Parse '1,2,5,10' (CLI form) into a tuple, naming the field on failure."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(field_name, text,
                          "must be comma-separated integers, e.g. 1,2,5,10") from None
