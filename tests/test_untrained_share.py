"""The untrained encoder is evaluated once per seed (training/evaluate.py, UntrainedShare):
both methods of a seed start from the same encoder, so the second run to evaluate epoch 0
reuses the first one's measures - and only then: a different config or different weights
make it compute its own. The reused file equals the one it would have computed, key by key,
except the run's own keys (method, train loss, FLOPs, seconds). Also: the full protocol's
evaluation images are a fixed stratified subset (eval_indices)."""

import fcntl
import os
import threading
import time

import numpy as np
import pytest

from rkdo_core.config import RunConfig
from rkdo_core.layout import UNTRAINED_DIR, metrics_path
from rkdo_core.runio import read_json, write_json_atomic
from rkdo_core.training import evaluate as ev
from rkdo_core.training.evaluate import RUN_SPECIFIC_KEYS, eval_indices, evaluate_run
from rkdo_core.training.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FULL = dict(dataset="digits", epochs=(1,), steps_per_epoch=2, batch_size=16, device="cpu",
            threads=1, eval_images=120, probe_train_images=300, probe_cv_cs=3,
            probe_cv_folds=3, yardstick_images=64)


def _own(d):
    return {k: v for k, v in d.items() if k not in RUN_SPECIFIC_KEYS}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """icon and rkdo, seed 42, full protocol, trained in a grid's layout; evaluated with
    force (each computes its own epoch 0) as the reference."""
    root = tmp_path_factory.mktemp("share")
    runs, reference = {}, {}
    for method in ("rkdo", "icon"):
        run = root / "digits" / "full" / method / "seed_42"
        train(RunConfig.preset("full", method=method, **FULL), run, progress=False)
        runs[method] = run
        reference[method] = evaluate_run(run, force=True)
    return root, runs, reference


def _clear(root, runs):
    for run in runs.values():
        for f in (run / "metrics").glob("*.json"):
            f.unlink()
    for f in (root / "digits" / "full" / UNTRAINED_DIR).glob("*"):
        f.unlink()


def test_second_method_reuses_epoch0_and_gets_the_numbers_it_would_compute(pair):
    root, runs, reference = pair
    _clear(root, runs)
    first = evaluate_run(runs["rkdo"])
    second = evaluate_run(runs["icon"])
    assert "untrained_shared_from" not in first[0]
    assert second[0]["untrained_shared_from"] == "rkdo"
    assert (read_json(metrics_path(runs["icon"], 0))["untrained_shared_from"] == "rkdo")
    for method, got in (("rkdo", first), ("icon", second)):
        ref = reference[method]
        assert _own(got[0]) == _own(ref[0])          # every measure of the encoder
        assert got[0]["method"] == method
        assert got[0]["train_loss"] == ref[0]["train_loss"]  # the method's own loss
        assert got[0]["flops_per_step"] == ref[0]["flops_per_step"]
        assert _own(got[1]) == _own(ref[1])          # trained checkpoints untouched
    # the two methods' epoch-0 losses differ: the run-specific keys really are the run's
    assert second[0]["train_loss"] != first[0]["train_loss"]


def test_other_weights_or_config_are_not_reused(pair):
    root, runs, reference = pair
    _clear(root, runs)
    evaluate_run(runs["rkdo"])
    (shared,) = (root / "digits" / "full" / UNTRAINED_DIR).glob("*.json")
    data = read_json(shared)
    data["weights_digest"] = "0" * 64   # as if rkdo's epoch 0 were another encoder
    data["measures"]["linear_cv"] = -1.0
    write_json_atomic(shared, data)
    got = evaluate_run(runs["icon"])
    assert "untrained_shared_from" not in got[0] and got[0]["linear_cv"] != -1.0
    assert _own(got[0]) == _own(reference["icon"][0])
    # a config that differs in more than the method never finds the file: its key differs
    a = ev.UntrainedShare(runs["icon"], RunConfig.preset("full", method="icon", **FULL), 8)
    b = ev.UntrainedShare(runs["icon"], RunConfig.preset(
        "full", method="rkdo", **{**FULL, "probe_cv_cs": 4}), 8)
    c = ev.UntrainedShare(runs["icon"], RunConfig.preset("full", method="rkdo", **FULL), 8)
    assert a.path == c.path != b.path


def test_force_recomputes_epoch0(pair):
    root, runs, _ = pair
    _clear(root, runs)
    evaluate_run(runs["rkdo"])
    got = evaluate_run(runs["icon"], force=True)
    assert "untrained_shared_from" not in got[0]


def test_a_run_waits_for_the_other_method_by_evaluating_epoch0_last(pair):
    """Another run holds the lock (it is evaluating epoch 0): this run evaluates its trained
    checkpoint first, then waits, then reuses what the other one wrote."""
    root, runs, reference = pair
    _clear(root, runs)
    evaluate_run(runs["rkdo"])  # computes the shared file
    shared_dir = root / "digits" / "full" / UNTRAINED_DIR
    (shared,) = shared_dir.glob("*.json")
    saved = read_json(shared)
    shared.unlink()
    for f in (runs["icon"] / "metrics").glob("*.json"):
        f.unlink()
    fd = os.open(shared.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)   # "the other run" is busy with epoch 0
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", evaluate_run(runs["icon"])))
    t.start()
    try:
        deadline = time.monotonic() + 300
        while not metrics_path(runs["icon"], 1).exists():
            assert t.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        assert not metrics_path(runs["icon"], 0).exists()  # epoch 0 waits
        write_json_atomic(shared, saved)                      # "the other run" finishes
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    t.join(300)
    got = out["r"]
    assert [r["epoch"] for r in got] == [0, 1]
    assert got[0]["untrained_shared_from"] == "rkdo"
    assert _own(got[0]) == _own(reference["icon"][0])


@pytest.mark.parametrize("protocol, n, kind", [("paper", 100, "first"), ("full", 100, "stratified"),
                                               ("full", None, "all"), ("paper", 10**6, "all")])
def test_eval_indices(protocol, n, kind):
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(1).permutation(500)]
    cfg = RunConfig.preset(protocol, eval_images=n)
    idx, got = eval_indices(cfg, labels)
    assert got == kind
    if kind == "first":
        assert idx.tolist() == list(range(100))
    elif kind == "all":
        assert idx.tolist() == list(range(500))
    else:
        assert np.bincount(labels[idx]).tolist() == [10] * 10  # 10 of each class
        assert np.array_equal(idx, np.sort(idx)) and len(set(idx.tolist())) == 100
        assert np.array_equal(idx, ev.probe_train_indices(labels, 100))
