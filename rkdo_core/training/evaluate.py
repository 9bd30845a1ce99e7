"""Evaluation of a trained run: every checkpoint's metrics, common yardstick and FLOPs,
written to ``RUN/metrics/epoch_NNN.json`` (02_evaluate.ipynb makes one call here:
:func:`evaluate_run`).

Paper protocol: the first ``eval_images`` test images, probe on a seeded 80/20 split of
the 64-d projection. Full protocol: the whole test set, probe trained on train-set features
of the 512-d backbone (docs/design.md "Two protocols").
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
    EVAL_V2_KEYS,
    EVAL_VERSION,
    TRAIN_COMPLETE,
    checkpoint_path,
    is_trained,
    metrics_path,
)
from ..metrics import all_metrics
from ..model import Encoder, resolve_device
from ..runio import read_json, write_json_atomic
from .stepflops import step_flops
from .train import load_data, load_encoder, thread_setting
from .yardstick import yardstick

#: the linear-probe split and k-means seed of the evaluation protocol (fixed, as in the
#: reference notebook), independent of the training seed.
EVAL_SEED = 42


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


def evaluate_run(run_dir: str | Path, *, force: bool = False) -> list[dict[str, Any]]:
    """Metrics for every checkpoint of a trained run, written to RUN/metrics/epoch_NNN.json.

    Paper protocol: the first ``eval_images`` test images, probe on a seeded 80/20 split.
    Full protocol: the whole test set, probe trained on train-set features.

    Every file also holds the common yardstick (`rkdo_core.training.yardstick`: the
    checkpoint scored on both fixed objectives over the same evaluation images, with fixed
    seeded views) and ``flops_per_step`` (FlopCounterMode, forward + backward of one step of
    this config; `rkdo_core.training.stepflops.step_flops`) with ``train_flops`` = steps ×
    flops_per_step. An existing file is reused unless ``force`` or it is not of
    :data:`EVAL_VERSION` (older files, which lack those keys, are recomputed).
    """
    run = Path(run_dir)
    if not is_trained(run):
        raise FileNotFoundError(f"{run} holds no complete training run ({TRAIN_COMPLETE} is "
                                "missing); train it first with `rkdo train`")
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
    results = []
    for rec in done["budgets"]:
        path = metrics_path(run, rec["epoch"])
        if path.exists() and not force:
            old = read_json(path)
            if _is_current(old):
                results.append(old)
                continue
        t0 = time.perf_counter()
        model = load_encoder(config, checkpoint_path(run, rec["epoch"]), device)
        feats = embed(model, test_x, features=config.eval_features)
        train_kw = {}
        if config.protocol == "full":
            train_kw = dict(train_features=embed(model, data.train.images,
                                                 features=config.eval_features),
                            train_labels=data.train.labels.numpy())
        metrics = all_metrics(feats, test_y, seed=EVAL_SEED, **train_kw)
        yard = yardstick(model, test_x, config)
        flops = step_flops(config, data.test.images.shape[-1])  # cached: once per config
        result = {"dataset": config.dataset, "method": config.method, "seed": config.seed,
                  "protocol": config.protocol, "epoch": rec["epoch"], "steps": rec["steps"],
                  "train_loss": rec["train_loss"], **metrics, "eval_images": n_eval,
                  "eval_features": config.eval_features, "eval_seed": EVAL_SEED,
                  **yard, "flops_per_step": flops, "train_flops": rec["steps"] * flops,
                  "eval_version": EVAL_VERSION,
                  "device": str(device), "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(path, result)
        results.append(result)
    return results


def _is_current(metrics: dict[str, Any]) -> bool:
    """Whether a metrics file was written by this evaluation (same version, every key)."""
    return (metrics.get("eval_version") == EVAL_VERSION
            and all(k in metrics for k in EVAL_V2_KEYS))
