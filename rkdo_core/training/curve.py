"""`rkdo curve`: a learning curve of the encoder on Fashion-MNIST (issue 22), to see whether
self-supervised training helps the encoder in this regime, and at which step budgets.

For each (method, seed) ONE run is trained by the suite's own loop
(:func:`rkdo_core.training.train.train`) up to the largest step budget, with the config of
the params file (``params/fashion_curve.yaml``: full protocol, the paper's loss settings) and
``steps_per_epoch`` / ``epochs`` chosen so that the "epochs" are exactly the requested
optimizer-step budgets (:func:`step_schedule`). As soon as a budget's checkpoint is written
(the ``on_checkpoint`` hook of ``train``) it is evaluated by embedding ONCE a fixed
class-stratified probe-train subset of the train images and a fixed class-stratified subset
of the test images (:func:`rkdo_core.training.evaluate.probe_train_indices`, the same for
every method, seed and step), and computing from those features the CV linear probe with
its chosen C, the same probe at every C of its grid, weighted 20-NN and 5-NN and the 5-NN
agreement; the rows are appended to the CSV (`rkdo_core.curvecsv`) and flushed at once, so a
killed curve keeps what it evaluated, and a re-run skips the (method, seed, step) already
there. With ``workers > 1`` the (method, seed) runs go to that many processes (one torch
thread each by default) that send their rows to this process, the CSV's only writer.

Checkpoints go to ``runs_dir/<method>/seed_<N>/`` (the run folder layout of ``train``) and
are deleted once evaluated unless ``keep_checkpoints`` (a ResNet-18 checkpoint is ~45 MB).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import multiprocessing
import platform
import queue
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig, load_params
from ..curvecsv import SETTINGS, append_rows, read_rows
from ..curvespec import (  # noqa: F401 (re-exported: the curve's public names)
    DEFAULT_CSV,
    DEFAULT_METHODS,
    DEFAULT_PARAMS,
    DEFAULT_PROBE_IMAGES,
    DEFAULT_RUNS_DIR,
    DEFAULT_SEEDS,
    DEFAULT_STEPS,
    DEFAULT_TEST_IMAGES,
    CurveSpec,
    check_spec,
)
from ..data import load_dataset
from ..layout import TRAIN_COMPLETE, checkpoint_path, is_trained
from ..metrics import (
    knn_weighted_accuracy,
    linear_probe_accuracies,
    linear_probe_cv,
    neighborhood_accuracy_cosine,
)
from ..model import resolve_device
from ..runio import read_json
from .evaluate import (
    EVAL_SEED,
    KNN_COSINE_K,
    KNN_K,
    KNN_TEMPERATURE,
    embed_all,
    probe_cs,
    probe_train_indices,
)
from .train import load_data, load_encoder, thread_setting, train

#: k of the second weighted k-NN classifier (the first is the suite's KNN_K = 20)
KNN_SMALL_K = 5
#: config fields that do not change what a run computes (or are set per run / per curve):
#: left out of ``config_id``
_ID_EXCLUDE = ("method", "seed", "epochs", "steps_per_epoch", "threads", "data_root",
               "device")
#: fields added later, with the value every curve computed before them had
_ID_LATER = {"probe_cv_c_max": 100.0}


def _check_sizes(spec: CurveSpec, n_train: int, n_test: int, n_classes: int, folds: int,
                 dataset: str) -> None:
    low = max(KNN_K, n_classes * folds)
    if not isinstance(spec.probe_images, int) or not low <= spec.probe_images <= n_train:
        raise ConfigError("probe_images", spec.probe_images,
                          f"must be an integer in [{low}, {n_train}]: at most the {n_train} "
                          f"train images of {dataset}, at least k={KNN_K} of the k-NN and "
                          f"{folds} CV folds x {n_classes} classes")
    low = max(KNN_COSINE_K + 1, n_classes)
    if not isinstance(spec.test_images, int) or not low <= spec.test_images <= n_test:
        raise ConfigError("test_images", spec.test_images,
                          f"must be an integer in [{low}, {n_test}]: at most the {n_test} "
                          f"test images of {dataset}")


def step_schedule(steps: Sequence[int], full_pass: int) -> tuple[int, tuple[int, ...]]:
    """(steps_per_epoch, epochs) whose epoch budgets are exactly the positive ``steps``:
    the largest divisor of their greatest common divisor that fits one pass over the data
    (``full_pass`` batches), e.g. (0, 100, 250, 500, 1000, 1500) -> 50, (2, 5, 10, 20, 30).
    Batches are drawn without replacement within each such "epoch" (a fresh permutation of
    the train images every steps_per_epoch steps)."""
    positive = [s for s in steps if s > 0]
    g = math.gcd(*positive)
    spe = max(d for d in range(1, min(g, full_pass) + 1) if g % d == 0)
    return spe, tuple(s // spe for s in positive)


def config_id(config: RunConfig) -> str:
    """A digest of what the training computes, apart from method, seed and budgets. A field
    added to RunConfig after curves were computed (:data:`_ID_LATER`) enters it only when it
    differs from the value every earlier curve had, so their CSVs stay resumable."""
    d = {k: v for k, v in config.to_dict().items() if k not in _ID_EXCLUDE
         and not (k in _ID_LATER and v == _ID_LATER[k])}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def cpu_name() -> str:
    """``lscpu``'s model name, else platform.processor(), else the machine type."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                             env={"LC_ALL": "C", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"})
        for line in out.stdout.splitlines():
            if line.strip().startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


# ---- the plan ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One (method, seed) run: its config, folder, and the steps still to evaluate."""

    config: RunConfig
    run_dir: str
    missing: tuple[int, ...]
    spec: CurveSpec
    settings: dict[str, Any]


def base_config(spec: CurveSpec) -> RunConfig:
    """The params file's config (one dataset) with ``--set`` overrides, method/seed/budgets
    not yet set."""
    grid = load_params(spec.params)
    if len(grid.datasets) != 1:
        raise ConfigError("params", str(spec.params),
                          f"must name one dataset for a learning curve; it names "
                          f"{list(grid.datasets)}")
    d = grid.datasets[0]
    over = dict(spec.overrides)
    if spec.data_root is not None:
        over["data_root"] = spec.data_root
    return RunConfig.preset(grid.preset, **{**grid.config, **grid.per_dataset.get(d, {}),
                                            **over}, dataset=d)


def plan(spec: CurveSpec) -> tuple[list[Job], dict[str, Any]]:
    """Check the input against the data, and list the runs with steps still missing from
    the CSV. Raises ConfigError / DatasetUnavailableError before anything is trained."""
    check_spec(spec)
    base = base_config(spec)
    resolve_device(base.device)  # ConfigError here, before any process starts
    data = load_dataset(base.dataset, data_root=base.data_root, image_size=base.image_size)
    n_train, n_test = data.train.images.shape[0], data.test.images.shape[0]
    _check_sizes(spec, n_train, n_test, data.num_classes, base.probe_cv_folds, base.dataset)
    full_pass = n_train // base.batch_size
    if full_pass < 1:
        raise ConfigError("batch_size", base.batch_size,
                          f"must not exceed the {n_train} training images of {base.dataset}")
    spe, epochs = step_schedule(spec.steps, full_pass)
    threads = spec.threads if spec.threads is not None else (1 if spec.workers > 1 else None)
    base = replace(base, steps_per_epoch=spe, epochs=epochs, threads=threads)
    settings = {"probe_images": spec.probe_images, "test_images": spec.test_images,
                "features": base.eval_features, "cv_folds": base.probe_cv_folds,
                "batch_size": base.batch_size, "steps_per_epoch": spe,
                "config_id": config_id(base)}
    rows = read_rows(spec.csv)
    other = [r for r in rows if any(r[k] != settings[k] for k in SETTINGS)]
    if other:
        r = other[0]
        raise ConfigError(
            "csv", str(spec.csv),
            "holds rows computed with other settings ("
            + ", ".join(f"{k}={r[k]}" for k in SETTINGS if r[k] != settings[k])
            + " where this curve has "
            + ", ".join(f"{k}={settings[k]}" for k in SETTINGS if r[k] != settings[k])
            + "); give another --csv, or the same settings to continue it")
    n_cs = base.probe_cv_cs
    have: dict[tuple[str, int, int], set] = {}
    for r in rows:
        have.setdefault((r["method"], r["seed"], r["step"]), set()).add(
            (r["metric"], r["C"] if r["metric"] == "linear_C" else None))
    jobs = []
    for seed in spec.seeds:
        for method in spec.methods:
            missing = tuple(s for s in spec.steps
                            if not _step_done(have.get((method, seed, s), set()), n_cs))
            if missing:
                cfg = replace(base, method=method, seed=seed)
                jobs.append(Job(cfg, str(Path(spec.runs_dir) / method / f"seed_{seed}"),
                                missing, spec, settings))
    return jobs, {"config": base, "n_train": n_train, "n_test": n_test, "rows": len(rows)}


def _step_done(have: set, n_cs: int) -> bool:
    fixed = {("linear_cv", None), ("knn20", None), ("knn5", None), ("knn5_cosine", None)}
    return fixed <= have and sum(1 for m, _ in have if m == "linear_C") >= n_cs


# ---- one run -----------------------------------------------------------------------------

class _Evaluator:
    """The fixed probe-train and test subsets of one run's data, and the rows of one
    checkpoint computed from one embedding of each."""

    def __init__(self, job: Job, device: torch.device):
        self.job, self.config, self.device = job, job.config, device
        data = load_data(self.config)
        tr = probe_train_indices(data.train.labels.numpy(), job.spec.probe_images)
        te = probe_train_indices(data.test.labels.numpy(), job.spec.test_images)
        self.train_x = data.train.images[torch.from_numpy(tr)]
        self.train_y = data.train.labels.numpy()[tr]
        self.test_x = data.test.images[torch.from_numpy(te)]
        self.test_y = data.test.labels.numpy()[te]
        self.cpu = cpu_name()

    def rows(self, record: dict[str, Any], ckpt: Path, train_s_per_step: float | None
             ) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        cfg = self.config
        # building the model draws from torch's global generator: leave it as it was, so
        # that evaluating inside training cannot change the training that follows
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            model = load_encoder(cfg, ckpt, self.device)
        feats_tr = embed_all(model, self.train_x)[cfg.eval_features]
        feats_te = embed_all(model, self.test_x)[cfg.eval_features]
        del model
        t_embed = time.perf_counter()
        cs = probe_cs(cfg.probe_cv_cs, cfg.probe_cv_c_max)
        with warnings.catch_warnings():
            # convergence is recorded per row (``converged``), not printed per fit
            warnings.simplefilter("ignore")
            probe = linear_probe_cv(feats_tr, self.train_y, feats_te, self.test_y, Cs=cs,
                                    folds=cfg.probe_cv_folds, seed=EVAL_SEED)
            per_c = linear_probe_accuracies(feats_tr, self.train_y, feats_te, self.test_y,
                                            Cs=cs, seed=EVAL_SEED)
        t_probe = time.perf_counter()
        knn20 = knn_weighted_accuracy(feats_tr, self.train_y, feats_te, self.test_y,
                                      k=KNN_K, temperature=KNN_TEMPERATURE)
        knn5 = knn_weighted_accuracy(feats_tr, self.train_y, feats_te, self.test_y,
                                     k=KNN_SMALL_K, temperature=KNN_TEMPERATURE)
        agree = neighborhood_accuracy_cosine(feats_te, self.test_y, k=KNN_COSINE_K)
        seconds = time.perf_counter() - t0
        #: where the evaluation's time went (printed with the progress line)
        self.last_split = {"embedding": t_embed - t0, "probes": t_probe - t_embed,
                           "k-NN": t0 + seconds - t_probe}
        common = {"method": cfg.method, "seed": cfg.seed, "step": int(record["steps"]),
                  "train_loss": record["train_loss"], **self.job.settings,
                  "threads": torch.get_num_threads(), "workers": self.job.spec.workers,
                  "cpu": self.cpu, "train_s_per_step": train_s_per_step,
                  "eval_seconds": round(seconds, 3)}
        none = {"C": None, "cv_score": None, "converged": None}
        out = [{**common, "metric": "linear_cv", "C": probe.C, "value": probe.accuracy,
                "cv_score": probe.cv_scores[probe.C], "converged": probe.converged}]
        out += [{**common, "metric": "linear_C", "C": c, "value": acc,
                 "cv_score": probe.cv_scores[c], "converged": conv}
                for c, (acc, conv) in per_c.items()]
        out += [{**common, **none, "metric": m, "value": v}
                for m, v in (("knn20", knn20), ("knn5", knn5), ("knn5_cosine", agree))]
        return out


def run_job(job: Job, sink: Callable[[list[dict[str, Any]]], None]) -> int:
    """Train (or reuse) one run and evaluate its missing steps, handing each checkpoint's
    rows to ``sink`` as soon as they are computed. Returns the number of steps evaluated."""
    cfg, run = job.config, Path(job.run_dir)
    device = resolve_device(cfg.device)
    missing = set(job.missing)
    done = 0
    with thread_setting(cfg.threads):
        ev = _Evaluator(job, device)
    last = {"t": time.perf_counter(), "steps": 0}

    def on_checkpoint(record: dict[str, Any], ckpt: Path) -> None:
        nonlocal done
        now = time.perf_counter()
        step = int(record["steps"])
        per_step = None
        if step > last["steps"]:
            per_step = round((now - last["t"]) / (step - last["steps"]), 4)
        if step in missing:
            rows = ev.rows(record, ckpt, per_step)
            sink(rows)
            done += 1
            _report(cfg, step, rows, ev.last_split, job.spec.progress)
        if not job.spec.keep_checkpoints:
            ckpt.unlink(missing_ok=True)
        last["t"], last["steps"] = time.perf_counter(), step

    if is_trained(run) and _reusable(run, cfg, missing):
        with thread_setting(cfg.threads):
            for rec in read_json(run / TRAIN_COMPLETE)["budgets"]:
                if int(rec["steps"]) in missing:
                    on_checkpoint(rec, checkpoint_path(run, rec["epoch"]))
        return done
    train(cfg, run, progress=job.spec.progress, force=True, on_checkpoint=on_checkpoint)
    if not job.spec.keep_checkpoints:
        shutil.rmtree(run / "checkpoints", ignore_errors=True)
    return done


def _reusable(run: Path, cfg: RunConfig, missing: set[int]) -> bool:
    """A complete run of this config whose checkpoints of the missing steps still exist."""
    done = read_json(run / TRAIN_COMPLETE)
    if RunConfig.from_dict(done["config"]) != cfg:
        return False
    by_step = {int(r["steps"]): r["epoch"] for r in done["budgets"]}
    return all(s in by_step and checkpoint_path(run, by_step[s]).is_file() for s in missing)


def _report(cfg: RunConfig, step: int, rows: list[dict[str, Any]],
            split: dict[str, float], progress: bool) -> None:
    if not progress:
        return
    r = {x["metric"]: x for x in rows if x["metric"] != "linear_C"}
    pace = rows[0]["train_s_per_step"]
    print(f"{cfg.method} seed {cfg.seed} step {step}: linear_cv {r['linear_cv']['value']:.4f} "
          f"(C={r['linear_cv']['C']:.3g})  knn20 {r['knn20']['value']:.4f}  knn5 "
          f"{r['knn5']['value']:.4f}  ({rows[0]['threads']} thread(s); evaluation "
          f"{rows[0]['eval_seconds']:.1f} s: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in split.items())
          + (f", training {pace:.3f} s/step" if pace is not None else "") + ")", flush=True)


# ---- the curve ---------------------------------------------------------------------------

def _worker(job: Job, q) -> int:
    return run_job(job, q.put)


def run_curve(spec: CurveSpec) -> dict[str, Any]:
    """Compute every missing (method, seed, step) of the curve into ``spec.csv``."""
    jobs, info = plan(spec)
    csv_path = Path(spec.csv)
    if spec.progress:
        n = sum(len(j.missing) for j in jobs)
        print(f"curve: {len(spec.methods)} method(s) x {len(spec.seeds)} seed(s), steps "
              f"{list(spec.steps)} (steps_per_epoch {info['config'].steps_per_epoch}); "
              f"{n} checkpoint(s) to evaluate in {len(jobs)} run(s), {spec.workers} "
              f"worker(s) -> {csv_path}", flush=True)
    t0 = time.perf_counter()
    evaluated = 0
    if spec.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            evaluated += run_job(job, lambda rows: append_rows(csv_path, rows))
    else:
        evaluated = _run_parallel(jobs, spec.workers, csv_path)
    return {"jobs": len(jobs), "evaluated": evaluated,
            "seconds": round(time.perf_counter() - t0, 3), "csv": str(csv_path)}


def _run_parallel(jobs: list[Job], workers: int, csv_path: Path) -> int:
    """The jobs in ``workers`` spawned processes; their rows come back through a queue and
    are appended here, by this process only."""
    ctx = multiprocessing.get_context("spawn")
    evaluated = 0
    with ctx.Manager() as manager:
        q = manager.Queue()
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
            pending = {pool.submit(_worker, job, q) for job in jobs}

            def drain() -> None:
                while True:
                    try:
                        append_rows(csv_path, q.get_nowait())
                    except queue.Empty:
                        return

            try:
                while pending:
                    finished, pending = wait(pending, timeout=0.5,
                                             return_when=FIRST_COMPLETED)
                    drain()
                    for f in finished:
                        evaluated += f.result()  # re-raises a run's error here
                drain()
            except BaseException:
                drain()  # keep what the others computed
                for f in pending:
                    f.cancel()
                raise
    return evaluated

