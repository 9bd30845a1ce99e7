"""The mechanism of the I-Con / RKDO loss gap (rkdo_core.mechanism): closed forms derived
from losses.py, checked against the training losses; sweeps against direct calls."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rkdo_core.config import RunConfig
from rkdo_core.losses import _kl_batchmean, icon_loss, loss_for, rkdo_loss, rkdo_recursion
from rkdo_core.mechanism import (
    DEFAULT_SETTINGS,
    SWEEP_PARAMETERS,
    binary_kl,
    function_gap,
    gap_sweep,
    kl_split,
    loss_decomposition,
    mean_positive_cosine,
    orthogonal_views,
    rkdo_alpha_zero_limit,
    rkdo_beta_zero_closed_form,
    synthetic_views,
    two_level_losses,
)


def test_defaults_are_runconfig_defaults():
    c = RunConfig()
    assert DEFAULT_SETTINGS == {k: getattr(c, k) for k in DEFAULT_SETTINGS}


def test_function_gap_uses_the_training_losses():
    z1, z2 = synthetic_views(64, 64, 0.6, seed=1, dtype=torch.float32)
    g = function_gap(z1, z2)
    assert g["L_icon"] == float(loss_for(RunConfig(method="icon"))(z1, z2))
    assert g["L_rkdo"] == float(loss_for(RunConfig(method="rkdo"))(z1, z2))
    assert g["gap"] == g["L_icon"] - g["L_rkdo"]
    assert g["relative_gap"] == pytest.approx(g["gap"] / g["L_icon"])
    s = {"temperature": 0.2, "debias_alpha": 0.1, "alpha": 0.7, "depth": 2, "beta": 0.3}
    g = function_gap(z1, z2, **s)
    assert g["L_icon"] == float(icon_loss(z1, z2, temperature=0.2, debias_alpha=0.1))
    assert g["L_rkdo"] == float(rkdo_loss(z1, z2, temperature=0.2, alpha=0.7, depth=2, beta=0.3))


# ---- synthetic views --------------------------------------------------------------------


def test_synthetic_views_deterministic_and_controlled():
    state = torch.get_rng_state()
    a1, a2 = synthetic_views(32, 16, 0.7, seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    b1, b2 = synthetic_views(32, 16, 0.7, seed=5)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    c1, _ = synthetic_views(32, 16, 0.7, seed=6)
    assert not torch.equal(a1, c1)
    assert torch.allclose(a1.norm(dim=1), torch.ones(32, dtype=a1.dtype))
    assert torch.allclose(a2.norm(dim=1), torch.ones(32, dtype=a2.dtype))
    one1, one2 = synthetic_views(8, 4, 1.0, seed=0)
    assert torch.equal(one1, one2)
    # cosine of the positives ≈ alignment (exactly in expectation as d grows)
    for a in (0.0, 0.5, 0.9):
        z1, z2 = synthetic_views(256, 512, a, seed=2)
        assert mean_positive_cosine(z1, z2) == pytest.approx(a, abs=0.02)


def test_orthogonal_views_have_an_exact_two_level_similarity():
    for a in (0.0, 0.3, 1.0):
        z1, z2 = orthogonal_views(5, 10, a)
        assert torch.allclose(z1 @ z2.T, a * torch.eye(5, dtype=torch.float64), atol=1e-15)
        assert torch.allclose(z2.norm(dim=1), torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="dim must be >= 10"):
        orthogonal_views(5, 9, 0.5)


# ---- chain-rule split ------------------------------------------------------------------


def test_kl_split_sums_to_the_kl_and_matches_loops():
    z1, z2 = synthetic_views(6, 5, 0.5, seed=3)
    s = z1 @ z2.T
    log_q = torch.log_softmax(s / 0.5, dim=1)
    a, b = 0.2, 6
    p = (1 - a) * torch.eye(b, dtype=s.dtype) + a / b
    pos, neg = kl_split(p.log(), log_q)
    assert float(pos + neg) == pytest.approx(float(_kl_batchmean(p.log(), log_q)), rel=1e-12)
    # I-Con's parts by hand: KL_bin(1 − a + a/B || q_ii) and a(B−1)/B · KL(U || q̃_i)
    q = log_q.exp().tolist()
    pd = 1 - a + a / b
    ref_pos = sum(binary_kl(pd, q[i][i]) for i in range(b)) / b
    ref_neg = 0.0
    for i in range(b):
        rest = 1 - q[i][i]
        ref_neg += (1 - pd) * sum((1 / (b - 1)) * math.log((1 / (b - 1)) / (q[i][j] / rest))
                                  for j in range(b) if j != i)
    assert float(pos) == pytest.approx(ref_pos, rel=1e-12)
    assert float(neg) == pytest.approx(ref_neg / b, rel=1e-10)
    # every RKDO step too, and the decomposition of both losses sums to the losses
    for st in rkdo_recursion(z1, z2)[1:]:
        p_, n_ = kl_split(st.log_p, st.log_q)
        assert float(p_ + n_) == pytest.approx(float(_kl_batchmean(st.log_p, st.log_q)))
    d = loss_decomposition(z1, z2)
    g = function_gap(z1, z2)
    assert d["icon_positive"] + d["icon_negative"] == pytest.approx(g["L_icon"], rel=1e-12)
    assert d["rkdo_positive"] + d["rkdo_negative"] == pytest.approx(g["L_rkdo"], rel=1e-12)


# ---- closed forms -----------------------------------------------------------------------


@pytest.mark.parametrize("alpha,depth", [(0.5, 3), (0.2, 1), (0.9, 5), (1.0, 2)])
def test_rkdo_with_beta_zero_depends_only_on_the_positives(alpha, depth):
    for seed, a in ((0, 0.0), (1, 0.5), (2, 0.95)):
        z1, z2 = synthetic_views(32, 16, a, seed=seed)
        loss = rkdo_loss(z1, z2, alpha=alpha, depth=depth, beta=0.0)
        closed = rkdo_beta_zero_closed_form(z1, z2, alpha=alpha, depth=depth)
        assert float(closed) == pytest.approx(float(loss), rel=1e-10, abs=1e-13)
        d = loss_decomposition(z1, z2, alpha=alpha, depth=depth, beta=0.0)
        assert abs(d["rkdo_negative"]) < 1e-12  # the negatives drop out


def test_alpha_one_beta_zero_rkdo_is_exactly_zero():
    for seed in range(3):
        z1, z2 = synthetic_views(16, 8, 0.3, seed=seed, dtype=torch.float32)
        assert float(rkdo_loss(z1, z2, alpha=1.0, beta=0.0)) == 0.0
    # with β > 0 and α = 1 it is the KL between softmaxes at consecutive temperatures
    z1, z2 = synthetic_views(16, 8, 0.3, seed=0)
    s = z1 @ z2.T
    taus = [0.5 * (1 - 0.1 * t / 3) for t in range(4)]
    ref = sum(_kl_batchmean(torch.log_softmax(s / taus[t - 1], 1),
                            torch.log_softmax(s / taus[t], 1)) for t in range(1, 4))
    assert float(rkdo_loss(z1, z2, alpha=1.0)) == pytest.approx(float(ref), rel=1e-12)


def test_alpha_to_zero_limit_is_a_sum_of_cross_entropies():
    z1, z2 = synthetic_views(64, 64, 0.5, seed=0)
    limit = float(rkdo_alpha_zero_limit(z1, z2))
    # depth 1, β = 0: the limit is I-Con *without* debiasing, not the trained I-Con
    assert float(rkdo_alpha_zero_limit(z1, z2, depth=1, beta=0.0)) == \
        float(icon_loss(z1, z2, debias_alpha=0.0))
    assert float(rkdo_alpha_zero_limit(z1, z2, depth=1, beta=0.0)) != \
        pytest.approx(float(icon_loss(z1, z2)))
    # the error is O(α log 1/α): its ratio to α log(1/α) stays bounded as α → 0
    ratios = []
    for alpha in (1e-4, 1e-6, 1e-8):
        err = abs(float(rkdo_loss(z1, z2, alpha=alpha)) - limit)
        ratios.append(err / (alpha * math.log(1 / alpha)))
    assert all(1.0 < r < 20.0 for r in ratios)
    assert abs(float(rkdo_loss(z1, z2, alpha=1e-8)) - limit) < 1e-5


def _simplex(b: int) -> torch.Tensor:
    """b unit vectors in R^b with pairwise cosine −1/(b−1) (centred basis vectors)."""
    e = torch.eye(b, dtype=torch.float64) - 1.0 / b
    return e / e.norm(dim=1, keepdim=True)


SETTINGS = [{}, {"temperature": 0.2, "debias_alpha": 0.1, "alpha": 0.3, "depth": 5,
                 "beta": 0.5}, {"alpha": 1.0, "depth": 1, "beta": 0.0}]


@pytest.mark.parametrize("settings", SETTINGS)
def test_two_level_closed_form_matches_the_losses(settings):
    b = 12
    cases = [(torch.ones(b, 7, dtype=torch.float64) / math.sqrt(7),) * 2 + (0.0,),
             (_simplex(b), _simplex(b), b / (b - 1))]
    for a in (0.0, 0.4, 0.8, 1.0):
        cases.append((*orthogonal_views(b, 2 * b, a), a))
    for z1, z2, margin in cases:
        closed = two_level_losses(b, margin, **settings)
        g = function_gap(z1, z2, **settings)
        assert closed["L_icon"] == pytest.approx(g["L_icon"], rel=1e-10, abs=1e-12)
        assert closed["L_rkdo"] == pytest.approx(g["L_rkdo"], rel=1e-10, abs=1e-12)
        d = loss_decomposition(z1, z2, **settings)
        assert abs(d["icon_negative"]) < 1e-12 and abs(d["rkdo_negative"]) < 1e-12
        steps = rkdo_recursion(z1, z2, **{k: v for k, v in {**DEFAULT_SETTINGS, **settings}
                                          .items() if k != "debias_alpha"})
        for (t, tau, p, qd, kl), st in zip(closed["rkdo_steps"], steps[1:]):
            assert st.t == t and st.temperature == pytest.approx(tau)
            assert float(st.log_p[0, 0].exp()) == pytest.approx(p, rel=1e-12)
            assert float(st.log_q[0, 0].exp()) == pytest.approx(qd, rel=1e-12)
            assert kl == pytest.approx(binary_kl(p, qd), rel=1e-12)


def test_collapsed_embeddings_closed_form_numbers():
    b, a = 64, 0.2
    z = torch.ones(b, 64, dtype=torch.float64) / 8.0
    # uniform q = 1/B: I-Con = KL_bin(1 − a + a/B || 1/B); RKDO = Σ_t KL_bin(π_t + (1−π_t)/B || 1/B)
    icon = binary_kl(1 - a + a / b, 1 / b)
    rkdo = sum(binary_kl(0.5 ** t + (1 - 0.5 ** t) / b, 1 / b) for t in (1, 2, 3))
    g = function_gap(z, z)
    assert g["L_icon"] == pytest.approx(icon, rel=1e-12)
    assert g["L_rkdo"] == pytest.approx(rkdo, rel=1e-12)
    assert (round(icon, 4), round(rkdo, 4), round(g["relative_gap"], 4)) == \
        (2.8472, 2.1396, 0.2485)
    # τ and β drop out at the uniform point
    assert function_gap(z, z, temperature=0.1, beta=0.7)["L_rkdo"] == pytest.approx(rkdo)
    # depth 1 with α = a is then exactly I-Con: (1 − α)I + α q = (1 − a)I + a/B
    assert float(rkdo_loss(z, z, alpha=a, depth=1)) == pytest.approx(icon, rel=1e-12)


def test_independent_views_in_high_dimension_tend_to_the_uniform_point():
    z1, z2 = synthetic_views(64, 2 ** 15, 0.0, seed=0)
    g = function_gap(z1, z2)
    closed = two_level_losses(64, 0.0)
    assert g["L_icon"] == pytest.approx(closed["L_icon"], rel=5e-3)
    assert g["L_rkdo"] == pytest.approx(closed["L_rkdo"], rel=5e-3)
    assert g["relative_gap"] == pytest.approx(closed["relative_gap"], abs=5e-3)


def test_two_level_gap_grows_with_margin_on_the_reachable_range_at_defaults():
    b = 64
    gaps = [two_level_losses(b, m)["relative_gap"] for m in np.linspace(0, b / (b - 1), 50)]
    assert all(x < y for x, y in zip(gaps, gaps[1:]))
    # ... but it is not a law: at τ0 = 0.2 it turns over inside the same range
    cold = [two_level_losses(b, m, temperature=0.2)["relative_gap"] for m in (0.0, 0.75, 1.0)]
    assert cold[1] > cold[0] and cold[2] < cold[1]


# ---- sweeps -----------------------------------------------------------------------------


def test_gap_sweep_rows_equal_direct_calls():
    df = gap_sweep("alpha", [0.3, 0.5], alignment=0.8, batch_size=16, dim=8, seeds=(0, 1),
                   depth=2)
    assert len(df) == 4
    assert list(zip(df["value"], df["seed"])) == [(0.3, 0), (0.3, 1), (0.5, 0), (0.5, 1)]
    for row in df.itertuples():
        z1, z2 = synthetic_views(16, 8, 0.8, seed=row.seed)
        g = function_gap(z1, z2, alpha=row.value, depth=2)
        assert (row.L_icon, row.L_rkdo, row.gap, row.relative_gap) == \
            (g["L_icon"], g["L_rkdo"], g["gap"], g["relative_gap"])
        assert row.alpha == row.value and row.depth == 2 and row.beta == 0.1
    al = gap_sweep("alignment", [0.0, 1.0], batch_size=8, dim=4, seeds=(3,))
    z1, z2 = synthetic_views(8, 4, 1.0, seed=3)
    assert al.iloc[1]["L_rkdo"] == function_gap(z1, z2)["L_rkdo"]
    assert al.iloc[1]["alignment"] == 1.0
    # deterministic
    again = gap_sweep("alpha", [0.3, 0.5], alignment=0.8, batch_size=16, dim=8, seeds=(0, 1),
                      depth=2)
    assert df.equals(again)


def test_gap_sweep_parameters_and_validation():
    assert set(SWEEP_PARAMETERS) >= {"alignment", "alpha", "depth", "beta", "temperature"}
    for p, v in (("depth", 2), ("beta", 0.2), ("temperature", 0.3), ("debias_alpha", 0.1),
                 ("batch_size", 8), ("dim", 3)):
        df = gap_sweep(p, [v], batch_size=4, dim=4, seeds=(0,))
        assert df.iloc[0][p] == v and np.isfinite(df.iloc[0]["relative_gap"])
    with pytest.raises(ValueError, match="parameter must be one of"):
        gap_sweep("lr", [1e-3])
    with pytest.raises(ValueError, match="alpha must lie in"):
        gap_sweep("alpha", [0.0])
    with pytest.raises(ValueError, match="swept parameter"):
        gap_sweep("alpha", [0.5], alpha=0.3)
    with pytest.raises(ValueError, match="alignment must be"):
        gap_sweep("alignment", [1.5])
    with pytest.raises(ValueError, match="unknown loss setting"):
        gap_sweep("alpha", [0.5], tau=0.1)
    with pytest.raises(ValueError, match="depth must be"):
        function_gap(*synthetic_views(4, 4, 0.5, seed=0), depth=0)
    with pytest.raises(ValueError, match="batch_size must be"):
        synthetic_views(1, 4, 0.5, seed=0)


def test_relative_gap_grows_with_alignment_on_synthetic_views():
    # Measured, not assumed: at the defaults (τ0 = 0.5, B = d = 64) averaged over 3 seeds.
    df = gap_sweep("alignment", [0.0, 0.5, 0.9], seeds=(0, 1, 2))
    mean = df.groupby("value")["relative_gap"].mean()
    assert mean[0.0] < mean[0.5] < mean[0.9]
    assert 0.22 < mean[0.0] < 0.27 and 0.38 < mean[0.9] < 0.43
    assert (df["L_icon"] > df["L_rkdo"]).all()


def test_config_dataclass_has_the_swept_loss_fields():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert set(DEFAULT_SETTINGS) <= names


@pytest.mark.parametrize("settings", [dict(temperature=float("inf")), dict(temperature=1e-300),
                                      dict(beta=float("-inf")), dict(beta=0.9999)])
def test_mechanism_refuses_settings_training_refuses(settings):
    """The same float32-safe temperature range as RunConfig (config.TEMPERATURE_RANGE)."""
    from rkdo_core.mechanism import _settings

    with pytest.raises(ValueError, match="temperature|beta"):
        _settings(**settings)
