"""Section 6 of the paper on fields small enough to compute exactly (docs/method.md §5, §6.2).

A *field* is an (n, n) row-stochastic float64 array: row i is a conditional distribution
p(·|i) over the n points. Everything here is numpy/scipy in float64, so the paper's
inequalities can be checked with a tolerance for floating-point error only.

The chain (eqs. 1–3), for t = 1..T::

    p(t)  = (1 − α) p(t−1) + α q(t−1)          recursion, eqs. 2–3
    L̂(t) = KL(p(t) || q(t−1))                 Lemma 1's left-hand side
    q(t)  = family.step(p(t), state(t−1))       the inner minimisation, warm-started
    L(t)  = 1/n Σ_i KL(p(t)(·|i) || q(t)(·|i))  eq. 1

and L(0) = KL(p(0) || q(0)) with q(0) the untrained model. Four inner-step families:

- :class:`Unrestricted` — exact argmin over *all* fields (assumptions A1 + A2). The argmin
  of KL(p || ·) is p itself, so L(t) = 0 for every t ≥ 1 and, because q(t) = p(t), the
  recursion stops moving after one step: p(t) = p(1) = (1 − α) p(0) + α q(0).
- :class:`Capacity` — q(j|i) ∝ exp(u_i · v_j) with learnable d-dimensional embeddings
  (the reference notebook's cross-view similarity z1 z2ᵀ, temperature absorbed), minimised
  to convergence by L-BFGS from the previous embeddings (eq. 14's finite-capacity case).
- :class:`Inexact` — the same family, k plain gradient steps from the previous embeddings
  (eq. 15's inexact inner step).
- :class:`Frozen` — learning rate 0: q(t) = q(0) for ever.

What the checks can and cannot show (docs/method.md §6.2): Lemma 2 needs only that q(t−1) is a
candidate the inner step does not make worse. Every warm-started descent method — and the
frozen model, which does nothing — satisfies it, so Theorem 3's geometric decay says that
the teacher p(t) collapses onto the student, not that the student learned anything. The
common yardstick :meth:`Chain.yardstick` = KL(p(0) || q(t)) scores every q(t) against the
original supervision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp, rel_entr

from .runio import write_json_atomic

#: rows of a field must sum to 1 within this (float64 round-off of a mixture is ~1e-16)
ROW_SUM_ATOL = 1e-9
#: tolerance of every inequality check: floating-point error only, relative to the bound
FP_TOL = 1e-12
#: a KL between nearly equal float64 fields is only known to ~1e-16 absolute; below
#: ROUNDOFF·L(0) a loss value is round-off (it may even print as a tiny negative number)
ROUNDOFF = 1e-15


class TheoryError(ValueError):
    """An invalid argument; the message names the argument, the value and what is allowed."""

    def __init__(self, argument: str, value: Any, allowed: str):
        self.argument = argument
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {argument}={_short(value)}: {allowed}")


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<array shape={value.shape} dtype={value.dtype}>"
    return repr(value)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# ---- validation ------------------------------------------------------------------------
def validate_alpha(alpha: Any, name: str = "alpha") -> float:
    """α of eqs. 2–3 as a float; α ∈ [0, 1] (α = 0 is I-Con's fixed p)."""
    if not _is_number(alpha) or not math.isfinite(alpha) or not 0 <= alpha <= 1:
        raise TheoryError(name, alpha, "must be a number in [0, 1] (0 = I-Con's fixed p)")
    return float(alpha)


def validate_field(p: Any, name: str = "p", *, positive: bool = False) -> np.ndarray:
    """``p`` as an (n, n) float64 row-stochastic array, n ≥ 2; ``positive`` demands p > 0.

    Raises :class:`TheoryError` naming ``name``, the offending value and what is allowed.
    """
    arr = np.asarray(p)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
        raise TheoryError(name, arr, "must be a square (n, n) array with n >= 2")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise TheoryError(name, arr, "must hold real numbers")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise TheoryError(name, arr, "must hold finite numbers only")
    if arr.min() < 0 or (positive and arr.min() <= 0):
        i, j = np.unravel_index(np.argmin(arr), arr.shape)
        need = "> 0" if positive else ">= 0"
        raise TheoryError(f"{name}[{i}, {j}]", float(arr[i, j]),
                          f"every entry must be {need} (a field of probabilities)")
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_ATOL
    if bad.any():
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise TheoryError(f"row {i} of {name}", float(sums[i]),
                          f"every row must sum to 1 (within {ROW_SUM_ATOL:g}); "
                          f"{int(bad.sum())} of {arr.shape[0]} rows do not")
    return arr


def _validate_positive_int(value: Any, name: str, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise TheoryError(name, value, f"must be an integer >= {minimum}")
    return int(value)


# ---- fields, KL and the recursion ------------------------------------------------------
def softmax_field(logits: np.ndarray) -> np.ndarray:
    """Row-softmax of (n, n) logits, computed in log space (stays > 0 for moderate logits)."""
    return np.exp(logits - logsumexp(logits, axis=1, keepdims=True))


def random_field(n: int, rng: np.random.Generator, *, sharpness: float = 1.0) -> np.ndarray:
    """(n, n) field with rows softmax(sharpness · N(0, 1)); strictly positive.

    Large ``sharpness`` gives peaked rows, where Lemma 1's ratio comes closest to its bound.
    """
    _validate_positive_int(n, "n", 2)
    if not _is_number(sharpness) or not 0 <= sharpness <= 30:
        # beyond ~30 the smallest entries underflow and fields stop being strictly positive
        raise TheoryError("sharpness", sharpness, "must be a number in [0, 30]")
    return softmax_field(sharpness * rng.standard_normal((n, n)))


def icon_target(n: int, debias_alpha: float = 0.2) -> np.ndarray:
    """I-Con's fixed supervision p = (1 − a) I + a/n, shape (n, n) (docs/method.md §3)."""
    _validate_positive_int(n, "n", 2)
    if not _is_number(debias_alpha) or not 0 <= debias_alpha <= 1:
        raise TheoryError("debias_alpha", debias_alpha, "must be a number in [0, 1]")
    return (1.0 - debias_alpha) * np.eye(n) + debias_alpha / n


def kl_rows(p: np.ndarray, q: np.ndarray, *, validate: bool = True) -> np.ndarray:
    """KL(p(·|i) || q(·|i)) for every row i, shape (n,). 0·log 0 = 0; p > 0 = q gives inf.

    With ``validate=False`` any arrays are accepted, so a wrong recursion can be run and
    caught by the checks: a negative entry of p gives inf (``scipy.special.rel_entr``).
    """
    if validate:
        p = validate_field(p, "p")
        q = validate_field(q, "q")
        if p.shape != q.shape:
            raise TheoryError("q", q, f"must have the shape of p, {p.shape}")
    return rel_entr(p, q).sum(axis=1)


def kl_field(p: np.ndarray, q: np.ndarray, *, validate: bool = True) -> float:
    """L = 1/n Σ_i KL(p(·|i) || q(·|i)) (eq. 1) for (n, n) fields p, q."""
    return float(kl_rows(p, q, validate=validate).mean())


def mix(p: np.ndarray, q: np.ndarray, alpha: float, *, validate: bool = True) -> np.ndarray:
    """The recursion p̂ = (1 − α) p + α q (eqs. 2–3), (n, n) fields in and out.

    ``validate=False`` skips every check, so that a deliberately wrong recursion (α > 1)
    can be run and shown to break Lemma 1 and Theorem 3.
    """
    if validate:
        alpha = validate_alpha(alpha)
        p = validate_field(p, "p")
        q = validate_field(q, "q")
        if p.shape != q.shape:
            raise TheoryError("q", q, f"must have the shape of p, {p.shape}")
    return (1.0 - alpha) * p + alpha * q


def chi2(p: np.ndarray, q: np.ndarray) -> float:
    """1/n Σ_ij (p_ij − q_ij)² / q_ij; KL(q + c(p − q) || q) ≈ c²·χ²/2 as c → 0."""
    p = validate_field(p, "p")
    q = validate_field(q, "q", positive=True)
    return float(((p - q) ** 2 / q).sum(axis=1).mean())


# ---- the finite-capacity model: q(j|i) ∝ exp(u_i · v_j) --------------------------------
@dataclass(frozen=True)
class Embeddings:
    """Learnable embeddings u (n, d) and v (n, d); their field is row-softmax(u vᵀ).

    The cross-view similarity of the reference notebook (z1 z2ᵀ, docs/method.md §3) with the
    temperature absorbed into the embeddings' norms. Rows include j = i (the positive).
    """

    u: np.ndarray
    v: np.ndarray

    def __post_init__(self) -> None:
        for name in ("u", "v"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
                raise TheoryError(name, arr, "must be an (n, d) array with n >= 2, d >= 1")
            if not np.all(np.isfinite(arr)):
                raise TheoryError(name, arr, "must hold finite numbers only")
            object.__setattr__(self, name, arr)
        if self.u.shape != self.v.shape:
            raise TheoryError("v", self.v, f"must have the shape of u, {self.u.shape}")

    @property
    def n(self) -> int:
        return self.u.shape[0]

    @property
    def d(self) -> int:
        return self.u.shape[1]

    def field(self) -> np.ndarray:
        """q = row-softmax(u vᵀ), shape (n, n) (eq. 4 with τ = 1)."""
        return softmax_field(self.u @ self.v.T)

    def flat(self) -> np.ndarray:
        return np.concatenate([self.u.ravel(), self.v.ravel()])

    @classmethod
    def from_flat(cls, x: np.ndarray, n: int, d: int) -> Embeddings:
        return cls(x[: n * d].reshape(n, d), x[n * d:].reshape(n, d))


def random_embeddings(n: int, d: int, rng: np.random.Generator, *,
                      scale: float = 1.0) -> Embeddings:
    """An untrained model: u, v with i.i.d. N(0, scale²) entries, each (n, d)."""
    _validate_positive_int(n, "n", 2)
    _validate_positive_int(d, "d", 1)
    if not _is_number(scale) or not scale > 0:
        raise TheoryError("scale", scale, "must be a number > 0")
    return Embeddings(scale * rng.standard_normal((n, d)), scale * rng.standard_normal((n, d)))


def embedding_kl_and_grad(p: np.ndarray, emb: Embeddings) -> tuple[float, Embeddings]:
    """KL(p || softmax(u vᵀ)) (eq. 1) and its gradient with respect to (u, v).

    With S = u vᵀ and row sums r_i = Σ_j p_ij: ∂L/∂S = (r_i q_ij − p_ij)/n, hence
    ∂L/∂u = G v and ∂L/∂v = Gᵀ u. r_i = 1 for a field; kept general for unchecked runs.
    """
    logits = emb.u @ emb.v.T
    log_q = logits - logsumexp(logits, axis=1, keepdims=True)
    n = p.shape[0]
    # rel_entr with q = exp(log_q) could underflow to 0 for peaked rows; stay in log space.
    safe_log_p = np.log(np.where(p > 0, p, 1.0))
    loss = float(np.sum(np.where(p != 0, p * (safe_log_p - log_q), 0.0)) / n)
    g = (p.sum(axis=1, keepdims=True) * np.exp(log_q) - p) / n
    return loss, Embeddings(g @ emb.v, g.T @ emb.u)


# ---- inner-step families ---------------------------------------------------------------
State = Any  # np.ndarray (a field) or Embeddings


def field_of(state: State) -> np.ndarray:
    """The (n, n) field q of a model state (a field itself, or embeddings)."""
    return state.field() if isinstance(state, Embeddings) else np.asarray(state, np.float64)


class Family(Protocol):
    """An inner step: from the target p(t) and the previous state, the next state."""

    name: ClassVar[str]

    def step(self, p: np.ndarray, state: State) -> State: ...


def _embeddings_of(state: State, family: str) -> Embeddings:
    if not isinstance(state, Embeddings):
        raise TheoryError("state", state, f"the {family} family needs an Embeddings state")
    return state


@dataclass(frozen=True)
class Unrestricted:
    """A1 + A2: exact argmin over all fields. By Gibbs' inequality it is q = p itself."""

    name: ClassVar[str] = "unrestricted"

    def step(self, p: np.ndarray, state: State) -> np.ndarray:
        return np.array(p, dtype=np.float64, copy=True)


@dataclass(frozen=True)
class Frozen:
    """Learning rate 0: the model never changes, q(t) = q(0) (docs/method.md §6.2)."""

    name: ClassVar[str] = "frozen"

    def step(self, p: np.ndarray, state: State) -> State:
        return state


@dataclass(frozen=True)
class Capacity:
    """Finite capacity (eq. 14): argmin over embeddings of dimension d by L-BFGS, warm-started
    from the previous embeddings and run to convergence (gradient ≤ ``gtol``)."""

    max_iter: int = 5000
    gtol: float = 1e-10
    name: ClassVar[str] = "capacity"

    def __post_init__(self) -> None:
        _validate_positive_int(self.max_iter, "max_iter", 1)
        if not _is_number(self.gtol) or not self.gtol > 0:
            raise TheoryError("gtol", self.gtol, "must be a number > 0")

    def step(self, p: np.ndarray, state: State) -> Embeddings:
        emb = _embeddings_of(state, self.name)
        n, d = emb.n, emb.d

        def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
            loss, grad = embedding_kl_and_grad(p, Embeddings.from_flat(x, n, d))
            return loss, grad.flat()

        # ftol = 0: stop on the gradient (or max_iter), not on a small relative decrease,
        # which would end the search early once L(t) itself is tiny.
        res = minimize(fun, emb.flat(), jac=True, method="L-BFGS-B",
                       options=dict(maxiter=self.max_iter, maxfun=4 * self.max_iter,
                                    ftol=0.0, gtol=self.gtol))
        return Embeddings.from_flat(res.x, n, d)


@dataclass(frozen=True)
class Inexact:
    """Inexact inner step (eq. 15): k plain gradient steps from the previous embeddings.

    The step is on the row-summed KL (n·L) so that ``lr`` does not scale with n.
    """

    k: int = 5
    lr: float = 0.5
    name: ClassVar[str] = "inexact"

    def __post_init__(self) -> None:
        _validate_positive_int(self.k, "k", 0)
        if not _is_number(self.lr) or not math.isfinite(self.lr) or not self.lr > 0:
            raise TheoryError("lr", self.lr, "must be a finite number > 0")

    def step(self, p: np.ndarray, state: State) -> Embeddings:
        emb = _embeddings_of(state, self.name)
        scale = self.lr * emb.n
        for _ in range(self.k):
            _, g = embedding_kl_and_grad(p, emb)
            emb = Embeddings(emb.u - scale * g.u, emb.v - scale * g.v)
        return emb


#: family name -> class (one registry, as rkdo_core.losses.LOSSES)
FAMILIES: dict[str, type] = {c.name: c for c in (Unrestricted, Capacity, Inexact, Frozen)}


def capacity_floor(p: np.ndarray, d: int, rng: np.random.Generator, *, restarts: int = 8,
                   scale: float = 1.0, family: Capacity | None = None
                   ) -> tuple[float, Embeddings]:
    """L* = min over d-dimensional embeddings of KL(p || q) (eq. 14), and its minimiser.

    The problem is not convex in (u, v), so this is the best of ``restarts`` L-BFGS runs
    from random embeddings: an upper estimate of the true L*.
    """
    p = validate_field(p, "p")
    _validate_positive_int(restarts, "restarts", 1)
    family = family or Capacity()
    best: tuple[float, Embeddings] | None = None
    for _ in range(restarts):
        emb = family.step(p, random_embeddings(p.shape[0], d, rng, scale=scale))
        loss = kl_field(p, emb.field())
        if best is None or loss < best[0]:
            best = (loss, emb)
    assert best is not None
    return best


# ---- the chain --------------------------------------------------------------------------
Recursion = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


@dataclass(frozen=True)
class Chain:
    """One run of the recursion, t = 0..T. Arrays are indexed by t.

    p, q: (T+1, n, n) fields. loss: L(t) (eq. 1). loss_hat: L̂(t) = KL(p(t) || q(t−1)),
    NaN at t = 0. loss_exact: KL(p(t) || reference step from state(t−1)) when a reference
    family was given (the exact inner step that eq. 15's ε_t is measured against), else NaN.
    label: how checks name the chain (the family's name unless given).
    """

    family: str
    alpha: float
    p: np.ndarray
    q: np.ndarray
    loss: np.ndarray
    loss_hat: np.ndarray
    loss_exact: np.ndarray
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.family)

    @property
    def steps(self) -> int:
        return len(self.loss) - 1

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.steps + 1)

    def bound(self) -> np.ndarray:
        """Theorem 3's right-hand side (1 − α)^t L(0), shape (T+1,)."""
        return (1.0 - self.alpha) ** self.t * self.loss[0]

    def drift(self) -> np.ndarray:
        """KL(p(0) || p(t)): how far the supervision has moved from the original one."""
        return np.array([kl_field(self.p[0], pt, validate=False) for pt in self.p])

    def yardstick(self) -> np.ndarray:
        """KL(p(0) || q(t)): every q(t) scored on the original supervision (I-Con's loss)."""
        return np.array([kl_field(self.p[0], qt, validate=False) for qt in self.q])

    def epsilon(self) -> np.ndarray:
        """ε_t = L(t) − L_exact(t) (eq. 15): the inner step's error against the exact step
        from the same warm start, shape (T+1,), NaN at t = 0 or without a reference."""
        with np.errstate(invalid="ignore"):
            eps = self.loss - self.loss_exact
        eps[0] = np.nan
        return eps

    def one_step_excess(self) -> np.ndarray:
        """L(t) − (1 − α) L(t−1) for t ≥ 1 (NaN at 0): the least ε_t eq. 15 would need.
        ≤ 0 wherever Lemmas 1 and 2 held at that step."""
        out = np.full(self.steps + 1, np.nan)
        with np.errstate(invalid="ignore"):  # inf − inf after a diverged inner step
            out[1:] = self.loss[1:] - (1.0 - self.alpha) * self.loss[:-1]
        return out

    def movement(self) -> np.ndarray:
        """max_ij |q(t) − q(t−1)| per t (NaN at 0): how much the inner step changed the model.

        After an *exact* inner step the model stops moving: at a stationary q(t−1) of
        KL(p(t−1) || ·), the gradient of KL(p(t) || ·) is (1 − α) times that one (p(t) − q(t−1)
        = (1 − α)(p(t−1) − q(t−1))), i.e. zero, so from t = 2 on the chain is the frozen chain
        started at q(1)."""
        out = np.full(self.steps + 1, np.nan)
        out[1:] = np.abs(np.diff(self.q, axis=0)).max(axis=(1, 2))
        return out

    def bound_ratio(self) -> np.ndarray:
        """L(t) / ((1 − α)^t L(0)), shape (T+1,); Theorem 3 says ≤ 1. NaN where the bound
        is 0 (α = 1 or L(0) = 0)."""
        bound = self.bound()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(bound > 0, self.loss / bound, np.nan)

    def ratios(self) -> np.ndarray:
        """L(t) / L(t−1) for t ≥ 1 (NaN at 0); Theorem 3 promises ≤ 1 − α on average."""
        out = np.full(self.steps + 1, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[1:] = self.loss[1:] / self.loss[:-1]
        return out

    def steps_to(self, fraction: float) -> int | None:
        """First t with L(t) ≤ fraction · L(0), or None if never within T steps."""
        hit = np.nonzero(self.loss <= fraction * self.loss[0])[0]
        hit = hit[hit > 0]
        return int(hit[0]) if hit.size else None


def run_chain(p0: np.ndarray, state0: State, family: Family, alpha: float, steps: int, *,
              reference: Family | None = None, recursion: Recursion | None = None,
              validate: bool = True, label: str | None = None) -> Chain:
    """Run eqs. 1–3 for ``steps`` steps from supervision p0 (n, n) and model ``state0``.

    ``reference``: an exact inner step (e.g. :class:`Capacity`) run from the same warm start
    at every t, for eq. 15's ε_t. ``recursion``: replaces :func:`mix` (tests use it to run a
    deliberately wrong recursion). ``validate=False`` skips every check, so that such a
    recursion runs to the end and the inequality checks — not validation — catch it.
    ``label`` names the chain in the checks' statements (default: the family's name).
    """
    if validate:
        p0 = validate_field(p0, "p0")
        alpha = validate_alpha(alpha)
        _validate_positive_int(steps, "steps", 0)
        q0 = validate_field(field_of(state0), "q0")
        if q0.shape != p0.shape:
            raise TheoryError("state0", state0, f"must give a field of shape {p0.shape}")
    recursion = recursion or (lambda p, q, a: mix(p, q, a, validate=False))
    state = state0
    ps, qs = [np.asarray(p0, np.float64)], [field_of(state0)]
    loss = [kl_field(ps[0], qs[0], validate=False)]
    loss_hat, loss_exact = [np.nan], [np.nan]
    for t in range(1, steps + 1):
        p = recursion(ps[-1], qs[-1], alpha)
        if validate:
            p = validate_field(p, f"p({t})")
        loss_hat.append(kl_field(p, qs[-1], validate=False))
        if reference is not None:
            loss_exact.append(kl_field(p, field_of(reference.step(p, state)), validate=False))
        else:
            loss_exact.append(np.nan)
        state = family.step(p, state)
        q = field_of(state)
        ps.append(p)
        qs.append(q)
        loss.append(kl_field(p, q, validate=False))
    return Chain(family.name, float(alpha), np.stack(ps), np.stack(qs), np.array(loss),
                 np.array(loss_hat), np.array(loss_exact), label or family.name)


def mask_roundoff(values: np.ndarray, reference: float, floor: float = ROUNDOFF) -> np.ndarray:
    """``values`` with NaN where they are ≤ floor·reference (round-off; for log-scale plots)."""
    values = np.asarray(values, np.float64)
    return np.where(values > floor * reference, values, np.nan)


def frozen_closed_form(p0: np.ndarray, q0: np.ndarray, alpha: float, steps: int) -> np.ndarray:
    """L(t) for the frozen family in closed form, t = 0..steps.

    With q fixed, p(t) − q = (1 − α)^t (p(0) − q), so L(t) = KL(q + (1 − α)^t (p(0) − q) || q).
    Convexity in the first argument gives L(t) ≤ (1 − α)^t L(0); near q the KL is quadratic,
    so L(t) ≈ (1 − α)^{2t} χ²(p(0) || q)/2: asymptotically twice Theorem 3's rate.
    """
    p0 = validate_field(p0, "p0")
    q0 = validate_field(q0, "q0")
    alpha = validate_alpha(alpha)
    _validate_positive_int(steps, "steps", 0)
    return np.array([kl_field(q0 + (1.0 - alpha) ** t * (p0 - q0), q0, validate=False)
                     for t in range(steps + 1)])


# ---- checks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """The verdict on one inequality: ``holds`` is False when any instance breaks it (NaN
    counts as broken). ``worst`` is max(lhs − rhs); ``detail`` gives the numbers."""

    statement: str
    holds: bool
    worst: float
    detail: str

    def line(self) -> str:
        return f"{self.statement}: {'holds' if self.holds else 'FAILS'} — {self.detail}"


def _leq(lhs: np.ndarray, rhs: np.ndarray, tol: float) -> tuple[bool, float]:
    lhs, rhs = np.asarray(lhs, np.float64), np.asarray(rhs, np.float64)
    with np.errstate(invalid="ignore"):  # inf − inf: a diverged run, reported as broken
        gap = lhs - rhs
    # NaN <= x is False, so a NaN anywhere (a diverged run) makes the check fail
    ok = np.all(gap <= tol * (1.0 + np.abs(rhs)))
    worst = float(np.nanmax(gap)) if np.any(np.isfinite(gap)) else float("nan")
    if np.any(np.isnan(gap)) or np.any(np.isposinf(gap)):
        worst = float("inf")
    return bool(ok), worst


@dataclass(frozen=True)
class Lemma1Draws:
    """Lemma 1 on random instances: KL(p̂ || q) against (1 − α) KL(p || q), each (n_draws,)."""

    alpha: np.ndarray
    kl: np.ndarray
    kl_hat: np.ndarray
    sharpness: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """KL(p̂ || q) / KL(p || q); Lemma 1 says ≤ 1 − α."""
        return self.kl_hat / self.kl

    def normalised_ratio(self) -> np.ndarray:
        """KL(p̂ || q) / ((1 − α) KL(p || q)); Lemma 1 says ≤ 1. NaN where α = 1."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.alpha < 1, self.ratio / (1.0 - self.alpha), np.nan)

    def worst_by_alpha(self, edges: Sequence[float] = (0.0, 0.1, 0.5, 1.0)
                       ) -> list[tuple[float, float, float]]:
        """(lo, hi, worst normalised ratio) for α in each [lo, hi); NaN for an empty bin.
        As α → 0 the normalised ratio tends to 1 for every pair, so the overall worst value
        says little about how tight the lemma is at moderate α."""
        r = self.normalised_ratio()
        out = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (self.alpha >= lo) & (self.alpha < hi) & np.isfinite(r)
            out.append((float(lo), float(hi), float(r[sel].max()) if sel.any() else np.nan))
        return out

    def check(self, tol: float = FP_TOL) -> Check:
        ok, worst = _leq(self.kl_hat, (1.0 - self.alpha) * self.kl, tol)
        r = self.normalised_ratio()
        i = int(np.nanargmax(r))
        return Check("Lemma 1", ok, worst,
                     f"worst ratio KL(p̂||q) / ((1−α)·KL(p||q)) = {r[i]:.6f} (must be ≤ 1) "
                     f"over {len(r)} random draws, reached at α = {self.alpha[i]:.3f}, "
                     f"sharpness {self.sharpness[i]:.2f}")


def lemma1_draws(n: int, n_draws: int, rng: np.random.Generator, *,
                 sharpness: tuple[float, float] = (0.1, 8.0),
                 recursion: Recursion | None = None, alpha_max: float = 1.0) -> Lemma1Draws:
    """Lemma 1 on ``n_draws`` random (p, q, α): p, q random (n, n) fields with a log-uniform
    sharpness in ``sharpness``, α uniform in [0, alpha_max). ``recursion`` replaces
    :func:`mix` (with ``alpha_max`` > 1, tests run a wrong recursion through it)."""
    _validate_positive_int(n, "n", 2)
    _validate_positive_int(n_draws, "n_draws", 1)
    recursion = recursion or (lambda p, q, a: mix(p, q, a, validate=False))
    lo, hi = np.log(sharpness[0]), np.log(sharpness[1])
    alphas, kls, kl_hats, sharps = [], [], [], []
    for _ in range(n_draws):
        s = float(np.exp(rng.uniform(lo, hi)))
        p, q = random_field(n, rng, sharpness=s), random_field(n, rng, sharpness=s)
        a = float(rng.uniform(0.0, alpha_max))
        alphas.append(a)
        sharps.append(s)
        kls.append(kl_field(p, q, validate=False))
        kl_hats.append(kl_field(recursion(p, q, a), q, validate=False))
    return Lemma1Draws(np.array(alphas), np.array(kls), np.array(kl_hats), np.array(sharps))


def check_lemma1(p: np.ndarray, q: np.ndarray, alpha: float, *, tol: float = FP_TOL,
                 recursion: Recursion | None = None) -> Check:
    """Lemma 1 on one instance: KL(p̂ || q) ≤ (1 − α) KL(p || q), p̂ = recursion(p, q, α)."""
    recursion = recursion or mix
    kl = kl_field(p, q, validate=False)
    kl_hat = kl_field(recursion(p, q, alpha), q, validate=False)
    ok, worst = _leq(kl_hat, (1.0 - alpha) * kl, tol)
    return Check("Lemma 1", ok, worst,
                 f"KL(p̂||q) = {kl_hat:.6g} vs (1−α)·KL(p||q) = {(1.0 - alpha) * kl:.6g}")


def check_lemma2(chain: Chain, tol: float = FP_TOL) -> Check:
    """Lemma 2: L(t) ≤ L̂(t) = KL(p(t) || q(t−1)) for t ≥ 1 — q(t−1) is a candidate."""
    ok, worst = _leq(chain.loss[1:], chain.loss_hat[1:], tol)
    return Check(f"Lemma 2 [{chain.label}]", ok, worst,
                 f"max over t of L(t) − L̂(t) = {worst:.3g} (must be ≤ 0), t = 1..{chain.steps}")


def check_theorem3(chain: Chain, tol: float = FP_TOL) -> Check:
    """Theorem 3: L(t) ≤ (1 − α)^t L(0) for every t."""
    bound = chain.bound()
    ok, worst = _leq(chain.loss, bound, tol)
    r = chain.bound_ratio()
    rmax = float(np.nanmax(r[1:])) if np.any(np.isfinite(r[1:])) else float("nan")
    return Check(f"Theorem 3 [{chain.label}]", ok, worst,
                 f"L({chain.steps}) = {chain.loss[-1]:.3g} vs bound "
                 f"(1−α)^{chain.steps}·L(0) = {bound[-1]:.3g}; "
                 f"max over t ≥ 1 of L(t) / bound = {rmax:.3g} (must be ≤ 1)")


def check_eq14(chain: Chain, l_star: float, tol: float = FP_TOL) -> Check:
    """Eq. 14 (finite capacity): L(t) ≤ (1 − α) L(t−1) + α L* for t ≥ 1."""
    rhs = (1.0 - chain.alpha) * chain.loss[:-1] + chain.alpha * l_star
    ok, worst = _leq(chain.loss[1:], rhs, tol)
    return Check(f"Eq. 14 [{chain.label}]", ok, worst,
                 f"L* = {l_star:.4g}; max over t of L(t) − ((1−α)L(t−1) + αL*) = {worst:.3g} "
                 f"(must be ≤ 0); L({chain.steps}) = {chain.loss[-1]:.3g}")


def check_eq15(chain: Chain, tol: float = FP_TOL) -> Check:
    """Eq. 15 (inexact step): L(t) ≤ (1 − α) L(t−1) + ε_t, ε_t from :meth:`Chain.epsilon`."""
    eps = chain.epsilon()[1:]
    if chain.steps and np.all(np.isnan(chain.loss_exact[1:])):
        raise TheoryError("chain", chain.family,
                          "eq. 15 needs a chain run with reference=<exact family> (for ε_t)")
    rhs = (1.0 - chain.alpha) * chain.loss[:-1] + eps
    ok, worst = _leq(chain.loss[1:], rhs, tol)
    return Check(f"Eq. 15 [{chain.label}]", ok, worst,
                 f"Σ ε_t = {np.sum(eps):.3g}, max ε_t = {np.max(eps):.3g}, "
                 f"ε_{chain.steps} = {eps[-1]:.3g}; max over t of "
                 f"L(t) − ((1−α)L(t−1) + ε_t) = {worst:.3g} (must be ≤ 0)")


# ---- α sweep and the sentences the notebook prints ---------------------------------------
@dataclass(frozen=True)
class AlphaSweep:
    """Chains of one family over a range of α (same p0, state0, steps)."""

    alphas: np.ndarray
    chains: tuple[Chain, ...]

    def final_loss(self) -> np.ndarray:
        return np.array([c.loss[-1] for c in self.chains])

    def final_drift(self) -> np.ndarray:
        """KL(p(0) || p(T)) per α."""
        return np.array([c.drift()[-1] for c in self.chains])

    def final_yardstick(self) -> np.ndarray:
        """KL(p(0) || q(T)) per α."""
        return np.array([c.yardstick()[-1] for c in self.chains])

    def steps_to(self, fraction: float) -> list[int | None]:
        return [c.steps_to(fraction) for c in self.chains]


def alpha_sweep(p0: np.ndarray, state0: State, family: Family, alphas: Sequence[float],
                steps: int) -> AlphaSweep:
    """:func:`run_chain` for every α in ``alphas``."""
    alphas = [validate_alpha(a, f"alphas[{i}]") for i, a in enumerate(alphas)]
    return AlphaSweep(np.array(alphas),
                      tuple(run_chain(p0, state0, family, a, steps) for a in alphas))


def _last_clean_ratio(loss: np.ndarray, floor: float = 1e-10) -> tuple[int, float]:
    """(t, L(t)/L(t−1)) for the last t whose L(t−1) is above ``floor``·L(0): below that the
    KL values approach float64 round-off (~1e-16) and their ratios mean nothing."""
    ok = [t for t in range(1, len(loss)) if loss[t - 1] > floor * loss[0] and loss[t] > 0]
    if not ok:
        return 0, float("nan")
    return ok[-1], float(loss[ok[-1]] / loss[ok[-1] - 1])


def describe_frozen(chain: Chain) -> str:
    """A paragraph, from the numbers, on what the frozen chain's decay means."""
    if chain.family != Frozen.name:
        raise TheoryError("chain", chain.family, "must be a chain of the frozen family")
    moved = float(np.max(np.abs(chain.q - chain.q[0])))
    l0, lt, t, a = chain.loss[0], chain.loss[-1], chain.steps, chain.alpha
    held = check_theorem3(chain).holds
    text = (f"With learning rate 0 the model's field never changed (max |q(t) − q(0)| = "
            f"{moved:.1g}) and KL(p(0) || q(t)) stayed at {chain.yardstick()[-1]:.4g}")
    if a == 0 or t == 0 or not lt < l0:
        return text + (f"; its loss went from L(0) = {l0:.4g} to L({t}) = {lt:.4g}: without "
                       f"recursion (α = {a:g}) or steps, nothing decays.")
    text += (f", yet the RKDO loss fell from L(0) = {l0:.4g} to L({t}) = {lt:.3g} "
             f"(a factor {l0 / lt if lt > 0 else float('inf'):.3g}), and Theorem 3's bound "
             f"{'held' if held else 'did NOT hold'}. ")
    tk, rk = _last_clean_ratio(chain.loss)
    if tk == 0:
        text += f"With α = {a:g} the teacher equals the student after one step (L(1) = 0). "
    else:
        text += (f"The per-step ratio L(t)/L(t−1) was {chain.loss[1] / l0:.3g} at t = 1 and "
                 f"{rk:.3g} at t = {tk}: Theorem 3 promises 1 − α = {1 - a:.3g}; near the "
                 f"fixed point the KL is quadratic, so the rate tends to (1 − α)² = "
                 f"{(1 - a) ** 2:.3g}. ")
    return text + "Nothing was learned — the teacher p(t) collapsed onto the untrained student."


def describe_comparison(icon: Chain, rkdo: Chain) -> str:
    """I-Con (α = 0) against RKDO for the same inner steps, on their own losses and on the
    common yardstick KL(p(0) || q(T))."""
    if icon.alpha != 0:
        raise TheoryError("icon.alpha", icon.alpha, "must be 0 (I-Con's fixed p)")
    t = icon.steps
    li, lr_ = icon.loss[-1], rkdo.loss[-1]
    yi, yr = icon.yardstick()[-1], rkdo.yardstick()[-1]
    lower = 100.0 * (li - lr_) / li if li > 0 else float("nan")
    if yr < yi:
        verdict = "lower (better) for RKDO"
    elif yr > yi:
        verdict = "higher (worse) for RKDO"
    else:
        verdict = "equal"
    return (f"After {t} steps of the same {rkdo.family} inner step, RKDO (α = {rkdo.alpha:g}) "
            f"reports L({t}) = {lr_:.3g} against I-Con's {li:.4g} ({lower:.1f} % lower — the "
            f"paper's 'improvement'); on the common yardstick KL(p(0) || q({t})) RKDO's model "
            f"scores {yr:.4g} against I-Con's {yi:.4g}: {verdict}.")


def tradeoff_table(sweep: AlphaSweep, fraction: float = 0.01) -> str:
    """One line per α: steps until L ≤ fraction·L(0), final L, drift and yardstick."""
    t = sweep.chains[0].steps
    lines = [f"{'alpha':>6}  {'steps to ' + format(fraction, 'g') + '*L(0)':>18}  "
             f"{'L(' + str(t) + ')':>10}  {'KL(p0||p(T))':>12}  {'KL(p0||q(T))':>12}"]
    for a, h, lt, dr, y in zip(sweep.alphas, sweep.steps_to(fraction), sweep.final_loss(),
                               sweep.final_drift(), sweep.final_yardstick()):
        reach = str(h) if h is not None else f"> {t}"
        lines.append(f"{a:>6.3g}  {reach:>18}  {lt:>10.3g}  {dr:>12.4g}  {y:>12.4g}")
    return "\n".join(lines)


def describe_tradeoff(sweep: AlphaSweep, fraction: float = 0.01) -> str:
    """One sentence, from the numbers, on decay speed against drift from p(0) over α."""
    t = sweep.chains[0].steps
    hits = sweep.steps_to(fraction)
    drift, yard = sweep.final_drift(), sweep.final_yardstick()
    order = np.argsort(sweep.alphas)
    a, drift, yard = sweep.alphas[order], drift[order], yard[order]
    hits = [hits[i] for i in order]
    reached = [(ai, h) for ai, h in zip(a, hits) if h is not None]
    speed = ("no α reached it" if not reached else
             f"the smallest α that reached it within {t} steps was {reached[0][0]:g} "
             f"({reached[0][1]} steps) and α = {reached[-1][0]:g} needed {reached[-1][1]}")
    monotone = bool(np.all(np.diff(drift) >= -FP_TOL))
    return (f"L ≤ {fraction:g}·L(0): {speed}. Over α = {a[0]:g} … {a[-1]:g} the drift "
            f"KL(p(0) || p({t})) went from {drift[0]:.3g} to {drift[-1]:.3g} "
            f"({'monotonically increasing' if monotone else 'not monotonically'}) and the "
            f"yardstick KL(p(0) || q({t})) from {yard[0]:.3g} to {yard[-1]:.3g}: a faster "
            f"falling RKDO loss bought with supervision that moved further from p(0).")


def conclusion(frozen: Chain, icon: Chain, rkdo: Chain) -> str:
    """The closing sentence: what the frozen family means for the paper's loss comparison."""
    l0, lt, t = frozen.loss[0], frozen.loss[-1], frozen.steps
    yi, yr = icon.yardstick()[-1], rkdo.yardstick()[-1]
    if not lt < l0:
        return (f"With α = {frozen.alpha:g} even a frozen model's loss did not fall "
                f"(L(0) = {l0:.4g}, L({t}) = {lt:.4g}), so these runs say nothing about the "
                f"recursion; rerun with α > 0.")
    cmp = "worse than" if yr > yi else "better than" if yr < yi else "the same as"
    return (f"Because a model that never learns already drives the RKDO loss from {l0:.3g} to "
            f"{lt:.2g} in {t} steps — and the trained RKDO model, whose own loss ends far below "
            f"I-Con's, is {cmp} I-Con's on the original supervision ({yr:.3g} vs {yi:.3g}) — "
            f"a lower RKDO loss than I-Con loss, as in the paper's Table 1, is not evidence "
            f"of better learning: the two must be compared on a common objective.")


def write_checks(checks: Sequence[Check], path: Any = "checks.json") -> Any:
    """Write the notebook's ``checks`` as JSON, a list of ``{"name", "statement", "holds",
    "worst", "detail"}`` (``name`` = ``statement``; ``worst`` = max(lhs − rhs), null when not
    finite — a diverged run), atomically; returns the path. This is what the claims checklist
    (:mod:`rkdo_core.reporting.claims`) reads."""
    rows = []
    for c in checks:
        if not isinstance(c, Check):
            raise TheoryError("checks", c, "must be a list of rkdo_core.theory.Check objects")
        worst = float(c.worst)
        rows.append({"name": c.statement, "statement": c.statement, "holds": bool(c.holds),
                     "worst": worst if math.isfinite(worst) else None, "detail": c.detail})
    path = Path(path)
    write_json_atomic(path, rows)
    return path
