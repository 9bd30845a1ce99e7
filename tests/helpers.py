"""Shared test helpers: the tiny two-run grid of the back-end and crash tests, the text of
an executed notebook's outputs, synthetic run folders laid out as the grid writes them, with known
metrics (used by test_stats, test_tables, test_claims, test_compute, test_figures,
test_aggregate_notebook, test_report and test_audit_gates), and miniature Fashion-MNIST
files in the official IDX format (test_fashion_data, test_fashion_grid)."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd

from rkdo_core.data import FASHION_MNIST_FILES
from rkdo_core.layout import EVAL_CIRCUMSTANCE_KEYS
from rkdo_core.runs.integrity import checksums

SEEDS = (42, 123, 456, 789)
EPOCHS = (0, 1, 2, 5, 10)
STEPS_PER_EPOCH = {"cifar10": 10, "digits": 3, "stl10": 11, "cifar100": 10}


def synthetic_rows(datasets=("cifar10", "digits"), seeds=SEEDS, epochs=EPOCHS,
                   protocol="paper", rng_seed=0, yardstick=False):
    """Metrics rows with RKDO's loss ~30 % below I-Con's at every budget (epoch 0 too) and
    identical evaluation metrics for both methods at epoch 0 (the same untrained encoder).
    With ``yardstick``: the common-yardstick and FLOP columns of the evaluation too, the
    RKDO-trained encoder a little worse than the I-Con-trained one on both objectives."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for dataset in datasets:
        for seed in seeds:
            for epoch in epochs:
                icon_loss = 2.6 - 0.04 * epoch + 0.03 * rng.normal()
                shared = {m: float(rng.uniform(0.1, 0.3)) for m in
                          ("linear_eval", "nmi", "ari", "neighborhood_acc")}
                for method in ("rkdo", "icon"):
                    if epoch == 0:
                        evals = dict(shared)
                    else:
                        evals = {m: v + (0.02 if method == "rkdo" else 0.0) * epoch / 10
                                 + 0.01 * rng.normal() for m, v in shared.items()}
                    loss = icon_loss if method == "icon" else (
                        0.7 * icon_loss + 0.02 * rng.normal())
                    extra = {}
                    if yardstick:
                        worse = 0.05 * (method == "rkdo" and epoch > 0)
                        extra = {"yardstick_icon": shared["nmi"] + 2.5 + worse
                                 + 0.01 * rng.normal() * (epoch > 0),
                                 "yardstick_rkdo": shared["ari"] + 1.5 + worse
                                 + 0.01 * rng.normal() * (epoch > 0),
                                 "flops_per_step": 2.27e10,
                                 "train_flops": 2.27e10 * STEPS_PER_EPOCH[dataset] * epoch}
                    rows.append({
                        "dataset": dataset, "method": method, "seed": seed,
                        "protocol": protocol, "epoch": epoch,
                        "steps": STEPS_PER_EPOCH[dataset] * epoch, "train_loss": loss,
                        **evals, "eval_images": 700, "eval_features": "projection",
                        "eval_seed": 42, "device": "cpu", "seconds": 0.1, **extra})
    return rows


def write_runs(root, rows, *, complete=True):
    """Write rows into RESULTS/<dataset>/<protocol>/<method>/seed_<seed>/metrics/, plus
    train_complete.json and (when ``complete``) run_complete.json."""
    root = Path(root)
    runs = set()
    for r in rows:
        run = root / r["dataset"] / r["protocol"] / r["method"] / f"seed_{r['seed']}"
        (run / "metrics").mkdir(parents=True, exist_ok=True)
        (run / "metrics" / f"epoch_{r['epoch']:03d}.json").write_text(json.dumps(r))
        runs.add(run)
    for run in runs:
        (run / "train_complete.json").write_text("{}")
        if complete:  # as the grid records it: every file with its sha256 and size
            files = sorted(p.relative_to(run).as_posix() for p in run.rglob("*.json"))
            (run / "run_complete.json").write_text(json.dumps(
                {"files": files, "checksums": checksums(run, files)}))
    return sorted(runs)


def write_synthetic_results(root, datasets=("cifar10", "digits"), seeds=SEEDS, epochs=EPOCHS,
                            protocol="paper", with_incomplete=True, yardstick=False):
    """Complete runs for both methods × seeds, plus (``with_incomplete``) one unfinished run
    with absurd values (seed 999) that aggregation must skip. Returns the complete rows as a
    DataFrame."""
    rows = synthetic_rows(datasets, seeds, epochs, protocol, yardstick=yardstick)
    write_runs(root, rows)
    if with_incomplete:
        bad = [dict(r, seed=999, train_loss=100.0, linear_eval=0.99)
               for r in rows if r["seed"] == seeds[0] and r["method"] == "rkdo"
               and r["dataset"] == datasets[0]]
        write_runs(root, bad, complete=False)
    return pd.DataFrame(rows)


# ---- miniature Fashion-MNIST files (official gzip-compressed IDX format) ----------------

def idx_images_bytes(images: np.ndarray, *, magic: int = 2051, count: int | None = None) -> bytes:
    """IDX images: magic, count, rows, cols as big-endian uint32, then the pixels row-major."""
    n, rows, cols = images.shape
    header = struct.pack(">IIII", magic, n if count is None else count, rows, cols)
    return header + np.ascontiguousarray(images, dtype=np.uint8).tobytes()


def idx_labels_bytes(labels, *, magic: int = 2049, count: int | None = None) -> bytes:
    """IDX labels: magic, count as big-endian uint32, then one byte per label."""
    labels = np.asarray(labels, dtype=np.uint8)
    return struct.pack(">II", magic, len(labels) if count is None else count) + labels.tobytes()


def write_gz(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content, mtime=0))
    return path


def miniature(seed: int = 0, n_train: int = 20, n_test: int = 10):
    """Known images and labels: image i of the train split is the constant 10 * i + 5
    (a constant image stays constant when resized), except image 1, a random pattern;
    labels cycle through 0..9 shifted by ``seed`` so two folders' files differ."""
    train_x = np.stack([np.full((28, 28), 10 * i + 5, dtype=np.uint8) for i in range(n_train)])
    train_x[1] = np.random.default_rng(seed).integers(0, 256, (28, 28), dtype=np.uint8)
    test_x = np.random.default_rng(seed + 100).integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    train_y = (np.arange(n_train) + seed) % 10
    test_y = (np.arange(n_test) * 3 + seed) % 10
    return train_x, train_y, test_x, test_y


def write_fashion(folder: Path, seed: int = 0, **kwargs):
    """The four official file names in ``folder``, holding :func:`miniature` data."""
    train_x, train_y, test_x, test_y = expected = miniature(seed, **kwargs)
    write_gz(folder / FASHION_MNIST_FILES[0], idx_images_bytes(train_x))
    write_gz(folder / FASHION_MNIST_FILES[1], idx_labels_bytes(train_y))
    write_gz(folder / FASHION_MNIST_FILES[2], idx_images_bytes(test_x))
    write_gz(folder / FASHION_MNIST_FILES[3], idx_labels_bytes(test_y))
    return expected


# ---- the back-end and crash tests' tiny grid (the smoke grid's seed 42) ----------------

TINY = """\
description: two runs for the back-end and crash tests (the smoke grid's seed 42)
datasets: [digits]
methods: [rkdo, icon]
seeds: [42]
epochs: [1, 2]
config: {steps_per_epoch: 2, batch_size: 16, eval_images: 64, threads: 1}
"""
#: fields of a metrics file that describe the machine or the clock, not the result
TIMING = {*EVAL_CIRCUMSTANCE_KEYS, "device"}


def tiny_params(folder: Path, methods=("rkdo", "icon")) -> Path:
    p = folder / f"tiny_{'_'.join(methods)}.yaml"
    p.write_text(TINY.replace("[rkdo, icon]", f"[{', '.join(methods)}]"))
    return p


def results_numbers(out: Path) -> dict[str, object]:
    """Every metrics file (minus timing fields) and every loss of the training logs."""
    numbers = {}
    for p in sorted(out.rglob("metrics/epoch_*.json")):
        rec = {k: v for k, v in json.loads(p.read_text()).items() if k not in TIMING}
        numbers[str(p.relative_to(out))] = rec
    for p in sorted(out.rglob("train_log.jsonl")):
        numbers[str(p.relative_to(out))] = [json.loads(line)["loss"]
                                             for line in p.read_text().splitlines()]
    return numbers


def same_as_reference(ours: dict, reference: Path) -> bool:
    """``ours`` (:func:`results_numbers` of a tiny grid) equals the uninterrupted smoke
    grid's numbers for the same runs (the session's ``smoke_results``: params/smoke.yaml,
    whose seed 42 the tiny grid is)."""
    theirs = results_numbers(reference)
    return set(ours) <= set(theirs) and ours == {k: theirs[k] for k in ours}


# ---- executed notebooks -------------------------------------------------------------

def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "data" in out:
                parts.append(out["data"].get("text/markdown", ""))
                parts.append(out["data"].get("text/plain", ""))
    return "\n".join(parts)
