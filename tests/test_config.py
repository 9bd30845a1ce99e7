"""Every invalid config value raises a ConfigError naming field, value and what is allowed."""

import dataclasses
import math

import numpy as np
import pytest
import yaml

from rkdo_core.config import TEMPERATURE_RANGE, ConfigError, RunConfig, load_params


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("alpha", 0.0, "(0, 1]"),
        ("alpha", 1.5, "(0, 1]"),
        ("alpha", -0.1, "(0, 1]"),
        ("depth", 0, "[1, 100]"),
        ("depth", 2.5, "[1, 100]"),
        ("depth", 10**9, "[1, 100]"),
        ("temperature", 0.0, "[0.001, 1000]"),
        ("temperature", -1.0, "[0.001, 1000]"),
        ("temperature", 1e-300, "[0.001, 1000]"),  # 0 in float32: 1/τ overflows
        ("temperature", 1e-4, "[0.001, 1000]"),
        ("temperature", 1e4, "[0.001, 1000]"),
        ("beta", 1.0, "> 0"),
        ("beta", 3.0, "> 0"),
        ("epochs", (2, 1), "strictly increasing"),
        ("epochs", (1, 1, 2), "strictly increasing"),
        ("epochs", (0, 1), "positive"),
        ("epochs", (), "non-empty"),
        ("epochs", (1.5, 2), "integers"),
        ("dataset", "mnist", "digits"),
        ("method", "simclr", "rkdo"),
        ("batch_size", 1, ">= 2"),
        ("batch_size", 0, ">= 2"),
        ("debias_alpha", 1.2, "[0, 1]"),
        ("lr", -1e-3, "[0, 1]"),
        ("lr", 1.5, "[0, 1]"),
        ("weight_decay", -1.0, "[0, 1]"),
        ("weight_decay", 2.0, "[0, 1]"),
        ("steps_per_epoch", 0, "positive"),
        ("eval_images", 3, ">= 10"),
        ("image_size", 4, "[8, 256]"),
        ("image_size", 10**6, "[8, 256]"),
        ("threads", 10**6, "<= 1024"),
        ("device", "gpu", "cuda"),
        ("protocol", "quick", "paper"),
        ("eval_features", "logits", "projection"),
        ("head_batchnorm", "yes", "true or false"),
        ("seed", -1, "non-negative"),
        ("seed", 2**64, "2**32 - 1"),
    ],
)
def test_invalid_values_name_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: value})
    msg = str(info.value)
    assert info.value.field == field
    assert field in msg and allowed in msg
    shown = list(value) if isinstance(value, tuple) else value
    assert repr(shown) in msg or repr(value) in msg


def test_beta_message_mentions_depth_schedule():
    with pytest.raises(ConfigError, match=r"t/5"):
        RunConfig(beta=1.0, depth=5)


def test_valid_edges_are_accepted():
    RunConfig(alpha=1.0, beta=0.99, depth=1, batch_size=2, lr=0.0, debias_alpha=0.0,
              epochs=[3], steps_per_epoch=None, eval_images=None, device="cuda:1")
    # Negative β (temperatures that grow) keeps every temperature positive: allowed.
    assert min(RunConfig(beta=-0.5).loss_temperatures()) > 0


def test_frozen_and_presets():
    cfg = RunConfig.preset("paper")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 0.3  # type: ignore[misc]
    assert (cfg.steps_per_epoch, cfg.eval_images, cfg.eval_features) == (10, 704, "projection")
    full = RunConfig.preset("full", dataset="cifar10")
    assert (full.steps_per_epoch, full.eval_images, full.eval_features) == (None, None, "backbone")
    assert full.dataset == "cifar10" and full.protocol == "full"
    # Paper defaults (docs/method.md §3).
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.temperature) == (1e-3, 1e-5, 64, 0.5)
    assert (cfg.alpha, cfg.depth, cfg.beta, cfg.debias_alpha) == (0.5, 3, 0.1, 0.2)
    assert cfg.epochs == (1, 2, 5, 10)


def test_round_trip_and_unknown_keys():
    cfg = RunConfig(method="icon", seed=123, epochs=[1, 2])
    assert cfg.epochs == (1, 2)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown field.*known fields"):
        RunConfig.from_dict({"alpah": 0.3})
    with pytest.raises(ConfigError, match="presets"):
        RunConfig.preset("fast")
    with pytest.raises(ConfigError, match="alpha"):
        cfg.replace(alpha=2.0)


def test_temperature_schedule():
    cfg = RunConfig(temperature=0.5, beta=0.1, depth=3)
    assert cfg.loss_temperatures() == pytest.approx([0.5, 0.5 * (1 - 0.1 / 3),
                                                     0.5 * (1 - 0.2 / 3), 0.5 * 0.9])


# ---- non-finite and unrepresentable numbers (issue 17) ----------------------------------
FLOAT_FIELDS = [f.name for f in dataclasses.fields(RunConfig) if f.type in ("float", float)]


def test_every_float_field_is_listed():
    assert FLOAT_FIELDS == ["lr", "weight_decay", "temperature", "debias_alpha", "alpha", "beta",
                            "probe_cv_c_max"]


@pytest.mark.parametrize("field", FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused_in_one_line(field, value):
    # `--lr nan` used to reach torch (a raw "ValueError: Invalid learning rate: nan"),
    # and `--lr inf` / `beta=-inf` were accepted.
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: value})
    msg = str(info.value)
    assert info.value.field == field and "\n" not in msg
    assert f"{field}={value!r}" in msg and "finite" in msg


def test_temperature_range_is_float32_safe_and_covers_the_schedule():
    lo, hi = TEMPERATURE_RANGE
    RunConfig(temperature=lo, beta=0.0)
    RunConfig(temperature=hi, beta=0.0)
    RunConfig(temperature=0.5, beta=0.998)  # last scheduled τ = 0.001
    # τ0 in range, but the scheduled τ0·(1 − β) = 5e-4 is not: the error gives β's range.
    with pytest.raises(ConfigError, match=r"beta=0\.999.*last one is 0\.0005.*\[-1999, 0\.998\]"):
        RunConfig(temperature=0.5, beta=0.999)
    with pytest.raises(ConfigError, match=r"beta=-3000.*1000"):
        RunConfig(temperature=0.5, beta=-3000.0)
    # every temperature the validation admits is a normal float32 whose 1/τ is finite
    assert np.float32(lo) > np.finfo(np.float32).tiny and np.isfinite(np.float32(1 / lo))


@pytest.mark.parametrize("field,text,spelling", [
    ("temperature", "1e-30", "1.0e-30"),
    ("lr", "1e-3", "0.001"),
    ("weight_decay", "1e-5", "1.0e-05"),
    ("temperature", "5E+2", "500.0"),
])
def test_number_read_as_text_says_so_and_how_to_write_it(field, text, spelling):
    with pytest.raises(ConfigError) as info:
        RunConfig(**{field: text})
    msg = str(info.value)
    assert "read as text" in msg and f"write {spelling}" in msg and "\n" not in msg
    # ... and the suggested spelling is a float to YAML 1.1 (PyYAML)
    assert isinstance(yaml.safe_load(f"x: {spelling}")["x"], float)


def test_integer_read_as_text_says_so():
    with pytest.raises(ConfigError, match=r"'16' was read as text.*write 16 \(digits only"):
        RunConfig(batch_size="16")
    with pytest.raises(ConfigError) as info:  # not a number at all: no hint
        RunConfig(lr="fast")
    assert "read as text" not in str(info.value)


def test_params_file_number_read_as_text(tmp_path):
    """The issue's params file: `temperature: 1e-30` is the string '1e-30' to PyYAML."""
    p = tmp_path / "p.yaml"
    p.write_text("datasets: [digits]\nseeds: [1]\nepochs: [1]\n"
                 "config: {temperature: 1e-30}\n")
    with pytest.raises(ConfigError) as info:
        load_params(p)
    msg = str(info.value)
    assert str(p) in msg and "temperature='1e-30'" in msg and "\n" not in msg
    assert "read as text" in msg and "write 1.0e-30" in msg
    # written as suggested it is a number, and then the range applies
    p.write_text(p.read_text().replace("1e-30", "1.0e-30"))
    with pytest.raises(ConfigError) as info:
        load_params(p)
    assert "temperature=1e-30" in str(info.value) and "read as text" not in str(info.value)
    assert "[0.001, 1000]" in str(info.value)


def test_integer_too_long_to_print_still_gives_one_line():
    with pytest.raises(ConfigError, match="integer of about 5000 digits"):
        RunConfig(seed=10**5000)


@pytest.mark.parametrize("value", [0.001, 0.0, -1.0, 1e7, "10", True])
def test_probe_cv_c_max_is_checked_in_one_line(value):
    with pytest.raises(ConfigError) as info:
        RunConfig(probe_cv_c_max=value)
    assert info.value.field == "probe_cv_c_max" and "(0.001, 1e6]" in str(info.value)


def test_probe_cv_c_max_int_and_float_are_one_setting():
    assert RunConfig(probe_cv_c_max=10) == RunConfig(probe_cv_c_max=10.0)
    assert RunConfig(probe_cv_c_max=10).to_dict()["probe_cv_c_max"] == 10.0
