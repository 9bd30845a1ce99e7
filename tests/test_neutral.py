"""Neutral yardsticks (rkdo_core.neutral): closed forms, explicit-loop references,
invariances, and the fixed-teacher RKDO's equality with rkdo_loss."""

from __future__ import annotations

import math

import pytest
import torch

from rkdo_core.losses import rkdo_loss
from rkdo_core.neutral import (
    alignment,
    effective_rank,
    infonce_excluding_positive,
    rkdo_fixed_teacher,
    uniformity,
)


def _unit(b: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, d, generator=g, dtype=dtype)
    return z / z.norm(dim=1, keepdim=True)


def _rotation(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


# ---- alignment / uniformity -------------------------------------------------------------


def test_alignment_closed_forms():
    z = _unit(8, 5, 0)
    assert float(alignment(z, z)) == pytest.approx(0.0, abs=1e-12)
    assert float(alignment(z, -z)) == pytest.approx(4.0)  # ‖2u‖² = 4
    assert float(alignment(z, -z, alpha=1)) == pytest.approx(2.0)
    # normalised inside: rescaling rows changes nothing
    scale = torch.arange(1.0, 9.0, dtype=torch.float64)[:, None]
    assert float(alignment(3 * z, z * scale)) == pytest.approx(0.0, abs=1e-12)
    # explicit loop
    z2 = _unit(8, 5, 1)
    ref = sum(sum((a - b) ** 2 for a, b in zip(z[i].tolist(), z2[i].tolist()))
              for i in range(8)) / 8
    assert float(alignment(z, z2)) == pytest.approx(ref)


def test_uniformity_closed_forms():
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    assert float(uniformity(antipodal)) == pytest.approx(-8.0)  # log exp(-2·4)
    assert float(uniformity(antipodal, t=0.5)) == pytest.approx(-2.0)
    collapsed = torch.ones(5, 3, dtype=torch.float64)
    assert float(uniformity(collapsed)) == pytest.approx(0.0, abs=1e-12)
    # regular simplex in the plane (3 points at 120°): every ‖zi − zj‖² = 3
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    tri = torch.stack([ang.cos(), ang.sin()], dim=1)
    assert float(uniformity(tri)) == pytest.approx(-6.0)


def test_uniformity_matches_loop_and_is_rotation_invariant():
    z = _unit(10, 4, 2)
    terms = []
    for i in range(10):
        for j in range(i + 1, 10):
            terms.append(math.exp(-2 * float(((z[i] - z[j]) ** 2).sum())))
    assert float(uniformity(z)) == pytest.approx(math.log(sum(terms) / len(terms)))
    rot = _rotation(4, 3)
    assert float(uniformity(z @ rot)) == pytest.approx(float(uniformity(z)), abs=1e-12)
    assert float(alignment(z @ rot, _unit(10, 4, 4) @ rot)) == pytest.approx(
        float(alignment(z, _unit(10, 4, 4))), abs=1e-12)


def test_uniformity_gradient_is_finite_at_collapse():
    z = torch.ones(4, 3, dtype=torch.float64, requires_grad=True)
    uniformity(z).backward()
    assert torch.isfinite(z.grad).all()


# ---- effective rank ---------------------------------------------------------------------


def test_effective_rank_closed_forms():
    eye = torch.eye(6, dtype=torch.float64)
    assert float(effective_rank(eye)) == pytest.approx(6.0, rel=1e-5)
    orth = _rotation(6, 0)[:4]  # 4 orthonormal rows in R^6
    assert float(effective_rank(orth)) == pytest.approx(4.0, rel=1e-5)
    assert float(effective_rank(orth, eps=0.0)) == pytest.approx(4.0, rel=1e-12)
    rank1 = torch.outer(torch.arange(1.0, 9.0, dtype=torch.float64),
                        torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    assert float(effective_rank(rank1)) == pytest.approx(1.0, abs=1e-4)
    # two singular values 3 and 1: p = (3/4, 1/4), exp(H)
    diag = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(effective_rank(diag, eps=0.0)) == pytest.approx(math.exp(h))
    # scale invariant, and invariant to rotating the embedding space
    z = _unit(12, 5, 5)
    assert float(effective_rank(7 * z)) == pytest.approx(float(effective_rank(z)))
    assert float(effective_rank(z @ _rotation(5, 6))) == pytest.approx(float(effective_rank(z)))


# ---- decoupled InfoNCE ------------------------------------------------------------------


def _dcl_loop(z1, z2, tau, negatives):
    def unit(row):
        n = math.sqrt(sum(v * v for v in row))
        return [v / n for v in row]

    u1 = [unit(row) for row in z1.tolist()]
    u2 = [unit(row) for row in z2.tolist()]

    def dot(a, b):
        return sum(x * y for x, y in zip(a, b))

    b = len(u1)
    total = 0.0
    for anchor, other in ((u1, u2), (u2, u1)):
        for i in range(b):
            denom = 0.0
            for j in range(b):
                if j == i:
                    continue
                denom += math.exp(dot(anchor[i], other[j]) / tau)
                if negatives == "both":
                    denom += math.exp(dot(anchor[i], anchor[j]) / tau)
            total += -dot(anchor[i], other[i]) / tau + math.log(denom)
    return total / (2 * b)


def test_infonce_excluding_positive_hand_computed_2x2():
    # z1 = (e1, e2), z2 = (e1, e1): s = z1·z2 = [[1, 1], [0, 0]], z1·z1 = I, z2·z2 = all ones
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    z1 = torch.tensor([e1, e2], dtype=torch.float64)
    z2 = torch.tensor([e1, e1], dtype=torch.float64)
    tau = 0.5
    # cross only: view-1 anchors: i=0: -1/τ + log e^{1/τ}=0; i=1: -0 + log e^{0}=0
    #             view-2 anchors: i=0: -1/τ + log e^{0}; i=1: -0 + log e^{1/τ}
    cross = (0.0 + 0.0 + (-2.0 + 0.0) + (0.0 + 2.0)) / 4
    assert float(infonce_excluding_positive(z1, z2, tau, negatives="cross")) \
        == pytest.approx(cross)
    # both: add z1·z1 (off-diag 0) to view-1 denominators and z2·z2 (off-diag 1) to view-2's
    both = ((-2.0 + math.log(math.exp(2) + 1)) + math.log(1 + 1)
            + (-2.0 + math.log(1 + math.exp(2))) + math.log(math.exp(2) + math.exp(2))) / 4
    assert float(infonce_excluding_positive(z1, z2, tau)) == pytest.approx(both)


@pytest.mark.parametrize("negatives", ["both", "cross"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_infonce_excluding_positive_matches_loop(negatives, tau):
    z1 = _unit(3, 4, 7) * 2.5  # normalised inside
    z2 = _unit(3, 4, 8)
    assert float(infonce_excluding_positive(z1, z2, tau, negatives=negatives)) \
        == pytest.approx(_dcl_loop(z1, z2, tau, negatives))
    z1, z2 = _unit(9, 5, 9), _unit(9, 5, 10)
    assert float(infonce_excluding_positive(z1, z2, tau, negatives=negatives)) \
        == pytest.approx(_dcl_loop(z1, z2, tau, negatives))
    # symmetric in the views, invariant to a common rotation
    assert float(infonce_excluding_positive(z2, z1, tau, negatives=negatives)) \
        == pytest.approx(float(infonce_excluding_positive(z1, z2, tau, negatives=negatives)))
    rot = _rotation(5, 11)
    assert float(infonce_excluding_positive(z1 @ rot, z2 @ rot, tau, negatives=negatives)) \
        == pytest.approx(float(infonce_excluding_positive(z1, z2, tau, negatives=negatives)))


def test_validation_names_the_argument():
    z = _unit(4, 3, 0)
    with pytest.raises(ValueError, match="temperature"):
        infonce_excluding_positive(z, z, 0.0)
    with pytest.raises(ValueError, match="negatives"):
        infonce_excluding_positive(z, z, 0.1, negatives="within")
    with pytest.raises(ValueError, match="same shape"):
        alignment(z, z[:3])
    with pytest.raises(ValueError, match="all-zero rows"):
        alignment(torch.zeros(4, 3), z)
    with pytest.raises(ValueError, match="t must"):
        uniformity(z, t=-1)
    with pytest.raises(ValueError, match="eps"):
        effective_rank(z, eps=2)
    with pytest.raises(ValueError, match="batch size"):
        rkdo_fixed_teacher(z, z, z[:3], z[:3])


# ---- RKDO with a frozen teacher ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("settings", [{}, {"alpha": 0.3, "depth": 5, "beta": 0.4},
                                      {"alpha": 1.0, "depth": 1, "beta": 0.0,
                                       "temperature": 0.1}])
def test_fixed_teacher_equals_rkdo_loss_when_teacher_is_the_model(dtype, settings):
    z1, z2 = _unit(16, 8, 1, dtype), _unit(16, 8, 2, dtype)
    assert torch.equal(rkdo_fixed_teacher(z1, z2, z1, z2, **settings),
                       rkdo_loss(z1, z2, **settings))


def test_fixed_teacher_gradient_reaches_only_the_student():
    z1 = _unit(12, 6, 3).requires_grad_()
    z2 = _unit(12, 6, 4).requires_grad_()
    t1 = _unit(12, 10, 5).requires_grad_()  # the teacher may have another dimension
    t2 = _unit(12, 10, 6).requires_grad_()
    loss = rkdo_fixed_teacher(z1, z2, t1, t2)
    g = torch.autograd.grad(loss, [z1, z2, t1, t2], allow_unused=True)
    assert g[2] is None and g[3] is None
    assert g[0].abs().sum() > 0 and g[1].abs().sum() > 0
    # with teacher = model, the values agree but the gradients differ: rkdo_loss also
    # differentiates through its own teacher
    a1, a2 = _unit(12, 6, 3).requires_grad_(), _unit(12, 6, 4).requires_grad_()
    fixed = torch.autograd.grad(rkdo_fixed_teacher(a1, a2, a1, a2), [a1])[0]
    own = torch.autograd.grad(rkdo_loss(a1, a2), [a1])[0]
    assert not torch.allclose(fixed, own)


def test_fixed_teacher_is_a_fixed_function_of_the_student():
    # The score of a student against a frozen teacher does not depend on who else is scored,
    # and differs from the student's own RKDO loss.
    t1, t2 = _unit(16, 8, 7), _unit(16, 8, 8)
    s1, s2 = _unit(16, 8, 9), _unit(16, 8, 10)
    a = rkdo_fixed_teacher(s1, s2, t1, t2)
    assert torch.equal(a, rkdo_fixed_teacher(s1.clone(), s2.clone(), t1, t2))
    assert not torch.isclose(a, rkdo_loss(s1, s2))
    assert float(a) > 0
