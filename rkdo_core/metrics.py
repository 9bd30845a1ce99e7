"""Evaluation metrics of the paper (docs/method.md §3), pure functions of (features, labels).

Inputs may be numpy arrays or torch tensors: features (N, D) float, labels (N,) int.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


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


# ---- metrics that measure the encoder (beyond the paper's protocol) ----------------------
#
# The functions above are the authors' protocol and stay exactly as it is. The ones below
# are better-posed measurements of the same encoder: a linear probe whose regularisation is
# chosen by cross-validation (and that says when it did not converge), DINO's weighted k-NN
# classifier, and the paper's leave-one-out k-NN on cosine similarity.

#: Default grid of inverse regularisation strengths for :func:`linear_probe_cv`.
PROBE_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-3, 2, 10))


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe_cv`.

    ``n_iter`` and ``converged`` describe the final refit on all train features;
    ``messages`` holds the text of every ConvergenceWarning of that refit and
    ``cv_unconverged_fits`` counts the cross-validation fits that raised one.
    ``cv_scores`` maps each C to its mean validation accuracy over the folds.
    """

    accuracy: float
    C: float
    n_iter: int
    max_iter: int
    converged: bool
    messages: tuple[str, ...]
    cv_unconverged_fits: int
    cv_scores: dict[float, float]
    folds: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _probe_pipeline(C: float, max_iter: int, seed: int) -> Pipeline:
    return Pipeline([("scale", StandardScaler()),
                     ("clf", LogisticRegression(C=C, max_iter=max_iter, random_state=seed))])


def _is_convergence(w: warnings.WarningMessage) -> bool:
    return issubclass(w.category, ConvergenceWarning)


def _reemit(records: list[warnings.WarningMessage]) -> None:
    """Re-issue recorded warnings other than ConvergenceWarning (record=True must not eat
    unrelated warnings)."""
    for w in records:
        if not _is_convergence(w):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _probe_inputs(train_features, train_labels, test_features, test_labels, Cs):
    """The probes' checked inputs: (x, y, x_test, y_test, sorted Cs); ValueError naming the
    argument for mismatched columns or Cs that are not distinct finite numbers > 0."""
    x, y = _check(train_features, train_labels, "train_features")
    x_test, y_test = _check(test_features, test_labels, "test_features")
    if x_test.shape[1] != x.shape[1]:
        raise ValueError(f"test_features must have {x.shape[1]} columns like train_features; "
                         f"got {x_test.shape[1]}")
    cs = sorted(float(c) for c in Cs)
    if not cs or not all(np.isfinite(c) and c > 0 for c in cs) or len(set(cs)) != len(cs):
        raise ValueError(f"Cs must be a non-empty list of distinct finite numbers > 0; "
                         f"got Cs={list(Cs)}")
    return x, y, x_test, y_test, cs


def linear_probe_cv(train_features, train_labels, test_features, test_labels, *,
                    Cs: Sequence[float] = PROBE_CS, folds: int = 5, seed: int = 42,
                    max_iter: int = 10_000) -> ProbeResult:
    """Linear probe with C chosen by stratified K-fold cross-validation on the train set.

    Pipeline: ``StandardScaler`` (fitted on train features only) → multinomial
    ``LogisticRegression`` (L2, lbfgs). C is chosen from ``Cs`` by the mean validation
    accuracy over ``StratifiedKFold(folds, shuffle=True, random_state=seed)`` — the scaler is
    refitted inside every fold, so no validation statistics leak into training — ties going to
    the smallest C (the strongest regularisation); the pipeline is then refitted on all train
    features with that C and scored on the test set. This is the usual "linear evaluation"
    of self-supervised learning with the L2 regularisation selected on train data only
    (Kolesnikov et al. 2019; the SimCLR transfer protocol of Chen et al. 2020), unlike the
    paper's fixed C = 1 on unscaled features.

    ``GridSearchCV`` over the whole pipeline is used rather than ``LogisticRegressionCV``:
    the latter standardises once outside its folds when put in a pipeline (validation
    statistics leak into the scaler), and its scoring/attribute API is in flux
    (scikit-learn ≥ 1.8 deprecations); ``GridSearchCV`` reproduces a hand-written loop
    over (C, fold) exactly. Fits run sequentially, so every warning is caught here.

    ConvergenceWarning is never silenced: all warnings are recorded
    (``warnings.catch_warnings(record=True)``); those of the final fit set
    ``converged=False`` and fill ``messages``, those of the CV fits are counted, and one
    summarising ConvergenceWarning is re-issued if any fit did not converge. Other warnings
    are re-issued as they were. Deterministic for a given ``seed``.

    Returns a :class:`ProbeResult`.
    """
    x, y, x_test, y_test, cs = _probe_inputs(train_features, train_labels, test_features,
                                             test_labels, Cs)
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got folds={folds!r}")
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got max_iter={max_iter!r}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"train_labels must hold at least 2 classes; got {classes.tolist()}")
    if counts.min() < folds:
        raise ValueError(f"folds={folds} needs at least {folds} train samples of every class "
                         f"for stratified folds; class {int(classes[counts.argmin()])} has "
                         f"{int(counts.min())}. Use fewer folds or more train features.")

    search = GridSearchCV(_probe_pipeline(1.0, max_iter, seed), {"clf__C": cs},
                          scoring="accuracy",
                          cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed),
                          refit=False, n_jobs=None, error_score="raise")
    with warnings.catch_warnings(record=True) as cv_records:
        warnings.simplefilter("always")
        search.fit(x, y)
    means = np.asarray(search.cv_results_["mean_test_score"], dtype=np.float64)
    best = int(np.argmax(means))  # first maximum: the smallest C among ties
    best_c = cs[best]

    final = _probe_pipeline(best_c, max_iter, seed)
    with warnings.catch_warnings(record=True) as fit_records:
        warnings.simplefilter("always")
        final.fit(x, y)
    accuracy = float(final.score(x_test, y_test))
    n_iter = int(np.max(final.named_steps["clf"].n_iter_))
    messages = tuple(str(w.message) for w in fit_records if _is_convergence(w))
    cv_unconverged = sum(_is_convergence(w) for w in cv_records)
    converged = not messages and n_iter < max_iter
    _reemit(list(cv_records) + list(fit_records))
    if not converged or cv_unconverged:
        warnings.warn(f"linear_probe_cv: the final fit (C={best_c:g}) "
                      f"{'converged' if converged else 'did NOT converge'} in {n_iter} of "
                      f"max_iter={max_iter} iterations; {cv_unconverged} of "
                      f"{len(cs) * folds} cross-validation fits did not converge",
                      ConvergenceWarning, stacklevel=2)
    return ProbeResult(accuracy=accuracy, C=best_c, n_iter=n_iter, max_iter=int(max_iter),
                       converged=converged, messages=messages,
                       cv_unconverged_fits=int(cv_unconverged),
                       cv_scores={c: float(m) for c, m in zip(cs, means)}, folds=int(folds),
                       seed=int(seed))


def linear_probe_accuracies(train_features, train_labels, test_features, test_labels, *,
                            Cs: Sequence[float] = PROBE_CS, seed: int = 42,
                            max_iter: int = 10_000) -> dict[float, tuple[float, bool]]:
    """Test accuracy of :func:`linear_probe_cv`'s pipeline at every C of ``Cs``, no CV:
    for each C the same ``StandardScaler`` → ``LogisticRegression`` pipeline is fitted on
    all train features and scored on the test set. Returns ``{C: (accuracy, converged)}``.
    At the C that :func:`linear_probe_cv` chose (same ``seed`` and ``max_iter``), the
    accuracy is exactly its ``accuracy`` (the same deterministic fit). ConvergenceWarnings
    are not re-issued: ``converged`` says whether each fit converged."""
    x, y, x_test, y_test, cs = _probe_inputs(train_features, train_labels, test_features,
                                             test_labels, Cs)
    if len(np.unique(y)) < 2:
        raise ValueError(f"train_labels must hold at least 2 classes; got {np.unique(y)}")
    out: dict[float, tuple[float, bool]] = {}
    for c in cs:
        pipe = _probe_pipeline(c, max_iter, seed)
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            pipe.fit(x, y)
        n_iter = int(np.max(pipe.named_steps["clf"].n_iter_))
        _reemit(list(records))
        converged = not any(_is_convergence(w) for w in records) and n_iter < max_iter
        out[c] = (float(pipe.score(x_test, y_test)), converged)
    return out


def _unit_rows(x: np.ndarray, name: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero rows, which have no "
                         f"direction for cosine similarity; all rows must be non-zero")
    return x / norms


def knn_weighted_predictions(train_features, train_labels, test_features, *, k: int = 20,
                             temperature: float = 0.07, num_classes: int | None = None,
                             chunk_size: int = 1024, dtype: str = "float32") -> np.ndarray:
    """Predictions of the weighted k-NN classifier of :func:`knn_weighted_accuracy`."""
    x, y = _check(train_features, train_labels, "train_features")
    x_test = _as_numpy(test_features).astype(np.float64, copy=False)
    if x_test.ndim != 2 or x_test.shape[1] != x.shape[1]:
        raise ValueError(f"test_features must have shape (M, {x.shape[1]}); got {x_test.shape}")
    if not np.isfinite(x_test).all():
        raise ValueError("test_features contain NaN or infinite values")
    n = x.shape[0]
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, N_train] = [1, {n}]; got k={k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got temperature={temperature}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got chunk_size={chunk_size!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got dtype={dtype!r}")
    if y.min() < 0:
        raise ValueError(f"train_labels must be non-negative class indices; got min {y.min()}")
    needed = int(y.max()) + 1
    if num_classes is None:
        num_classes = needed
    elif num_classes < needed:
        raise ValueError(f"num_classes must be >= max(train_labels) + 1 = {needed}; "
                         f"got num_classes={num_classes}")
    bank_t = np.ascontiguousarray(_unit_rows(x, "train_features").astype(dtype).T)  # (D, N)
    queries = _unit_rows(x_test, "test_features").astype(dtype)
    preds = np.zeros(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], chunk_size):
        sim = queries[start:start + chunk_size] @ bank_t  # (chunk, N) cosine similarities
        rows = np.arange(sim.shape[0])[:, None]
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # the k most similar, unordered
        top_sim = sim[rows, top]
        order = np.argsort(-top_sim, axis=1, kind="stable")  # most similar first
        top, top_sim = top[rows, order], top_sim[rows, order]
        # exp((sim − max sim) / T): every vote of a row scaled by the same positive factor
        # exp(−max/T), so the argmax is DINO's, without overflow at small T
        weights = np.exp((top_sim - top_sim[:, :1]) / np.asarray(temperature, dtype=dtype))
        votes = np.zeros((sim.shape[0], num_classes), dtype=weights.dtype)
        np.add.at(votes, (np.broadcast_to(rows, top.shape), y[top]), weights)
        preds[start:start + sim.shape[0]] = votes.argmax(axis=1)  # ties: smallest class
    return preds


def knn_weighted_accuracy(train_features, train_labels, test_features, test_labels, *,
                          k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                          chunk_size: int = 1024, dtype: str = "float32") -> float:
    """Top-1 accuracy of the weighted k-NN classifier of DINO's ``eval_knn``.

    Caron et al. 2021 ("Emerging Properties in Self-Supervised Vision Transformers",
    ``eval_knn.py``), after Wu et al. 2018 (instance discrimination, memory bank): both
    feature sets are L2-normalised; each test feature's cosine similarity to every train
    feature is computed, its ``k`` most similar train features vote for their class with
    weight ``exp(sim / temperature)``, and the class with the largest summed vote is the
    prediction (ties: the smallest class index, where DINO's unstable sort is arbitrary).
    The weights are computed as ``exp((sim − max_sim) / T)``, the same votes up to one
    positive factor per test row (same prediction), which cannot overflow for small T.
    Defaults k = 20, T = 0.07 are DINO's. Test features are processed ``chunk_size`` rows at a
    time, so at most chunk_size × N_train similarities exist at once (1,024 × 60,000 float32
    = 246 MB). Computed in ``dtype`` ("float32" as DINO, or "float64"), with numpy only.
    """
    pred = knn_weighted_predictions(train_features, train_labels, test_features, k=k,
                                    temperature=temperature, num_classes=num_classes,
                                    chunk_size=chunk_size, dtype=dtype)
    y_test = _as_numpy(test_labels).astype(np.int64, copy=False)
    if y_test.shape != pred.shape:
        raise ValueError(f"test_labels must have shape {pred.shape} to match test_features; "
                         f"got {y_test.shape}")
    if y_test.size == 0:
        raise ValueError("test_features is empty; accuracy needs at least one test sample")
    return float(np.mean(pred == y_test))


def neighborhood_accuracy_cosine(features, labels, k: int = 5) -> float:
    """The paper's leave-one-out k-NN label agreement (:func:`neighborhood_accuracy`) with
    cosine similarity: every feature vector is L2-normalised first, then the very same rule
    runs (k + 1 neighbours, the point itself dropped, the farthest of k + 1 dropped instead
    when duplicates push it out). On unit vectors ``‖a − b‖² = 2 − 2·cos(a, b)``, so the
    Euclidean ranking is exactly the cosine-similarity ranking. Invariant to rescaling each
    feature vector by a positive number; all-zero rows raise ValueError.
    """
    x, y = _check(features, labels)
    return neighborhood_accuracy(_unit_rows(x, "features"), y, k=k)
