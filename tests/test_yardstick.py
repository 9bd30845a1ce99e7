"""The common yardstick and the budget-0 baseline in the metrics files (`evaluate_run`).

References here are written independently of `rkdo_core.yardstick`: views drawn with
`augment.augment` batch by batch from a generator seeded with the constant, embeddings one
view at a time under ``no_grad``, the losses called with the run's settings spelled out,
and the mean taken in Python.
"""

import json

import numpy as np
import pytest
import torch

from rkdo_core.augment import augment
from rkdo_core.config import RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.layout import EVAL_VERSION, checkpoint_path, metrics_path
from rkdo_core.losses import icon_loss, rkdo_loss
from rkdo_core.metrics import all_metrics
from rkdo_core.model import build_model
from rkdo_core.runio import write_json_atomic
from rkdo_core.training.evaluate import embed, evaluate_run
from rkdo_core.training.stepflops import step_flops
from rkdo_core.training.train import load_encoder, train
from rkdo_core.training.yardstick import YARDSTICK_SEED, batch_bounds, yardstick, yardstick_views

# 40 evaluation images in batches of 16: two scored batches, the last 8 images dropped.
# Loss settings off the defaults, so the test sees whether the run's settings are used.
TINY = dict(dataset="digits", epochs=(1,), steps_per_epoch=2, batch_size=16, device="cpu",
            eval_images=40, temperature=0.4, debias_alpha=0.3, alpha=0.6, depth=2, beta=0.2,
            threads=1)
N_SCORED = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """rkdo and icon with seed 42: trained and evaluated once."""
    root = tmp_path_factory.mktemp("yardstick")
    out = {}
    for method, seed in [("rkdo", 42), ("icon", 42)]:
        run = root / f"{method}_{seed}"
        cfg = RunConfig(method=method, seed=seed, **TINY)
        train(cfg, run, progress=False)
        out[(method, seed)] = (run, cfg, evaluate_run(run))
    return out


@pytest.fixture(scope="module")
def test_images():
    return load_dataset("digits").test.images[:TINY["eval_images"]]


def reference_yardstick(model, images, cfg):
    """Slow, independent reference: batch by batch, seeded views, the losses directly."""
    model.eval()
    g = torch.Generator().manual_seed(YARDSTICK_SEED)
    b = cfg.batch_size
    icon, rkdo = [], []
    with torch.no_grad():
        for i in range(images.shape[0] // b):
            batch = images[i * b:(i + 1) * b]
            v1 = augment(batch, g)
            v2 = augment(batch, g)
            z1, z2 = model(v1), model(v2)
            icon.append(float(icon_loss(z1, z2, temperature=cfg.temperature,
                                        debias_alpha=cfg.debias_alpha)))
            rkdo.append(float(rkdo_loss(z1, z2, temperature=cfg.temperature, alpha=cfg.alpha,
                                        depth=cfg.depth, beta=cfg.beta)))
    return {"yardstick_icon": float(np.mean(icon)), "yardstick_rkdo": float(np.mean(rkdo)),
            "yardstick_images": b * len(icon)}


def test_every_metrics_file_has_the_new_keys(runs):
    for run, cfg, results in runs.values():
        for r in results:
            assert json.loads(metrics_path(run, r["epoch"]).read_text()) == r
            assert isinstance(r["yardstick_icon"], float) and np.isfinite(r["yardstick_icon"])
            assert isinstance(r["yardstick_rkdo"], float) and np.isfinite(r["yardstick_rkdo"])
            assert r["yardstick_images"] == N_SCORED
            assert r["yardstick_seed"] == YARDSTICK_SEED
            assert r["eval_version"] == EVAL_VERSION
            s = r["yardstick_settings"]
            assert s["icon"] == {"temperature": 0.4, "debias_alpha": 0.3}
            assert s["rkdo"] == {"temperature": 0.4, "alpha": 0.6, "depth": 2, "beta": 0.2}
            assert s["batch_size"] == 16 and s["partial_batch"] == "dropped"
            assert r["flops_per_step"] == step_flops(cfg, 32) > 0
            assert r["train_flops"] == r["steps"] * r["flops_per_step"]
        assert results[0]["train_flops"] == 0 and results[1]["train_flops"] > 0


def test_budget_zero_metrics_equal_a_fresh_encoder(runs, test_images):
    labels = load_dataset("digits").test.labels[:TINY["eval_images"]].numpy()
    for _run, cfg, results in runs.values():
        # The encoder as training builds it, from the run's seed.
        torch.manual_seed(cfg.seed)
        fresh = build_model(cfg)
        r0 = results[0]
        assert r0["epoch"] == 0 and r0["steps"] == 0
        direct = all_metrics(embed(fresh, test_images), labels, seed=42)
        assert {k: r0[k] for k in direct} == pytest.approx(direct, rel=1e-9, abs=1e-12)
        ref = reference_yardstick(fresh, test_images, cfg)
        assert {k: r0[k] for k in ref} == pytest.approx(ref, rel=1e-5)


def test_yardstick_equals_losses_on_checkpoint_embeddings(runs, test_images):
    for run, cfg, results in runs.values():
        model = load_encoder(cfg, checkpoint_path(run, 1), torch.device("cpu"))
        ref = reference_yardstick(model, test_images, cfg)
        assert {k: results[1][k] for k in ref} == pytest.approx(ref, rel=1e-5)
        # Training moved the weights, so the yardstick moved: it reads the checkpoint.
        assert results[1]["yardstick_icon"] != results[0]["yardstick_icon"]


def test_same_views_for_every_run(runs, test_images):
    # Budget 0 of rkdo and icon with seed 42 is the same encoder: with the same views the
    # yardstick must agree exactly, although the runs' methods (and training) differ.
    r_rkdo, r_icon = runs[("rkdo", 42)][2][0], runs[("icon", 42)][2][0]
    for k in ("yardstick_icon", "yardstick_rkdo"):
        assert r_rkdo[k] == r_icon[k]
    # A different seed is a different encoder: different values on the same views.
    cfg = runs[("rkdo", 42)][1]
    other_seed = yardstick(build_model(cfg.replace(seed=123)), test_images, cfg)
    assert other_seed["yardstick_icon"] != r_rkdo["yardstick_icon"]
    # The views are a function of (images, batch size, constant seed), not of the global RNG.
    torch.manual_seed(0)
    a = list(yardstick_views(test_images, 16))
    torch.manual_seed(1)
    torch.rand(100)
    b = list(yardstick_views(test_images, 16))
    assert len(a) == len(b) == 2
    assert all(torch.equal(x, y) for va, vb in zip(a, b) for x, y in zip(va, vb))
    other = list(yardstick_views(test_images, 16, seed=YARDSTICK_SEED + 1))
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(a[0][0], a[0][1])  # two different views of each image


def test_batch_bounds():
    assert batch_bounds(40, 16) == [(0, 16), (16, 32)]  # last partial batch dropped
    assert batch_bounds(32, 16) == [(0, 16), (16, 32)]
    assert batch_bounds(10, 16) == [(0, 10)]  # fewer than one batch: all of them
    with pytest.raises(ValueError, match="at least 2 images"):
        batch_bounds(1, 16)


def test_old_metrics_files_are_recomputed(runs):
    run, cfg, results = runs[("icon", 42)]
    path = metrics_path(run, 1)
    # A file written before the yardstick existed: no yardstick/FLOP keys, no version.
    old = {k: v for k, v in results[1].items()
           if not k.startswith("yardstick_") and k not in (
               "flops_per_step", "train_flops", "eval_version")}
    write_json_atomic(path, old)
    untouched = metrics_path(run, 0).stat().st_mtime_ns
    again = evaluate_run(run)  # force=False
    assert metrics_path(run, 0).stat().st_mtime_ns == untouched  # a current file is reused
    new = json.loads(path.read_text())
    assert new == again[1]
    for k in ("yardstick_icon", "yardstick_rkdo", "yardstick_images", "flops_per_step",
              "train_flops", "linear_eval"):
        assert new[k] == pytest.approx(results[1][k], rel=1e-6)
    assert new["eval_version"] == EVAL_VERSION


def test_own_view_embeddings_give_the_very_same_yardstick(runs, test_images):
    """evaluate_run scores the epoch-0 checkpoint from its teacher embeddings (the same
    model's views, computed once per run) instead of a second forward pass: every value
    must be bit-identical to the forward passes', and mismatched embeddings refused."""
    from rkdo_core.training.yardstick import view_embeddings

    run, cfg, _ = runs[("rkdo", 42)]
    model = load_encoder(cfg, checkpoint_path(run, 0), torch.device("cpu"))
    own = view_embeddings(model, test_images, cfg.batch_size)
    forward = yardstick(model, test_images, cfg, teacher=own)
    reused = yardstick(model, test_images, cfg, teacher=own, own=own)
    assert reused == forward  # exact equality of every float
    with pytest.raises(ValueError, match="own must be the model's view_embeddings"):
        yardstick(model, test_images, cfg.replace(batch_size=8), own=own)
