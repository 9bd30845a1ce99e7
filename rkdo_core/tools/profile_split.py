"""``rkdo profile --split``: one checkpoint's evaluation again, measure by measure, with a
clock around each (imports torch; :mod:`rkdo_core.tools.profile` imports this only when
``--split`` is given)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig
from ..layout import TRAIN_COMPLETE, checkpoint_path, require_trained_run
from ..metrics import (
    clustering_scores,
    knn_weighted_accuracy,
    linear_eval_accuracy,
    linear_probe_cv,
    neighborhood_accuracy,
    neighborhood_accuracy_cosine,
)
from ..model import resolve_device
from ..neutral import effective_rank
from ..runio import read_json
from ..training import evaluate as ev
from ..training.diagnostics import PROJECTIONS
from ..training.stepflops import _step_flops_cached
from ..training.train import load_data, load_encoder, thread_setting
from ..training.yardstick import view_embeddings, yardstick


def measure_split(run_dir: str | Path, epoch: int) -> dict[str, float]:
    """Seconds of each evaluation measure on checkpoint ``epoch`` of ``run_dir``, computed
    again one by one as :func:`rkdo_core.training.evaluate._evaluate` computes them (same
    functions, same inputs, same threads); nothing is written."""
    run = require_trained_run(run_dir)
    config = RunConfig.from_dict(read_json(run / TRAIN_COMPLETE)["config"])
    times: dict[str, float] = {}

    def timed(name, fn, *args, **kwargs):
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return value

    with thread_setting(config.threads):
        device = resolve_device(config.device)
        data = timed("load data", load_data, config)
        test_x, test_y, _ = ev.eval_split(config, data.test)
        n_eval = test_y.shape[0]
        yard_x = test_x[:ev.yardstick_image_count(config, n_eval)]
        teacher = timed("yardstick teacher (epoch-0 views)", lambda: view_embeddings(
            load_encoder(config, checkpoint_path(run, 0), device), yard_x, config.batch_size))
        model = timed("load checkpoint", load_encoder, config, checkpoint_path(run, epoch),
                      device)
        emb = timed("embed evaluation images", ev.embed_all, model, test_x)
        feats = emb[config.eval_features]
        if config.protocol == "full":
            idx = ev.probe_train_indices(data.train.labels.numpy(), config.probe_train_images)
            train_x = data.train.images[torch.from_numpy(idx)]
            train_y = data.train.labels.numpy()[idx]
            train_feats = timed("embed probe-train images", ev.embed_all, model,
                                train_x)[config.eval_features]
            timed("linear_eval (C = 1)", linear_eval_accuracy, train_feats, train_y,
                  test_features=feats, test_labels=test_y, seed=ev.EVAL_SEED)
            timed("linear_cv (CV over C)", linear_probe_cv, train_feats, train_y, feats,
                  test_y, Cs=ev.probe_cs(config.probe_cv_cs, config.probe_cv_c_max),
                  folds=config.probe_cv_folds,
                  seed=ev.EVAL_SEED)
            timed("knn20 + knn5_cosine", lambda: (
                knn_weighted_accuracy(train_feats, train_y, feats, test_y, k=ev.KNN_K,
                                      temperature=ev.KNN_TEMPERATURE),
                neighborhood_accuracy_cosine(feats, test_y, k=ev.KNN_COSINE_K)))
        else:
            timed("linear_eval (C = 1)", linear_eval_accuracy, feats, test_y,
                  seed=ev.EVAL_SEED)
        timed("k-means (NMI, ARI)", clustering_scores, feats, test_y, seed=ev.EVAL_SEED)
        timed("5-NN agreement", neighborhood_accuracy, feats, test_y, k=5)
        timed("yardsticks (2 views, 8 objectives)", yardstick, model, yard_x, config,
              teacher=teacher)
        timed("RankMe", lambda: effective_rank(torch.from_numpy(emb["projection"])))
        _step_flops_cached.cache_clear()
        timed("FLOP count (once per config)", _step_flops_cached, config,
              data.test.images.shape[-1])
        timed("t-SNE map (notebook, one panel)", PROJECTIONS["tsne"],
              feats[:2000].astype(np.float64), 0)
    return times
