"""Section 6 of the paper on exact small fields: Lemma 1, Lemma 2, Theorem 3, eqs. 14–15,
the frozen model's closed form, and deliberately wrong recursions that the checks catch."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rkdo_core.theory import (
    FAMILIES,
    FP_TOL,
    Capacity,
    Embeddings,
    Frozen,
    Inexact,
    TheoryError,
    Unrestricted,
    _leq,
    alpha_sweep,
    capacity_floor,
    check_eq14,
    check_eq15,
    check_lemma1,
    check_lemma2,
    check_theorem3,
    chi2,
    conclusion,
    describe_comparison,
    describe_frozen,
    describe_tradeoff,
    embedding_kl_and_grad,
    frozen_closed_form,
    icon_target,
    kl_field,
    kl_rows,
    lemma1_draws,
    mask_roundoff,
    mix,
    random_embeddings,
    random_field,
    run_chain,
    tradeoff_table,
    validate_alpha,
    validate_field,
)

# Hypothesis runs derandomised: the same examples every run, so CI is reproducible.
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None)


def _instance(seed, n=None, d=None, icon=None):
    """A seeded random chain set-up: supervision p0 (n, n), untrained embeddings, α."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(3, 14))
    d = d or int(rng.integers(1, 4))
    icon = bool(seed % 2) if icon is None else icon
    p0 = icon_target(n) if icon else random_field(n, rng, sharpness=float(rng.uniform(0.2, 4)))
    emb = random_embeddings(n, d, rng, scale=float(rng.uniform(0.3, 1.5)))
    alpha = float(rng.uniform(0.05, 0.95))
    return p0, emb, alpha


def _wrong_alpha(p, q, a):
    """The recursion with α forced to 1.5, past validation."""
    return mix(p, q, 1.5, validate=False)


def _unnormalised(p, q, a):
    """The recursion without the (1 − α) factor: rows of p(t) sum to 1 + α, never renormalised."""
    return p + a * q


# ---- KL and fields against a loop reference -------------------------------------------
def _kl_ref(p, q):
    total = 0.0
    for i in range(len(p)):
        for j in range(len(p)):
            if p[i][j] > 0:
                total += p[i][j] * math.log(p[i][j] / q[i][j])
    return total / len(p)


@pytest.mark.parametrize("n,sharpness", [(2, 0.5), (5, 1.0), (9, 4.0)])
def test_kl_field_matches_loop_reference(n, sharpness):
    rng = np.random.default_rng(n)
    p, q = random_field(n, rng, sharpness=sharpness), random_field(n, rng, sharpness=sharpness)
    assert kl_field(p, q) == pytest.approx(_kl_ref(p.tolist(), q.tolist()), rel=1e-13)
    assert kl_rows(p, q).shape == (n,)
    assert kl_field(p, p) == 0.0


def test_kl_zero_entries_of_p_contribute_nothing_and_missing_support_is_infinite():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    assert kl_field(p, q) == pytest.approx(math.log(4.0) / 2)
    assert kl_field(q, np.array([[1.0, 0.0], [0.5, 0.5]])) == math.inf


def test_icon_target_and_random_field_are_fields():
    p = icon_target(5, 0.2)
    assert np.allclose(p.sum(1), 1) and p[0, 0] == pytest.approx(0.8 + 0.04)
    q = random_field(6, np.random.default_rng(0), sharpness=8.0)
    assert validate_field(q, positive=True).shape == (6, 6)


def test_chi2_is_the_quadratic_term_of_kl():
    rng = np.random.default_rng(1)
    p, q = random_field(5, rng), random_field(5, rng)
    c = 1e-3
    assert kl_field(q + c * (p - q), q) == pytest.approx(0.5 * c * c * chi2(p, q), rel=1e-2)


# ---- validation -------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan"), True, "0.5", None])
def test_alpha_outside_unit_interval_is_rejected_with_name_value_and_range(alpha):
    with pytest.raises(TheoryError) as err:
        validate_alpha(alpha)
    msg = str(err.value)
    assert "alpha" in msg and repr(alpha) in msg and "[0, 1]" in msg


def test_alpha_zero_and_one_are_allowed():
    assert validate_alpha(0) == 0.0 and validate_alpha(1) == 1.0


@pytest.mark.parametrize("value,fragment", [
    (np.ones(3) / 3, "square (n, n)"),
    (np.ones((2, 3)) / 3, "square (n, n)"),
    (np.ones((1, 1)), "n >= 2"),
    (np.array([[0.5, 0.5], [1.5, -0.5]]), ">= 0"),
    (np.array([[0.5, 0.5], [0.7, 0.7]]), "sum to 1"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "finite"),
])
def test_invalid_fields_are_rejected_naming_the_argument(value, fragment):
    with pytest.raises(TheoryError) as err:
        validate_field(value, "p0")
    assert "p0" in str(err.value) and fragment in str(err.value)


def test_row_sum_error_names_row_and_its_sum():
    with pytest.raises(TheoryError, match=r"row 1 of q=1\.4"):
        validate_field(np.array([[0.5, 0.5], [0.7, 0.7]]), "q")


def test_public_functions_validate_their_arguments():
    p = icon_target(3)
    with pytest.raises(TheoryError, match="alpha"):
        mix(p, p, 1.5)
    with pytest.raises(TheoryError, match="shape of p"):
        kl_field(p, icon_target(4))
    with pytest.raises(TheoryError, match="steps"):
        run_chain(p, p, Frozen(), 0.5, -1)
    with pytest.raises(TheoryError, match="Embeddings"):
        run_chain(p, p, Capacity(), 0.5, 2)
    with pytest.raises(TheoryError, match="k="):
        Inexact(k=-1)
    with pytest.raises(TheoryError, match="lr="):
        Inexact(lr=0.0)
    with pytest.raises(TheoryError, match="d=0"):
        random_embeddings(3, 0, np.random.default_rng(0))
    with pytest.raises(TheoryError, match="state0"):
        run_chain(p, icon_target(4), Frozen(), 0.5, 2)


# ---- the finite-capacity model's gradient ------------------------------------------------
@pytest.mark.parametrize("n,d", [(3, 1), (6, 2), (8, 4)])
def test_embedding_gradient_matches_torch_autograd(n, d):
    rng = np.random.default_rng(n * 10 + d)
    p = random_field(n, rng)
    emb = random_embeddings(n, d, rng)
    loss, grad = embedding_kl_and_grad(p, emb)
    u = torch.tensor(emb.u, requires_grad=True)
    v = torch.tensor(emb.v, requires_grad=True)
    pt = torch.tensor(p)
    ref = (pt * (pt.log() - torch.log_softmax(u @ v.T, dim=1))).sum() / n
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert kl_field(p, emb.field()) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(grad.u, u.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grad.v, v.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_capacity_family_reaches_zero_with_full_rank_and_floor_decreases_with_d():
    p = icon_target(5)
    rng = np.random.default_rng(0)
    full, _ = capacity_floor(p, 5, rng, restarts=2)
    assert full < 1e-8  # d = n: u vᵀ can be any logit matrix, so every positive field fits
    floors = [capacity_floor(p, d, rng, restarts=3)[0] for d in (1, 2)]
    assert floors[0] >= floors[1] - 1e-9 and floors[1] > 1e-3


# ---- Lemma 1 ------------------------------------------------------------------------------
@PROPERTY
@given(n=st.integers(2, 15), seed=st.integers(0, 2**32 - 1),
       sharpness=st.floats(0.01, 10.0), alpha=st.floats(0.0, 1.0))
def test_lemma1_holds_on_random_fields(n, seed, sharpness, alpha):
    rng = np.random.default_rng(seed)
    p, q = random_field(n, rng, sharpness=sharpness), random_field(n, rng, sharpness=sharpness)
    kl, kl_hat = kl_field(p, q), kl_field(mix(p, q, alpha), q)
    assert kl_hat <= (1 - alpha) * kl + FP_TOL * (1 + kl)
    assert check_lemma1(p, q, alpha).holds


def test_lemma1_worst_ratio_over_many_seeded_draws_is_at_most_one():
    draws = lemma1_draws(8, 400, np.random.default_rng(123))
    check = draws.check()
    assert check.holds and check.line().startswith("Lemma 1: holds — worst ratio")
    assert np.nanmax(draws.normalised_ratio()) <= 1 + 1e-12
    assert np.all(draws.ratio <= 1 - draws.alpha + 1e-12)
    # the worst case sits near α = 0, where every ratio tends to 1; at moderate α it is slack
    by_alpha = draws.worst_by_alpha()
    assert by_alpha[0][2] > 0.99 and by_alpha[-1][2] < by_alpha[0][2]


def test_lemma1_is_tight_only_at_the_ends():
    rng = np.random.default_rng(2)
    p, q = random_field(4, rng), random_field(4, rng)
    assert kl_field(mix(p, q, 0.0), q) == pytest.approx(kl_field(p, q), rel=1e-15)
    assert kl_field(mix(p, q, 1.0), q) == 0.0


def test_lemma1_check_catches_alpha_past_one():
    draws = lemma1_draws(6, 50, np.random.default_rng(0), recursion=_wrong_alpha)
    assert not draws.check().holds
    rng = np.random.default_rng(3)
    p, q = random_field(5, rng), random_field(5, rng)
    check = check_lemma1(p, q, 0.5, recursion=_wrong_alpha)
    assert not check.holds and check.line().startswith("Lemma 1: FAILS")


def test_lemma1_check_catches_an_unnormalised_recursion():
    rng = np.random.default_rng(4)
    p, q = random_field(5, rng), random_field(5, rng)
    assert not check_lemma1(p, q, 0.3, recursion=_unnormalised).holds


# ---- Lemma 2 and Theorem 3, per family -----------------------------------------------------
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), family=st.sampled_from(["unrestricted", "frozen"]))
def test_theorem3_holds_for_the_cheap_families(seed, family):
    p0, emb, alpha = _instance(seed)
    chain = run_chain(p0, emb, FAMILIES[family](), alpha, 12)
    assert check_lemma2(chain).holds and check_theorem3(chain).holds
    assert np.all(chain.loss <= (1 - alpha) ** chain.t * chain.loss[0] + FP_TOL)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("family", [Capacity(), Inexact(k=5, lr=0.1)], ids=["capacity", "inexact"])
def test_theorem3_holds_for_warm_started_descent_families(family, seed):
    p0, emb, alpha = _instance(seed)
    chain = run_chain(p0, emb, family, alpha, 10)
    assert check_lemma2(chain).holds, check_lemma2(chain).line()
    assert check_theorem3(chain).holds, check_theorem3(chain).line()
    assert chain.loss[-1] < chain.loss[0]


def test_unrestricted_family_reaches_zero_and_freezes_the_recursion():
    p0, emb, alpha = _instance(5)
    chain = run_chain(p0, emb, Unrestricted(), alpha, 6)
    assert chain.loss[0] > 0 and np.all(chain.loss[1:] == 0)
    np.testing.assert_allclose(chain.p[1], mix(p0, emb.field(), alpha), atol=1e-15)
    # (1 − α)p + αp equals p up to one rounding
    np.testing.assert_allclose(chain.p[1:], np.broadcast_to(chain.p[1], chain.p[1:].shape),
                               rtol=0, atol=1e-15)
    assert check_theorem3(chain).holds


def test_alpha_zero_keeps_p_fixed_and_alpha_one_copies_the_student():
    p0, emb, _ = _instance(6)
    icon = run_chain(p0, emb, Inexact(k=3, lr=0.1), 0.0, 5)
    np.testing.assert_array_equal(icon.p, np.broadcast_to(p0, icon.p.shape))
    np.testing.assert_allclose(icon.loss, icon.yardstick(), rtol=0, atol=0)
    assert np.all(np.diff(icon.loss) <= FP_TOL)  # descent on a fixed target
    copy = run_chain(p0, emb, Inexact(k=3, lr=0.1), 1.0, 5)
    np.testing.assert_allclose(copy.p[1:], copy.q[:-1], atol=1e-15)
    assert np.all(copy.loss[1:] <= FP_TOL)


def test_inexact_with_no_steps_is_the_frozen_model():
    p0, emb, alpha = _instance(7)
    a = run_chain(p0, emb, Inexact(k=0), alpha, 5)
    b = run_chain(p0, emb, Frozen(), alpha, 5)
    np.testing.assert_array_equal(a.loss, b.loss)


@pytest.mark.parametrize("family", [Frozen(), Unrestricted()], ids=["frozen", "unrestricted"])
def test_theorem3_check_catches_alpha_past_one(family):
    p0, emb, _ = _instance(8)
    with pytest.raises(TheoryError, match="alpha"):
        run_chain(p0, emb, family, 1.5, 5)
    chain = run_chain(p0, emb, family, 1.5, 5, validate=False)
    assert not check_theorem3(chain).holds
    assert check_theorem3(chain).line().startswith(f"Theorem 3 [{family.name}]: FAILS")


@pytest.mark.parametrize("family", [Frozen(), Capacity()], ids=["frozen", "capacity"])
def test_theorem3_check_catches_an_unnormalised_recursion(family):
    p0, emb, alpha = _instance(9)
    with pytest.raises(TheoryError, match=r"row \d+ of p\(1\)"):
        run_chain(p0, emb, family, alpha, 5, recursion=_unnormalised)
    chain = run_chain(p0, emb, family, alpha, 5, recursion=_unnormalised, validate=False)
    assert not check_theorem3(chain).holds


def test_an_overshooting_inner_step_breaks_lemma2():
    # the notebook's default instance; gradient steps of size 2 are not a descent there
    rng = np.random.default_rng([0, 0])
    p0, emb = icon_target(12), random_embeddings(12, 2, rng)
    chain = run_chain(p0, emb, Inexact(k=5, lr=2.0), 0.5, 8, reference=Capacity())
    assert not check_lemma2(chain).holds
    assert check_eq15(chain).holds  # ε_t absorbs what the inner step lost


def test_checks_treat_nan_and_inf_as_broken():
    assert _leq(np.array([np.nan]), np.array([1.0]), FP_TOL)[0] is False
    assert _leq(np.array([np.inf]), np.array([1.0]), FP_TOL)[0] is False
    assert _leq(np.array([1.0 + 1e-13]), np.array([1.0]), FP_TOL)[0] is True
    assert _leq(np.array([1.0 + 1e-9]), np.array([1.0]), FP_TOL)[0] is False


# ---- the frozen model: closed form -----------------------------------------------------------
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.0, 1.0))
def test_frozen_chain_matches_its_closed_form_and_the_bound(seed, alpha):
    p0, emb, _ = _instance(seed)
    q0 = emb.field()
    chain = run_chain(p0, emb, Frozen(), alpha, 10)
    closed = frozen_closed_form(p0, q0, alpha, 10)
    np.testing.assert_allclose(chain.loss, closed, rtol=1e-9, atol=1e-15)
    for t in range(11):
        np.testing.assert_allclose(chain.p[t] - q0, (1 - alpha) ** t * (p0 - q0), atol=1e-14)
    np.testing.assert_array_equal(chain.q, np.broadcast_to(q0, chain.q.shape))
    assert np.all(closed <= (1 - alpha) ** np.arange(11) * closed[0] + FP_TOL)


def test_frozen_decay_tends_to_the_square_of_the_bound_rate():
    p0, emb, _ = _instance(10, n=6, icon=True)
    alpha = 0.3
    chain = run_chain(p0, emb, Frozen(), alpha, 40)
    ratios = chain.ratios()
    assert ratios[1] < 1 - alpha  # strictly inside the bound from the first step
    assert ratios[40] == pytest.approx((1 - alpha) ** 2, rel=1e-3)
    asymptote = 0.5 * (1 - alpha) ** 80 * chi2(p0, emb.field())
    assert chain.loss[40] == pytest.approx(asymptote, rel=1e-3)
    assert chain.loss[40] / chain.loss[0] < 1e-10  # although nothing was learned
    assert chain.yardstick()[-1] == pytest.approx(chain.loss[0])
    text = describe_frozen(chain)
    assert f"{chain.loss[0]:.4g}" in text and "held" in text


# ---- eqs. 14 and 15 ------------------------------------------------------------------------
def test_eq14_holds_and_the_loss_falls_below_the_capacity_floor():
    p0 = icon_target(8)
    rng = np.random.default_rng(11)
    emb = random_embeddings(8, 1, rng)
    l_star, _ = capacity_floor(p0, 1, rng, restarts=4)
    chain = run_chain(p0, emb, Capacity(), 0.5, 12)
    assert l_star > 0.1
    assert check_eq14(chain, l_star).holds
    assert chain.loss[-1] < 1e-3 * l_star  # the floor L* never binds: p(t) moves into Q
    assert chain.yardstick()[-1] >= l_star - 1e-9  # … but on p(0) the model is no better
    assert not check_eq14(chain, -10.0).holds  # an impossible L* is caught


@pytest.mark.parametrize("seed", range(4))
def test_after_one_exact_inner_step_the_capacity_model_stops_moving(seed):
    p0, emb, alpha = _instance(seed)
    chain = run_chain(p0, emb, Capacity(), alpha, 8)
    move = chain.movement()
    assert math.isnan(move[0]) and move[1] > 1e-3
    assert np.max(move[2:]) < 1e-6  # q(t−1) stays stationary for p(t): (1 − α)·0 = 0


def test_eq15_epsilon_is_measured_against_the_exact_step_and_sums_finitely():
    p0, emb, alpha = _instance(12, icon=True)
    chain = run_chain(p0, emb, Inexact(k=3, lr=0.1), alpha, 15, reference=Capacity())
    eps = chain.epsilon()
    assert math.isnan(eps[0]) and np.all(eps[1:] >= -1e-9)  # exact step is never worse
    assert abs(eps[-1]) < 1e-3 * eps[1]
    assert check_eq15(chain).holds
    assert np.nanmax(chain.one_step_excess()) <= FP_TOL
    with pytest.raises(TheoryError, match="reference"):
        check_eq15(run_chain(p0, emb, Frozen(), alpha, 3))


# ---- α sweep, comparison and text ---------------------------------------------------------
def test_alpha_sweep_trades_speed_for_drift():
    p0, emb, _ = _instance(13, n=6, d=1, icon=True)
    sweep = alpha_sweep(p0, emb, Capacity(), [0.0, 0.2, 0.5, 0.9], 10)
    drift = sweep.final_drift()
    assert drift[0] == 0 and np.all(np.diff(drift) > 0)
    hits = sweep.steps_to(0.01)
    assert hits[0] is None and hits[1] >= hits[2] >= hits[3]
    assert "monotonically increasing" in describe_tradeoff(sweep)
    assert tradeoff_table(sweep).count("\n") == 4
    with pytest.raises(TheoryError, match=r"alphas\[1\]"):
        alpha_sweep(p0, emb, Capacity(), [0.1, 2.0], 3)


def test_comparison_reports_both_losses_and_the_common_yardstick():
    p0, emb, _ = _instance(14, n=8, d=1, icon=True)
    family = Inexact(k=5, lr=0.1)
    icon = run_chain(p0, emb, family, 0.0, 10)
    rkdo = run_chain(p0, emb, family, 0.5, 10)
    frozen = run_chain(p0, emb, Frozen(), 0.5, 10)
    assert rkdo.loss[-1] < icon.loss[-1]  # RKDO's own loss is lower …
    assert rkdo.yardstick()[-1] > icon.yardstick()[-1]  # … its model is worse on p(0)
    text = describe_comparison(icon, rkdo)
    assert "higher (worse) for RKDO" in text and f"{icon.yardstick()[-1]:.4g}" in text
    assert "not evidence" in conclusion(frozen, icon, rkdo)
    with pytest.raises(TheoryError, match="icon.alpha"):
        describe_comparison(rkdo, icon)
    with pytest.raises(TheoryError, match="frozen"):
        describe_frozen(rkdo)


def test_embeddings_validate_and_mask_roundoff():
    with pytest.raises(TheoryError, match="shape of u"):
        Embeddings(np.zeros((3, 2)), np.zeros((3, 1)))
    assert Embeddings(np.zeros((3, 2)), np.zeros((3, 2))).field() == pytest.approx(
        np.full((3, 3), 1 / 3))
    masked = mask_roundoff(np.array([1.0, 1e-16, -1e-17, 1e-10]), 1.0)
    assert np.isnan(masked[1]) and np.isnan(masked[2]) and masked[3] == 1e-10


def test_write_checks_round_trips_and_marks_diverged_runs(tmp_path):
    import json

    from rkdo_core.theory import Check, write_checks

    checks = [Check("Lemma 1", True, -0.5, "worst ratio 0.9"),
              Check("Theorem 3 [inexact, lr = 2]", False, float("inf"), "diverged")]
    path = write_checks(checks, tmp_path / "sub" / "checks.json")
    got = json.loads(path.read_text())
    assert got == [
        {"name": "Lemma 1", "statement": "Lemma 1", "holds": True, "worst": -0.5,
         "detail": "worst ratio 0.9"},
        {"name": "Theorem 3 [inexact, lr = 2]", "statement": "Theorem 3 [inexact, lr = 2]",
         "holds": False, "worst": None, "detail": "diverged"}]
    with pytest.raises(TheoryError, match="checks"):
        write_checks([{"statement": "x"}], tmp_path / "bad.json")
