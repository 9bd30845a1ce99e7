"""Training and evaluation of one (dataset, method, seed) run.

A run trains once up to the largest epoch budget and saves a checkpoint at every budget
(and at budget 0, the untrained encoder), so budgets 1, 2, 5, 10 are checkpoints of one
run rather than four separate trainings. Run folder layout::

    RUN/config.json            resolved config + provenance (git SHA, versions, device)
    RUN/train_log.jsonl        one line per optimizer step: step, epoch, loss, seconds
    RUN/checkpoints/epoch_NNN.pt
    RUN/train_complete.json    written last: the run trained to every budget
    RUN/metrics/epoch_NNN.json written by evaluate_run, one per checkpoint

Every file is written atomically; ``train_complete.json`` exists only if all budgets did.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import losses as losses_mod
from .augment import normalize, two_views
from .config import ConfigError, RunConfig
from .data import DatasetSplits, load_dataset
from .metrics import all_metrics
from .model import Encoder, build_model, resolve_device
from .runio import provenance, read_json, torch_save_atomic, write_json_atomic

TRAIN_COMPLETE = "train_complete.json"
#: the linear-probe split and k-means seed of the evaluation protocol (fixed, as in the
#: reference notebook), independent of the training seed.
EVAL_SEED = 42


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run is not marked complete."""


def checkpoint_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"epoch_{epoch:03d}.pt"


def metrics_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / "metrics" / f"epoch_{epoch:03d}.json"


def is_trained(run_dir: str | Path) -> bool:
    return (Path(run_dir) / TRAIN_COMPLETE).exists()


def _seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for batch order, augmentation, and the step-0 loss estimate."""
    return tuple(int(s) for s in np.random.SeedSequence(seed).generate_state(3))


def steps_per_epoch(config: RunConfig, n_train: int) -> int:
    """Optimizer steps in one "epoch": the config's cap, or a full pass (last partial batch
    dropped so every batch has B rows, as batch-norm and the B×B target need)."""
    full = n_train // config.batch_size
    if full < 1:
        raise ConfigError("batch_size", config.batch_size,
                          f"must not exceed the {n_train} training images of {config.dataset}")
    if config.steps_per_epoch is None:
        return full
    if config.steps_per_epoch > full:
        raise ConfigError(
            "steps_per_epoch", config.steps_per_epoch,
            f"at most {full} batches of {config.batch_size} fit in one pass over the "
            f"{n_train} training images of {config.dataset}; use None for a full pass")
    return config.steps_per_epoch


def load_data(config: RunConfig) -> DatasetSplits:
    return load_dataset(config.dataset, data_root=config.data_root, image_size=config.image_size)


def train(config: RunConfig, out_dir: str | Path, *, progress: bool = True,
          force: bool = False) -> dict[str, Any]:
    """Train one run to every budget in ``config.epochs``; returns the completion record.

    A complete run is not retrained unless ``force``; a partial one is started afresh.
    Same config on CPU -> identical loss log and identical checkpoint weights.
    """
    out = Path(out_dir)
    if is_trained(out) and not force:
        done = read_json(out / TRAIN_COMPLETE)
        if _same_run(done.get("config", {}), config.to_dict()):
            return done
        raise ConfigError("out_dir", str(out),
                          "holds a complete run with a different config; choose another "
                          "folder or pass force=True / --force to overwrite it")
    # Anything here is a partial or superseded run: start from scratch, so no stale
    # checkpoint or log line can be mixed into the new one.
    for stale in ("checkpoints", "metrics"):
        shutil.rmtree(out / stale, ignore_errors=True)
    for stale in (TRAIN_COMPLETE, "train_log.jsonl"):
        (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    device = resolve_device(config.device)
    data = load_data(config)
    n_train = data.train.images.shape[0]
    n_steps = steps_per_epoch(config, n_train)
    loss_fn = losses_mod.loss_for(config)
    write_json_atomic(out / "config.json",
                      {"config": config.to_dict(), "provenance": provenance(device),
                       "steps_per_epoch": n_steps, "n_train": n_train})

    torch.manual_seed(config.seed)
    model = build_model(config, device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    data_seed, aug_seed, probe_seed = _seeds(config.seed)
    g_data = torch.Generator().manual_seed(data_seed)
    g_aug = torch.Generator().manual_seed(aug_seed)
    images = data.train.images.to(device)

    torch_save_atomic(checkpoint_path(out, 0), _checkpoint(model, opt, 0, 0, None))
    budgets = set(config.epochs)
    records: dict[int, dict[str, Any]] = {0: {
        "epoch": 0, "steps": 0,
        "train_loss": _initial_loss(model, loss_fn, images, n_steps, config.batch_size,
                                    probe_seed)}}
    step = 0
    t_start = time.perf_counter()
    bar = tqdm(total=config.max_epochs * n_steps, desc=f"{config.method} seed {config.seed}",
               disable=not progress, mininterval=2.0, leave=False)
    with open(out / "train_log.jsonl", "w") as log:
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            order = torch.randperm(n_train, generator=g_data)
            epoch_losses = []
            for i in range(n_steps):
                t0 = time.perf_counter()
                idx = order[i * config.batch_size:(i + 1) * config.batch_size].to(device)
                v1, v2 = two_views(images[idx], g_aug)
                # Each view gets its own forward pass, as in the reference (per-view BN stats).
                loss = loss_fn(model(v1), model(v2))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                value = float(loss.detach())
                log.write(json.dumps({"step": step, "epoch": epoch, "loss": value,
                                      "seconds": round(time.perf_counter() - t0, 6)}) + "\n")
                if not math.isfinite(value):
                    log.flush()
                    last = max((b for b in records if b > 0), default=0)
                    raise NonFiniteLossError(
                        f"{config.method} seed {config.seed}: training loss became {value} at "
                        f"step {step} (epoch {epoch}); the run is not marked complete "
                        f"(last complete checkpoint: epoch {last}, {checkpoint_path(out, last)})")
                epoch_losses.append(value)
                bar.update(1)
            log.flush()
            if epoch in budgets:
                # The paper's "final training loss": mean batch loss of the last epoch.
                rec = {"epoch": epoch, "steps": step, "train_loss": float(np.mean(epoch_losses))}
                torch_save_atomic(checkpoint_path(out, epoch),
                                  _checkpoint(model, opt, epoch, step, rec["train_loss"]))
                records[epoch] = rec
    bar.close()
    done = {"config": config.to_dict(), "steps_per_epoch": n_steps,
            "budgets": [records[b] for b in sorted(records)],
            "seconds": round(time.perf_counter() - t_start, 3), "device": str(device)}
    write_json_atomic(out / TRAIN_COMPLETE, done)
    return done


def _initial_loss(model: Encoder, loss_fn, images: torch.Tensor, n_steps: int,
                  batch_size: int, seed: int) -> float:
    """Budget 0's "training loss": the mean loss of the untrained encoder over one epoch's
    worth of batches (train mode, as in training), with no update. Its own generators, and
    batch-norm buffers restored afterwards, so the training that follows is unchanged."""
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    g_data, g_aug = (torch.Generator().manual_seed(seed + i) for i in range(2))
    order = torch.randperm(images.shape[0], generator=g_data)
    values = []
    model.train()
    with torch.no_grad():
        for i in range(n_steps):
            idx = order[i * batch_size:(i + 1) * batch_size].to(images.device)
            v1, v2 = two_views(images[idx], g_aug)
            values.append(loss_fn(model(v1), model(v2)))
    for k, v in model.named_buffers():
        v.copy_(buffers[k])
    return float(torch.stack(values).mean())


def _same_run(a: dict, b: dict) -> bool:
    """Configs equal up to where the data lives (the same files may be mounted elsewhere)."""
    return {**a, "data_root": None} == {**b, "data_root": None}


def _checkpoint(model: Encoder, opt, epoch: int, step: int, train_loss: float | None) -> dict:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
            "steps": step, "train_loss": train_loss}


def load_encoder(config: RunConfig, ckpt: str | Path, device: torch.device) -> Encoder:
    model = build_model(config, device)
    state = torch.load(ckpt, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()


@torch.inference_mode()
def embed(model: Encoder, images: torch.Tensor, *, features: str = "projection",
          batch_size: int = 512) -> np.ndarray:
    """uint8 (N, 3, H, W) -> (N, 64) projection embeddings or (N, 512) backbone features,
    un-augmented (only normalised), with the model in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    fn = model if features == "projection" else model.features
    out = [fn(normalize(images[i:i + batch_size].to(device))).float().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out).numpy()


def evaluate_run(run_dir: str | Path, *, force: bool = False) -> list[dict[str, Any]]:
    """Metrics for every checkpoint of a trained run, written to RUN/metrics/epoch_NNN.json.

    Paper protocol: the first ``eval_images`` test images, probe on a seeded 80/20 split.
    Full protocol: the whole test set, probe trained on train-set features.
    """
    run = Path(run_dir)
    if not is_trained(run):
        raise FileNotFoundError(f"{run} holds no complete training run ({TRAIN_COMPLETE} is "
                                "missing); train it first with `rkdo train`")
    done = read_json(run / TRAIN_COMPLETE)
    config = RunConfig.from_dict(done["config"])
    device = resolve_device(config.device)
    data = load_data(config)
    n_eval = data.test.images.shape[0] if config.eval_images is None else min(
        config.eval_images, data.test.images.shape[0])
    test_x, test_y = data.test.images[:n_eval], data.test.labels[:n_eval].numpy()
    results = []
    for rec in done["budgets"]:
        path = metrics_path(run, rec["epoch"])
        if path.exists() and not force:
            results.append(read_json(path))
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
        result = {"dataset": config.dataset, "method": config.method, "seed": config.seed,
                  "protocol": config.protocol, "epoch": rec["epoch"], "steps": rec["steps"],
                  "train_loss": rec["train_loss"], **metrics, "eval_images": n_eval,
                  "eval_features": config.eval_features, "eval_seed": EVAL_SEED,
                  "device": str(device), "seconds": round(time.perf_counter() - t0, 3)}
        write_json_atomic(path, result)
        results.append(result)
    return results
