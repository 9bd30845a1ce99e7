"""One frozen, validated run configuration (docs/method.md §3 holds every default).

`RunConfig` is the only configuration type of the suite. Every knob of the authors'
notebook is a field; invalid values raise :class:`ConfigError`, whose message names the
field, the value and what is allowed. Numbers must be finite and lie in ranges where the
float32 training is meaningful (``TEMPERATURE_RANGE``, ``LR_RANGE`` … below, with the
reasons); a number that a params file's YAML read as text (``1e-30``) is named as such.
Two presets exist:

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
torch's intra-op thread count for the run (1 by default, the same by hand and in a grid;
None leaves torch's default). Both default-on
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
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .datasets import DATASET_NAMES

METHOD_NAMES = ("icon", "rkdo")
PROTOCOLS = ("paper", "full")
EVAL_FEATURES = ("projection", "backbone")
PAPER_SEEDS = (42, 123, 456, 789, 101)
PAPER_BUDGETS = (1, 2, 5, 10)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# ---- numeric ranges (every float field must also be finite: NaN/inf are refused) --------
#: Temperatures, τ0 and every scheduled τ0·(1 − β·t/T) of RKDO, lie in this range. The
#: losses run in float32 on similarities s ∈ [−1, 1]. At τ ≥ 1e-3 the logits s/τ lie in
#: [−1e3, 1e3], so log q ≥ −2e3, the loss is at most about T·(2e3 + log B) and its gradient
#: with respect to s, (q − p)/τ, at most 2e3: all far inside float32 (max 3.4e38). More to
#: the point, float32 rounding of s (a dot product of D = 64 unit-vector entries errs by up
#: to about D·2⁻²⁴ ≈ 4e-6) becomes an error ≤ 4e-3 in a logit at τ = 1e-3 but ~0.4 at
#: τ = 1e-5, where the softmax would rank rounding noise; and τ = 1e-300 is 0 in float32,
#: so 1/τ overflows and every logit is ±inf/NaN. Above 1e3 every logit is within ±1e-3 of
#: 0 (q uniform to 0.2 %, nothing to learn); the bound also keeps τ0·(1 − β) finite for any
#: β. The paper uses τ = 0.5; contrastive learning uses 0.01–1.
TEMPERATURE_RANGE = (1e-3, 1e3)
#: Adam changes every weight by up to about lr per step whatever the gradient's scale, and
#: ResNet-18's initial weights are O(0.01–1): lr > 1 replaces them by noise in one step (and
#: at lr ≳ 1e17 the weights' squares in batch-norm overflow float32). 0 freezes the model.
LR_RANGE = (0.0, 1.0)
#: Adam's (L2) weight decay adds weight_decay·w to the gradient: at 1 it already outweighs
#: any data gradient of this loss; the paper uses 1e-5.
WEIGHT_DECAY_RANGE = (0.0, 1.0)
#: RKDO's recursion is unrolled inside every step (T softmaxes of B×B, all kept for the
#: backward pass); a depth of 10**9 would hang a step. The paper uses 3.
DEPTH_MAX = 100
#: the whole train split is held resized in memory as uint8 (50 000 CIFAR images at 256² are
#: 9.8 GB); 224 is ImageNet's size.
IMAGE_SIZE_MAX = 256
#: the largest seed every library here takes (numpy's legacy RandomState and scikit-learn
#: want < 2**32; torch.manual_seed overflows at 2**64).
SEED_MAX = 2**32 - 1
#: torch intra-op threads; more than any CPU has cores only slows torch down (or fails to
#: start that many threads).
THREADS_MAX = 1024


class ConfigError(ValueError):
    """A configuration value is invalid; the message names field, value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid config value {field_name}={_safe_repr(value)}: {allowed}")

    def __reduce__(self):
        # pickle by the three arguments (the default passes the message alone to __init__,
        # which fails): raised in a worker process (`rkdo curve --workers`), it reaches the
        # parent as the same error
        return (type(self), (self.field, self.value, self.allowed))


def _safe_repr(value: Any) -> str:
    """repr, except for an int too long for Python to print (over 4300 digits)."""
    try:
        return repr(value)
    except ValueError:
        if isinstance(value, int):
            return f"<an integer of about {value.bit_length() * 0.30103:.0f} digits>"
        return f"<a {type(value).__name__} holding an integer too long to print>"


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
    # native bf16 a step is many times slower (`rkdo bench --set amp_bf16=true` measures it).
    amp_bf16: bool = False
    # torch.compile the encoder (needs a C++ compiler on CPU; the first step compiles for
    # about a minute with a cold cache, and on a CPU later steps gain little).
    compile: bool = False
    # torch intra-op threads for this run; None leaves torch's default (all cores). 1 by
    # default, by hand and in every grid whatever its --workers: float32 training on a CPU
    # gives other numbers with another thread count (digits smoke run, seed 42, epoch 2: loss
    # 1.163695 with 2 threads, 1.163066 with 1), so one default keeps a run by hand and the
    # same run in a grid equal; a grid gains speed through --workers (two 1-thread runs side
    # by side did 1.38x the work of one 2-thread run on a 2-core CPU).
    threads: int | None = 1
    # ---- evaluation (training/evaluate.py; the defaults keep every earlier run's numbers) --
    # full protocol: a fixed, seeded, class-stratified subset of this many train images is
    # the probe's train set and the k-NN memory bank; None = the whole train split.
    probe_train_images: int | None = None
    # folds and number of C values (log-spaced in [1e-3, 1e2]) of the CV linear probe.
    probe_cv_folds: int = 5
    probe_cv_cs: int = 10
    # the largest C of that grid (the smallest is 1e-3); 100 by default. A smaller one saves
    # the slowest fits (weak regularisation: thousands of lbfgs iterations) where CV never
    # chooses them (params/fashion.yaml says why it uses 10).
    probe_cv_c_max: float = 100.0
    # at most this many evaluation images are scored by the yardsticks; None = all of them.
    yardstick_images: int | None = None
    data_root: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Normalise the budget list first (YAML/CLI give lists), then validate everything.
        if isinstance(self.epochs, (list, tuple)):
            object.__setattr__(self, "epochs", tuple(self.epochs))
        if _is_int(self.probe_cv_c_max):  # 10 and 10.0 are one setting (one digest, one file)
            object.__setattr__(self, "probe_cv_c_max", float(self.probe_cv_c_max))
        _validate(self)

    # ---- construction helpers -------------------------------------------------------
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RunConfig:
        """A preset (``paper`` or ``full``) with field overrides applied on top."""
        if not isinstance(name, str) or name not in PRESETS:  # a list is unhashable
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
        """Scheduled temperatures τ0·(1 − β·t/T) for t = 0..T (docs/method.md §2, eq. 4)."""
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


def _is_finite_number(v: Any) -> bool:
    """A real number that is neither NaN nor ±inf (any Python int is finite)."""
    return _is_number(v) and (isinstance(v, int) or math.isfinite(v))


def _number_error(name: str, value: Any, allowed: str, *, integer: bool = False) -> ConfigError:
    """ConfigError for a numeric field; a string that reads as a number says so: YAML 1.1
    (PyYAML) reads ``1e-30`` (no '.' in the mantissa, no sign in the exponent) as text."""
    return ConfigError(name, value, allowed + _text_number_hint(value, integer=integer))


def _text_number_hint(value: Any, *, integer: bool) -> str:
    if not isinstance(value, str):
        return ""
    try:
        x = float(value.strip().replace("_", ""))
    except ValueError:
        return ""
    if not math.isfinite(x):
        return ""
    if integer:
        if x != int(x):
            return ""
        return (f"; {value!r} was read as text, not a number: write {int(x)} (digits only, "
                "no quotes)")
    return (f"; {value!r} was read as text, not a number (YAML 1.1, which params files are "
            f"read with, needs a '.' in the mantissa and a sign in the exponent): write "
            f"{_yaml_float(x)}")


def _yaml_float(x: float) -> str:
    """``x`` spelled so that YAML 1.1 reads a float: 1e-30 -> 1.0e-30, 1e+300 -> 1.0e+300."""
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if not e:
        return mantissa
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}"


def _fmt(x: float) -> str:
    return f"{x:g}"


def _in_range(v: Any, lo: float, hi: float) -> bool:
    return _is_finite_number(v) and lo <= v <= hi


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
    if not _is_int(c.seed) or not 0 <= c.seed <= SEED_MAX:
        raise _number_error("seed", c.seed,
                            f"must be a non-negative integer <= {SEED_MAX} (2**32 - 1)",
                            integer=True)
    _validate_budgets(c.epochs)
    if c.steps_per_epoch is not None and (not _is_int(c.steps_per_epoch) or c.steps_per_epoch < 1):
        raise _number_error("steps_per_epoch", c.steps_per_epoch,
                            "must be a positive integer, or None for a full pass over the data",
                            integer=True)
    if c.eval_images is not None and (not _is_int(c.eval_images) or c.eval_images < 10):
        raise _number_error("eval_images", c.eval_images,
                            "must be an integer >= 10, or None for the whole test set",
                            integer=True)
    if not _is_int(c.batch_size) or c.batch_size < 2:
        raise _number_error("batch_size", c.batch_size, "must be an integer >= 2 (each row "
                            "needs negatives; batch-norm needs 2)", integer=True)
    if c.image_size is not None and (not _is_int(c.image_size)
                                     or not 8 <= c.image_size <= IMAGE_SIZE_MAX):
        raise _number_error("image_size", c.image_size,
                            f"must be an integer in [8, {IMAGE_SIZE_MAX}], or None for the "
                            "dataset's default", integer=True)
    lo, hi = LR_RANGE
    if not _in_range(c.lr, lo, hi):
        raise _number_error("lr", c.lr, f"must be a finite number in [0, {_fmt(hi)}] (0 freezes "
                            "the model; Adam moves every weight by up to about lr per step)")
    lo, hi = WEIGHT_DECAY_RANGE
    if not _in_range(c.weight_decay, lo, hi):
        raise _number_error("weight_decay", c.weight_decay,
                            f"must be a finite number in [0, {_fmt(hi)}]")
    lo, hi = TEMPERATURE_RANGE
    if not _in_range(c.temperature, lo, hi):
        raise _number_error("temperature", c.temperature,
                            f"must be a finite number in [{_fmt(lo)}, {_fmt(hi)}] (below "
                            f"{_fmt(lo)} the float32 loss is dominated by rounding, and 1/τ "
                            "can overflow)")
    if not _in_range(c.debias_alpha, 0, 1):
        raise _number_error("debias_alpha", c.debias_alpha, "must be a finite number in [0, 1]")
    if not _is_finite_number(c.alpha) or not 0 < c.alpha <= 1:
        raise _number_error("alpha", c.alpha, "must be a finite number in (0, 1]")
    if not _is_int(c.depth) or not 1 <= c.depth <= DEPTH_MAX:
        raise _number_error("depth", c.depth, f"must be an integer in [1, {DEPTH_MAX}]",
                            integer=True)
    if not _is_finite_number(c.beta) or not c.beta < 1:
        # The last scheduled temperature is τ0·(1 − β); it must stay positive.
        raise _number_error("beta", c.beta,
                            f"must be a finite number < 1 so that every scheduled temperature "
                            f"τ0·(1 − β·t/{c.depth}) stays > 0")
    taus = c.loss_temperatures()
    if not all(lo <= t <= hi for t in taus):
        # τ_t is monotone in t: its extremes are τ0 (t = 0) and τ0·(1 − β) (t = T).
        b_lo, b_hi = 1.0 - hi / c.temperature, 1.0 - lo / c.temperature
        raise ConfigError("beta", c.beta,
                          f"every scheduled temperature τ0·(1 − β·t/{c.depth}) must lie in "
                          f"[{_fmt(lo)}, {_fmt(hi)}] (> 0, float32-safe); with "
                          f"τ0={c.temperature!r} the last one is {taus[-1]:.4g}: β must lie "
                          f"in [{b_lo:.6g}, {b_hi:.6g}]")
    for name in ("head_batchnorm", "matmul_1x1_maps", "fused_adam", "channels_last",
                 "fused_views", "amp_bf16", "compile"):
        if not isinstance(getattr(c, name), bool):
            raise ConfigError(name, getattr(c, name), "must be true or false")
    if c.threads is not None and (not _is_int(c.threads) or not 1 <= c.threads <= THREADS_MAX):
        raise _number_error("threads", c.threads,
                            f"must be a positive integer <= {THREADS_MAX}, or None for torch's "
                            "default (all cores)", integer=True)
    if c.probe_train_images is not None and (not _is_int(c.probe_train_images)
                                             or c.probe_train_images < 20):
        raise _number_error("probe_train_images", c.probe_train_images,
                            "must be an integer >= 20, or None for the whole train split",
                            integer=True)
    if not _is_int(c.probe_cv_folds) or c.probe_cv_folds < 2:
        raise _number_error("probe_cv_folds", c.probe_cv_folds, "must be an integer >= 2",
                            integer=True)
    if not _is_int(c.probe_cv_cs) or c.probe_cv_cs < 1:
        raise _number_error("probe_cv_cs", c.probe_cv_cs,
                            "must be an integer >= 1 (C values log-spaced in [1e-3, "
                            "probe_cv_c_max])",
                            integer=True)
    if not _is_finite_number(c.probe_cv_c_max) or not 1e-3 < c.probe_cv_c_max <= 1e6:
        raise _number_error("probe_cv_c_max", c.probe_cv_c_max,
                            "must be a finite number in (0.001, 1e6]: the largest C of the "
                            "CV probe's grid (its smallest is 0.001)")
    if c.yardstick_images is not None and (not _is_int(c.yardstick_images)
                                           or c.yardstick_images < 2):
        raise _number_error("yardstick_images", c.yardstick_images,
                            "must be an integer >= 2, or None for every evaluation image",
                            integer=True)
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


# ---- grids: params/*.yaml ---------------------------------------------------------------

#: keys of a params file; everything else is refused with the list of these
GRID_KEYS = ("description", "preset", "datasets", "methods", "seeds", "epochs", "config",
             "per_dataset", "aggregate")
#: RunConfig fields a grid sets through its own keys, so `config:` may not set them
_GRID_AXES = ("dataset", "method", "seed", "epochs", "protocol")
AGGREGATE_KEYS = ("table4_epoch", "table3_pairs", "min_important_difference")


@dataclass(frozen=True)
class GridSpec:
    """A dataset × method × seed grid from a ``params/*.yaml`` file (see :func:`load_params`).

    Every (dataset, method, seed) is one run trained once to the largest budget; the smaller
    budgets are its checkpoints. ``configs()`` yields the validated RunConfig of each run,
    ordered dataset, seed, method, so a grid stopped half-way holds complete *pairs*.
    """

    name: str
    preset: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    epochs: tuple[int, ...]
    config: Mapping[str, Any] = field(default_factory=dict)
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    aggregate: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str | None = None

    def configs(self, **override: Any) -> list[RunConfig]:
        """One RunConfig per run; ``override`` (e.g. data_root) applies to every run."""
        return [RunConfig.preset(self.preset, **{**self.config,
                                                 **self.per_dataset.get(d, {}), **override},
                                 dataset=d, method=m, seed=s, epochs=self.epochs)
                for d in self.datasets for s in self.seeds for m in self.methods]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "preset": self.preset,
                "datasets": list(self.datasets), "methods": list(self.methods),
                "seeds": list(self.seeds), "epochs": list(self.epochs),
                "config": dict(self.config),
                "per_dataset": {k: dict(v) for k, v in self.per_dataset.items()},
                "aggregate": dict(self.aggregate), "source": self.source}


def _grid_list(where: str, key: str, value: Any, item_ok, allowed: str) -> tuple:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]  # `datasets: digits` means [digits]
    if not isinstance(value, list) or not value or not all(item_ok(v) for v in value):
        raise ConfigError(f"{where}: {key}", value, allowed)
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: {key}", value, "must not repeat an entry")
    return tuple(value)


def _grid_overrides(where: str, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {key}", value,
                          "must be a mapping of RunConfig fields to values")
    names = {f.name for f in fields(RunConfig)}
    for k in value:
        if k in _GRID_AXES:
            raise ConfigError(f"{where}: {key}.{k}", value[k],
                              "is set by the grid's own keys (datasets, methods, seeds, "
                              f"epochs, preset), not inside {key}")
        if k not in names:
            raise ConfigError(f"{where}: {key}.{k}", value[k], _known_fields_msg())
    return dict(value)


def grid_from_dict(data: Any, *, name: str = "grid", source: str | None = None) -> GridSpec:
    """Validate a params mapping into a :class:`GridSpec`; every run's config is built once
    here, so a bad value fails before anything trains. Errors name the file and the key."""
    where = source or name
    if not isinstance(data, Mapping):
        raise ConfigError(where, type(data).__name__,
                          f"a params file must be a mapping with keys {list(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}", data[unknown[0]],
                          f"unknown key; allowed keys are {list(GRID_KEYS)}")
    missing = [k for k in ("datasets", "seeds", "epochs") if k not in data]
    if missing:
        raise ConfigError(f"{where}: {missing[0]}", None, "is required")
    preset = data.get("preset", "paper")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError(f"{where}: preset", preset, f"allowed presets are {sorted(PRESETS)}")
    datasets = _grid_list(where, "datasets", data["datasets"], lambda v: v in DATASET_NAMES,
                          f"a non-empty list of datasets from {list(DATASET_NAMES)}")
    methods = _grid_list(where, "methods", data.get("methods", list(METHOD_NAMES)),
                         lambda v: v in METHOD_NAMES,
                         f"a non-empty list of methods from {list(METHOD_NAMES)}")
    seeds = _grid_list(where, "seeds", data["seeds"], lambda v: _is_int(v) and v >= 0,
                       "a non-empty list of non-negative integers, e.g. [42, 123]")
    epochs = data["epochs"]
    try:
        _validate_budgets(epochs)
    except ConfigError as e:
        raise ConfigError(f"{where}: epochs", epochs, e.allowed) from None
    config = _grid_overrides(where, "config", data.get("config"))
    per = data.get("per_dataset") or {}
    if not isinstance(per, Mapping):
        raise ConfigError(f"{where}: per_dataset", per,
                          "must map dataset names to RunConfig overrides")
    per_dataset = {}
    for d, over in per.items():
        if d not in DATASET_NAMES:
            raise ConfigError(f"{where}: per_dataset.{d}", over,
                              f"unknown dataset; allowed are {list(DATASET_NAMES)}")
        per_dataset[d] = _grid_overrides(where, f"per_dataset.{d}", over)
    agg = data.get("aggregate") or {}
    if not isinstance(agg, Mapping) or set(agg) - set(AGGREGATE_KEYS):
        raise ConfigError(f"{where}: aggregate", agg,
                          f"must be a mapping with keys from {list(AGGREGATE_KEYS)}")
    if "table4_epoch" in agg and not (_is_int(agg["table4_epoch"]) and agg["table4_epoch"] >= 0):
        raise ConfigError(f"{where}: aggregate.table4_epoch", agg["table4_epoch"],
                          "must be a non-negative integer (a budget of the grid)")
    pairs = agg.get("table3_pairs", [])
    if not (isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(_is_int(e) and e >= 0 for e in p)
            for p in pairs)):
        raise ConfigError(f"{where}: aggregate.table3_pairs", pairs,
                          "must be a list of [rkdo_epoch, icon_epoch] pairs, e.g. [[1, 5]]")
    mid = agg.get("min_important_difference")
    if mid is not None and not (isinstance(mid, (int, float)) and not isinstance(mid, bool)
                                and 0 < mid <= 1):
        raise ConfigError(f"{where}: aggregate.min_important_difference", mid,
                          "must be a number in (0, 1]: the absolute minimal important "
                          "difference of the linear probe (accuracy), e.g. 0.02")
    spec = GridSpec(name=name, preset=preset, datasets=datasets, methods=methods, seeds=seeds,
                    epochs=tuple(epochs), config=config, per_dataset=per_dataset,
                    aggregate=dict(agg), description=str(data.get("description", "")),
                    source=source)
    try:
        spec.configs()
    except ConfigError as e:  # a bad value inside config/per_dataset: say which file
        raise ConfigError(f"{where}: {e.field}", e.value, e.allowed) from None
    return spec


class NotAGridError(ConfigError):
    """The file handed to ``rkdo grid`` is not a params (grid) file at all: the message is
    one line naming the file, what it looks like instead, and the grid files there are."""

    def __init__(self, path: str, what: str, grids: list[str]):
        self.field, self.value = str(path), "(not a grid)"
        self.allowed = (f"{path} is not a grid (params) file: {what}; a grid is a YAML "
                        "mapping with the keys datasets, seeds and epochs"
                        + (f"; grid files: {', '.join(grids)}" if grids else ""))
        ValueError.__init__(self, self.allowed)


#: keys of the other YAML files of params/ -> what such a file is (for "not a grid")
_OTHER_YAML = {"table1": "it holds the paper's reported numbers (the aggregation reads it)",
               "partition": "it is a SLURM options file (rkdo grid ... --backend slurm "
                            "--slurm-options FILE)",
               "cluster": "it is a SLURM options file (rkdo grid ... --backend slurm "
                          "--slurm-options FILE)"}


def _not_a_grid(data: Any) -> str | None:
    """What a parsed file is instead of a grid (``None``: it is meant as one). A mapping
    counts as a grid with errors when at least as many of its keys are grid keys as not."""
    if not isinstance(data, Mapping):
        return f"its content is a YAML {type(data).__name__} (a grid must be a mapping)"
    known = [k for k in data if k in GRID_KEYS]
    unknown = [k for k in data if k not in GRID_KEYS]
    if len(unknown) <= len(known):
        return None
    for key, what in _OTHER_YAML.items():
        if key in data:
            return what
    return f"none of its keys {unknown[:4]} is a grid key"


def grid_files(folder: str | Path) -> list[str]:
    """The params (grid) files among ``folder/*.yaml``, sorted: files that parse to a grid
    mapping (``params/reported.yaml`` and ``slurm.example.yaml`` do not)."""
    import yaml

    out = []
    for f in sorted(Path(folder).glob("*.y*ml")):
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, yaml.YAMLError):
            continue
        if data is not None and _not_a_grid(data) is None:
            out.append(str(f))
    return out


def _nearby_grids(p: Path) -> list[str]:
    """Grid files next to ``p``, else in ./params (where the README's grids are)."""
    here = grid_files(p.parent) if p.parent.is_dir() else []
    return here or (grid_files("params") if Path("params").is_dir() else [])


def load_params(path: str | Path) -> GridSpec:
    """Read and validate a ``params/*.yaml`` grid file.

    Raises FileNotFoundError (naming the closest grid file and listing the grid files next
    to it) when it is missing, :class:`NotAGridError` (one line) when the file is not a grid
    at all (``params/reported.yaml``, ``README.md``), and ConfigError (naming the file, the
    key, the value and what is allowed) when a grid is bad.
    """
    import difflib

    import yaml

    p = Path(path)
    if not p.is_file():
        near = _nearby_grids(p)
        close = difflib.get_close_matches(str(p), near, n=1, cutoff=0.6)
        raise FileNotFoundError(f"params file {str(p)!r} not found"
                                + (f"; did you mean {close[0]}?" if close else "")
                                + (f"; grid files: {', '.join(near)}" if near else ""))
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise NotAGridError(str(p), "it is not a UTF-8 text file", _nearby_grids(p)) from None
    try:
        data = yaml.load(text, Loader=_unique_key_loader())
    except ConfigError as e:  # a duplicate key: say which file
        raise ConfigError(f"{p}: {e.field}", e.value, e.allowed) from None
    except yaml.YAMLError as e:
        if p.suffix.lower() not in (".yaml", ".yml"):
            raise NotAGridError(str(p), "it is not YAML", _nearby_grids(p)) from None
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(str(p), "(unparsable YAML)",
                          f"must be valid YAML: {problem}{where}") from None
    if data is None:
        raise ConfigError(str(p), "(empty file)", "a params file must hold at least "
                          "datasets, seeds and epochs; e.g. params/smoke.yaml")
    what = _not_a_grid(data)
    if what is not None:
        raise NotAGridError(str(p), what, _nearby_grids(p))
    return grid_from_dict(data, name=p.stem, source=str(p))


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the
        last silently, so `seeds:` written twice would drop the first list)."""

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(str(key), "(given twice)",
                                  f"a key may appear once per mapping (line "
                                  f"{key_node.start_mark.line + 1})")
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def same_run_config(a: dict, b: dict) -> bool:
    """Configs equal up to where the data lives (the same files may be mounted elsewhere)
    and how many CPU threads ran it (grids once picked threads from their worker count,
    and a resumed grid with ``--set threads=N`` must still find its runs). Fields a config predates
    (e.g. the speed fields) count as their defaults."""
    return not run_config_differences(a, b)


def run_config_differences(old: dict, new: dict) -> list[str]:
    """The fields in which two run configs differ, as ``'field old -> new'``, compared the
    way :func:`same_run_config` compares them."""
    a, b = _normalised(old), _normalised(new)
    return [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def _normalised(d: dict) -> dict:
    try:
        d = RunConfig.from_dict(d).to_dict()
    except (ConfigError, TypeError):
        d = dict(d)
    return {**d, "data_root": None, "threads": None}
