"""Why the two loss *functions* differ: training-free analysis of I-Con vs RKDO.

The audit found RKDO's loss ~25–30 % below I-Con's even for an untrained encoder, and the
gap growing as the two views' embeddings align (docs/method.md §6.1). This module explains that
with the losses exactly as training computes them (:func:`rkdo_core.losses.icon_loss`,
:func:`rkdo_core.losses.rkdo_loss`, RunConfig defaults τ0 = 0.5, a = 0.2, α = 0.5, T = 3,
β = 0.1) on embeddings whose alignment is controlled, and with closed forms.

Notation: ``S = z1 z2ᵀ``, ``q(τ) = row-softmax(S/τ)``, row i's positive is column i;
every KL is batchmean. Exact facts derived from the code (each verified in
``tests/test_mechanism.py``):

1. **Chain rule split** (:func:`kl_split`). For any target p and model q,
   ``KL(p_i || q_i) = KL_bin(p_ii || q_ii) + (1 − p_ii)·KL(p̃_i || q̃_i)`` where
   ``KL_bin`` is the KL of the two-outcome distributions (positive, not positive) and
   ``p̃_i, q̃_i`` are the rows renormalised over the B − 1 negatives. The first term is the
   *positive* part, the second the *negative* part.
2. **I-Con** has target ``p = (1 − a)I + a/B``: positive part ``KL_bin(1 − a + a/B || q_ii)``,
   negative part ``a(B − 1)/B · KL(uniform_{B−1} || q̃_i)`` — I-Con also asks the negatives'
   distribution to be uniform.
3. **RKDO with β = 0** (:func:`rkdo_beta_zero_closed_form`): all ``q_t`` equal q, so
   ``p_t = π_t I + (1 − π_t) q`` with ``π_t = (1 − α)^t``; its negatives are exactly the
   model's own (``p̃_t = q̃``), the negative part is 0 and
   ``L_rkdo = Σ_{t=1..T} mean_i KL_bin(π_t + (1 − π_t) q_ii || q_ii)`` depends only on the
   positives' probabilities. With β > 0 the negative part is only the mismatch between
   softmaxes at the scheduled temperatures. In particular α = 1, β = 0 gives 0 for *any*
   embeddings.
4. **Two-level similarities** (:func:`two_level_losses`): if S has a constant diagonal and a
   constant off-diagonal (margin Δ = diagonal − off-diagonal), every q̃ is uniform and both
   losses are sums of binary KLs of ``q_d(τ) = 1 / (1 + (B − 1) e^{−Δ/τ})``. Collapsed
   embeddings (all rows equal; Δ = 0, q uniform) give I-Con ``KL_bin(1 − a + a/B || 1/B)``
   and RKDO ``Σ_t KL_bin(π_t + (1 − π_t)/B || 1/B)`` (τ and β drop out): at the defaults,
   B = 64, 2.8472 vs 2.1396, a relative gap of 24.9 % with no training at all.
   Independent views in a dimension d → ∞ have S → 0, the same limit.
   :func:`orthogonal_views` builds embeddings with Δ = alignment exactly.
5. **α → 0** (:func:`rkdo_alpha_zero_limit`): ``p_t → I`` and RKDO tends to
   ``Σ_t CE_t`` = ``Σ_t icon_loss(τ = τ_t, debias_alpha = 0)`` (error O(α log 1/α));
   with depth 1 and β = 0 that is I-Con *without* its uniform debiasing (InfoNCE), not the
   trained I-Con (a = 0.2). docs/method.md §2's "with α = 0 the objective is exactly I-Con"
   holds only in that sense (and the code rejects α = 0).

So the gap is structural. On random or partly aligned views almost all of both losses is
the positive part (I-Con's negative part is ~0.3 % of it at the defaults): I-Con's
target puts a fixed mass 1 − a + a/B ≈ 0.80 on the positive, while RKDO's targets
``π_t + (1 − π_t) q_ii`` (β = 0) are pulled towards the model's own q_ii — half-way after one
step at α = 0.5 — so each KL_bin is smaller, and the three steps together stay below the
single I-Con term. At the defaults, the more the views align (q_ii larger), the closer
RKDO's targets follow and the larger the relative gap: 24.9 % at Δ = 0 to 42.5 % at Δ = 1
in the two-level case, increasing on the whole reachable range (unit vectors give a
two-level S with Δ ≤ B/(B − 1), since ‖S‖_* ≤ ‖Z1‖_F ‖Z2‖_F = B; the simplex attains it).
This is a statement about Δ/τ0, not a law: at τ0 ≤ 0.2 the I-Con loss reaches its minimum
(q_d = 1 − a + a/B) inside that range and the relative gap is no longer monotone in the
alignment. The gap also depends strongly on α and T: for α below ~0.38–0.43 (two-level,
Δ ∈ [0, 1]) RKDO's loss is *above* I-Con's (it tends to T cross-entropies as α → 0), and it
shrinks with depth and with the batch size. :func:`gap_sweep` tabulates this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .config import TEMPERATURE_RANGE
from .losses import icon_log_target, icon_loss, rkdo_loss, rkdo_recursion

#: The loss settings of :class:`rkdo_core.config.RunConfig` (its defaults), by the keyword
#: names of :mod:`rkdo_core.losses`. A test checks they equal RunConfig's.
DEFAULT_SETTINGS: dict[str, Any] = {"temperature": 0.5, "debias_alpha": 0.2, "alpha": 0.5,
                                    "depth": 3, "beta": 0.1}
#: Parameters :func:`gap_sweep` can vary.
SWEEP_PARAMETERS = ("alignment", "alpha", "depth", "beta", "temperature", "debias_alpha",
                    "batch_size", "dim")


# ---- validation -----------------------------------------------------------------------

def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _settings(**settings: Any) -> dict[str, Any]:
    """Defaults filled in and every loss setting validated (names as in losses.py)."""
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown loss setting {unknown[0]}={settings[unknown[0]]!r}; "
                         f"allowed: {list(DEFAULT_SETTINGS)}")
    s = {**DEFAULT_SETTINGS, **settings}
    lo, hi = TEMPERATURE_RANGE  # where the float32 loss is representable (config.py)
    if not _is_number(s["temperature"]) or not lo <= s["temperature"] <= hi:
        raise ValueError(f"temperature must be a finite number in [{lo:g}, {hi:g}]; got "
                         f"temperature={s['temperature']!r}")
    if not _is_number(s["debias_alpha"]) or not 0 <= s["debias_alpha"] <= 1:
        raise ValueError(f"debias_alpha must lie in [0, 1]; got debias_alpha={s['debias_alpha']!r}")
    if not _is_number(s["alpha"]) or not 0 < s["alpha"] <= 1:
        raise ValueError(f"alpha must lie in (0, 1]; got alpha={s['alpha']!r}")
    if not _is_int(s["depth"]) or s["depth"] < 1:
        raise ValueError(f"depth must be an integer >= 1; got depth={s['depth']!r}")
    if not _is_number(s["beta"]) or not s["beta"] < 1:
        raise ValueError(f"beta must be a finite number < 1 so that every scheduled "
                         f"temperature τ0·(1 − β·t/T) stays > 0; got beta={s['beta']!r}")
    last = s["temperature"] * (1 - s["beta"])
    if not lo <= last <= hi:
        raise ValueError(f"the last scheduled temperature τ0·(1 − β) = {last:g} must lie in "
                         f"[{lo:g}, {hi:g}]; got temperature={s['temperature']!r}, "
                         f"beta={s['beta']!r}")
    return {"temperature": float(s["temperature"]), "debias_alpha": float(s["debias_alpha"]),
            "alpha": float(s["alpha"]), "depth": int(s["depth"]), "beta": float(s["beta"])}


def _icon_kwargs(s: dict[str, Any]) -> dict[str, Any]:
    return {"temperature": s["temperature"], "debias_alpha": s["debias_alpha"]}


def _rkdo_kwargs(s: dict[str, Any]) -> dict[str, Any]:
    return {k: s[k] for k in ("temperature", "alpha", "depth", "beta")}


def _check_views(z1: Tensor, z2: Tensor) -> None:
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, Tensor) or z.ndim != 2:
            raise ValueError(f"{name} must be a torch tensor of shape (B, d); got "
                             f"{tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__}")
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must have the same shape (B, d) with B >= 2; got "
                         f"{tuple(z1.shape)} and {tuple(z2.shape)}")


def _check_alignment(alignment: Any) -> float:
    if not _is_number(alignment) or not 0 <= alignment <= 1:
        raise ValueError(f"alignment must be a number in [0, 1] (1 = identical views, "
                         f"0 = independent); got alignment={alignment!r}")
    return float(alignment)


def _check_size(value: Any, name: str, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={value!r}")
    return int(value)


# ---- embeddings with controlled alignment --------------------------------------------

def synthetic_views(batch_size: int, dim: int, alignment: float, *, seed: int,
                    dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Two views (B, d) of unit vectors whose positive pairs have cosine ≈ ``alignment``.

    ``z1`` are uniformly random unit vectors; ``n`` independent ones;
    ``z2 = normalise(a·z1 + sqrt(1 − a²)·n)`` (a = alignment: 1 gives identical views —
    ``z2`` equal to ``z1`` bit for bit — and 0 independent ones). Off-diagonal similarities
    are ~N(0, 1/d). Deterministic for ``seed`` (a CPU ``torch.Generator``; the global RNG is
    not touched). Generated in float64, returned in ``dtype``.
    """
    b = _check_size(batch_size, "batch_size", 2)
    d = _check_size(dim, "dim", 1)
    a = _check_alignment(alignment)
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got seed={seed!r}")
    g = torch.Generator().manual_seed(int(seed))
    z1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    noise = torch.randn(b, d, generator=g, dtype=torch.float64)
    z1 = z1 / z1.norm(dim=1, keepdim=True)
    noise = noise / noise.norm(dim=1, keepdim=True)
    if a == 1:
        z2 = z1.clone()  # exactly identical views, not identical up to rounding
    else:
        z2 = a * z1 + math.sqrt(1.0 - a * a) * noise
        z2 = z2 / z2.norm(dim=1, keepdim=True)
    return z1.to(dtype), z2.to(dtype)


def orthogonal_views(batch_size: int, dim: int, alignment: float, *,
                     dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Views with an exactly two-level similarity: ``S = alignment·I``.

    ``z1_i = e_i`` and ``z2_i = a·e_i + sqrt(1 − a²)·e_{B+i}`` (standard basis vectors), so
    ``z1_i·z2_i = a`` and ``z1_i·z2_j = 0`` for i ≠ j: margin Δ = a in
    :func:`two_level_losses`. Needs ``dim >= 2B`` (``dim >= B`` when a = 1).
    """
    b = _check_size(batch_size, "batch_size", 2)
    a = _check_alignment(alignment)
    need = b if a == 1 else 2 * b
    d = _check_size(dim, "dim", 1)
    if d < need:
        raise ValueError(f"dim must be >= {need} for batch_size={b} and alignment={a}; "
                         f"got dim={d}")
    eye = torch.eye(b, d, dtype=torch.float64)
    z2 = a * eye
    if a < 1:
        z2 = z2 + math.sqrt(1.0 - a * a) * torch.roll(eye, shifts=b, dims=1)
    return eye.to(dtype), z2.to(dtype)


def mean_positive_cosine(z1: Tensor, z2: Tensor) -> float:
    """Mean cosine similarity of the positive pairs (row i of z1 with row i of z2)."""
    _check_views(z1, z2)
    return float(torch.nn.functional.cosine_similarity(z1, z2, dim=1).mean())


# ---- the two functions on the same embeddings ----------------------------------------

def function_gap(z1: Tensor, z2: Tensor, *, temperature: float = 0.5, debias_alpha: float = 0.2,
                 alpha: float = 0.5, depth: int = 3, beta: float = 0.1) -> dict[str, float]:
    """I-Con and RKDO losses of the same embeddings, and their gap.

    Keywords: the names of :mod:`rkdo_core.losses`, defaults RunConfig's
    (:data:`DEFAULT_SETTINGS`). Calls ``icon_loss(z1, z2, temperature, debias_alpha)`` and
    ``rkdo_loss(z1, z2, temperature, alpha, depth, beta)`` exactly as ``losses.loss_for``
    does in training. Returns ``{"L_icon", "L_rkdo", "gap": L_icon − L_rkdo,
    "relative_gap": (L_icon − L_rkdo) / L_icon}`` (relative gap NaN when L_icon = 0).
    """
    _check_views(z1, z2)
    s = _settings(temperature=temperature, debias_alpha=debias_alpha, alpha=alpha, depth=depth,
                  beta=beta)
    with torch.no_grad():
        l_icon = float(icon_loss(z1, z2, **_icon_kwargs(s)))
        l_rkdo = float(rkdo_loss(z1, z2, **_rkdo_kwargs(s)))
    gap = l_icon - l_rkdo
    return {"L_icon": l_icon, "L_rkdo": l_rkdo, "gap": gap,
            "relative_gap": gap / l_icon if l_icon != 0 else float("nan")}


def kl_split(log_p: Tensor, log_q: Tensor) -> tuple[Tensor, Tensor]:
    """Chain-rule split of the batchmean ``KL(p || q)`` of two (B, B) row distributions
    into (positive part, negative part), the positive of row i being column i.

    ``KL(p_i || q_i) = KL_bin(p_ii || q_ii) + (1 − p_ii)·KL(p̃_i || q̃_i)`` with ``p̃_i, q̃_i``
    the rows renormalised over j ≠ i (Cover & Thomas, chain rule for relative entropy,
    Thm 2.5.3, with the grouping positive / not positive). Both parts are averaged over rows;
    they sum to ``losses._kl_batchmean(log_p, log_q)``. ``log_p`` may hold −inf (p = 0).
    """
    if log_p.ndim != 2 or log_p.shape[0] != log_p.shape[1] or log_p.shape != log_q.shape:
        raise ValueError(f"log_p and log_q must both have shape (B, B); got "
                         f"{tuple(log_p.shape)} and {tuple(log_q.shape)}")
    b = log_p.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=log_p.device)
    lp_d, lq_d = log_p.diagonal(), log_q.diagonal()
    lp_off = log_p[off].view(b, b - 1)
    lq_off = log_q[off].view(b, b - 1)
    lp_rest = torch.logsumexp(lp_off, dim=1)  # log(1 − p_ii)
    lq_rest = torch.logsumexp(lq_off, dim=1)
    p_d = lp_d.exp()
    p_rest = lp_rest.exp()

    def xlogy_ratio(p: Tensor, lp: Tensor, lq: Tensor) -> Tensor:
        return torch.where(p > 0, p * (lp - lq), torch.zeros_like(p))

    positive = xlogy_ratio(p_d, lp_d, lq_d) + xlogy_ratio(p_rest, lp_rest, lq_rest)
    p_off = lp_off.exp()
    cond = torch.where(p_off > 0, p_off * ((lp_off - lp_rest[:, None])
                                           - (lq_off - lq_rest[:, None])),
                       torch.zeros_like(p_off))
    return positive.mean(), cond.sum(dim=1).mean()


def loss_decomposition(z1: Tensor, z2: Tensor, *, temperature: float = 0.5,
                       debias_alpha: float = 0.2, alpha: float = 0.5, depth: int = 3,
                       beta: float = 0.1) -> dict[str, float]:
    """Positive / negative parts (:func:`kl_split`) of both losses on the same embeddings.

    Returns ``icon_positive``, ``icon_negative`` (their sum is ``icon_loss``) and
    ``rkdo_positive``, ``rkdo_negative`` (summed over t = 1..T; their sum is ``rkdo_loss``).
    """
    _check_views(z1, z2)
    s = _settings(temperature=temperature, debias_alpha=debias_alpha, alpha=alpha, depth=depth,
                  beta=beta)
    with torch.no_grad():
        sim = z1 @ z2.T
        log_q = torch.log_softmax(sim / s["temperature"], dim=1)
        log_p = icon_log_target(sim.shape[0], s["debias_alpha"], like=sim)
        ip, ineg = kl_split(log_p, log_q)
        parts = [kl_split(st.log_p, st.log_q)
                 for st in rkdo_recursion(z1, z2, **_rkdo_kwargs(s))[1:]]
    return {"icon_positive": float(ip), "icon_negative": float(ineg),
            "rkdo_positive": float(sum(p for p, _ in parts)),
            "rkdo_negative": float(sum(n for _, n in parts))}


# ---- closed forms ---------------------------------------------------------------------

def binary_kl(p: float, q: float) -> float:
    """``p log(p/q) + (1 − p) log((1 − p)/(1 − q))`` with 0·log 0 = 0; p ∈ [0, 1],
    q ∈ (0, 1)."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1]; got p={p!r}")
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1); got q={q!r}")
    out = 0.0
    if p > 0:
        out += p * (math.log(p) - math.log(q))
    if p < 1:
        out += (1 - p) * (math.log1p(-p) - math.log1p(-q))
    return out


def _positive_prob(batch_size: int, margin: float, tau: float) -> float:
    """Softmax mass on the positive when the diagonal exceeds the off-diagonal by margin."""
    return 1.0 / (1.0 + (batch_size - 1) * math.exp(-margin / tau))


def two_level_losses(batch_size: int, margin: float, *, temperature: float = 0.5,
                     debias_alpha: float = 0.2, alpha: float = 0.5, depth: int = 3,
                     beta: float = 0.1) -> dict[str, Any]:
    """Exact losses when ``S = z1 z2ᵀ`` has one value c_d on the diagonal and one value c_o
    off it; they depend only on B and the margin ``Δ = c_d − c_o``.

    Then every row of ``q(τ)`` puts ``q_d(τ) = 1 / (1 + (B − 1) e^{−Δ/τ})`` on the positive
    and the rest uniformly on the negatives, every target row is (x, uniform rest), so only
    the positive part of :func:`kl_split` remains:
    ``L_icon = KL_bin(1 − a + a/B || q_d(τ0))`` and
    ``L_rkdo = Σ_{t=1..T} KL_bin(p_t || q_d(τ_t))`` with ``p_0 = 1``,
    ``p_t = (1 − α) p_{t−1} + α q_d(τ_{t−1})``, ``τ_t = τ0 (1 − β t / T)``.
    Cases: all embeddings identical (Δ = 0), :func:`orthogonal_views` (Δ = alignment),
    identical views forming a regular simplex (Δ = B/(B − 1)).

    Returns ``L_icon``, ``L_rkdo``, ``gap``, ``relative_gap``, and ``rkdo_steps``: a list of
    (t, τ_t, p_t, q_d(τ_t), KL_t).
    """
    b = _check_size(batch_size, "batch_size", 2)
    if not _is_number(margin):
        raise ValueError(f"margin must be a finite number; got margin={margin!r}")
    s = _settings(temperature=temperature, debias_alpha=debias_alpha, alpha=alpha, depth=depth,
                  beta=beta)
    tau0, a, alpha, depth, beta = (s["temperature"], s["debias_alpha"], s["alpha"],
                                   s["depth"], s["beta"])
    l_icon = binary_kl(1 - a + a / b, _positive_prob(b, margin, tau0))
    p, q_prev = 1.0, _positive_prob(b, margin, tau0)
    steps, l_rkdo = [], 0.0
    for t in range(1, depth + 1):
        p = (1 - alpha) * p + alpha * q_prev
        tau_t = tau0 * (1 - beta * t / depth)
        q_prev = _positive_prob(b, margin, tau_t)
        kl = binary_kl(p, q_prev)
        steps.append((t, tau_t, p, q_prev, kl))
        l_rkdo += kl
    gap = l_icon - l_rkdo
    return {"L_icon": l_icon, "L_rkdo": l_rkdo, "gap": gap,
            "relative_gap": gap / l_icon if l_icon != 0 else float("nan"),
            "rkdo_steps": steps}


def rkdo_beta_zero_closed_form(z1: Tensor, z2: Tensor, *, temperature: float = 0.5,
                               alpha: float = 0.5, depth: int = 3) -> Tensor:
    """``rkdo_loss(..., beta=0)`` from the positives' probabilities alone.

    With β = 0 every ``q_t`` is ``q = softmax(S/τ)``, so ``p_t = π_t I + (1 − π_t) q`` with
    ``π_t = (1 − α)^t`` and ``L = Σ_{t=1..T} mean_i KL_bin(π_t + (1 − π_t) q_ii || q_ii)``:
    the negatives drop out. α = 1 gives 0 for any embeddings.
    """
    _check_views(z1, z2)
    s = _settings(temperature=temperature, alpha=alpha, depth=depth, beta=0.0)
    log_q = torch.log_softmax(z1 @ z2.T / s["temperature"], dim=1)
    lq = log_q.diagonal()
    lq_rest = torch.log1p(-lq.exp())
    total = torch.zeros((), dtype=log_q.dtype, device=log_q.device)
    for t in range(1, s["depth"] + 1):
        pi = (1 - s["alpha"]) ** t
        p = pi + (1 - pi) * lq.exp()
        p_rest = (1 - pi) * (1 - lq.exp())
        total = total + (p * (p.log() - lq)
                         + torch.where(p_rest > 0, p_rest * (p_rest.log() - lq_rest),
                                       torch.zeros_like(p_rest))).mean()
    return total


def rkdo_alpha_zero_limit(z1: Tensor, z2: Tensor, *, temperature: float = 0.5, depth: int = 3,
                          beta: float = 0.1) -> Tensor:
    """``lim_{α→0} rkdo_loss``: every ``p_t → I``, so the limit is
    ``Σ_{t=1..T} icon_loss(z1, z2, temperature=τ_t, debias_alpha=0)`` (cross-entropies of the
    positives at the scheduled temperatures); ``rkdo_loss`` approaches it with an error
    O(α log 1/α). With depth 1 and β = 0 it is I-Con with debias_alpha = 0 (InfoNCE), not the
    trained I-Con (debias_alpha = 0.2).
    """
    _check_views(z1, z2)
    s = _settings(temperature=temperature, depth=depth, beta=beta)
    return torch.stack([
        icon_loss(z1, z2, temperature=s["temperature"] * (1 - s["beta"] * t / s["depth"]),
                  debias_alpha=0.0)
        for t in range(1, s["depth"] + 1)]).sum()


# ---- sweeps ---------------------------------------------------------------------------

def gap_sweep(parameter: str, values: Sequence[Any], *, alignment: float = 0.5,
              batch_size: int = 64, dim: int = 64, seeds: Sequence[int] = (0, 1, 2, 3, 4),
              **settings: Any) -> pd.DataFrame:
    """:func:`function_gap` on :func:`synthetic_views` as one parameter varies.

    ``parameter`` ∈ :data:`SWEEP_PARAMETERS`: ``"alignment"``, ``"batch_size"``, ``"dim"``
    (they change the views; the value replaces the keyword of the same name) or a loss
    setting ``"alpha"``, ``"depth"``, ``"beta"``, ``"temperature"`` (τ0 of the schedule
    τ_t = τ0 (1 − β t/T)), ``"debias_alpha"`` (the same views for every value: common random
    numbers). ``settings`` fix the other loss settings (defaults: RunConfig's).

    Returns one row per (value, seed), in that order, with columns ``parameter``, ``value``,
    ``seed``, ``alignment``, ``batch_size``, ``dim``, the five loss settings,
    ``positive_cosine`` (measured), ``L_icon``, ``L_rkdo``, ``gap``, ``relative_gap`` and the
    :func:`loss_decomposition` parts.
    """
    if parameter not in SWEEP_PARAMETERS:
        raise ValueError(f"parameter must be one of {list(SWEEP_PARAMETERS)}; "
                         f"got parameter={parameter!r}")
    if isinstance(values, (str, bytes)) or len(values) == 0:
        raise ValueError(f"values must be a non-empty sequence; got values={values!r}")
    if isinstance(seeds, (str, bytes)) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty sequence of integers; got seeds={seeds!r}")
    if parameter in settings:
        raise ValueError(f"{parameter} is the swept parameter; give its values in `values`, "
                         f"not as {parameter}={settings[parameter]!r}")
    base = _settings(**settings)
    rows = []
    for value in values:
        views = {"alignment": alignment, "batch_size": batch_size, "dim": dim}
        s = dict(base)
        if parameter in views:
            views[parameter] = value
        else:
            s[parameter] = value
        s = _settings(**s)
        for seed in seeds:
            z1, z2 = synthetic_views(views["batch_size"], views["dim"], views["alignment"],
                                     seed=seed)
            rows.append({"parameter": parameter, "value": value, "seed": seed, **views, **s,
                         "positive_cosine": mean_positive_cosine(z1, z2),
                         **function_gap(z1, z2, **s), **loss_decomposition(z1, z2, **s)})
    return pd.DataFrame(rows)
