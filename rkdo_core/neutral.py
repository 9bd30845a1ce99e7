"""Neutral yardsticks: measures of two views' embeddings that neither compared method owns.

A method's own loss is a biased judge of that method (RKDO's teacher is made of the
model's own output, docs/method.md §6), so the suite also scores embeddings on measures from the
literature that neither I-Con nor RKDO optimises:

- :func:`alignment` and :func:`uniformity` (Wang & Isola 2020),
- :func:`effective_rank` (RankMe, Garrido et al. 2023),
- :func:`infonce_excluding_positive` (the decoupled contrastive loss, Yeh et al. 2022),
- :func:`rkdo_fixed_teacher`: the RKDO objective with the teacher distribution taken from a
  *frozen reference encoder*, so that it is a fixed function of the scored embeddings.

All functions take torch tensors of shape (B, d) (``z1``, ``z2``: the two views'
projections of the same B images, row i of each being a positive pair) and return a
scalar tensor (differentiable where the definition is). Where the definition says so the
embeddings are L2-normalised inside.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .losses import _kl_batchmean, rkdo_recursion


def _check_batch(z: Tensor, name: str, *, min_rows: int = 1) -> None:
    if not isinstance(z, Tensor):
        raise ValueError(f"{name} must be a torch tensor of shape (B, d); got {type(z).__name__}")
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (B, d); got {tuple(z.shape)}")
    if z.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows; got B={z.shape[0]}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_pair(z1: Tensor, z2: Tensor, *, min_rows: int = 1,
                names: tuple[str, str] = ("z1", "z2")) -> None:
    _check_batch(z1, names[0], min_rows=min_rows)
    _check_batch(z2, names[1], min_rows=min_rows)
    if z1.shape != z2.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape (B, d); "
                         f"got {tuple(z1.shape)} and {tuple(z2.shape)}")


def _normalise(z: Tensor, name: str) -> Tensor:
    norms = z.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError(f"{name} has {int((norms == 0).sum())} all-zero rows, which cannot be "
                         "L2-normalised; all rows must be non-zero")
    return z / norms


def _positive_number(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0; got {name}={value!r}")
    return float(value)


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2) -> Tensor:
    """Alignment of positive pairs, ``E_i ‖ẑ1_i − ẑ2_i‖₂^α`` on L2-normalised rows.

    Wang & Isola 2020, "Understanding Contrastive Representation Learning through Alignment
    and Uniformity on the Hypersphere", ``align_loss`` (α = 2 by default). Lower is better;
    0 for identical views, 4 (α = 2) for antipodal ones.
    """
    _check_pair(z1, z2)
    alpha = _positive_number(alpha, "alpha")
    u1, u2 = _normalise(z1, "z1"), _normalise(z2, "z2")
    return (u1 - u2).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(z: Tensor, t: float = 2) -> Tensor:
    """Uniformity, ``log mean_{i<j} exp(−t ‖ẑ_i − ẑ_j‖²)`` over distinct pairs of
    L2-normalised rows.

    Wang & Isola 2020, ``uniform_loss`` (t = 2 by default; their code uses ``torch.pdist``,
    i.e. the B(B−1)/2 pairs i < j). Lower is more uniform; 0 for a collapsed batch. Here
    squared distances are ``2 − 2 ẑ_i·ẑ_j`` (clamped at 0), which keeps gradients finite at
    coincident points where ``pdist``'s square root has none, and the mean of exponentials is
    taken as a log-sum-exp.
    """
    _check_batch(z, "z", min_rows=2)
    t = _positive_number(t, "t")
    u = _normalise(z, "z")
    sq = (2.0 - 2.0 * (u @ u.T)).clamp_min(0.0)
    i, j = torch.triu_indices(u.shape[0], u.shape[0], offset=1, device=u.device)
    pairs = sq[i, j]
    return torch.logsumexp(-t * pairs, dim=0) - math.log(pairs.numel())


def effective_rank(z: Tensor, eps: float = 1e-7) -> Tensor:
    """RankMe effective rank: ``exp(−Σ_k p_k log p_k)`` with ``p_k = σ_k / ‖σ‖₁ + eps``.

    Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of Pretrained
    Self-Supervised Representations by Their Rank" (eq. 1), σ the singular values of the
    (B, d) embedding matrix as it is (not centred, not row-normalised, as in RankMe).
    Between ~1 (rank one) and min(B, d) (all singular values equal).
    """
    _check_batch(z, "z")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 <= eps < 1:
        raise ValueError(f"eps must be a number in [0, 1); got eps={eps!r}")
    s = torch.linalg.svdvals(z)
    total = s.sum()
    if total == 0:
        raise ValueError("z is all zeros; its effective rank is undefined")
    p = s / total + eps
    return torch.exp(-(p * p.log()).sum())


NEGATIVES = ("both", "cross")


def infonce_excluding_positive(z1: Tensor, z2: Tensor, temperature: float, *,
                               negatives: str = "both") -> Tensor:
    """InfoNCE with the positive excluded from the denominator (decoupled contrastive
    loss, Yeh et al. 2022, "Decoupled Contrastive Learning", ECCV), symmetric over views.

    On L2-normalised rows ``u1, u2`` and for anchor view k ∈ {1, 2} (other view k̄):
    ``ℓ_i^(k) = −u_k,i·u_k̄,i / τ + log Σ_{j≠i} [exp(u_k,i·u_k̄,j / τ) + exp(u_k,i·u_k,j / τ)]``
    (``negatives="both"``: the 2(B−1) negatives of both views, as in DCL / SimCLR's NT-Xent
    without its positive), or with only the cross-view terms ``exp(u_k,i·u_k̄,j / τ)``
    (``negatives="cross"``: the notebook's cross-view similarity S with its diagonal removed
    from the denominator). Returns the mean of ℓ over i and both anchor views (common DCL
    code sums the two one-way losses instead, i.e. twice this value).
    Unlike InfoNCE it is not bounded below by 0 and is not a KL; it is a fixed function of
    the embeddings that neither I-Con nor RKDO optimises (the suite reports τ ∈ {0.1, 0.5}).
    """
    _check_pair(z1, z2, min_rows=2)
    temperature = _positive_number(temperature, "temperature")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {list(NEGATIVES)}; got {negatives!r}")
    u1, u2 = _normalise(z1, "z1"), _normalise(z2, "z2")
    b = u1.shape[0]
    off = ~torch.eye(b, dtype=torch.bool, device=u1.device)
    losses = []
    for a, o in ((u1, u2), (u2, u1)):
        cross = (a @ o.T) / temperature
        positive = cross.diagonal()
        logits = [cross[off].view(b, b - 1)]
        if negatives == "both":
            logits.append(((a @ a.T) / temperature)[off].view(b, b - 1))
        denom = torch.logsumexp(torch.cat(logits, dim=1), dim=1)
        losses.append((denom - positive).mean())
    return 0.5 * (losses[0] + losses[1])


def rkdo_fixed_teacher(z1: Tensor, z2: Tensor, teacher_z1: Tensor, teacher_z2: Tensor, *,
                       temperature: float = 0.5, alpha: float = 0.5, depth: int = 3,
                       beta: float = 0.1) -> Tensor:
    """RKDO objective whose teachers come from a frozen reference encoder.

    :func:`rkdo_core.losses.rkdo_recursion` builds each target from the scored model itself:
    ``p_0 = I``, ``p_t = (1 − α) p_{t−1} + α q_{t−1}`` with ``q_{t−1} = softmax(S / τ_{t−1})``
    and ``S = z1 z2ᵀ``; the loss is ``Σ_{t=1..T} KL(p_t || q_t)`` (docs/method.md §3, eqs. 1–4).
    Here the targets ``p_t`` are that same recursion run on the teacher similarity
    ``S_T = teacher_z1 teacher_z2ᵀ`` (detached: no gradient reaches the teacher), while
    ``q_t = softmax(S / τ_t)`` comes from the scored embeddings:
    ``Σ_t KL(p_t[S_T] || q_t[S])``. For a fixed teacher this is a fixed function of
    (z1, z2) — a yardstick no trained model owns. With ``teacher_z = z`` it equals
    :func:`rkdo_core.losses.rkdo_loss` exactly (same operations, same order).

    All four inputs are L2-normalised embeddings as the losses expect (not normalised
    here, so that the equality with ``rkdo_loss`` is exact); the teacher may have another
    dimension d' but the same batch size B. Keyword names and defaults are those of
    ``rkdo_loss`` (the RunConfig defaults).
    """
    _check_pair(z1, z2, min_rows=2)
    _check_pair(teacher_z1, teacher_z2, min_rows=2, names=("teacher_z1", "teacher_z2"))
    if teacher_z1.shape[0] != z1.shape[0]:
        raise ValueError(f"teacher_z1 must have the batch size B={z1.shape[0]} of z1; "
                         f"got {teacher_z1.shape[0]}")
    settings = {"temperature": temperature, "alpha": alpha, "depth": depth, "beta": beta}
    teacher = rkdo_recursion(teacher_z1.detach(), teacher_z2.detach(), **settings)
    student = rkdo_recursion(z1, z2, **settings)
    return torch.stack([_kl_batchmean(tt.log_p, st.log_q)
                        for tt, st in zip(teacher[1:], student[1:])]).sum()
