"""Shared test helpers: synthetic run folders laid out as the grid writes them, with known
metrics (used by test_stats, test_tables, test_claims, test_compute, test_figures,
test_aggregate_notebook, test_report and test_audit_gates)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

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
        if complete:
            (run / "run_complete.json").write_text("{}")
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
