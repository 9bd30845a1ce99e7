"""The encoder metrics of rkdo_core.metrics (CV linear probe, DINO weighted k-NN, cosine
leave-one-out k-NN) against brute-force references written here with explicit loops."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from rkdo_core.metrics import (
    PROBE_CS,
    knn_weighted_accuracy,
    knn_weighted_predictions,
    linear_probe_cv,
    neighborhood_accuracy,
    neighborhood_accuracy_cosine,
)

# ---- weighted k-NN (DINO eval_knn) -----------------------------------------------------


def _knn_weighted_bruteforce(train, train_y, test, k, temperature, num_classes):
    """Every similarity and every vote with Python loops (float64)."""
    preds = []
    for q in test:
        qn = q / math.sqrt(sum(v * v for v in q))
        sims = []
        for j, x in enumerate(train):
            xn = x / math.sqrt(sum(v * v for v in x))
            sims.append((float(sum(a * b for a, b in zip(qn, xn))), j))
        sims.sort(key=lambda s: -s[0])
        votes = [0.0] * num_classes
        for sim, j in sims[:k]:
            votes[int(train_y[j])] += math.exp(sim / temperature)
        preds.append(max(range(num_classes), key=lambda c: (votes[c], -c)))
    return np.array(preds)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 20])
def test_knn_weighted_matches_bruteforce(seed, k):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(60, 6))
    train_y = rng.integers(0, 4, size=60)
    test = rng.normal(size=(25, 6))
    test_y = rng.integers(0, 4, size=25)
    ref = _knn_weighted_bruteforce(train, train_y, test, k, 0.07, 4)
    pred = knn_weighted_predictions(train, train_y, test, k=k, temperature=0.07,
                                    dtype="float64")
    np.testing.assert_array_equal(pred, ref)
    assert knn_weighted_accuracy(train, train_y, test, test_y, k=k, dtype="float64") \
        == pytest.approx(float(np.mean(ref == test_y)))
    # float32 (DINO's precision, the default) agrees on data without near-ties
    np.testing.assert_array_equal(knn_weighted_predictions(train, train_y, test, k=k), ref)


def test_knn_weighted_temperature_changes_votes():
    # Query nearer one class-0 point, but two class-1 points are almost as near: a cold
    # temperature lets the nearest win, a hot one lets the majority win.
    train = np.array([[1.0, 0.0], [0.9, 0.5], [0.9, -0.5]])
    train_y = np.array([0, 1, 1])
    test = np.array([[1.0, 0.05]])
    assert knn_weighted_predictions(train, train_y, test, k=3, temperature=0.01)[0] == 0
    assert knn_weighted_predictions(train, train_y, test, k=3, temperature=10.0)[0] == 1
    ref = _knn_weighted_bruteforce(train, train_y, test, 3, 0.01, 2)
    assert ref[0] == 0


def test_knn_weighted_chunked_equals_unchunked():
    rng = np.random.default_rng(3)
    train = torch.from_numpy(rng.normal(size=(300, 16)))
    train_y = torch.from_numpy(rng.integers(0, 10, size=300))
    test = rng.normal(size=(101, 16))
    full = knn_weighted_predictions(train, train_y, test, chunk_size=1024)
    for chunk in (1, 7, 100, 101):
        np.testing.assert_array_equal(
            knn_weighted_predictions(train, train_y, test, chunk_size=chunk), full)


def test_knn_weighted_is_scale_invariant_and_validates():
    rng = np.random.default_rng(4)
    train, train_y = rng.normal(size=(50, 5)), rng.integers(0, 3, size=50)
    test, test_y = rng.normal(size=(20, 5)), rng.integers(0, 3, size=20)
    a = knn_weighted_accuracy(train, train_y, test, test_y, k=5)
    scale = rng.uniform(0.1, 10, size=(50, 1))
    assert knn_weighted_accuracy(train * scale, train_y, test * 3, test_y, k=5) == a
    with pytest.raises(ValueError, match="k must"):
        knn_weighted_accuracy(train, train_y, test, test_y, k=51)
    with pytest.raises(ValueError, match="num_classes"):
        knn_weighted_accuracy(train, train_y, test, test_y, num_classes=2)
    with pytest.raises(ValueError, match="all-zero rows"):
        knn_weighted_accuracy(np.zeros((50, 5)), train_y, test, test_y)
    with pytest.raises(ValueError, match="temperature"):
        knn_weighted_accuracy(train, train_y, test, test_y, temperature=0)


# ---- cosine leave-one-out k-NN ----------------------------------------------------------


def _cosine_knn_bruteforce(x, y, k):
    n = len(x)
    fracs = []
    for i in range(n):
        sims = []
        for j in range(n):
            if j != i:
                cos = float(x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])))
                sims.append((-cos, j))
        sims.sort()
        fracs.append(np.mean([y[j] == y[i] for _, j in sims[:k]]))
    return float(np.mean(fracs))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 5])
def test_cosine_neighborhood_matches_bruteforce(seed, k):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 4))
    y = rng.integers(0, 3, size=40)
    assert neighborhood_accuracy_cosine(x, y, k=k) == pytest.approx(_cosine_knn_bruteforce(x, y, k))


def test_cosine_neighborhood_is_rescaling_invariant_euclidean_is_not():
    # Point 0 (class 0) points the same way as point 1 (class 0) but is 10x longer; point 2
    # (class 1) has another direction but sits right next to point 0 in Euclidean distance.
    x = np.array([[10.0, 0.0], [1.0, 0.0], [9.0, 3.0], [0.0, 1.0]])
    y = np.array([0, 0, 1, 1])
    assert neighborhood_accuracy(x, y, k=1) == pytest.approx(0.0)
    assert neighborhood_accuracy_cosine(x, y, k=1) == pytest.approx(0.75)
    rescaled = x * np.array([[0.1], [7.0], [2.0], [0.5]])
    assert neighborhood_accuracy_cosine(rescaled, y, k=1) == neighborhood_accuracy_cosine(x, y, 1)
    assert neighborhood_accuracy(rescaled, y, k=1) != neighborhood_accuracy(x, y, k=1)
    rng = np.random.default_rng(5)
    xr, yr = rng.normal(size=(60, 8)), rng.integers(0, 4, size=60)
    sr = rng.uniform(0.01, 100.0, size=(60, 1))
    assert neighborhood_accuracy_cosine(xr * sr, yr) == neighborhood_accuracy_cosine(xr, yr)


def test_cosine_neighborhood_keeps_the_leave_one_out_rule():
    # Duplicated directions of different classes: each must see the other, not itself.
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    y = np.array([0, 1, 2, 2])
    assert neighborhood_accuracy_cosine(x, y, k=1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="all-zero rows"):
        neighborhood_accuracy_cosine(np.zeros((4, 2)), y)


# ---- cross-validated linear probe -------------------------------------------------------


def _data(n=160, d=12, k=3, seed=0, sep=1.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    centers = rng.normal(size=(k, d)) * sep
    x = centers[y] + rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d)
    return x, y


def _probe_by_hand(x, y, x_test, y_test, cs, folds, seed, max_iter):
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(skf.split(x, y))
    means = []
    for c in cs:
        scores = []
        for tr, va in splits:
            scaler = StandardScaler().fit(x[tr])
            clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
            clf.fit(scaler.transform(x[tr]), y[tr])
            scores.append(np.mean(clf.predict(scaler.transform(x[va])) == y[va]))
        means.append(float(np.mean(scores)))
    best = max(range(len(cs)), key=lambda i: (means[i], -i))  # first maximum
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=cs[best], max_iter=max_iter, random_state=seed)
    clf.fit(scaler.transform(x), y)
    acc = float(np.mean(clf.predict(scaler.transform(x_test)) == y_test))
    return cs[best], acc, means


@pytest.mark.parametrize("seed", [7])
def test_probe_cv_matches_hand_written_loop(seed):
    x, y = _data(seed=seed)
    x_test, y_test = _data(n=80, seed=seed + 100)
    cs = [1e-3, 1e-2, 1e-1, 1.0, 10.0]
    res = linear_probe_cv(x, y, x_test, y_test, Cs=cs, folds=3, seed=seed, max_iter=5000)
    c_ref, acc_ref, means = _probe_by_hand(x, y, x_test, y_test, cs, 3, seed, 5000)
    assert res.C == c_ref
    assert res.accuracy == acc_ref
    assert [res.cv_scores[c] for c in cs] == pytest.approx(means, abs=1e-12)
    assert res.converged and res.messages == () and res.cv_unconverged_fits == 0
    assert 0 < res.n_iter < res.max_iter
    assert res.to_dict()["C"] == c_ref


def test_probe_cv_is_deterministic_and_order_free():
    x, y = _data(seed=1)
    x_test, y_test = _data(n=60, seed=2)
    a = linear_probe_cv(x, y, x_test, y_test, Cs=[10.0, 0.01, 1.0], folds=3, seed=3)
    b = linear_probe_cv(torch.from_numpy(x), torch.from_numpy(y), x_test, y_test,
                        Cs=[0.01, 1.0, 10.0], folds=3, seed=3)
    assert a == b


def test_probe_cv_reports_non_convergence():
    # Well-separated classes at a large C need many lbfgs iterations; max_iter=2 cannot do it.
    x, y = _data(n=120, d=20, k=3, seed=4, sep=4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = linear_probe_cv(x, y, x, y, Cs=[100.0], folds=3, max_iter=2)
    assert res.converged is False
    assert res.n_iter == 2
    assert len(res.messages) == 1 and "iter" in res.messages[0].lower()
    assert res.cv_unconverged_fits == 3
    # ... and it is not swallowed: one summarising ConvergenceWarning reaches the caller
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(conv) == 1 and "did NOT converge" in str(conv[0].message)
    with pytest.warns(ConvergenceWarning, match="did NOT converge"):
        linear_probe_cv(x, y, x, y, Cs=[100.0], folds=3, max_iter=2)


def test_probe_cv_default_grid_and_validation():
    assert len(PROBE_CS) == 10 and PROBE_CS[0] == pytest.approx(1e-3)
    assert PROBE_CS[-1] == pytest.approx(1e2)
    x, y = _data(n=40, seed=5)
    with pytest.raises(ValueError, match="folds"):
        linear_probe_cv(x, y, x, y, folds=1)
    with pytest.raises(ValueError, match="Cs"):
        linear_probe_cv(x, y, x, y, Cs=[0.0, 1.0])
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe_cv(x, np.zeros(40, dtype=int), x, y)
    y_rare = y.copy()
    y_rare[:] = 0
    y_rare[:2] = 1
    with pytest.raises(ValueError, match="folds=5 needs at least 5"):
        linear_probe_cv(x, y_rare, x, y)
    with pytest.raises(ValueError, match="columns"):
        linear_probe_cv(x, y, x[:, :3], y)
