"""I-Con and RKDO losses exactly as the authors' notebook computes them (docs/method.md §3).

Both are pure functions of two views' L2-normalised embeddings ``z1, z2`` of shape (B, D):
``S = z1 @ z2.T`` is the (B, B) cross-view similarity, row i's positive is column i, and
the softmax runs over all B columns (the positive included — unlike eq. 4's k ≠ i).
Every KL is ``sum_ij p_ij (log p_ij − log q_ij) / B`` ("batchmean").

Everything is computed in log space (log-softmax, log-sum-exp mixtures), so tiny
temperatures or identical embeddings stay finite, and nothing is detached: gradients flow
through the RKDO teacher ``p_t`` as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def _kl_batchmean(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) summed over all entries / B. ``log_p`` may hold -inf where p = 0."""
    p = log_p.exp()
    # 0·log 0 = 0: where p == 0 exactly the term vanishes (p_0 = I off the diagonal, or an
    # exp that underflowed). Only exact zeros are masked: a NaN p (from NaN embeddings — the
    # RKDO teacher is built from the model's own q) fails `p == 0` and keeps its NaN term,
    # so a diverged model gives a NaN loss, never a finite one. Gradients: the masked branch
    # receives a zero gradient; its NaN forward value (0·(−inf) where log_p = −inf) only
    # reaches the gradient of p, which then is a constant (p_0, the I-Con target) or an
    # underflowed exp whose log is finite, so no NaN gradient arises from finite inputs.
    terms = torch.where(p == 0, torch.zeros_like(p), p * (log_p - log_q))
    return terms.sum() / log_p.shape[0]


def _similarity(z1: Tensor, z2: Tensor) -> Tensor:
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"z1 and z2 must both have shape (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"batch size B must be >= 2 for a contrastive loss; got B={z1.shape[0]}")
    return z1 @ z2.T


def icon_log_target(batch_size: int, debias_alpha: float, *, like: Tensor) -> Tensor:
    """log of the fixed I-Con supervision p = (1 − a)·I + a/B, shape (B, B)."""
    eye = torch.eye(batch_size, dtype=like.dtype, device=like.device)
    return torch.log((1.0 - debias_alpha) * eye + debias_alpha / batch_size)


def icon_loss(z1: Tensor, z2: Tensor, *, temperature: float = 0.5,
              debias_alpha: float = 0.2) -> Tensor:
    """I-Con: KL(p || q) with p = (1 − a)I + a/B and q = row-softmax(z1 z2ᵀ / τ).

    z1, z2: (B, D) L2-normalised embeddings. Returns a scalar tensor (docs/method.md §3, eq. 1
    with a fixed p). With a = 0 this is the InfoNCE cross-entropy.
    """
    s = _similarity(z1, z2)
    log_q = torch.log_softmax(s / temperature, dim=1)
    log_p = icon_log_target(s.shape[0], debias_alpha, like=s)
    return _kl_batchmean(log_p, log_q)


@dataclass(frozen=True)
class RecursionStep:
    """One step t of the unrolled RKDO recursion: log p_t, log q_t (both (B, B)) and τ_t."""

    t: int
    temperature: float
    log_p: Tensor
    log_q: Tensor


def rkdo_recursion(z1: Tensor, z2: Tensor, *, temperature: float = 0.5, alpha: float = 0.5,
                   depth: int = 3, beta: float = 0.1) -> list[RecursionStep]:
    """The recursion of eqs. 2–4 unrolled inside one step, t = 0..depth.

    p_0 = I, q_0 = softmax(S/τ0); p_t = (1 − α) p_{t−1} + α q_{t−1};
    q_t = softmax(S / (τ0 (1 − β t / T))). Step 0 is included for inspection (heat-maps);
    the loss sums KL(p_t || q_t) over t = 1..T only.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1]; got alpha={alpha}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1; got depth={depth}")
    if not temperature > 0 or not beta < 1:
        raise ValueError(
            f"scheduled temperatures τ0·(1 − β·t/T) must stay > 0; got τ0={temperature}, β={beta}")
    s = _similarity(z1, z2)
    b = s.shape[0]
    eye = torch.eye(b, dtype=s.dtype, device=s.device)
    log_p = torch.log(eye)  # 0 on the diagonal, -inf elsewhere: p_0 = I, a constant
    log_q = torch.log_softmax(s / temperature, dim=1)
    steps = [RecursionStep(0, temperature, log_p, log_q)]
    log_keep = math.log1p(-alpha) if alpha < 1 else -math.inf
    log_mix = math.log(alpha)
    for t in range(1, depth + 1):
        # log((1−α) p + α q) in log space; α > 0 and q > 0 make it finite from t = 1 on.
        log_p = torch.logaddexp(log_p + log_keep, log_q + log_mix)
        tau_t = temperature * (1.0 - beta * t / depth)
        log_q = torch.log_softmax(s / tau_t, dim=1)
        steps.append(RecursionStep(t, tau_t, log_p, log_q))
    return steps


def rkdo_loss(z1: Tensor, z2: Tensor, *, temperature: float = 0.5, alpha: float = 0.5,
              depth: int = 3, beta: float = 0.1) -> Tensor:
    """RKDO: Σ_{t=1..T} KL(p_t || q_t), batchmean each (docs/method.md §3, eqs. 1–4).

    z1, z2: (B, D) L2-normalised embeddings. Returns a scalar tensor. Nothing is detached.
    """
    steps = rkdo_recursion(z1, z2, temperature=temperature, alpha=alpha, depth=depth, beta=beta)
    return torch.stack([_kl_batchmean(st.log_p, st.log_q) for st in steps[1:]]).sum()


LossFn = Callable[..., Tensor]

#: method name -> loss function. Keyword names equal the RunConfig field names.
LOSSES: dict[str, LossFn] = {"icon": icon_loss, "rkdo": rkdo_loss}

#: method name -> the RunConfig fields that are that loss's keyword arguments.
LOSS_KWARGS: dict[str, tuple[str, ...]] = {
    "icon": ("temperature", "debias_alpha"),
    "rkdo": ("temperature", "alpha", "depth", "beta"),
}


def loss_for(config) -> Callable[[Tensor, Tensor], Tensor]:
    """The configured method's loss as a function of (z1, z2) only."""
    fn = LOSSES[config.method]
    kwargs = {name: getattr(config, name) for name in LOSS_KWARGS[config.method]}

    def loss(z1: Tensor, z2: Tensor) -> Tensor:
        return fn(z1, z2, **kwargs)

    loss.__name__ = f"{config.method}_loss"
    return loss
