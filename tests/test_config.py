"""Every invalid config value raises a ConfigError naming field, value and what is allowed."""

import dataclasses

import pytest

from rkdo_core.config import ConfigError, RunConfig


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("alpha", 0.0, "(0, 1]"),
        ("alpha", 1.5, "(0, 1]"),
        ("alpha", -0.1, "(0, 1]"),
        ("depth", 0, ">= 1"),
        ("depth", 2.5, ">= 1"),
        ("temperature", 0.0, "> 0"),
        ("temperature", -1.0, "> 0"),
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
        ("lr", -1e-3, ">= 0"),
        ("weight_decay", -1.0, ">= 0"),
        ("steps_per_epoch", 0, "positive"),
        ("eval_images", 3, ">= 10"),
        ("image_size", 4, ">= 8"),
        ("device", "gpu", "cuda"),
        ("protocol", "quick", "paper"),
        ("eval_features", "logits", "projection"),
        ("head_batchnorm", "yes", "true or false"),
        ("seed", -1, "non-negative"),
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
