"""Diagnostics of one trained run, for the notebooks 01_train, 02_evaluate and 04_figures.

Everything here reads a run folder written by :func:`rkdo_core.train.train` (and
:func:`rkdo_core.train.evaluate_run`), so the notebooks only call functions and show
what they return:

- the training log and the budget table (epoch, real optimizer steps, training loss);
- a 2-D map of the evaluation embeddings (the same test images the metrics use);
- the supervision field ``p`` and the learned field ``q`` of both objectives on one batch
  (docs/method.md §3): RKDO's unrolled recursion ``p_t, q_t`` for t = 0..T (eqs. 2–4) and
  I-Con's fixed ``p = (1 − a)·I + a/B`` with its ``q``, each with its KL (eq. 1);
- matplotlib figures of those (``matplotlib.figure.Figure``, no pyplot state).

A run folder, an epoch or a parameter that does not fit raises ``FileNotFoundError`` or
``ValueError`` naming the field, the value and what is allowed, e.g.
``epoch=7: this run has budgets [0, 1, 2]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .. import losses as losses_mod
from ..augment import two_views
from ..config import METHOD_NAMES, RunConfig
from ..layout import (
    FIGURES,
    TRAIN_COMPLETE,
    TRAIN_LOG,
    checkpoint_path,
    metrics_path,
    require_trained_run,
)
from ..model import resolve_device
from ..runio import read_json
from .evaluate import embed, eval_split
from .train import (
    encode_views,
    load_data,
    load_encoder,
    thread_setting,
)

#: columns of the metrics table, in the order the notebooks show them
METRICS_COLUMNS = ("epoch", "steps", "train_loss", "linear_eval", "nmi", "ari",
                   "neighborhood_acc", "eval_images")
#: columns shown too where the evaluation measured them (full protocol: the CV probe and
#: the weighted/cosine k-NN; both protocols: the neutral yardsticks)
OPTIONAL_COLUMNS = ("linear_cv", "knn20", "knn5_cosine", "yardstick_icon", "yardstick_rkdo",
                    "yard_alignment", "yard_uniformity", "yard_rankme", "yard_rkdo_fixed")


# ---- the run folder ------------------------------------------------------------------------

def _run(run_dir: str | Path) -> Path:
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} does not exist (absolute: "
                                f"{run.resolve()}); give the folder a training run wrote to")
    return run


def _trained(run_dir: str | Path) -> Path:
    return require_trained_run(run_dir, how="01_train.ipynb or `rkdo train`")


def completion(run_dir: str | Path) -> dict[str, Any]:
    """The run's ``train_complete.json``: ``{"config", "budgets", "steps_per_epoch", ...}``."""
    return read_json(_trained(run_dir) / TRAIN_COMPLETE)


def run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config the run was trained with."""
    return RunConfig.from_dict(completion(run_dir)["config"])


def budgets(run_dir: str | Path) -> list[int]:
    """The run's checkpointed epoch budgets, 0 (the untrained encoder) included."""
    return [int(b["epoch"]) for b in completion(run_dir)["budgets"]]


def resolve_epoch(run_dir: str | Path, epoch: int | None = None) -> int:
    """``epoch`` checked against the run's budgets; None means the largest budget."""
    allowed = budgets(run_dir)
    if epoch is None:
        return allowed[-1]
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch not in allowed:
        raise ValueError(f"epoch={epoch!r}: this run has budgets {allowed} "
                         "(0 = the untrained encoder; None = the largest)")
    return int(epoch)


def read_train_log(run_dir: str | Path) -> pd.DataFrame:
    """The per-step training log: one row per optimizer step, columns ``step`` (1-based),
    ``epoch``, ``loss`` (the batch loss), ``seconds`` (wall time of the step).

    Works on a partial run too (e.g. one stopped by a non-finite loss)."""
    path = _run(run_dir) / TRAIN_LOG
    if not path.is_file():
        raise FileNotFoundError(f"run_dir={str(run_dir)!r} has no {TRAIN_LOG}; it was never "
                                "trained (01_train.ipynb or `rkdo train` writes it)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=["step", "epoch", "loss", "seconds"])


def budget_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per budget: ``epoch``, ``steps`` (real optimizer steps so far) and
    ``train_loss`` (mean batch loss of that budget's last epoch; for epoch 0 the mean loss of
    the untrained encoder over one epoch's batches, without any update)."""
    rows = completion(run_dir)["budgets"]
    return pd.DataFrame([{k: r[k] for k in ("epoch", "steps", "train_loss")} for r in rows])


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metrics files ``RUN/metrics/epoch_NNN.json`` of every budget (written by
    :func:`rkdo_core.train.evaluate_run`), in budget order."""
    run = _trained(run_dir)
    out = []
    for e in budgets(run):
        path = metrics_path(run, e)
        if not path.is_file():
            raise FileNotFoundError(f"run_dir={str(run_dir)!r}: {path} is missing; evaluate "
                                    "the run first (02_evaluate.ipynb or `rkdo evaluate`)")
        out.append(read_json(path))
    return out


def metrics_table(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The metrics of each checkpoint (``evaluate_run``'s result or `read_metrics`) as a
    table with the columns of :data:`METRICS_COLUMNS`, then those of
    :data:`OPTIONAL_COLUMNS` that some checkpoint has."""
    cols = list(METRICS_COLUMNS) + [c for c in OPTIONAL_COLUMNS
                                    if any(c in r for r in results)]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in results], columns=cols)


def figure_path(run_dir: str | Path, name: str) -> Path:
    """``RUN/figures/<name>.png``."""
    return Path(run_dir) / FIGURES / f"{name}.png"


def save_figure(fig: Figure, run_dir: str | Path, name: str, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``RUN/figures/<name>.png``; returns the path."""
    path = figure_path(_run(run_dir), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def _device(config: RunConfig, device: str | None) -> torch.device:
    return resolve_device(config.device if device is None else device)


# ---- 2-D map of the evaluation embeddings ----------------------------------------------------

def _tsne(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE  # deferred: scikit-learn takes seconds to import

    # perplexity must stay below the number of points (tiny smoke runs have ~64)
    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=seed).fit_transform(x)


def _pca(x: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA  # deferred: scikit-learn takes seconds to import

    return PCA(n_components=2, random_state=seed).fit_transform(x)


#: 2-D map name -> function of (features (N, D), seed) -> (N, 2)
PROJECTIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"tsne": _tsne, "pca": _pca}


def eval_features(run_dir: str | Path, epoch: int | None = None, *,
                  features: str | None = None,
                  device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of the run's evaluation images at a checkpoint, as the metrics see them.

    The same images as :func:`rkdo_core.train.evaluate_run` (:func:`eval_split`: the first
    ``eval_images`` test images under the paper protocol, a fixed stratified subset of them
    under the full one, the whole test set when ``eval_images`` is None), un-augmented,
    model in eval mode. ``features`` defaults to the run's ``eval_features`` (the 64-d
    projection under the paper protocol, the 512-d backbone under the full one).
    Returns ``(features (n_eval, D) float32, labels (n_eval,) int64)``.
    """
    run = _trained(run_dir)
    epoch = resolve_epoch(run, epoch)
    config = run_config(run)
    features = config.eval_features if features is None else features
    if features not in ("projection", "backbone"):
        raise ValueError(f"features={features!r}: allowed are 'projection', 'backbone' "
                         "(None = the run's eval_features)")
    images, labels, _ = eval_split(config, load_data(config).test)
    with thread_setting(config.threads):
        model = load_encoder(config, checkpoint_path(run, epoch), _device(config, device))
        feats = embed(model, images, features=features)
    return feats, labels


def embedding_2d(run_dir: str | Path, epoch: int | None = None, method: str = "tsne",
                 seed: int = 0, *, features: str | None = None, max_points: int | None = 2000,
                 device: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D map of the evaluation embeddings at a checkpoint (see `eval_features`).

    ``method``: ``"tsne"`` (scikit-learn t-SNE, PCA initialisation, ``random_state=seed``)
    or ``"pca"``. When there are more than ``max_points`` evaluation images (full protocol)
    a seeded random subset of that size is mapped, as t-SNE grows quadratically in time.
    Returns ``(xy (n, 2) float, labels (n,) int64)``, n = min(n_eval, max_points).
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method={method!r}: allowed are {sorted(PROJECTIONS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r}: must be an integer")
    if max_points is not None and (not isinstance(max_points, int) or max_points < 3):
        raise ValueError(f"max_points={max_points!r}: must be an integer >= 3, or None for all")
    feats, labels = eval_features(run_dir, epoch, features=features, device=device)
    if max_points is not None and feats.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(feats.shape[0], max_points,
                                                          replace=False))
        feats, labels = feats[keep], labels[keep]
    config = run_config(run_dir)
    with thread_setting(config.threads):
        xy = PROJECTIONS[method](feats.astype(np.float64), int(seed))
    return xy, labels


# ---- p and q of one batch (docs/method.md §3, eqs. 1–4) ----------------------------------

@dataclass(frozen=True)
class Batch:
    """One batch of training images encoded as training does.

    Attributes:
        z1, z2: (n, 64) float32 CPU tensors, the L2-normalised embeddings of the two views.
        labels: (n,) int64 class labels; indices: (n,) their rows in the training split.
        config: the run's config; epoch: the checkpoint; train_mode: batch-norm mode used.
    """

    z1: Tensor
    z2: Tensor
    labels: np.ndarray
    indices: np.ndarray
    config: RunConfig
    epoch: int
    train_mode: bool


def encode_batch(run_dir: str | Path, epoch: int | None = None, n_images: int = 12,
                 view_seed: int = 0, *, train_mode: bool = True,
                 device: str | None = None) -> Batch:
    """Encode one batch of ``n_images`` training images with the checkpoint at ``epoch``.

    Images: the first ``n_images`` of the training split (a fixed choice, independent of
    ``view_seed``), ordered by label (stable) so class blocks show in the heat-maps; the
    objectives are invariant to that order. Two augmented views from
    ``torch.Generator().manual_seed(view_seed)``, as training makes them, one forward pass
    per view (the run's ``fused_views``/``amp_bf16`` settings apply). ``train_mode=True``
    (default) uses batch statistics in batch-norm, as the training loss does; note they are
    then the statistics of these ``n_images`` images, not of a batch of ``batch_size``.
    """
    run = _trained(run_dir)
    epoch = resolve_epoch(run, epoch)
    config = run_config(run)
    for name, value, low in (("n_images", n_images, 2), ("view_seed", view_seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}={value!r}: must be an integer >= {low}")
    data = load_data(config)
    n_train = data.train.images.shape[0]
    if n_images > n_train:
        raise ValueError(f"n_images={n_images}: at most the {n_train} training images of "
                         f"{config.dataset}")
    labels = data.train.labels[:n_images]
    order = torch.argsort(labels, stable=True)
    images = data.train.images[:n_images][order]
    dev = _device(config, device)
    with thread_setting(config.threads), torch.no_grad():
        model = load_encoder(config, checkpoint_path(run, epoch), dev)
        model.train(train_mode)
        v1, v2 = two_views(images.to(dev), torch.Generator().manual_seed(int(view_seed)))
        z1, z2 = encode_views(model, v1, v2, fused_views=config.fused_views,
                              amp_bf16=config.amp_bf16, device_type=dev.type)
    return Batch(z1=z1.cpu(), z2=z2.cpu(), labels=labels[order].numpy(),
                 indices=order.numpy().astype(np.int64), config=config, epoch=epoch,
                 train_mode=train_mode)


def _kl(log_p: np.ndarray, log_q: np.ndarray) -> float:
    """KL(p || q) summed over all entries / B ("batchmean"), 0·log 0 = 0; float64."""
    p = np.exp(log_p)
    keep = p > 0  # 0·log 0 = 0: p_0 = I is exactly 0 off the diagonal
    return float((p[keep] * (log_p[keep] - log_q[keep])).sum() / log_p.shape[0])


def _record(method: str, t: int, temperature: float, log_p: Tensor, log_q: Tensor,
            in_loss: bool) -> dict[str, Any]:
    lp = log_p.detach().cpu().double().numpy()
    lq = log_q.detach().cpu().double().numpy()
    return {"method": method, "t": t, "temperature": float(temperature), "p": np.exp(lp),
            "q": np.exp(lq), "kl": _kl(lp, lq), "in_loss": in_loss}


def _rkdo_fields(z1: Tensor, z2: Tensor, config: RunConfig) -> list[dict[str, Any]]:
    steps = losses_mod.rkdo_recursion(z1, z2, temperature=config.temperature,
                                      alpha=config.alpha, depth=config.depth, beta=config.beta)
    # t = 0 (p_0 = I, q_0) is shown for inspection; the loss sums t = 1..T only.
    return [_record("rkdo", s.t, s.temperature, s.log_p, s.log_q, s.t >= 1) for s in steps]


def _icon_fields(z1: Tensor, z2: Tensor, config: RunConfig) -> list[dict[str, Any]]:
    s = z1 @ z2.T
    log_q = torch.log_softmax(s / config.temperature, dim=1)
    log_p = losses_mod.icon_log_target(s.shape[0], config.debias_alpha, like=s)
    return [_record("icon", 0, config.temperature, log_p, log_q, True)]


#: method name -> function (z1, z2, config) -> field records (same registry keys as losses)
FIELDS: dict[str, Callable[[Tensor, Tensor, RunConfig], list[dict[str, Any]]]] = {
    "icon": _icon_fields, "rkdo": _rkdo_fields}
assert tuple(sorted(FIELDS)) == tuple(sorted(METHOD_NAMES))


def _method(config: RunConfig, method: str | None) -> str:
    method = config.method if method is None else method
    if method not in FIELDS:
        raise ValueError(f"method={method!r}: allowed are {sorted(FIELDS)} "
                         "(None = the run's method)")
    return method


def fields(z1: Tensor, z2: Tensor, config: RunConfig,
           method: str | None = None) -> list[dict[str, Any]]:
    """The supervision and learned fields of one batch, one record per recursion step.

    z1, z2: (B, D) L2-normalised embeddings. ``method`` defaults to ``config.method``; the
    loss knobs (temperature, debias_alpha / alpha, depth, beta) come from ``config``.
    Each record: ``method``, ``t``, ``temperature`` τ_t, ``p`` and ``q`` ((B, B) float64
    numpy, rows sum to 1), ``kl`` = KL(p‖q) batchmean (eq. 1, float64) and ``in_loss``.

    - RKDO (eqs. 2–4): t = 0..T with p_0 = I, q_0 = softmax(S/τ0) (t = 0 is not part of
      the loss); p_t = (1 − α) p_{t−1} + α q_{t−1}, q_t = softmax(S / (τ0 (1 − β t/T))).
    - I-Con: one record, t = 0, p = (1 − a)·I + a/B, q = softmax(S/τ).

    The loss is the sum of ``kl`` over the records with ``in_loss`` (see `kl_total`).
    """
    method = _method(config, method)
    with torch.no_grad():
        return FIELDS[method](z1, z2, config)


def batch_fields(run_dir: str | Path, epoch: int | None = None, n_images: int = 12,
                 view_seed: int = 0, *, method: str | None = None, train_mode: bool = True,
                 device: str | None = None) -> list[dict[str, Any]]:
    """`fields` of the batch `encode_batch` makes (same arguments); ``method`` defaults to
    the run's own (the other one shows that objective on the same embeddings)."""
    batch = encode_batch(run_dir, epoch, n_images, view_seed, train_mode=train_mode,
                         device=device)
    return fields(batch.z1, batch.z2, batch.config, method)


def loss_value(z1: Tensor, z2: Tensor, config: RunConfig, method: str | None = None) -> float:
    """The training loss function's value (``losses.loss_for``) on (z1, z2), as a float."""
    method = _method(config, method)
    with torch.no_grad():
        return float(losses_mod.loss_for(config.replace(method=method))(z1, z2))


def kl_total(records: Sequence[Mapping[str, Any]]) -> float:
    """Σ KL(p_t‖q_t) over the records that are part of the loss (eq. 1 summed over t)."""
    return float(sum(r["kl"] for r in records if r["in_loss"]))


def field_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The records without their matrices: method, t, temperature, kl, in_loss."""
    return pd.DataFrame([{k: r[k] for k in ("method", "t", "temperature", "kl", "in_loss")}
                         for r in records])


# ---- figures ---------------------------------------------------------------------------------

def plot_loss_curve(log: pd.DataFrame, budgets_table: pd.DataFrame | None = None, *,
                    title: str | None = None) -> Figure:
    """Batch loss per optimizer step (`read_train_log`), budget boundaries as dashed lines
    and each budget's training loss (`budget_table`) as a marker at its last step; the
    untrained encoder's loss (epoch 0) sits at step 0."""
    fig = Figure(figsize=(7.5, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.plot(log["step"], log["loss"], "-", marker="." if len(log) <= 60 else None,
            color="C0", lw=1.2, label="batch loss")
    if budgets_table is not None and len(budgets_table):
        for row in budgets_table.itertuples():
            if row.epoch > 0:
                ax.axvline(row.steps, color="grey", ls="--", lw=0.8)
                ax.annotate(f"epoch {row.epoch}", (row.steps, 1.0),
                            xycoords=("data", "axes fraction"), ha="right", va="top",
                            rotation=90, fontsize=8, color="grey")
        ax.plot(budgets_table["steps"], budgets_table["train_loss"], "o", color="C3",
                label="budget training loss (mean of its last epoch; "
                      "at step 0: the untrained encoder, no update)")
    ax.set(xlabel="optimizer step", ylabel="loss", title=title or "training loss per step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    return fig


def plot_embeddings(panels: Sequence[tuple[np.ndarray, np.ndarray]], titles: Sequence[str],
                    *, suptitle: str | None = None) -> Figure:
    """Side-by-side scatter plots of 2-D maps ``(xy (n, 2), labels (n,))``, coloured by
    label (shared colours across panels); axes carry no meaning for t-SNE, so none shown."""
    if len(panels) != len(titles):
        raise ValueError(f"titles: {len(titles)} given for {len(panels)} panels")
    fig = Figure(figsize=(5.0 * len(panels), 4.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    classes = np.unique(np.concatenate([np.asarray(lab) for _, lab in panels]))
    cmap = "tab10" if len(classes) <= 10 else "viridis"
    vmin, vmax = (0, 9) if len(classes) <= 10 else (classes.min(), classes.max())
    for ax, (xy, lab), title in zip(axes, panels, titles):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap=cmap, vmin=vmin, vmax=vmax, s=9,
                        alpha=0.85, linewidths=0)
        ax.set(title=title, xticks=[], yticks=[])
    if len(classes) <= 10:
        handles = [axes[-1].scatter([], [], color=sc.cmap(sc.norm(c)), s=20, label=str(c))
                   for c in classes]
        axes[-1].legend(handles=handles, title="label", fontsize=7, loc="center left",
                        bbox_to_anchor=(1.0, 0.5))
    else:
        fig.colorbar(sc, ax=list(axes), label="label")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_fields(records: Sequence[Mapping[str, Any]], labels: Sequence[int] | None = None, *,
                title: str | None = None) -> Figure:
    """Heat-maps of ``p`` (top row) and ``q`` (bottom row) for each record of `fields`.

    One shared logarithmic colour scale for all panels (q is close to uniform, 1/B, at the
    start of training and would vanish on a linear scale beside p's diagonal); exact zeros
    (p_0 = I off the diagonal) are drawn in the scale's lowest colour. Row i is image i's
    distribution over the B columns (its positive is column i); ``labels`` (B,) label the
    ticks with each image's class.
    """
    mats = [r[k] for r in records for k in ("p", "q")]
    positive = np.concatenate([m[m > 0] for m in mats])
    vmin, vmax = max(float(positive.min()), 1e-4), float(max(m.max() for m in mats))
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
    n_cols = len(records)
    fig = Figure(figsize=(2.9 * n_cols + 1.2, 6.0), layout="constrained")
    axes = np.array(fig.subplots(2, n_cols, squeeze=False))
    cmap = colormaps["magma"].with_extremes(bad=colormaps["magma"](0.0),
                                            under=colormaps["magma"](0.0))
    img = None
    for col, rec in enumerate(records):
        head = ("I-Con (fixed p)" if rec["method"] == "icon"
                else f"t = {rec['t']}" + ("" if rec["in_loss"] else " (not in loss)"))
        for row, key in enumerate(("p", "q")):
            ax = axes[row, col]
            m = np.ma.masked_less_equal(np.asarray(rec[key]), 0.0)
            img = ax.imshow(m, cmap=cmap, norm=norm, interpolation="nearest")
            b = m.shape[0]
            if labels is not None and b <= 32:
                ax.set_xticks(range(b), [str(v) for v in labels], fontsize=6)
                ax.set_yticks(range(b), [str(v) for v in labels], fontsize=6)
            else:
                ax.set(xticks=[], yticks=[])
            sub = f"{key}" + (f"_{rec['t']}" if rec["method"] == "rkdo" else "")
            ax.set_title(f"{head}\n{sub}, τ = {rec['temperature']:.3f}" if row == 0 else
                         f"{sub}: KL(p‖q) = {rec['kl']:.4f}", fontsize=9)
    fig.colorbar(img, ax=axes.ravel().tolist(), shrink=0.8, label="probability (log scale)")
    if title:
        fig.suptitle(title)
    return fig


def kl_check(records: Sequence[Mapping[str, Any]], loss: float, *,
             rtol: float = 1e-5, atol: float = 1e-6) -> tuple[float, bool]:
    """(Σ in-loss KLs, whether it equals ``loss`` within float32 rounding)."""
    total = kl_total(records)
    return total, math.isclose(total, loss, rel_tol=rtol, abs_tol=atol)
