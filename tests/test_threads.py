"""A run's thread count holds for every native thread pool, not only torch's.

`thread_setting(n)` (training/train.py) limits numpy's/scipy's OpenBLAS and scikit-learn's
OpenMP pools to ``n`` as well (threadpoolctl). Without it a grid of two 1-thread runs on a
2-core CPU ran the evaluation's logistic probes with two BLAS threads each: oversubscribed,
a full-protocol checkpoint's probe fits took ~58 s instead of ~4 s (AMD EPYC, 2 cores).
Converged fits must not change: every metric and the t-SNE map are compared bit for bit with
1 and 2 threads on data where the probes converge. (An lbfgs fit stopped unconverged at
max_iter — the paper's C = 1 probe on unscaled 512-d features — keeps BLAS rounding in its
last iterate; that one number now depends on the run's ``threads`` instead of the
machine's core count.)"""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rkdo_core.metrics import all_metrics, knn_weighted_accuracy, linear_probe_cv
from rkdo_core.training.diagnostics import PROJECTIONS
from rkdo_core.training.train import thread_setting


def _pools() -> dict[str, int]:
    return {f"{p['internal_api']}:{p['filepath']}": p["num_threads"] for p in threadpool_info()}


def test_thread_setting_limits_every_native_pool_and_restores_it():
    # two threads everywhere first (make test's workers start with OMP_NUM_THREADS=1)
    with threadpool_limits(limits=2):
        before = _pools()
        assert any(k.startswith(("openblas", "mkl")) for k in before), before
        with thread_setting(1):
            assert set(_pools().values()) == {1}
        assert _pools() == before
        with thread_setting(None):  # None: nothing is touched
            assert _pools() == before


def _data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 96))
    y = rng.integers(0, 10, size=700)
    x = centres[y] + 1.5 * rng.normal(size=(700, 96))
    return x[:500], y[:500], x[500:], y[500:]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_metrics_are_bit_identical_with_one_and_two_native_threads():
    xtr, ytr, xte, yte = _data()
    out = {}
    for n in (2, 1):
        with threadpool_limits(limits=n):
            probe = linear_probe_cv(xtr, ytr, xte, yte, Cs=(0.01, 1.0, 100.0), folds=3)
            out[n] = (all_metrics(xte, yte, seed=42, train_features=xtr, train_labels=ytr),
                      all_metrics(xte, yte, seed=42),
                      (probe.accuracy, probe.C, probe.n_iter, probe.cv_scores),
                      knn_weighted_accuracy(xtr, ytr, xte, yte),
                      PROJECTIONS["tsne"](xte, 0))
    for a, b in zip(out[2][:4], out[1][:4]):
        assert a == b
    np.testing.assert_array_equal(out[2][4], out[1][4])
