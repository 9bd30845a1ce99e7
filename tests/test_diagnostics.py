"""rkdo_core.diagnostics on a tiny real run: logs, budgets, 2-D maps, and the p/q fields
checked against closed forms and against the loss functions."""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import rkdo_core.training.diagnostics as D
from rkdo_core.config import RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.layout import TRAIN_COMPLETE
from rkdo_core.losses import icon_loss, rkdo_loss
from rkdo_core.training.evaluate import evaluate_run
from rkdo_core.training.train import train

TINY = dict(dataset="digits", epochs=(1,), steps_per_epoch=2, batch_size=16, eval_images=64,
            threads=1, device="cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One RKDO run trained once for the module (a few seconds)."""
    out = tmp_path_factory.mktemp("diag") / "run"
    train(RunConfig.preset("paper", **TINY), out, progress=False)
    return out


@pytest.fixture(scope="module")
def batch(run):
    return D.encode_batch(run, None, 10, 3)


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _kl_loop(p: np.ndarray, q: np.ndarray) -> float:
    """Slow reference: Σ_i Σ_j p_ij log(p_ij / q_ij) / B, skipping p_ij = 0."""
    b = p.shape[0]
    return sum(p[i, j] * np.log(p[i, j] / q[i, j])
               for i in range(b) for j in range(b) if p[i, j] > 0) / b


# ---- run folder -----------------------------------------------------------------------------

def test_read_train_log_has_the_logged_steps(run):
    log = D.read_train_log(run)
    lines = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert list(log.columns) == ["step", "epoch", "loss", "seconds"]
    assert log["step"].tolist() == [1, 2] and log["epoch"].tolist() == [1, 1]
    assert log["loss"].tolist() == [r["loss"] for r in lines]
    assert np.isfinite(log["loss"]).all()


def test_budget_table_matches_train_complete(run):
    done = json.loads((run / TRAIN_COMPLETE).read_text())
    table = D.budget_table(run)
    assert list(table.columns) == ["epoch", "steps", "train_loss"]
    assert table.to_dict("records") == [
        {k: b[k] for k in ("epoch", "steps", "train_loss")} for b in done["budgets"]]
    assert table["epoch"].tolist() == [0, 1] and table["steps"].tolist() == [0, 2]
    # budget 1's loss is the mean batch loss of its (only) epoch
    assert table["train_loss"].iloc[1] == pytest.approx(D.read_train_log(run)["loss"].mean())
    assert D.budgets(run) == [0, 1] and D.resolve_epoch(run, None) == 1
    assert D.resolve_epoch(run, 0) == 0
    assert D.run_config(run) == RunConfig.preset("paper", **TINY)


def test_metrics_table_has_the_protocol_columns(run):
    results = evaluate_run(run)
    table = D.metrics_table(results)
    # the paper-protocol run: the protocol's columns, then the yardsticks it measured (no
    # full-protocol probe or k-NN columns)
    assert tuple(table.columns) == D.METRICS_COLUMNS + tuple(
        c for c in D.OPTIONAL_COLUMNS if c not in ("linear_cv", "knn20", "knn5_cosine"))
    assert D.metrics_table([{"epoch": 0}]).columns.tolist() == list(D.METRICS_COLUMNS)
    assert table["epoch"].tolist() == [0, 1] and table["eval_images"].tolist() == [64, 64]
    assert D.metrics_table(D.read_metrics(run)).equals(table)


# ---- errors name the field, the value and what is allowed ------------------------------------

def test_bad_epoch_names_the_budgets(run):
    with pytest.raises(ValueError, match=r"epoch=7: this run has budgets \[0, 1\]"):
        D.resolve_epoch(run, 7)
    with pytest.raises(ValueError, match=r"epoch=2: this run has budgets \[0, 1\]"):
        D.batch_fields(run, 2)
    with pytest.raises(ValueError, match=r"epoch='1'"):
        D.embedding_2d(run, "1")


def test_missing_or_untrained_run_dir(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"run_dir='.*nope' does not exist"):
        D.budget_table(missing)
    with pytest.raises(FileNotFoundError, match=r"run_dir='.*nope' does not exist"):
        D.read_train_log(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"run_dir='.*empty'.*train_complete\.json"):
        D.batch_fields(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"train_log\.jsonl"):
        D.read_train_log(tmp_path / "empty")


def test_bad_parameters_are_named(run, batch):
    with pytest.raises(ValueError, match=r"method='umap': allowed are \['pca', 'tsne'\]"):
        D.embedding_2d(run, method="umap")
    with pytest.raises(ValueError, match=r"n_images=1: must be an integer >= 2"):
        D.encode_batch(run, n_images=1)
    with pytest.raises(ValueError, match=r"n_images=100000: at most the \d+ training images"):
        D.encode_batch(run, n_images=100_000)
    with pytest.raises(ValueError, match=r"view_seed=-1"):
        D.encode_batch(run, view_seed=-1)
    with pytest.raises(ValueError, match=r"method='nope': allowed are \['icon', 'rkdo'\]"):
        D.fields(batch.z1, batch.z2, batch.config, "nope")


# ---- the batch --------------------------------------------------------------------------------

def test_encode_batch_is_the_first_images_sorted_and_deterministic(run, batch):
    train_labels = load_dataset("digits").train.labels.numpy()
    assert sorted(batch.indices.tolist()) == list(range(10))
    assert batch.labels.tolist() == sorted(train_labels[:10].tolist())
    assert (train_labels[batch.indices] == batch.labels).all()
    assert batch.z1.shape == batch.z2.shape == (10, 64) and batch.train_mode
    assert torch.allclose(batch.z1.norm(dim=1), torch.ones(10), atol=1e-5)
    again = D.encode_batch(run, None, 10, 3)
    assert torch.equal(again.z1, batch.z1) and torch.equal(again.z2, batch.z2)
    other = D.encode_batch(run, None, 10, 4)
    assert not torch.equal(other.z1, batch.z1)  # another view_seed, other views
    assert not torch.equal(D.encode_batch(run, 0, 10, 3).z1, batch.z1)  # another checkpoint


# ---- p and q: closed forms and the loss functions ---------------------------------------------

def test_rkdo_fields_closed_form_and_loss(batch):
    cfg = batch.config
    records = D.fields(batch.z1, batch.z2, cfg, "rkdo")
    assert [r["t"] for r in records] == [0, 1, 2, 3]
    assert [r["in_loss"] for r in records] == [False, True, True, True]
    s = (batch.z1.double() @ batch.z2.double().T).numpy()
    taus = cfg.loss_temperatures()
    b, eye, a = 10, np.eye(10), cfg.alpha
    np.testing.assert_array_equal(records[0]["p"], eye)  # p_0 = I
    for r in records:
        assert r["p"].shape == r["q"].shape == (b, b)
        np.testing.assert_allclose(r["p"].sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(r["q"].sum(axis=1), 1.0, atol=1e-6)
        assert r["temperature"] == pytest.approx(taus[r["t"]])
        np.testing.assert_allclose(r["q"], _softmax_rows(s / taus[r["t"]]), atol=1e-6)
        assert r["kl"] == pytest.approx(_kl_loop(r["p"], r["q"]), rel=1e-9)
    # p_1 = (1 − α)·I + α·q_0, and the recursion onwards (eqs. 2–3)
    np.testing.assert_allclose(records[1]["p"], (1 - a) * eye + a * records[0]["q"], atol=1e-6)
    for prev, cur in zip(records[1:], records[2:]):
        np.testing.assert_allclose(cur["p"], (1 - a) * prev["p"] + a * prev["q"], atol=1e-6)
    # t = 0 is KL(I || q_0) = −mean log diag q_0, not part of the loss
    assert records[0]["kl"] == pytest.approx(-np.log(np.diag(records[0]["q"])).mean(), rel=1e-6)
    loss = float(rkdo_loss(batch.z1, batch.z2, temperature=cfg.temperature, alpha=cfg.alpha,
                           depth=cfg.depth, beta=cfg.beta))
    assert D.kl_total(records) == pytest.approx(loss, rel=1e-5)
    assert D.loss_value(batch.z1, batch.z2, cfg, "rkdo") == loss
    total, ok = D.kl_check(records, loss)
    assert ok and total == D.kl_total(records)
    assert not D.kl_check(records, loss * 1.001)[1]


def test_icon_fields_fixed_target_and_loss(batch):
    cfg = batch.config
    (rec,) = D.fields(batch.z1, batch.z2, cfg, "icon")
    b, a = 10, cfg.debias_alpha
    np.testing.assert_allclose(rec["p"], (1 - a) * np.eye(b) + a / b, rtol=1e-6)
    np.testing.assert_allclose(rec["q"].sum(axis=1), 1.0, atol=1e-6)
    s = (batch.z1.double() @ batch.z2.double().T).numpy()
    np.testing.assert_allclose(rec["q"], _softmax_rows(s / cfg.temperature), atol=1e-6)
    assert rec["in_loss"] and rec["temperature"] == cfg.temperature
    loss = float(icon_loss(batch.z1, batch.z2, temperature=cfg.temperature,
                           debias_alpha=cfg.debias_alpha))
    assert rec["kl"] == pytest.approx(loss, rel=1e-5)
    assert rec["kl"] == pytest.approx(_kl_loop(rec["p"], rec["q"]), rel=1e-9)


@pytest.mark.parametrize("b,alpha,depth,beta,tau", [(2, 1.0, 1, 0.0, 0.5), (5, 0.3, 2, 0.5, 0.2),
                                                    (8, 0.5, 4, -0.2, 1.0)])
def test_fields_on_synthetic_embeddings(b, alpha, depth, beta, tau):
    g = torch.Generator().manual_seed(b)
    z1 = torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=1)
    z2 = torch.nn.functional.normalize(torch.randn(b, 6, generator=g), dim=1)
    cfg = RunConfig(alpha=alpha, depth=depth, beta=beta, temperature=tau)
    records = D.fields(z1, z2, cfg)  # the config's method: rkdo
    assert len(records) == depth + 1 and records[0]["method"] == "rkdo"
    s = (z1.double() @ z2.double().T).numpy()
    p = np.eye(b)
    q = _softmax_rows(s / tau)
    for t in range(1, depth + 1):
        p, q = (1 - alpha) * p + alpha * q, _softmax_rows(s / (tau * (1 - beta * t / depth)))
        np.testing.assert_allclose(records[t]["p"], p, atol=1e-6)
        np.testing.assert_allclose(records[t]["q"], q, atol=1e-6)
    expected = float(rkdo_loss(z1, z2, temperature=tau, alpha=alpha, depth=depth, beta=beta))
    assert D.kl_total(records) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    table = D.field_table(records)
    assert table["t"].tolist() == list(range(depth + 1))
    assert table["kl"].tolist() == [r["kl"] for r in records]


def test_batch_fields_equals_fields_of_encode_batch(run, batch):
    for method in ("rkdo", "icon"):
        got = D.batch_fields(run, None, 10, 3, method=method)
        want = D.fields(batch.z1, batch.z2, batch.config, method)
        assert [r["t"] for r in got] == [r["t"] for r in want]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g["p"], w["p"])
            np.testing.assert_array_equal(g["q"], w["q"])
    # default method: the run's own (rkdo)
    assert {r["method"] for r in D.batch_fields(run, 1, 4, 0)} == {"rkdo"}


# ---- 2-D map of the evaluation embeddings -----------------------------------------------------

def test_embedding_2d_maps_the_eval_images(run):
    test_labels = load_dataset("digits").test.labels.numpy()
    xy, labels = D.embedding_2d(run, 1, method="tsne", seed=0)
    assert xy.shape == (64, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(labels, test_labels[:64])
    xy2, _ = D.embedding_2d(run, 1, method="tsne", seed=0)
    np.testing.assert_array_equal(xy, xy2)  # fixed random_state
    pca, labels_pca = D.embedding_2d(run, 0, method="pca")
    assert pca.shape == (64, 2)
    np.testing.assert_array_equal(labels_pca, labels)
    # PCA: the first axis carries at least as much variance as the second
    assert pca[:, 0].var() >= pca[:, 1].var()
    sub, sub_labels = D.embedding_2d(run, 1, method="pca", max_points=20, seed=1)
    assert sub.shape == (20, 2) and set(sub_labels) <= set(test_labels[:64])
    feats, _ = D.eval_features(run, 1)
    assert feats.shape == (64, 64)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert D.eval_features(run, 1, features="backbone")[0].shape == (64, 512)


# ---- figures ---------------------------------------------------------------------------------

def test_plots_return_figures_and_save_png(run, batch, tmp_path):
    fig = D.plot_loss_curve(D.read_train_log(run), D.budget_table(run), title="t")
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "optimizer step"
    path = D.save_figure(fig, run, "test_loss_curve")
    assert path == run / "figures" / "test_loss_curve.png" and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = D.fields(batch.z1, batch.z2, batch.config)
    fig = D.plot_fields(records, batch.labels, title="rkdo")
    assert len([ax for ax in fig.axes if ax.images]) == 2 * len(records)
    assert D.save_figure(fig, run, "test_fields").stat().st_size > 1000
    icon = D.plot_fields(D.fields(batch.z1, batch.z2, batch.config, "icon"))
    assert len([ax for ax in icon.axes if ax.images]) == 2
    xy = np.random.default_rng(0).normal(size=(30, 2))
    lab = np.arange(30) % 10
    fig = D.plot_embeddings([(xy, lab), (xy, lab)], ["a", "b"])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    with pytest.raises(ValueError, match="titles"):
        D.plot_embeddings([(xy, lab)], ["a", "b"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.save_figure(fig, tmp_path / "nope", "x")
