"""Checkpoints hold the weights only (docs/design.md, "Checkpoints: weights only"): the
model's ``state_dict`` exactly as trained and the budget's epoch, steps and training loss,
no optimizer state; and checkpoints of older runs, which also hold Adam's state, still load
and evaluate to the identical numbers."""

import json
import shutil

import pytest
import torch

from rkdo_core.config import RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.layout import EVAL_CIRCUMSTANCE_KEYS, METRICS, TRAIN_COMPLETE, checkpoint_path
from rkdo_core.model import build_model
from rkdo_core.training.evaluate import embed, evaluate_run
from rkdo_core.training.train import load_encoder, setup_training, train, train_step

TINY = dict(dataset="digits", epochs=(1, 2), steps_per_epoch=2, batch_size=16, device="cpu",
            eval_images=64, threads=1)
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run, trained and evaluated once for the module."""
    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(RunConfig(seed=5, **TINY), out, progress=False)
    evaluate_run(out)
    return out


def _old_format(path, cfg):
    """Rewrite ``path`` as the code before weights-only checkpoints wrote it: the same
    entries plus ``"optimizer"``, the ``state_dict()`` of the run's Adam (after a step, so
    it holds both moments of every parameter, as it did at every budget > 0)."""
    state = _load(path)
    setup = setup_training(cfg, CPU)
    images = load_dataset("digits").train.images[:cfg.batch_size]
    train_step(setup, *setup.views(images, torch.Generator().manual_seed(0)))
    state["optimizer"] = setup.optimizer.state_dict()
    torch.save(state, path)


def test_checkpoint_is_the_weights_and_the_budget_only(run):
    done = json.loads((run / TRAIN_COMPLETE).read_text())
    fresh = build_model(RunConfig(seed=5, **TINY)).state_dict()
    for rec in done["budgets"]:
        state = _load(checkpoint_path(run, rec["epoch"]))
        assert set(state) == {"model", "epoch", "steps", "train_loss"}
        assert (state["epoch"], state["steps"]) == (rec["epoch"], rec["steps"])
        if rec["epoch"] == 0:
            assert state["train_loss"] is None
            assert all(torch.equal(fresh[k], state["model"][k]) for k in fresh)
        else:
            assert state["train_loss"] == rec["train_loss"]
        # every weight and buffer of the model, as stored by the model (float32 weights)
        model = state["model"]
        assert list(model) == list(fresh)
        assert all(model[k].dtype == fresh[k].dtype for k in fresh)
        assert {v.dtype for v in model.values() if v.is_floating_point()} == {torch.float32}
        # the file is the weights and little else (Adam's moments would make it ~3x)
        weights = sum(v.numel() * v.element_size() for v in model.values())
        assert checkpoint_path(run, rec["epoch"]).stat().st_size < 1.02 * weights


def test_old_checkpoint_with_optimizer_loads_and_evaluates_identically(run, tmp_path):
    cfg = RunConfig(seed=5, **TINY)
    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    shutil.rmtree(old / METRICS)
    for e in (0, 1, 2):
        _old_format(checkpoint_path(old, e), cfg)
        assert "optimizer" in _load(checkpoint_path(old, e))
        assert (checkpoint_path(old, e).stat().st_size
                > 2.5 * checkpoint_path(run, e).stat().st_size)
    images = load_dataset("digits").test.images[:64]
    for e in (0, 1, 2):
        a = load_encoder(cfg, checkpoint_path(run, e), CPU)
        b = load_encoder(cfg, checkpoint_path(old, e), CPU)
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert (embed(a, images) == embed(b, images)).all()
    # evaluation (metrics, yardstick with its epoch-0 teacher, FLOPs) bit-identical
    new_results, old_results = evaluate_run(run), evaluate_run(old)
    assert len(new_results) == len(old_results) == 3
    for r_new, r_old in zip(new_results, old_results):
        assert {k: v for k, v in r_old.items() if k not in EVAL_CIRCUMSTANCE_KEYS} == \
               {k: v for k, v in r_new.items() if k not in EVAL_CIRCUMSTANCE_KEYS}
