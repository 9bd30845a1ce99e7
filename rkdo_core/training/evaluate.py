"""Evaluation of a trained run: every checkpoint's metrics, common yardstick and FLOPs,
written to ``RUN/metrics/epoch_NNN.json`` (02_evaluate.ipynb makes one call here:
:func:`evaluate_run`).

Paper protocol: the first ``eval_images`` test images, probe on a seeded 80/20 split of
the 64-d projection. Full protocol: the whole test set, probe trained on train-set features
of the 512-d backbone (docs/design.md "Two protocols").

Each checkpoint is embedded once per image set (:func:`embed_all`: backbone features and
projection in one pass): the evaluation images, and in the full protocol the probe's train
images (the whole train split, or a fixed class-stratified subset of
``config.probe_train_images``: :func:`probe_train_indices`). Every metric reuses those
arrays. The full protocol adds measures of the encoder beyond the paper's protocol
(`rkdo_core.metrics`): ``linear_cv`` (standardised features, C chosen by stratified CV on
the probe's train features; ``linear_cv_C``, ``linear_cv_n_iter``,
``linear_cv_converged``), ``knn20`` (DINO's weighted 20-NN, the probe's train features as
memory bank) and ``knn5_cosine`` (the paper's 5-NN agreement on cosine similarity, test
features). Both protocols add the neutral yardsticks (`yardstick`, ``yard_*`` keys).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..augment import normalize
from ..config import RunConfig
from ..layout import (
    EVAL_FULL_KEYS,
    EVAL_V2_KEYS,
    EVAL_V3_KEYS,
    EVAL_VERSION,
    TRAIN_COMPLETE,
    checkpoint_path,
    metrics_path,
    require_trained_run,
)
from ..metrics import (
    all_metrics,
    knn_weighted_accuracy,
    linear_probe_cv,
    neighborhood_accuracy_cosine,
)
from ..model import Encoder, resolve_device
from ..neutral import effective_rank
from ..runio import read_json, write_json_atomic
from .stepflops import step_flops
from .train import load_data, load_encoder, thread_setting
from .yardstick import view_embeddings, yardstick

#: the linear-probe split and k-means seed of the evaluation protocol (fixed, as in the
#: reference notebook), independent of the training seed.
EVAL_SEED = 42
#: range of the CV probe's C grid: ``probe_cv_cs`` values log-spaced in [1e-3, 1e2]
PROBE_C_RANGE = (-3.0, 2.0)
#: weighted k-NN (DINO eval_knn) and cosine neighbourhood settings of the full protocol
KNN_K, KNN_TEMPERATURE, KNN_COSINE_K = 20, 0.07, 5


def _is_channels_last(model: torch.nn.Module) -> bool:
    w = next((m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return (w is not None and not w.is_contiguous()
            and w.is_contiguous(memory_format=torch.channels_last))


@torch.inference_mode()
def embed(model: Encoder, images: torch.Tensor, *, features: str = "projection",
          batch_size: int = 512) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 64) projection embeddings or (N, 512) backbone features,
    un-augmented (only normalised), with the model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    fn = model if features == "projection" else model.features
    fmt = torch.channels_last if _is_channels_last(model) else torch.contiguous_format
    out = [fn(normalize(images[i:i + batch_size].to(device)).contiguous(memory_format=fmt))
           .float().cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()


@torch.inference_mode()
def embed_all(model: Encoder, images: torch.Tensor, *, batch_size: int = 512
              ) -> dict[str, np.ndarray]:
    """One pass over uint8 ``images``: ``{"backbone": (N, 512), "projection": (N, 64)}``,
    each bit-identical to :func:`embed` with that ``features`` (the projection is the
    model's forward, ``normalize(head(backbone(x)))``, from the same backbone output)."""
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if _is_channels_last(model) else torch.contiguous_format
    feats, proj = [], []
    for i in range(0, images.shape[0], batch_size):
        f = model.features(normalize(images[i:i + batch_size].to(device))
                           .contiguous(memory_format=fmt))
        proj.append(torch.nn.functional.normalize(model.head(f), dim=1).float().cpu())
        feats.append(f.float().cpu())
    return {"backbone": torch.cat(feats).numpy(), "projection": torch.cat(proj).numpy()}


def probe_train_indices(labels: np.ndarray, n: int | None, *, seed: int = EVAL_SEED
                        ) -> np.ndarray:
    """Sorted indices of a fixed, class-stratified subset of ``n`` of the train ``labels``
    (all of them when ``n`` is None or not smaller). Each class gets its proportional share
    (largest remainders, ties to the smaller class), drawn without replacement by a numpy
    generator seeded with ``seed``: a function of (labels, n, seed) only, so every method,
    training seed and checkpoint of a dataset is probed with the same train images."""
    labels = np.asarray(labels)
    total = labels.shape[0]
    if n is None or n >= total:
        return np.arange(total)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / total
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:n - int(take.sum())]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False)
              for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def probe_cs(n: int) -> tuple[float, ...]:
    """The CV probe's C grid: ``n`` values log-spaced in [1e-3, 1e2] (n = 10 gives
    :data:`rkdo_core.metrics.PROBE_CS`)."""
    return tuple(float(c) for c in np.logspace(*PROBE_C_RANGE, n))


def encoder_metrics(test_features: np.ndarray, test_labels: np.ndarray,
                    train_features: np.ndarray, train_labels: np.ndarray,
                    config: RunConfig) -> dict[str, Any]:
    """The full protocol's measures beyond the paper: ``linear_cv`` (+ ``_C``, ``_n_iter``,
    ``_converged``), ``knn20``, ``knn5_cosine``, from already embedded features."""
    probe = linear_probe_cv(train_features, train_labels, test_features, test_labels,
                            Cs=probe_cs(config.probe_cv_cs), folds=config.probe_cv_folds,
                            seed=EVAL_SEED)
    return {"linear_cv": probe.accuracy, "linear_cv_C": probe.C,
            "linear_cv_n_iter": probe.n_iter, "linear_cv_converged": probe.converged,
            "linear_cv_folds": probe.folds, "linear_cv_cs": len(probe.cv_scores),
            "linear_cv_unconverged_cv_fits": probe.cv_unconverged_fits,
            "knn20": knn_weighted_accuracy(train_features, train_labels, test_features,
                                           test_labels, k=KNN_K, temperature=KNN_TEMPERATURE),
            "knn5_cosine": neighborhood_accuracy_cosine(test_features, test_labels,
                                                        k=KNN_COSINE_K)}


def yardstick_image_count(config: RunConfig, n_eval: int) -> int:
    """How many of the evaluation images the yardsticks score (``yardstick_images`` caps)."""
    return n_eval if config.yardstick_images is None else min(config.yardstick_images, n_eval)


def evaluate_run(run_dir: str | Path, *, force: bool = False) -> list[dict[str, Any]]:
    """Metrics for every checkpoint of a trained run, written to RUN/metrics/epoch_NNN.json.

    Paper protocol: the first ``eval_images`` test images, probe on a seeded 80/20 split.
    Full protocol: the whole test set, probe trained on train-set features.

    Every file also holds the common yardstick (`rkdo_core.training.yardstick`: the
    checkpoint scored on both fixed objectives over the same evaluation images, with fixed
    seeded views) and ``flops_per_step`` (FlopCounterMode, forward + backward of one step of
    this config; `rkdo_core.training.stepflops.step_flops`) with ``train_flops`` = steps ×
    flops_per_step, the neutral yardsticks (``yard_*``; ``yard_rkdo_fixed``'s teacher is the
    run's epoch-0 checkpoint) and, full protocol, the encoder measures of
    :func:`encoder_metrics`. An existing file is reused unless ``force`` or it is not of
    :data:`EVAL_VERSION` (older files, which lack those keys, are recomputed).
    """
    run = require_trained_run(run_dir)
    done = read_json(run / TRAIN_COMPLETE)
    config = RunConfig.from_dict(done["config"])
    with thread_setting(config.threads):
        return _evaluate(run, done, config, force=force)


def _evaluate(run: Path, done: dict, config: RunConfig, *, force: bool) -> list[dict[str, Any]]:
    device = resolve_device(config.device)
    data = load_data(config)
    n_eval = data.test.images.shape[0] if config.eval_images is None else min(
        config.eval_images, data.test.images.shape[0])
    test_x, test_y = data.test.images[:n_eval], data.test.labels[:n_eval].numpy()
    yard_x = test_x[:yardstick_image_count(config, n_eval)]
    probe_idx = train_x = train_y = None
    if config.protocol == "full":
        probe_idx = probe_train_indices(data.train.labels.numpy(), config.probe_train_images)
        subset = probe_idx.shape[0] < data.train.images.shape[0]
        train_x = data.train.images[torch.from_numpy(probe_idx)] if subset \
            else data.train.images
        train_y = data.train.labels.numpy()[probe_idx]
    teacher = None  # the epoch-0 encoder's embeddings of the yardstick views, when needed
    results = []
    for rec in done["budgets"]:
        path = metrics_path(run, rec["epoch"])
        if path.exists() and not force:
            old = read_json(path)
            if _is_current(old):
                results.append(old)
                continue
        t0 = time.perf_counter()
        if teacher is None:
            teacher = view_embeddings(load_encoder(config, checkpoint_path(run, 0), device),
                                      yard_x, config.batch_size)
        model = load_encoder(config, checkpoint_path(run, rec["epoch"]), device)
        test_emb = embed_all(model, test_x)
        feats = test_emb[config.eval_features]
        extra: dict[str, Any] = {}
        if config.protocol == "full":
            train_feats = embed_all(model, train_x)[config.eval_features]
            metrics = all_metrics(feats, test_y, seed=EVAL_SEED, train_features=train_feats,
                                  train_labels=train_y)
            extra = {**encoder_metrics(feats, test_y, train_feats, train_y, config),
                     "probe_train_images": int(probe_idx.shape[0])}
        else:
            metrics = all_metrics(feats, test_y, seed=EVAL_SEED)
        # the epoch-0 checkpoint is the teacher: its views are embedded already
        yard = yardstick(model, yard_x, config, teacher=teacher,
                         own=teacher if rec["epoch"] == 0 else None)
        # the scored images are the first yardstick_images (batch_bounds: from 0, in order)
        yard["yard_rankme"] = float(effective_rank(
            torch.from_numpy(test_emb["projection"][:yard["yardstick_images"]])))
        flops = step_flops(config, data.test.images.shape[-1])  # cached: once per config
        result = {"dataset": config.dataset, "method": config.method, "seed": config.seed,
                  "protocol": config.protocol, "epoch": rec["epoch"], "steps": rec["steps"],
                  "train_loss": rec["train_loss"], **metrics, "eval_images": n_eval,
                  "eval_features": config.eval_features, "eval_seed": EVAL_SEED,
                  **extra, **yard, "flops_per_step": flops, "train_flops": rec["steps"] * flops,
                  "eval_version": EVAL_VERSION,
                  "device": str(device), "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(path, result)
        results.append(result)
    return results


def _is_current(metrics: dict[str, Any]) -> bool:
    """Whether a metrics file was written by this evaluation (same version, every key)."""
    keys = EVAL_V2_KEYS + EVAL_V3_KEYS
    if metrics.get("protocol") == "full":
        keys += EVAL_FULL_KEYS
    return (metrics.get("eval_version") == EVAL_VERSION and all(k in metrics for k in keys))
