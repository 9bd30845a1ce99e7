"""Evaluation metrics of the paper (PAPER.md §3), pure functions of (features, labels).

Inputs may be numpy arrays or torch tensors: features (N, D) float, labels (N,) int.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check(features, labels, name: str = "features") -> tuple[np.ndarray, np.ndarray]:
    f = _as_numpy(features).astype(np.float64, copy=False)
    y = _as_numpy(labels).astype(np.int64, copy=False)
    if f.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D); got {f.shape}")
    if y.shape != (f.shape[0],):
        raise ValueError(f"labels must have shape ({f.shape[0]},) to match {name}; got {y.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f, y


def linear_eval_accuracy(features, labels, *, test_features=None, test_labels=None,
                         seed: int = 42) -> float:
    """Logistic-regression ("linear eval") accuracy.

    Without a test set: the paper's seeded 80/20 split of (features, labels) (not
    stratified, as in the reference). With ``test_features``/``test_labels``: trained on
    all of (features, labels), scored on the test set (the full protocol).
    """
    x, y = _check(features, labels)
    if (test_features is None) != (test_labels is None):
        raise ValueError("give both test_features and test_labels, or neither")
    if test_features is None:
        x, x_test, y, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    else:
        x_test, y_test = _check(test_features, test_labels, "test_features")
    if len(np.unique(y)) < 2:
        # A classifier cannot be fitted on one class; it predicts that class everywhere.
        return float(np.mean(y_test == y[0]))
    clf = LogisticRegression(max_iter=1000, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x, y)
    return float(clf.score(x_test, y_test))


def clustering_scores(features, labels, *, seed: int = 42, n_init: int = 10) -> tuple[float, float]:
    """(NMI, ARI) of k-means with k = number of classes present in ``labels``."""
    x, y = _check(features, labels)
    k = len(np.unique(y))
    pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return float(normalized_mutual_info_score(y, pred)), float(adjusted_rand_score(y, pred))


def neighborhood_accuracy(features, labels, k: int = 5) -> float:
    """Mean fraction of each point's k nearest neighbours (itself excluded) sharing its label.

    Euclidean distance; on L2-normalised embeddings this is the cosine-similarity ranking.
    """
    x, y = _check(features, labels)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, N-1] = [1, {n - 1}]; got k={k}")
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    # Drop the point itself. With duplicate points it need not be in column 0, and
    # (with k+1 ties) it may be absent: then drop the farthest of the k+1 instead.
    own = idx == np.arange(n)[:, None]
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    neighbours = idx[~own].reshape(n, k)
    return float(np.mean(y[neighbours] == y[:, None]))


def all_metrics(features, labels, *, seed: int = 42, train_features=None,
                train_labels=None, k: int = 5) -> dict[str, float]:
    """The four metrics of Tables 2 and 4. With train features the probe is trained on them
    and scored on (features, labels) (full protocol); otherwise the paper's 80/20 split."""
    if train_features is not None:
        lin = linear_eval_accuracy(train_features, train_labels, test_features=features,
                                   test_labels=labels, seed=seed)
    else:
        lin = linear_eval_accuracy(features, labels, seed=seed)
    nmi, ari = clustering_scores(features, labels, seed=seed)
    return {"linear_eval": lin, "nmi": nmi, "ari": ari,
            "neighborhood_acc": neighborhood_accuracy(features, labels, k=k)}
