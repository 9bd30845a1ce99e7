"""Fuzz every RunConfig field (issue 17: a diverged run must never pass as complete).

Any value of any type, in any field: validation either refuses it with a one-line
ConfigError naming the field (the error the command line prints as one line, exit status 2),
or the config trains — and its losses, gradients, weights and completion record are finite.
An accepted config that trains to NaN would be a silently wrong (or at best a failed) run
that validation should have refused.

Two tests: ``test_validation_*`` (thousands of configs, no training) and
``test_accepted_configs_train_*`` (a few dozen, each accepted one trained for two optimizer
steps on the smallest digits setting: batch 4, 8×8 images, 1 torch thread; ~1–2 s a run).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rkdo_core.config import TEMPERATURE_RANGE, ConfigError, RunConfig
from rkdo_core.errors import DatasetUnavailableError
from rkdo_core.layout import TRAIN_COMPLETE, checkpoint_path
from rkdo_core.runio import read_json

FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
FLOAT_FIELDS = [f.name for f in dataclasses.fields(RunConfig) if f.type in ("float", float)]

#: the cheapest run the suite has: digits at 8×8 (ResNet-18 still works), batch 4, two
#: steps, one thread; every fuzzed config starts from here
BASE = dict(dataset="digits", method="rkdo", protocol="paper", epochs=(1,), steps_per_epoch=2,
            batch_size=4, image_size=8, device="cpu", threads=1, eval_images=10)

#: values of many types: non-finite, huge, tiny, negative, zero, text (numbers read as text
#: from YAML too), None, booleans, containers, and names valid for some fields. Other
#: dataset names than digits are left out: they need downloads (no network in tests).
SPECIAL = [
    math.nan, math.inf, -math.inf, 0, 0.0, -0.0, -1, -1.5, 1, 2, 3, 1.0, 0.5, 0.999, 1.5,
    1e-300, 5e-324, 1e-30, 1e-4, 1e-3, 1e3, 1e4, 1e30, 1e300, -1e300, 10**6, 2**31, 2**63,
    2**64, 10**30, 10**400, -(2**63), True, False, None, "", " ", "1e-30", "1.0e-30", "nan",
    "inf", "16", "0.5", "x", "cpu", "auto", "cuda", "cuda:7", "mps", "rkdo", "icon", "digits",
    "mnist", "paper", "full", "backbone", "projection", [], [1], [1, 2], [2, 1], [1.5], (1,),
    {}, {"a": 1}, b"1",
]
VALUES = st.one_of(
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.floats(0.0, 1.0),
    st.integers(-3, 12),
    st.text(max_size=6),
    st.lists(st.integers(-2, 4), max_size=3),
)




def _edges_or(edges, strategy):
    return st.one_of(st.sampled_from(edges), strategy)


#: per field, values at and inside the edges of what validation accepts (so that most of the
#: training fuzz's configs are accepted and trained): the ends of every range, subnormal and
#: tiny positives, the RKDO schedule's extremes (τ0 = 0.5: β ∈ [-1999, 0.998]). Run sizes stay
#: cheap (batch <= 32, images <= 16 px or the default 32, <= 2 threads).
NEAR_VALID = {
    "dataset": st.just("digits"),
    "method": st.sampled_from(["rkdo", "icon"]),
    "seed": _edges_or([0, 2**32 - 1], st.integers(0, 2**32 - 1)),
    "protocol": st.sampled_from(["paper", "full"]),
    "epochs": st.sampled_from([(1,), [1, 2], (3,), [1, 10**6]]),
    "steps_per_epoch": _edges_or([None, 1, 10**6], st.integers(1, 5)),
    "eval_images": _edges_or([None, 10, 10**6], st.integers(10, 1000)),
    "eval_features": st.sampled_from(["projection", "backbone"]),
    "batch_size": st.sampled_from([2, 3, 4, 5, 16, 32]),
    "image_size": st.sampled_from([None, 8, 9, 12, 16]),
    "lr": _edges_or([0, 0.0, 1, 1.0, 5e-324], st.floats(0.0, 1.0)),
    "weight_decay": _edges_or([0, 0.0, 1, 1.0, 5e-324], st.floats(0.0, 1.0)),
    "temperature": _edges_or([1e-3, 1e3, 0.05, 0.5], st.floats(1e-3, 1e3)),
    "debias_alpha": _edges_or([0, 1, 0.0, 1.0], st.floats(0.0, 1.0)),
    "alpha": _edges_or([1, 1.0, 5e-324, 1e-300],
                       st.floats(0.0, 1.0, exclude_min=True)),
    "depth": _edges_or([1, 100], st.integers(1, 100)),
    "beta": _edges_or([0.0, -0.0, 0.998, -1999.0, -1.0], st.floats(-1999.0, 0.998)),
    **{name: st.booleans() for name in ("head_batchnorm", "matmul_1x1_maps", "fused_adam",
                                         "channels_last", "fused_views", "amp_bf16",
                                         "compile")},
    "device": st.sampled_from(["cpu", "auto"]),
    "threads": st.sampled_from([None, 1, 2]),
    "probe_train_images": _edges_or([None, 20], st.integers(20, 10**6)),
    "probe_cv_folds": st.integers(2, 10),
    "probe_cv_cs": st.integers(1, 20),
    "probe_cv_c_max": _edges_or([1e6, 0.0011, 10, 100.0],
                                st.floats(0.001, 1e6, exclude_min=True)),
    "yardstick_images": _edges_or([None, 2], st.integers(2, 10**6)),
    "data_root": st.one_of(st.none(), st.text(max_size=5)),
}


@st.composite
def fuzzed(draw, max_fields: int = 3, near_valid: bool = False):
    """(the changed field names, the values) with 1..max_fields fields set on top of BASE;
    ``near_valid``: each value two times in three from the field's NEAR_VALID."""
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=max_fields,
                          unique=True))
    pick = {n: st.one_of(NEAR_VALID[n], NEAR_VALID[n], VALUES) if near_valid else VALUES
            for n in names}
    return names, {**BASE, **{n: draw(pick[n]) for n in names}}


def test_every_field_is_fuzzed():
    assert set(NEAR_VALID) == set(FIELDS)


def _refused_in_one_line(err: ConfigError, changed: list[str]) -> None:
    msg = str(err)
    assert "\n" not in msg and msg.startswith("invalid config value ")
    # the field named is one the fuzz changed — or β when τ0 or T moved the RKDO schedule
    # (the message then names τ0 and the β range that fits it)
    assert err.field in changed or (err.field == "beta" and {"temperature", "depth"} & set(
        changed)), (err.field, changed)
    assert msg.startswith(f"invalid config value {err.field}=")


def _check_accepted(cfg: RunConfig) -> None:
    """What validation promises about an accepted config, before any training."""
    for name in FLOAT_FIELDS:
        assert math.isfinite(getattr(cfg, name)), name
    lo, hi = TEMPERATURE_RANGE
    assert all(lo <= t <= hi for t in cfg.loss_temperatures())


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed())
def test_validation_refuses_in_one_line_or_accepts_a_sound_config(case):
    changed, values = case
    try:
        cfg = RunConfig.from_dict(values)
    except ConfigError as e:
        _refused_in_one_line(e, changed)
        return
    _check_accepted(cfg)


#: accepted configs the training fuzz trains (module-level so the test can count them)
STATS: Counter = Counter()


def _train_two_steps(cfg: RunConfig, out: Path) -> None:
    """Train ``cfg`` for two optimizer steps and check that every number it wrote is finite."""
    from rkdo_core.training.train import train

    # The run's length is validated with the drawn values but cut to two steps here; and
    # torch.compile (a minute's compilation per run) is covered by tests/test_speed.py.
    run_cfg = cfg.replace(epochs=(1,), steps_per_epoch=2, compile=False)
    try:
        done = train(run_cfg, out, progress=False, force=True)
    except (ConfigError, DatasetUnavailableError) as e:
        # refused when the data or the machine is known: batch larger than the train split,
        # a device this machine lacks — still one line
        assert "\n" not in str(e)
        STATS["refused at train time"] += 1
        return
    STATS["trained"] += 1
    assert [b["steps"] for b in done["budgets"]] == [0, 2]
    assert all(math.isfinite(b["train_loss"]) for b in done["budgets"])
    assert read_json(out / TRAIN_COMPLETE) == done
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    state = torch.load(checkpoint_path(out, 1), weights_only=True)["model"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def _corner(**changed):
    return list(changed), {**BASE, **changed}


#: accepted extremes tried every time: the largest steps (lr = weight decay = 1) at the
#: smallest temperature, the deepest recursion down to the smallest scheduled temperature
#: with a vanishing α, the largest temperature, I-Con's zero-debias target at τ = 1e-3
CORNERS = [
    _corner(lr=1.0, weight_decay=1.0, temperature=1e-3, beta=0.0),
    _corner(temperature=0.5, beta=0.998, depth=100, alpha=5e-324),
    _corner(temperature=1e3, beta=-0.0, alpha=1.0, depth=1),
    _corner(method="icon", temperature=1e-3, debias_alpha=0.0, lr=1.0, beta=0.0),
    _corner(temperature=1e-3, beta=-999999.0, depth=2, lr=1.0),  # τ rises to 1e3
]


#: drawn examples of the training fuzz (the CORNERS come on top)
DRAWN = 30


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_accepted_configs_train_to_finite_numbers(tmp_path):
    # 30 drawn examples (up to 3 fields changed; values mostly at the edges of the valid
    # ranges, one draw in three from the wild pool) plus the 5 CORNERS; about a third of
    # the drawn ones are accepted and trained (~3 s a run with its checkpoints).
    STATS.clear()

    @settings(max_examples=DRAWN, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(fuzzed(max_fields=3, near_valid=True))
    def one(case):
        changed, values = case
        STATS["examples"] += 1
        try:
            cfg = RunConfig.from_dict(values)
        except ConfigError as e:
            _refused_in_one_line(e, changed)
            STATS["refused"] += 1
            return
        _check_accepted(cfg)
        _train_two_steps(cfg, tmp_path / "run")

    for corner in CORNERS:  # the explicit extremes first, outside hypothesis's count
        one.hypothesis.inner_test(corner)
    assert STATS["trained"] == len(CORNERS), STATS  # every corner is accepted and trains
    one()
    print(dict(STATS))
    assert STATS["examples"] == DRAWN + len(CORNERS)
    assert STATS["trained"] >= len(CORNERS) + 6, STATS  # the fuzz did exercise training
