"""Evaluation measures the encoder: the full protocol's CV probe and k-NN measures, the
probe's fixed stratified train subset, the neutral yardsticks of both protocols, and the
paper protocol's numbers left exactly as they were.

References are computed independently: features from `evaluate.embed` (one feature kind at a
time), the metric functions of `rkdo_core.metrics` / `rkdo_core.neutral` called directly.
"""

import json

import numpy as np
import pytest
import torch

from rkdo_core.augment import normalize
from rkdo_core.config import ConfigError, RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.layout import (
    EVAL_CIRCUMSTANCE_KEYS,
    EVAL_FULL_KEYS,
    EVAL_V3_KEYS,
    EVAL_VERSION,
    checkpoint_path,
    metrics_path,
)
from rkdo_core.losses import rkdo_loss
from rkdo_core.metrics import (
    PROBE_CS,
    all_metrics,
    knn_weighted_accuracy,
    linear_probe_cv,
    neighborhood_accuracy_cosine,
)
from rkdo_core.neutral import (
    alignment,
    effective_rank,
    infonce_excluding_positive,
    rkdo_fixed_teacher,
    uniformity,
)
from rkdo_core.runio import write_json_atomic
from rkdo_core.training.evaluate import (
    embed,
    embed_all,
    evaluate_run,
    probe_cs,
    probe_train_indices,
)
from rkdo_core.training.train import load_encoder, train
from rkdo_core.training.yardstick import view_embeddings, yardstick_views

TINY = dict(dataset="digits", epochs=(1,), steps_per_epoch=2, batch_size=16, device="cpu",
            threads=1)
PAPER = dict(TINY, eval_images=100)
FULL = dict(TINY, eval_images=120, probe_train_images=300, probe_cv_cs=3, probe_cv_folds=3,
            yardstick_images=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _what(metrics: dict) -> dict:
    """A metrics file without the keys that say how long it took (EVAL_CIRCUMSTANCE_KEYS)."""
    return {k: v for k, v in metrics.items() if k not in EVAL_CIRCUMSTANCE_KEYS}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """paper rkdo/icon seed 42 and full rkdo seed 42, trained and evaluated once."""
    root = tmp_path_factory.mktemp("encoder")
    out = {}
    for key, cfg in {("paper", "rkdo"): RunConfig(method="rkdo", **PAPER),
                     ("paper", "icon"): RunConfig(method="icon", **PAPER),
                     ("full", "rkdo"): RunConfig.preset("full", method="rkdo", **FULL)}.items():
        run = root / "_".join(key)
        train(cfg, run, progress=False)
        out[key] = (run, cfg, evaluate_run(run))
    return out


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_new_keys_exist_with_sane_ranges(runs):
    for (protocol, _), (run, _cfg, results) in runs.items():
        for r in results:
            assert json.loads(metrics_path(run, r["epoch"]).read_text()) == r
            assert r["eval_version"] == EVAL_VERSION == 3
            assert set(EVAL_V3_KEYS) <= set(r)
            assert 0 <= r["yard_alignment"] <= 4
            assert -4 <= r["yard_uniformity"] <= 0
            assert 1 <= r["yard_rankme"] <= 64
            assert np.isfinite(r["yard_infonce_t01"]) and np.isfinite(r["yard_infonce_t05"])
            assert r["yard_rkdo_fixed"] >= 0
            if protocol == "full":
                assert set(EVAL_FULL_KEYS) <= set(r)
                for k in ("linear_cv", "knn20", "knn5_cosine"):
                    assert 0 <= r[k] <= 1
                assert r["linear_cv_C"] in probe_cs(3)
                assert isinstance(r["linear_cv_converged"], bool)
                assert r["linear_cv_n_iter"] >= 1 and r["probe_train_images"] == 300
                assert r["yardstick_images"] == 64 and r["eval_images"] == 120
            else:
                assert not set(EVAL_FULL_KEYS) & set(r)
                assert r["yardstick_images"] == 96  # 100 images, batches of 16


def test_full_protocol_equals_direct_metric_calls(runs, digits):
    run, cfg, results = runs[("full", "rkdo")]
    idx = probe_train_indices(digits.train.labels.numpy(), 300)
    train_x, train_y = digits.train.images[idx], digits.train.labels.numpy()[idx]
    # the full protocol's evaluation images: a fixed class-stratified 120 of the test split
    # (the same draw as the probe's train subset), not the first 120
    te = probe_train_indices(digits.test.labels.numpy(), 120)
    test_x, test_y = digits.test.images[te], digits.test.labels.numpy()[te]
    for r in results:
        model = load_encoder(cfg, checkpoint_path(run, r["epoch"]), torch.device("cpu"))
        f_test = embed(model, test_x, features="backbone")
        f_train = embed(model, train_x, features="backbone")
        probe = linear_probe_cv(f_train, train_y, f_test, test_y, Cs=np.logspace(-3, 2, 3),
                                folds=3, seed=42)
        assert r["linear_cv"] == probe.accuracy and r["linear_cv_C"] == probe.C
        assert r["linear_cv_n_iter"] == probe.n_iter
        assert r["linear_cv_converged"] == probe.converged
        assert r["knn20"] == knn_weighted_accuracy(f_train, train_y, f_test, test_y, k=20,
                                                   temperature=0.07)
        assert r["knn5_cosine"] == neighborhood_accuracy_cosine(f_test, test_y, k=5)
        # the paper's four metrics of the full protocol: the same functions as before
        direct = all_metrics(f_test, test_y, seed=42, train_features=f_train,
                             train_labels=train_y)
        assert {k: r[k] for k in direct} == direct


def test_embed_all_is_embed_in_one_pass(runs, digits):
    run, cfg, _ = runs[("full", "rkdo")]
    model = load_encoder(cfg, checkpoint_path(run, 1), torch.device("cpu"))
    x = digits.test.images[:50]
    both = embed_all(model, x, batch_size=16)
    for kind in ("backbone", "projection"):
        assert np.array_equal(both[kind], embed(model, x, features=kind, batch_size=16))


def test_probe_grid_default_is_metrics_default():
    assert probe_cs(10) == pytest.approx(PROBE_CS, rel=0, abs=0)
    assert len(probe_cs(5)) == 5 and probe_cs(5)[0] == pytest.approx(1e-3)


def test_probe_train_subset_is_stratified_fixed_and_sized(digits):
    labels = digits.train.labels.numpy()
    idx = probe_train_indices(labels, 300)
    assert idx.shape == (300,) and len(np.unique(idx)) == 300
    assert np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=10)
    expected = np.bincount(labels, minlength=10) * 300 / labels.shape[0]
    assert np.all(np.abs(counts - expected) < 1)  # proportional to the class frequencies
    # a function of (labels, n) only: not of the global RNG, nor of any run's seed/method
    torch.manual_seed(1)
    np.random.seed(1)
    assert np.array_equal(idx, probe_train_indices(labels, 300))
    assert np.array_equal(probe_train_indices(labels, None), np.arange(labels.shape[0]))
    assert np.array_equal(probe_train_indices(labels, 10**6), np.arange(labels.shape[0]))
    assert not np.array_equal(idx, probe_train_indices(labels, 300, seed=1))


def test_probe_subset_is_the_same_for_every_seed_and_method(tmp_path, digits):
    """Two full-protocol runs of another seed and method probe the same train images: their
    budget-0 k-NN memory banks are the same subset (checked through the recorded count and
    the direct computation on that subset)."""
    cfg = RunConfig.preset("full", method="icon", seed=7, **{**FULL, "epochs": (1,)})
    run = tmp_path / "icon7"
    train(cfg, run, progress=False)
    r0 = evaluate_run(run)[0]
    idx = probe_train_indices(digits.train.labels.numpy(), 300)
    model = load_encoder(cfg, checkpoint_path(run, 0), torch.device("cpu"))
    f_train = embed(model, digits.train.images[idx], features="backbone")
    te = probe_train_indices(digits.test.labels.numpy(), 120)  # the stratified eval subset
    f_test = embed(model, digits.test.images[te], features="backbone")
    assert r0["probe_train_images"] == 300 and r0["eval_subset"] == "stratified"
    assert r0["knn20"] == knn_weighted_accuracy(f_train, digits.train.labels.numpy()[idx],
                                                f_test, digits.test.labels.numpy()[te])


def test_paper_protocol_metrics_unchanged(runs, digits):
    test_x, test_y = digits.test.images[:100], digits.test.labels[:100].numpy()
    for (protocol, _), (run, cfg, results) in runs.items():
        if protocol != "paper":
            continue
        for r in results:
            model = load_encoder(cfg, checkpoint_path(run, r["epoch"]), torch.device("cpu"))
            direct = all_metrics(embed(model, test_x), test_y, seed=42)
            assert {k: r[k] for k in direct} == direct  # bit for bit


def test_neutral_yardsticks_equal_direct_calls(runs, digits):
    run, cfg, results = runs[("paper", "rkdo")]
    images = digits.test.images[:100]
    model = load_encoder(cfg, checkpoint_path(run, 1), torch.device("cpu")).eval()
    teacher = load_encoder(cfg, checkpoint_path(run, 0), torch.device("cpu")).eval()
    ref = {k: [] for k in ("al", "un", "t01", "t05", "fixed")}
    settings = dict(temperature=cfg.temperature, alpha=cfg.alpha, depth=cfg.depth,
                    beta=cfg.beta)
    with torch.no_grad():
        for v1, v2 in yardstick_views(images, 16):
            z1, z2 = model(v1), model(v2)
            t1, t2 = teacher(v1), teacher(v2)
            ref["al"].append(float(alignment(z1, z2)))
            ref["un"].append(float(uniformity(torch.cat([z1, z2]))))
            ref["t01"].append(float(infonce_excluding_positive(z1, z2, 0.1)))
            ref["t05"].append(float(infonce_excluding_positive(z1, z2, 0.5)))
            ref["fixed"].append(float(rkdo_fixed_teacher(z1, z2, t1, t2, **settings)))
        rank = float(effective_rank(model(normalize(images[:96]))))
    r = results[1]
    assert r["yard_alignment"] == pytest.approx(np.mean(ref["al"]), rel=1e-5)
    assert r["yard_uniformity"] == pytest.approx(np.mean(ref["un"]), rel=1e-5)
    assert r["yard_infonce_t01"] == pytest.approx(np.mean(ref["t01"]), rel=1e-5)
    assert r["yard_infonce_t05"] == pytest.approx(np.mean(ref["t05"]), rel=1e-5)
    assert r["yard_rkdo_fixed"] == pytest.approx(np.mean(ref["fixed"]), rel=1e-5)
    assert r["yard_rankme"] == pytest.approx(rank, rel=1e-4)


def test_rkdo_fixed_at_epoch_zero_is_rkdo_loss_and_shared_by_methods(runs, digits):
    r_rkdo = runs[("paper", "rkdo")][2][0]
    r_icon = runs[("paper", "icon")][2][0]
    # teacher = model at budget 0: the fixed-teacher objective is the RKDO loss itself
    assert r_rkdo["yard_rkdo_fixed"] == pytest.approx(r_rkdo["yardstick_rkdo"], rel=1e-6)
    cfg = runs[("paper", "rkdo")][1]
    model = load_encoder(cfg, checkpoint_path(runs[("paper", "rkdo")][0], 0),
                         torch.device("cpu"))
    views = view_embeddings(model, digits.test.images[:100], 16)
    direct = np.mean([float(rkdo_loss(z1, z2, temperature=cfg.temperature, alpha=cfg.alpha,
                                      depth=cfg.depth, beta=cfg.beta)) for z1, z2 in views])
    assert r_rkdo["yard_rkdo_fixed"] == pytest.approx(direct, rel=1e-6)
    # the same seed gives both methods the identical initial encoder, hence the same teacher
    w_rkdo = torch.load(checkpoint_path(runs[("paper", "rkdo")][0], 0), weights_only=True)
    w_icon = torch.load(checkpoint_path(runs[("paper", "icon")][0], 0), weights_only=True)
    assert all(torch.equal(w_rkdo["model"][k], w_icon["model"][k]) for k in w_rkdo["model"])
    for k in EVAL_V3_KEYS:
        assert r_rkdo[k] == r_icon[k]


def test_old_version_file_is_recomputed(runs):
    run, _cfg, results = runs[("paper", "icon")]
    path = metrics_path(run, 1)
    write_json_atomic(path, {**{k: v for k, v in results[1].items()
                                if not k.startswith("yard_")}, "eval_version": 2})
    again = evaluate_run(run)
    assert _what(again[1]) == _what(results[1])


@pytest.mark.parametrize("field, value", [
    ("probe_train_images", 5), ("probe_train_images", 1.5), ("probe_train_images", True),
    ("probe_cv_folds", 1), ("probe_cv_folds", "3"), ("probe_cv_cs", 0), ("probe_cv_cs", 2.0),
    ("yardstick_images", 1), ("yardstick_images", "all")])
def test_bad_evaluation_config_values(field, value):
    with pytest.raises(ConfigError, match=field) as e:
        RunConfig(**{field: value})
    assert e.value.field == field and e.value.value == value


def test_evaluation_defaults_keep_earlier_configs():
    cfg = RunConfig()
    assert (cfg.probe_train_images, cfg.probe_cv_folds, cfg.probe_cv_cs,
            cfg.yardstick_images) == (None, 5, 10, None)
    old = {k: v for k, v in cfg.to_dict().items()
           if k not in ("probe_train_images", "probe_cv_folds", "probe_cv_cs",
                        "yardstick_images")}
    assert RunConfig.from_dict(old) == cfg
