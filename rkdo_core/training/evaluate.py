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

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..augment import normalize
from ..config import RunConfig
from ..layout import (
    EVAL_CIRCUMSTANCE_KEYS,
    EVAL_FULL_KEYS,
    EVAL_V2_KEYS,
    EVAL_V3_KEYS,
    EVAL_VERSION,
    TRAIN_COMPLETE,
    UNTRAINED_DIR,
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
#: range of the CV probe's C grid: ``probe_cv_cs`` values log-spaced in [1e-3, 1e2] (the
#: upper end: RunConfig.probe_cv_c_max)
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


def eval_indices(config: RunConfig, test_labels: np.ndarray) -> tuple[np.ndarray, str]:
    """The evaluation images of a run, as sorted indices into the test split, and how they
    were chosen: ``"all"`` (``eval_images`` None or not smaller than the split), ``"first"``
    (paper protocol: the first ``eval_images``, as the authors' notebook) or
    ``"stratified"`` (full protocol: a fixed class-stratified subset of ``eval_images``,
    :func:`probe_train_indices` with the evaluation seed, the same for every run of the
    dataset)."""
    n_test = int(np.asarray(test_labels).shape[0])
    if config.eval_images is None or config.eval_images >= n_test:
        return np.arange(n_test), "all"
    if config.protocol == "full":
        return probe_train_indices(test_labels, config.eval_images), "stratified"
    return np.arange(config.eval_images), "first"


def eval_split(config: RunConfig, test: Any) -> tuple[torch.Tensor, np.ndarray, str]:
    """The evaluation images (uint8 tensor), their labels (numpy) and how they were chosen
    (:func:`eval_indices`), from a dataset's test split ``test``."""
    idx, kind = eval_indices(config, test.labels.numpy())
    images = (test.images[torch.from_numpy(idx)] if kind == "stratified"
              else test.images[:idx.shape[0]])
    return images, test.labels.numpy()[idx], kind


def probe_cs(n: int, c_max: float = 100.0) -> tuple[float, ...]:
    """The CV probe's C grid: ``n`` values log-spaced in [1e-3, ``c_max``] (n = 10 and the
    default ``c_max`` give :data:`rkdo_core.metrics.PROBE_CS`; RunConfig.probe_cv_c_max)."""
    # log10(100.0) is exactly 2.0: the default gives the very grid every earlier run used
    return tuple(float(c) for c in np.logspace(PROBE_C_RANGE[0], np.log10(c_max), n))


def encoder_metrics(test_features: np.ndarray, test_labels: np.ndarray,
                    train_features: np.ndarray, train_labels: np.ndarray,
                    config: RunConfig) -> dict[str, Any]:
    """The full protocol's measures beyond the paper: ``linear_cv`` (+ ``_C``, ``_n_iter``,
    ``_converged``), ``knn20``, ``knn5_cosine``, from already embedded features."""
    probe = linear_probe_cv(train_features, train_labels, test_features, test_labels,
                            Cs=probe_cs(config.probe_cv_cs, config.probe_cv_c_max),
                            folds=config.probe_cv_folds,
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
    test_x, test_y, subset_kind = eval_split(config, data.test)
    n_eval = int(test_y.shape[0])
    yard_x = test_x[:yardstick_image_count(config, n_eval)]
    probe_idx = train_x = train_y = None
    if config.protocol == "full":
        probe_idx = probe_train_indices(data.train.labels.numpy(), config.probe_train_images)
        subset = probe_idx.shape[0] < data.train.images.shape[0]
        train_x = data.train.images[torch.from_numpy(probe_idx)] if subset \
            else data.train.images
        train_y = data.train.labels.numpy()[probe_idx]
    teacher = None  # the epoch-0 encoder's embeddings of the yardstick views, when needed

    def compute(rec: dict[str, Any]) -> dict[str, Any]:
        nonlocal teacher
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
            t_embed = time.perf_counter()
            metrics = all_metrics(feats, test_y, seed=EVAL_SEED, train_features=train_feats,
                                  train_labels=train_y)
            extra = {**encoder_metrics(feats, test_y, train_feats, train_y, config),
                     "probe_train_images": int(probe_idx.shape[0])}
        else:
            t_embed = time.perf_counter()
            metrics = all_metrics(feats, test_y, seed=EVAL_SEED)
        t_probe = time.perf_counter()
        # the epoch-0 checkpoint is the teacher: its views are embedded already
        yard = yardstick(model, yard_x, config, teacher=teacher,
                         own=teacher if rec["epoch"] == 0 else None)
        # the scored images are the first yardstick_images (batch_bounds: from 0, in order)
        yard["yard_rankme"] = float(effective_rank(
            torch.from_numpy(test_emb["projection"][:yard["yardstick_images"]])))
        t_yard = time.perf_counter()
        flops = step_flops(config, data.test.images.shape[-1])  # cached: once per config
        return {"dataset": config.dataset, "method": config.method, "seed": config.seed,
                "protocol": config.protocol, "epoch": rec["epoch"], "steps": rec["steps"],
                "train_loss": rec["train_loss"], **metrics, "eval_images": n_eval,
                "eval_subset": subset_kind,
                "eval_features": config.eval_features, "eval_seed": EVAL_SEED,
                **extra, **yard, "flops_per_step": flops, "train_flops": rec["steps"] * flops,
                "eval_version": EVAL_VERSION, "device": str(device),
                "seconds": round(time.perf_counter() - t0, 3),
                "seconds_embed": round(t_embed - t0, 3),
                "seconds_metrics": round(t_probe - t_embed, 3),
                "seconds_yardstick": round(t_yard - t_probe, 3)}

    results: dict[int, dict[str, Any]] = {}
    todo = []
    for rec in done["budgets"]:
        path = metrics_path(run, rec["epoch"])
        if path.exists() and not force:
            old = read_json(path)
            if _is_current(old):
                results[rec["epoch"]] = old
                continue
        todo.append(rec)
    untrained = (UntrainedShare(run, config, data.test.images.shape[-1])
                 if any(r["epoch"] == 0 for r in todo) else None)
    # epoch 0 first, unless the same seed's untrained encoder is being evaluated by another
    # run right now (its lock is held): then every trained checkpoint first, epoch 0 last,
    # by which time the other run's result is there to reuse
    if untrained is not None and not untrained.try_lock():
        todo.sort(key=lambda r: r["epoch"] == 0)
    for rec in todo:
        if rec["epoch"] == 0 and untrained is not None:
            result = untrained.evaluate(rec, compute, reuse=not force)
        else:
            result = compute(rec)
        write_json_atomic(metrics_path(run, rec["epoch"]), result)
        results[rec["epoch"]] = result
    return [results[rec["epoch"]] for rec in done["budgets"]]


#: keys of an epoch-0 metrics file that belong to the run, not to its (untrained) encoder
RUN_SPECIFIC_KEYS = ("method", "train_loss", "flops_per_step", "train_flops",
                     *EVAL_CIRCUMSTANCE_KEYS)


class UntrainedShare:
    """The untrained encoder evaluated once per seed (issue 22): both methods of a seed
    start from the same seeded initialisation, so their epoch-0 checkpoints are the same
    encoder and every measure of it is the same number. The first run of a seed to evaluate
    epoch 0 writes its encoder measures to ``<dataset>/<protocol>/.untrained/seed_<s>_<key>.json``
    beside the method folders; a run of the other method reuses them when (a) its config
    equals the writer's in every field but ``method`` (``key``) and (b) its epoch-0 weights
    are bit-identical to the writer's (a digest of every tensor), and computes them itself
    otherwise. The run-specific keys (:data:`RUN_SPECIFIC_KEYS`) are always its own.
    An ``fcntl`` lock on the shared file tells a run that another is computing it."""

    def __init__(self, run: Path, config: RunConfig, image_size: int):
        fields = {k: v for k, v in config.to_dict().items() if k not in ("method", "data_root")}
        key = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()
                             ).hexdigest()[:16]
        self.path = run.parent.parent / UNTRAINED_DIR / f"{run.name}_{key}.json"
        self.run, self.config, self.image_size = run, config, image_size
        self._fd: int | None = None

    def try_lock(self, *, wait: bool = False) -> bool:
        """Take the shared file's lock (held already: True); without ``wait``, False when
        another run holds it; with ``wait``, until the run that computes it is done."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _unlock(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def evaluate(self, rec: dict[str, Any], compute, *, reuse: bool = True) -> dict[str, Any]:
        """Epoch 0's metrics: reused from the other method's run when allowed, else computed
        (and shared)."""
        self.try_lock(wait=True)
        try:
            digest = weights_digest(checkpoint_path(self.run, 0))
            shared = read_json(self.path) if reuse and self.path.is_file() else None
            if shared is not None and shared.get("weights_digest") == digest \
                    and shared.get("eval_version") == EVAL_VERSION:
                t0 = time.perf_counter()
                flops = step_flops(self.config, self.image_size)
                return {**shared["measures"], "method": self.config.method,
                        "train_loss": rec["train_loss"], "flops_per_step": flops,
                        "train_flops": rec["steps"] * flops,
                        "seconds": round(time.perf_counter() - t0, 3),
                        "untrained_shared_from": shared["method"]}
            result = compute(rec)
            write_json_atomic(self.path, {
                "method": self.config.method, "run": str(self.run), "weights_digest": digest,
                "eval_version": EVAL_VERSION,
                "measures": {k: v for k, v in result.items() if k not in RUN_SPECIFIC_KEYS}})
            return result
        finally:
            self._unlock()


def weights_digest(checkpoint: Path) -> str:
    """sha256 over every tensor of a checkpoint's model state (names, dtypes, shapes and
    bytes, in name order): equal digests mean bit-identical encoders."""
    model = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    h = hashlib.sha256()
    for name in sorted(model):
        t = model[name]
        if not torch.is_tensor(t):
            continue
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _is_current(metrics: dict[str, Any]) -> bool:
    """Whether a metrics file was written by this evaluation (same version, every key)."""
    keys = EVAL_V2_KEYS + EVAL_V3_KEYS
    if metrics.get("protocol") == "full":
        keys += EVAL_FULL_KEYS
    return (metrics.get("eval_version") == EVAL_VERSION and all(k in metrics for k in keys))
