"""Metrics against brute-force implementations and exactly-known cases."""

import numpy as np
import pytest
import torch

from rkdo_core.metrics import (
    all_metrics,
    clustering_scores,
    linear_eval_accuracy,
    neighborhood_accuracy,
)


def _blobs(n_per=20, k=4, d=5, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 10
    x = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat(np.arange(k), n_per)
    return x, y


def _knn_bruteforce(x, y, k):
    n = len(x)
    fracs = []
    for i in range(n):
        d = [(float(np.sum((x[i] - x[j]) ** 2)), j) for j in range(n) if j != i]
        d.sort()
        fracs.append(np.mean([y[j] == y[i] for _, j in d[:k]]))
    return float(np.mean(fracs))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 5])
def test_neighborhood_accuracy_matches_bruteforce(seed, k):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    assert neighborhood_accuracy(x, y, k=k) == pytest.approx(_knn_bruteforce(x, y, k))


def test_neighborhood_accuracy_excludes_self_with_duplicates():
    # Two identical points of different classes: each must see the other, not itself.
    x = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0], [10.0, 10.1]])
    y = np.array([0, 1, 2, 2])
    assert neighborhood_accuracy(x, y, k=1) == pytest.approx(0.5)


def test_perfectly_separated_clusters_score_one():
    x, y = _blobs()
    assert linear_eval_accuracy(x, y) == 1.0
    nmi, ari = clustering_scores(x, y)
    assert nmi == pytest.approx(1.0) and ari == pytest.approx(1.0)
    assert neighborhood_accuracy(x, y) == 1.0
    assert all_metrics(x, y) == pytest.approx(
        {"linear_eval": 1.0, "nmi": 1.0, "ari": 1.0, "neighborhood_acc": 1.0})


def test_linear_eval_uses_seeded_80_20_split():
    # Features carry no signal: accuracy is that of the classifier on the held-out 20 %,
    # which is a deterministic function of the seed.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(100, 4)), rng.integers(0, 2, size=100)
    a1, a2 = linear_eval_accuracy(x, y, seed=7), linear_eval_accuracy(x, y, seed=7)
    assert a1 == a2
    # 20 test points: the accuracy is a multiple of 1/20.
    assert (a1 * 20) == pytest.approx(round(a1 * 20))


def test_linear_eval_with_explicit_test_set():
    x, y = _blobs(seed=2)
    xt, yt = _blobs(seed=2)
    # Relabel the test set: a probe trained on (x, y) gets everything wrong on it.
    assert linear_eval_accuracy(x, y, test_features=xt, test_labels=(yt + 1) % 4) == 0.0
    assert linear_eval_accuracy(x, y, test_features=xt, test_labels=yt) == 1.0
    with pytest.raises(ValueError, match="both"):
        linear_eval_accuracy(x, y, test_features=xt)


def test_clustering_matches_sklearn_definitions_on_known_partition():
    # Two true classes, k-means finds the two blobs, but one blob mixes the labels.
    x = np.array([[0.0], [0.1], [0.2], [0.3], [10.0], [10.1], [10.2], [10.3]])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    nmi, ari = clustering_scores(x, y)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    pred = (x[:, 0] > 5).astype(int)
    assert nmi == pytest.approx(normalized_mutual_info_score(y, pred))
    assert ari == pytest.approx(adjusted_rand_score(y, pred))


def test_accepts_tensors_and_rejects_bad_input():
    x, y = _blobs()
    assert neighborhood_accuracy(torch.tensor(x), torch.tensor(y)) == 1.0
    with pytest.raises(ValueError, match="labels must have shape"):
        neighborhood_accuracy(x, y[:-1])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clustering_scores(bad, y)
    with pytest.raises(ValueError, match="k must"):
        neighborhood_accuracy(x[:3], y[:3], k=5)
