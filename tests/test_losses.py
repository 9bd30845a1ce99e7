"""Losses against a slow loop-based reference, closed-form cases and invariants."""

import math

import pytest
import torch
import torch.nn.functional as F

from rkdo_core.config import RunConfig
from rkdo_core.losses import LOSSES, icon_loss, loss_for, rkdo_loss, rkdo_recursion
from rkdo_core.model import build_model


def _embeddings(b, d, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    z2 = F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=1)
    return z1, z2


# ---- slow reference: plain Python loops over rows and columns, docs/method.md §3 verbatim ----
def _softmax_row(s_row, tau):
    m = max(s_row)
    e = [math.exp((v - m) / tau) for v in s_row]
    tot = sum(e)
    return [v / tot for v in e]


def _kl_batchmean_ref(p, q):
    b = len(p)
    total = 0.0
    for i in range(b):
        for j in range(b):
            if p[i][j] > 0:
                total += p[i][j] * math.log(p[i][j] / q[i][j])
    return total / b


def _sim(z1, z2):
    a, c = z1.tolist(), z2.tolist()
    return [[sum(x * y for x, y in zip(a[i], c[j])) for j in range(len(c))] for i in range(len(a))]


def icon_ref(z1, z2, tau, a):
    s = _sim(z1, z2)
    b = len(s)
    p = [[(1 - a) * (i == j) + a / b for j in range(b)] for i in range(b)]
    q = [_softmax_row(row, tau) for row in s]
    return _kl_batchmean_ref(p, q)


def rkdo_ref(z1, z2, tau0, alpha, depth, beta):
    s = _sim(z1, z2)
    b = len(s)
    p = [[1.0 * (i == j) for j in range(b)] for i in range(b)]
    q = [_softmax_row(row, tau0) for row in s]
    total = 0.0
    for t in range(1, depth + 1):
        p = [[(1 - alpha) * p[i][j] + alpha * q[i][j] for j in range(b)] for i in range(b)]
        q = [_softmax_row(row, tau0 * (1 - beta * t / depth)) for row in s]
        total += _kl_batchmean_ref(p, q)
    return total


@pytest.mark.parametrize("b", [2, 5, 16])
@pytest.mark.parametrize("d", [3, 64])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_icon_matches_loop_reference(b, d, tau):
    z1, z2 = _embeddings(b, d, seed=b * 100 + d)
    for a in (0.0, 0.2, 1.0):
        got = icon_loss(z1, z2, temperature=tau, debias_alpha=a).item()
        assert got == pytest.approx(icon_ref(z1, z2, tau, a), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("b", [2, 5, 16])
@pytest.mark.parametrize("d", [3, 64])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_rkdo_matches_loop_reference(b, d, tau):
    z1, z2 = _embeddings(b, d, seed=b * 100 + d + 1)
    for alpha, depth, beta in [(0.5, 3, 0.1), (1.0, 1, 0.0), (0.2, 5, 0.5), (0.9, 2, -0.3)]:
        got = rkdo_loss(z1, z2, temperature=tau, alpha=alpha, depth=depth, beta=beta).item()
        want = rkdo_ref(z1, z2, tau, alpha, depth, beta)
        assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_float32_agrees_with_float64():
    z1, z2 = _embeddings(64, 64, seed=3)
    for fn in LOSSES.values():
        assert fn(z1.float(), z2.float()).item() == pytest.approx(fn(z1, z2).item(), rel=1e-5)


# ---- closed-form cases ------------------------------------------------------------------
def test_icon_closed_form_orthogonal_views():
    # z1 = z2 = rows of the identity: S = I, so every row has logits 1/τ at the positive
    # and 0 elsewhere; with a = 0 the loss is -log q_ii = log(e^{1/τ} + B - 1) - 1/τ.
    b, tau = 6, 0.5
    z = torch.eye(b, dtype=torch.float64)
    want = math.log(math.exp(1 / tau) + b - 1) - 1 / tau
    assert icon_loss(z, z, temperature=tau, debias_alpha=0.0).item() == pytest.approx(want)


def test_identical_embeddings_give_uniform_q():
    # All embeddings equal: S is constant, q is uniform 1/B in every row.
    b = 8
    z = F.normalize(torch.ones(b, 4, dtype=torch.float64), dim=1)
    # I-Con: KL(p || uniform) = sum_j p_j log(B p_j) for p = (1-a)I + a/B.
    a = 0.2
    pd, po = (1 - a) + a / b, a / b
    want = pd * math.log(b * pd) + (b - 1) * po * math.log(b * po)
    assert icon_loss(z, z, debias_alpha=a).item() == pytest.approx(want)
    # RKDO: q_t uniform for all t, p_t = (1-α)^t I + (1 - (1-α)^t) U.
    alpha, depth = 0.5, 3
    want = 0.0
    for t in range(1, depth + 1):
        keep = (1 - alpha) ** t
        pd, po = keep + (1 - keep) / b, (1 - keep) / b
        want += pd * math.log(b * pd) + (b - 1) * po * math.log(b * po)
    assert rkdo_loss(z, z, alpha=alpha, depth=depth).item() == pytest.approx(want)


def test_rkdo_alpha_one_depth_one_compares_two_temperatures():
    # α = 1, T = 1: p_1 = q_0 = softmax(S/τ0), q_1 = softmax(S/(τ0(1-β))): KL between the two.
    z1, z2 = _embeddings(10, 8, seed=7)
    s = z1 @ z2.T
    tau, beta = 0.5, 0.2
    log_p = torch.log_softmax(s / tau, 1)
    log_q = torch.log_softmax(s / (tau * (1 - beta)), 1)
    want = (log_p.exp() * (log_p - log_q)).sum() / 10
    got = rkdo_loss(z1, z2, temperature=tau, alpha=1.0, depth=1, beta=beta)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    # ... and with β = 0 the two are the same distribution: loss exactly 0.
    assert rkdo_loss(z1, z2, alpha=1.0, depth=1, beta=0.0).item() == pytest.approx(0, abs=1e-12)


# ---- invariants -------------------------------------------------------------------------
def test_losses_are_nonnegative_and_permutation_invariant():
    z1, z2 = _embeddings(12, 16, seed=11)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    for fn in LOSSES.values():
        value = fn(z1, z2)
        assert value.item() >= 0
        # Permuting the batch (both views together) permutes rows and columns of S alike.
        assert fn(z1[perm], z2[perm]).item() == pytest.approx(value.item(), rel=1e-12)


def test_recursion_rows_are_distributions():
    z1, z2 = _embeddings(9, 5, seed=2)
    steps = rkdo_recursion(z1, z2, depth=4)
    assert [s.t for s in steps] == [0, 1, 2, 3, 4]
    for s in steps:
        torch.testing.assert_close(s.log_p.exp().sum(1), torch.ones(9, dtype=torch.float64))
        torch.testing.assert_close(s.log_q.exp().sum(1), torch.ones(9, dtype=torch.float64))
    assert [s.temperature for s in steps] == pytest.approx([0.5 * (1 - 0.1 * t / 4)
                                                             for t in range(5)])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradients_finite_and_flow_through_teacher(name):
    z1, z2 = _embeddings(16, 8, seed=5, dtype=torch.float32)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    LOSSES[name](z1, z2).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert z1.grad.abs().sum() > 0


def test_rkdo_teacher_is_not_detached():
    # The gradient of Σ KL(p_t||q_t) includes the path through p_t; a detached teacher
    # gives a different gradient.
    z1, z2 = _embeddings(8, 4, seed=9)
    z1.requires_grad_(True)
    (g_full,) = torch.autograd.grad(rkdo_loss(z1, z2), z1)
    steps = rkdo_recursion(z1, z2)
    detached = sum(((s.log_p.detach().exp()) * (s.log_p.detach() - s.log_q)).sum() / 8
                   for s in steps[1:])
    (g_det,) = torch.autograd.grad(detached, z1)
    assert not torch.allclose(g_full, g_det)


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("case", ["tiny_tau", "b2", "identical", "antipodal"])
def test_extreme_legal_inputs_stay_finite(name, case):
    tau = 1e-4 if case == "tiny_tau" else 0.5
    b = 2 if case == "b2" else 8
    z1, z2 = _embeddings(b, 16, seed=1, dtype=torch.float32)
    if case == "identical":
        z1 = z2 = F.normalize(torch.ones(b, 16), dim=1)
    if case == "antipodal":
        z2 = -z1
    z1 = z1.clone().requires_grad_(True)
    loss = LOSSES[name](z1, z2, temperature=tau)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z1.grad).all()


def test_bad_shapes_give_clear_errors():
    z1, z2 = _embeddings(4, 3, seed=0)
    with pytest.raises(ValueError, match="shape"):
        icon_loss(z1, z2[:3])
    with pytest.raises(ValueError, match="B=1"):
        rkdo_loss(z1[:1], z2[:1])
    with pytest.raises(ValueError, match="alpha"):
        rkdo_loss(z1, z2, alpha=1.5)


def test_loss_for_passes_config_knobs():
    z1, z2 = _embeddings(6, 5, seed=4)
    cfg = RunConfig(method="rkdo", temperature=0.3, alpha=0.7, depth=2, beta=0.2)
    assert loss_for(cfg)(z1, z2).item() == pytest.approx(
        rkdo_loss(z1, z2, temperature=0.3, alpha=0.7, depth=2, beta=0.2).item())
    cfg = RunConfig(method="icon", temperature=0.3, debias_alpha=0.1)
    assert loss_for(cfg)(z1, z2).item() == pytest.approx(
        icon_loss(z1, z2, temperature=0.3, debias_alpha=0.1).item())


def test_untrained_encoder_rkdo_loss_well_below_icon():
    """docs/method.md §6.1 as a property: before any training RKDO's loss is far below I-Con's,
    because its teacher p_t is partly the model's own q. Two views of the same images."""
    from rkdo_core.augment import two_views
    from rkdo_core.data import load_dataset

    images = load_dataset("digits").train.images[:64]
    ratios = []
    for seed in (42, 123, 456):
        model = build_model(RunConfig(seed=seed)).train()
        v1, v2 = two_views(images, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            z1, z2 = model(v1), model(v2)
        ratios.append((rkdo_loss(z1, z2) / icon_loss(z1, z2)).item())
    # Measured ≈ 0.7 (the paper's "~30 % improvement" before a single step).
    assert all(r < 0.85 for r in ratios), ratios


# ---- non-finite inputs (issue 17: a diverged model must give a non-finite loss) -----------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_LOSS_KNOBS = {
    "icon": dict(temperature=st.floats(1e-3, 1e3), debias_alpha=st.floats(0.0, 1.0)),
    "rkdo": dict(temperature=st.floats(1e-3, 1e3), alpha=st.floats(1e-6, 1.0),
                 depth=st.integers(1, 5), beta=st.floats(-1.0, 0.9)),
}


@st.composite
def _poisoned_inputs(draw):
    """A loss name, its knobs, and unit embeddings with one NaN/±inf placed anywhere."""
    name = draw(st.sampled_from(sorted(LOSSES)))
    knobs = {k: draw(v) for k, v in _LOSS_KNOBS[name].items()}
    b, d = draw(st.integers(2, 9)), draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    z1, z2 = _embeddings(b, d, seed=draw(st.integers(0, 2**16)), dtype=dtype)
    if draw(st.booleans()):
        z2 = z1.clone()  # identical views (a collapsed or perfectly aligned model) too
    which = draw(st.sampled_from(["z1", "z2", "both"]))
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    i, j = draw(st.integers(0, b - 1)), draw(st.integers(0, d - 1))
    z1, z2 = z1.clone(), z2.clone()
    for z in ((z1,) if which == "z1" else (z2,) if which == "z2" else (z1, z2)):
        z[i, j] = bad
    return name, knobs, z1, z2


@settings(max_examples=400, deadline=None)
@given(_poisoned_inputs())
def test_any_non_finite_embedding_gives_non_finite_loss(case):
    # Before the fix, _kl_batchmean masked `p > 0`: a NaN teacher entry (RKDO's p_t is
    # built from the model's own q) failed that test and its term became 0, so one NaN
    # embedding made rkdo_loss exactly 0.0 — a finite loss the training guard let through.
    name, knobs, z1, z2 = case
    assert not torch.isfinite(LOSSES[name](z1, z2, **knobs))


def test_nan_embedding_regression_example():
    """The issue's example: I-Con was already NaN, RKDO returned exactly 0.0."""
    z1 = F.normalize(torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    z2 = z1.clone()
    z2[0, 0] = math.nan
    assert torch.isnan(icon_loss(z1, z2))
    assert torch.isnan(rkdo_loss(z1, z2))


@pytest.mark.parametrize("case", [
    ("icon", dict(debias_alpha=0.0)),               # target with exact zeros, log p = -inf
    ("icon", dict(debias_alpha=0.0, temperature=1e-3)),
    ("rkdo", dict(alpha=1.0)),                      # p_1 = q_0: the constant p_0 = I drops out
    ("rkdo", dict(alpha=1.0, temperature=1e-3)),    # teacher entries underflow to p = 0
    ("rkdo", dict(temperature=1e-3, beta=0.5)),
    ("rkdo", dict(alpha=1e-6, depth=5)),            # p_t ≈ p_0 = I: off-diagonal ≈ 0
])
def test_masking_exact_zeros_keeps_gradients_finite(case):
    # The masked branch p·(log p − log q) is NaN where log p = −inf (0·−inf); torch.where
    # must route a zero gradient into it, never that NaN.
    name, knobs = case
    for dtype in (torch.float32, torch.float64):
        z1, z2 = _embeddings(12, 6, seed=3, dtype=dtype)
        z1.requires_grad_(True)
        z2.requires_grad_(True)
        loss = LOSSES[name](z1, z2, **knobs)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
        assert z1.grad.abs().sum() > 0
