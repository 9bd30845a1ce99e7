"""Training loop, checkpoints, evaluation and the CLI on the embedded digits data."""

import json
import math

import numpy as np
import pytest
import torch

from rkdo_core import losses
from rkdo_core.cli import main
from rkdo_core.config import ConfigError, RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.errors import NonFiniteLossError
from rkdo_core.layout import TRAIN_COMPLETE, checkpoint_path, metrics_path
from rkdo_core.metrics import all_metrics
from rkdo_core.model import build_model
from rkdo_core.training.evaluate import embed, evaluate_run
from rkdo_core.training.train import train

TINY = dict(dataset="digits", epochs=(1, 2), steps_per_epoch=3, batch_size=16, device="cpu",
            eval_images=200)


def _log(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _weights(run, epoch):
    return torch.load(checkpoint_path(run, epoch), weights_only=True)["model"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two runs with seed 42 and one with seed 123, trained once for the module."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, seed in [("a", 42), ("b", 42), ("c", 123)]:
        train(RunConfig(seed=seed, **TINY), root / name, progress=False)
        out[name] = root / name
    return out


def test_same_seed_identical_losses_and_weights(tiny_runs):
    a, b, c = tiny_runs["a"], tiny_runs["b"], tiny_runs["c"]
    la, lb, lc = ([r["loss"] for r in _log(x)] for x in (a, b, c))
    assert len(la) == 6 and la == lb
    assert la != lc
    wa, wb, wc = _weights(a, 2), _weights(b, 2), _weights(c, 2)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_run_folder_contents(tiny_runs):
    run = tiny_runs["a"]
    done = json.loads((run / TRAIN_COMPLETE).read_text())
    assert [(b["epoch"], b["steps"]) for b in done["budgets"]] == [(0, 0), (1, 3), (2, 6)]
    assert np.isfinite(done["budgets"][0]["train_loss"])
    log = _log(run)
    assert [r["step"] for r in log] == list(range(1, 7))
    assert [r["epoch"] for r in log] == [1, 1, 1, 2, 2, 2]
    # The budget's training loss is the mean batch loss of its last epoch.
    assert done["budgets"][2]["train_loss"] == pytest.approx(np.mean([r["loss"] for r in log[3:]]))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["seed"] == 42 and cfg["steps_per_epoch"] == 3
    for key in ("git_sha", "git_dirty", "torch", "torchvision", "device"):
        assert key in cfg["provenance"]
    for e in (0, 1, 2):
        # weights only: the model and the budget, no optimizer state (tests/test_checkpoints.py)
        state = torch.load(checkpoint_path(run, e), weights_only=True)
        assert set(state) == {"model", "epoch", "steps", "train_loss"}
        assert (state["epoch"], state["steps"]) == (e, 3 * e)


def test_budget_zero_checkpoint_is_the_fresh_encoder(tiny_runs):
    fresh = build_model(RunConfig(seed=42, **TINY)).state_dict()
    saved = _weights(tiny_runs["a"], 0)
    assert all(torch.equal(fresh[k], saved[k]) for k in fresh)


def test_complete_run_is_not_retrained(tiny_runs):
    run = tiny_runs["a"]
    before = checkpoint_path(run, 2).stat().st_mtime_ns
    train(RunConfig(seed=42, **TINY), run, progress=False)
    assert checkpoint_path(run, 2).stat().st_mtime_ns == before
    with pytest.raises(ConfigError, match="different config"):
        train(RunConfig(seed=42, **{**TINY, "alpha": 0.3}), run, progress=False)


def test_evaluate_writes_metrics_per_checkpoint(tiny_runs):
    run = tiny_runs["c"]
    results = evaluate_run(run)
    assert [r["epoch"] for r in results] == [0, 1, 2]
    for r in results:
        saved = json.loads(metrics_path(run, r["epoch"]).read_text())
        assert saved == r
        assert r["eval_images"] == 200 and r["method"] == "rkdo" and r["seed"] == 123
        for m in ("linear_eval", "nmi", "ari", "neighborhood_acc"):
            assert -1 <= r[m] <= 1
    # Budget 0 is the untrained encoder: its metrics equal those computed directly.
    data = load_dataset("digits")
    feats = embed(build_model(RunConfig(seed=123, **TINY)), data.test.images[:200])
    direct = all_metrics(feats, data.test.labels[:200].numpy(), seed=42)
    assert {k: results[0][k] for k in direct} == pytest.approx(direct)


def test_zero_learning_rate_changes_nothing(tmp_path):
    run = tmp_path / "frozen"
    train(RunConfig(seed=7, lr=0.0, **{**TINY, "epochs": (1,)}), run, progress=False)
    w0, w1 = _weights(run, 0), _weights(run, 1)
    # Parameters are untouched; only batch-norm running statistics move.
    params = dict(build_model(RunConfig(seed=7, **TINY)).named_parameters())
    assert all(torch.equal(w0[k], w1[k]) for k in params)


def test_non_finite_loss_stops_and_marks_nothing_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = losses.LOSSES["rkdo"]

    def flaky(z1, z2, **kw):
        calls["n"] += torch.is_grad_enabled()  # count training steps, not the step-0 probe
        value = real(z1, z2, **kw)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setitem(losses.LOSSES, "rkdo", flaky)
    run = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match="step 5 .epoch 2."):
        train(RunConfig(seed=1, **TINY), run, progress=False)
    assert not (run / TRAIN_COMPLETE).exists()
    assert checkpoint_path(run, 1).exists() and not checkpoint_path(run, 2).exists()
    with pytest.raises(FileNotFoundError, match="no complete training run"):
        evaluate_run(run)


def test_steps_per_epoch_beyond_one_pass_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="steps_per_epoch.*at most 78 batches"):
        train(RunConfig(**{**TINY, "steps_per_epoch": 79}), tmp_path / "x", progress=False)


def test_full_protocol_trains_probe_on_train_features(tmp_path):
    assert RunConfig.preset("full").steps_per_epoch is None  # a full pass: 1257 // B steps
    # a 2 x 2 grid of the cross-validated probe (the default 10 x 5 fits 50 probes per
    # checkpoint; tests/test_evaluate_encoder.py checks the probe itself)
    # (probe on 200 of the train images' features: the subset rule is
    # tests/test_evaluate_encoder.py's; here it is enough that train features are used)
    cfg = RunConfig.preset("full", dataset="digits", epochs=(1,), batch_size=16, device="cpu",
                           steps_per_epoch=2, probe_cv_cs=2, probe_cv_folds=2,
                           probe_train_images=200, yardstick_images=64)
    run = tmp_path / "full"
    done = train(cfg, run, progress=False)
    assert done["steps_per_epoch"] == 2
    r = evaluate_run(run)[-1]
    assert r["eval_images"] == 540 and r["eval_features"] == "backbone"
    assert r["probe_train_images"] == 200
    assert r["protocol"] == "full"
    # The yardstick's cap (its default, the evaluation images in full batches with the rest
    # dropped, is tests/test_evaluate_encoder.py's; the whole test set cost 50 s here)
    assert r["yardstick_images"] == 64


def test_cli_train_evaluate_and_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--dataset", "digits", "--method", "icon", "--seed", "3", "--epochs", "1",
               "--steps-per-epoch", "2", "--batch-size", "8", "--eval-images", "50",
               "--device", "cpu", "--out", str(out), "--no-progress", "--evaluate"])
    assert rc == 0
    assert json.loads(metrics_path(out, 1).read_text())["method"] == "icon"
    assert main(["evaluate", str(out)]) == 0
    assert "linear" in capsys.readouterr().out

    rc = main(["train", "--alpha", "1.5", "--out", str(tmp_path / "bad"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "alpha=1.5" in err and "(0, 1]" in err and "Traceback" not in err
    assert not (tmp_path / "bad" / TRAIN_COMPLETE).exists()
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "--epochs", "1,x", "--out", str(tmp_path / "bad2")])
    assert e.value.code == 2
    assert "--epochs" in capsys.readouterr().err


def test_initial_loss_is_mean_untrained_loss_and_leaves_model_unchanged():
    from rkdo_core.augment import two_views
    from rkdo_core.training.train import _initial_loss

    cfg = RunConfig(seed=5, **TINY)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = load_dataset("digits").train.images
    value = _initial_loss(model, losses.loss_for(cfg), images, 2, 16, seed=9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The same two batches by hand.
    g_data, g_aug = (torch.Generator().manual_seed(9 + i) for i in range(2))
    order = torch.randperm(images.shape[0], generator=g_data)
    fresh = build_model(cfg).train()
    with torch.no_grad():
        want = []
        for i in range(2):
            v1, v2 = two_views(images[order[i * 16:(i + 1) * 16]], g_aug)
            want.append(losses.loss_for(cfg)(fresh(v1), fresh(v2)).item())
    assert value == pytest.approx(np.mean(want), rel=1e-6)


# ---- a diverged run never passes as complete (issue 17) ---------------------------------
ONE_EPOCH = {**TINY, "epochs": (1,)}


def _bypass_validation(cfg, **values):
    """The config the issue ran before validation refused it (`--lr inf`, τ = 1e-300)."""
    for k, v in values.items():
        object.__setattr__(cfg, k, v)
    return cfg


def _assert_nothing_complete(run, epoch):
    assert not (run / TRAIN_COMPLETE).exists()
    assert not checkpoint_path(run, epoch).exists()


def test_nan_embedding_stops_rkdo_training(tmp_path, monkeypatch):
    """One NaN in the embeddings: RKDO's teacher p_t is built from the model's own q, and
    the old `p > 0` mask turned that NaN into a loss of exactly 0.0, which the guard let
    through and the run was marked complete. Now the loss is NaN and training stops."""
    calls = {"n": 0}
    real = losses.LOSSES["rkdo"]

    def poisoned(z1, z2, **kw):
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] == 2:
            z2 = z2.clone()
            z2[0, 0] = float("nan")
        return real(z1, z2, **kw)

    monkeypatch.setitem(losses.LOSSES, "rkdo", poisoned)
    run = tmp_path / "nan_z"
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 2 \(epoch 1\)"):
        train(RunConfig(seed=1, **ONE_EPOCH), run, progress=False)
    assert [r["step"] for r in _log(run)] == [1, 2] and math.isnan(_log(run)[-1]["loss"])
    _assert_nothing_complete(run, 1)


def test_non_finite_gradient_with_finite_loss_stops_training(tmp_path, monkeypatch):
    real = losses.LOSSES["icon"]
    calls = {"n": 0}

    def bad_grad(z1, z2, **kw):
        calls["n"] += torch.is_grad_enabled()
        value = real(z1, z2, **kw)
        if calls["n"] == 3:  # forward sqrt(0) = 0, backward 0 · 1/(2·sqrt(0)) = NaN
            value = value + torch.sqrt(z1.sum() * 0.0)
        return value

    monkeypatch.setitem(losses.LOSSES, "icon", bad_grad)
    run = tmp_path / "nan_grad"
    with pytest.raises(NonFiniteLossError,
                       match=r"gradient norm became nan \(loss [0-9.]+\) at step 3 \(epoch 1\)"):
        train(RunConfig(method="icon", seed=1, **ONE_EPOCH), run, progress=False)
    assert [r["step"] for r in _log(run)] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in _log(run))
    _assert_nothing_complete(run, 1)


def test_update_that_overflows_the_weights_on_the_last_step_stops_training(tmp_path):
    """The issue's `--lr inf`, one step: its loss and gradient are finite, the update makes
    every weight inf/NaN. Checked before the checkpoint, so nothing is marked complete."""
    cfg = _bypass_validation(RunConfig(seed=1, **{**ONE_EPOCH, "steps_per_epoch": 1}),
                             lr=math.inf)
    run = tmp_path / "lr_inf"
    with pytest.raises(NonFiniteLossError,
                       match=r"update made the weights non-finite .* at step 1 \(epoch 1\)"):
        train(cfg, run, progress=False)
    assert len(_log(run)) == 1 and math.isfinite(_log(run)[0]["loss"])
    _assert_nothing_complete(run, 1)


def test_non_finite_untrained_loss_stops_before_training(tmp_path):
    """The issue's τ = 1e-300 (0 in float32): every loss, budget 0's too, is non-finite."""
    cfg = _bypass_validation(RunConfig(seed=1, **ONE_EPOCH), temperature=1e-300)
    run = tmp_path / "tau"
    with pytest.raises(NonFiniteLossError, match=r"untrained encoder's loss \(budget 0, step 0\)"):
        train(cfg, run, progress=False)
    assert not (run / "train_log.jsonl").exists()
    _assert_nothing_complete(run, 1)


@pytest.mark.parametrize("args,shown", [
    (["--lr", "nan"], "lr=nan"),
    (["--lr", "inf"], "lr=inf"),
    (["--temperature", "1e-300"], "temperature=1e-300"),
    (["--beta=-inf"], "beta=-inf"),  # "--beta -inf" would read -inf as an option
])
def test_cli_refuses_non_finite_and_unrepresentable_numbers(tmp_path, capsys, args, shown):
    out = tmp_path / "bad"
    rc = main(["train", "--dataset", "digits", "--epochs", "1", "--steps-per-epoch", "2",
               *args, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("rkdo: error: invalid config")
    assert shown in err and "finite" in err and "Traceback" not in err
    assert not (out / TRAIN_COMPLETE).exists()
