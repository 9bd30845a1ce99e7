"""Values of rkdo_core.reporting.inference against brute-force references, closed forms and
seeded simulations."""

from __future__ import annotations

import dataclasses
import itertools
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats as sps

from rkdo_core.reporting import inference as inf
from rkdo_core.reporting import stats as core_stats


# ------------------------------------------------------------------------ sign-flip test
def _brute_sign_flip(d, alternative: str) -> float:
    """Exact reference: every sign vector by itertools.product, in exact rational sums."""
    d = [Fraction(float(v)) for v in d]
    obs = sum(d)
    hits = total = 0
    for s in itertools.product((-1, 1), repeat=len(d)):
        t = sum(si * abs(di) for si, di in zip(s, d))
        total += 1
        hits += {"two-sided": abs(t) >= abs(obs), "greater": t >= obs, "less": t <= obs}[
            alternative]
    return hits / total


@pytest.mark.parametrize("n", range(1, 11))
def test_sign_flip_matches_enumeration(n):
    rng = np.random.default_rng(100 + n)
    vectors = [rng.normal(0.3, 1.0, n),            # continuous
               rng.integers(-3, 4, n).astype(float),  # ties and zeros
               np.abs(rng.normal(1.0, 0.2, n))]    # all one sign: the floor
    for d in vectors:
        for alt in inf.ALTERNATIVES:
            assert inf.sign_flip_p(d, alt) == pytest.approx(_brute_sign_flip(d, alt), abs=1e-12)


def test_sign_flip_floor_and_zeros():
    assert inf.sign_flip_floor(5) == 1 / 16
    assert inf.sign_flip_floor(5, "greater") == 1 / 32
    assert inf.sign_flip_floor(10) == 2 / 1024
    assert inf.sign_flip_floor(1) == 1.0 and inf.sign_flip_floor(0) == 1.0
    d = np.array([0.4, 0.1, 0.9, 0.3, 0.25])
    assert inf.sign_flip_p(d) == 1 / 16            # the floor is reached ...
    assert inf.sign_flip_p(-d, "less") == 1 / 32
    # ... zeros do not change the p-value (same as dropping them), all zeros give 1
    assert inf.sign_flip_p(np.r_[d, 0.0, 0.0]) == 1 / 16
    assert inf.sign_flip_p(np.zeros(4)) == 1.0


def test_sign_flip_monte_carlo_above_exact_limit():
    rng = np.random.default_rng(7)
    d = rng.normal(0.45, 1.0, 22)
    # independent exact reference by meet-in-the-middle: 2^11 × 2^11 sums
    a = np.abs(d)
    halves = []
    for part in (a[:11], a[11:]):
        signs = np.array(list(itertools.product((-1, 1), repeat=11)))
        halves.append(signs @ part)
    sums = (halves[0][:, None] + halves[1][None, :]).ravel()
    exact = np.mean(np.abs(sums) >= abs(d.sum()) - 1e-9)
    p = inf.sign_flip_p(d)
    assert p == pytest.approx(exact, abs=0.01)      # MC standard error ≤ 0.0016
    assert p == inf.sign_flip_p(d)                  # seeded, reproducible
    assert inf.sign_flip_p(np.full(30, 1.0)) == 1 / (1 + inf.SIGN_FLIP_MC_DRAWS)


# ----------------------------------------------------------------------- power and MDE
def _simulated_power(delta, sd, n, alpha, alternative, reps=20_000, seed=0):
    d = np.random.default_rng(seed).normal(delta, sd, size=(reps, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    if alternative == "two-sided":
        return np.mean(np.abs(t) > sps.t.ppf(1 - alpha / 2, n - 1))
    return np.mean(t > sps.t.ppf(1 - alpha, n - 1))


@pytest.mark.parametrize("n, sd, alpha, alternative",
                         [(5, 1.3, 0.05, "two-sided"), (10, 0.2, 0.01, "greater")])
def test_mde_against_simulated_t_test(n, sd, alpha, alternative):
    delta = inf.min_detectable_difference(sd, n, alpha=alpha, alternative=alternative)
    assert inf.power_paired_t(delta, sd, n, alpha, alternative) == pytest.approx(0.80, abs=1e-8)
    assert _simulated_power(delta, sd, n, alpha, alternative) == pytest.approx(0.80, abs=0.02)


def test_mde_tends_to_normal_closed_form():
    sd = 2.0
    errors = []
    for n in (100, 1000, 20_000):
        closed = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sd / math.sqrt(n)
        errors.append(abs(inf.min_detectable_difference(sd, n) / closed - 1))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
    one_sided = (sps.norm.ppf(0.95) + sps.norm.ppf(0.9)) * sd / math.sqrt(20_000)
    assert inf.min_detectable_difference(sd, 20_000, power=0.9, alternative="less") == \
        pytest.approx(one_sided, rel=1e-3)


def test_power_basics_and_holm_level():
    assert inf.power_paired_t(0.0, 1.0, 5, 0.05) == pytest.approx(0.05, abs=1e-12)
    assert inf.power_paired_t(0.0, 1.0, 5, 0.05, "greater") == pytest.approx(0.05, abs=1e-12)
    assert inf.power_paired_t(-0.7, 1.0, 8, 0.05, "less") == \
        pytest.approx(inf.power_paired_t(0.7, 1.0, 8, 0.05, "greater"), abs=1e-12)
    # the MDE is linear in sd and grows at the worst-case Holm level alpha/m
    assert inf.min_detectable_difference(3.0, 5) == \
        pytest.approx(3 * inf.min_detectable_difference(1.0, 5), rel=1e-9)
    assert inf.min_detectable_difference(1.0, 5, alpha=0.05 / 12) > \
        inf.min_detectable_difference(1.0, 5)


# ------------------------------------------------------------------------- effect sizes
def test_hedges_j_exact_values():
    assert inf.hedges_j(4) == pytest.approx(math.sqrt(2 / math.pi), abs=1e-12)
    assert inf.hedges_j(4) == pytest.approx(0.7978845608, abs=1e-10)
    assert inf.hedges_j(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-12)
    for df in range(2, 40):
        brute = math.gamma(df / 2) / (math.sqrt(df / 2) * math.gamma((df - 1) / 2))
        assert inf.hedges_j(df) == pytest.approx(brute, rel=1e-12)
    # the exact factor, not Hedges' approximation 1 − 3/(4df − 1), which is 0.8 at df = 4
    assert abs(inf.hedges_j(4) - 0.8) > 2e-3
    assert inf.hedges_j(10_000) == pytest.approx(1.0, abs=1e-4)


def test_hedges_gz_value_convergence_and_unbiasedness():
    d = np.array([0.12, 0.30, -0.05, 0.22, 0.18])
    d_z = d.mean() / d.std(ddof=1)
    assert inf.hedges_gz(d) == pytest.approx(d_z * math.sqrt(2 / math.pi), rel=1e-12)
    big = np.random.default_rng(1).normal(0.5, 1.0, 2000)
    assert inf.hedges_gz(big) / (big.mean() / big.std(ddof=1)) == pytest.approx(1, abs=1e-3)
    # unbiased for δ_z (d_z is not) at n = 5, 20,000 seeded experiments
    sims = np.random.default_rng(2).normal(0.8, 1.0, size=(20_000, 5))
    dz = sims.mean(1) / sims.std(1, ddof=1)
    assert np.mean(dz * inf.hedges_j(4)) == pytest.approx(0.8, abs=0.03)
    assert np.mean(dz) > 0.9


def test_gz_ci_definition_and_coverage():
    d = np.array([0.12, 0.30, -0.05, 0.22, 0.18])
    lo, hi = inf.gz_ci(d, 0.9)
    t_obs = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert sps.nct.cdf(t_obs, 4, lo * math.sqrt(5)) == pytest.approx(0.95, abs=1e-8)
    assert sps.nct.cdf(t_obs, 4, hi * math.sqrt(5)) == pytest.approx(0.05, abs=1e-8)
    assert lo < inf.hedges_gz(d) < hi
    assert inf.gz_ci(-d, 0.9) == pytest.approx((-hi, -lo), abs=1e-8)
    rng = np.random.default_rng(3)
    covered = 0
    reps = 300
    for _ in range(reps):
        lo, hi = inf.gz_ci(rng.normal(1.0, 1.0, 6))
        covered += lo <= 1.0 <= hi
    assert covered / reps == pytest.approx(0.95, abs=0.04)


def test_noncentral_t_far_tails():
    """scipy's nct.cdf is NaN far in its tails (df = 1, nc ≈ 15 sits inside an MDE search
    at n = 2; t ≈ 100 inside a g_z interval); the results must stay finite and right."""
    delta = inf.min_detectable_difference(1.0, 2)
    assert inf.power_paired_t(delta, 1.0, 2) == pytest.approx(0.80, abs=1e-8)
    assert _simulated_power(delta, 1.0, 2, 0.05, "two-sided") == pytest.approx(0.80, abs=0.02)
    d = np.array([1.0, 1.01, 0.99, 1.02, 0.98])
    lo, hi = inf.gz_ci(d)
    t_obs = d.mean() / (d.std(ddof=1) / math.sqrt(5))
    assert 0 < lo < d.mean() / d.std(ddof=1) < hi < np.inf
    assert sps.nct.sf(t_obs, 4, lo * math.sqrt(5)) == pytest.approx(0.025, abs=1e-8)
    assert sps.nct.sf(t_obs, 4, hi * math.sqrt(5)) == pytest.approx(0.975, abs=1e-8)


# ------------------------------------------------------- equivalence / non-inferiority
D_SMALL = np.array([0.10, -0.05, 0.02, 0.08, -0.03])


def test_tost_by_hand():
    margin, alpha = 0.2, 0.05
    n, m, se = 5, D_SMALL.mean(), D_SMALL.std(ddof=1) / math.sqrt(5)
    p_lo = sps.t.sf((m + margin) / se, n - 1)
    p_hi = sps.t.cdf((m - margin) / se, n - 1)
    q = sps.t.ppf(0.95, n - 1)
    r = inf.tost(D_SMALL, margin, alpha)
    assert (r.p_lower, r.p_upper, r.p) == pytest.approx((p_lo, p_hi, max(p_lo, p_hi)))
    assert (r.ci_low, r.ci_high) == pytest.approx((m - q * se, m + q * se))
    assert r.equivalent is True
    narrow = inf.tost(D_SMALL, 0.05, alpha)
    assert narrow.equivalent is False and narrow.ci_high > 0.05
    assert inf.tost(np.full(4, 0.1), 0.2).equivalent is True       # no spread, inside
    assert inf.tost(np.full(4, 0.3), 0.2).equivalent is False      # no spread, outside


def test_noninferiority_by_hand():
    margin, alpha = 0.1, 0.05
    m, se = D_SMALL.mean(), D_SMALL.std(ddof=1) / math.sqrt(5)
    r = inf.noninferiority(D_SMALL, margin, alpha)
    assert r.p == pytest.approx(sps.t.sf((m + margin) / se, 4))
    assert r.bound == pytest.approx(m - sps.t.ppf(0.95, 4) * se)
    assert r.bound == pytest.approx(inf.tost(D_SMALL, margin, alpha).ci_low)
    assert r.noninferior is True and r.bound > -margin
    worse = D_SMALL - 0.12
    r2 = inf.noninferiority(worse, margin, alpha)
    assert r2.noninferior is False and r2.bound < -margin and r2.p > alpha


# ------------------------------------------------- distribution-free location estimates
def test_hodges_lehmann_vs_brute_force():
    rng = np.random.default_rng(4)
    for n in list(range(1, 12)) + [31]:
        x = rng.standard_t(3, n)
        walsh = [(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)]
        assert inf.hodges_lehmann(x) == pytest.approx(float(np.median(walsh)), abs=1e-12)


def _brute_hl_ci(x, confidence):
    n = len(x)
    t_plus = [sum(r for r, s in zip(range(1, n + 1), signs) if s)
              for signs in itertools.product((0, 1), repeat=n)]
    t_plus = np.array(t_plus)
    k = 0
    while np.mean(t_plus <= k) <= (1 - confidence) / 2:   # P(T+ <= (k+1) - 1)
        k += 1
    walsh = sorted((x[i] + x[j]) / 2 for i in range(n) for j in range(i, n))
    return walsh[k - 1], walsh[len(walsh) - k]


@pytest.mark.parametrize("n", range(6, 11))
def test_hodges_lehmann_ci_vs_exact_enumeration(n):
    x = np.random.default_rng(n).normal(0.2, 1.0, n)
    for confidence in (0.9, 0.95):
        assert inf.hodges_lehmann_ci(x, confidence) == pytest.approx(_brute_hl_ci(x, confidence))


def test_hodges_lehmann_ci_coverage_exact_and_normal_branch():
    rng = np.random.default_rng(5)
    for n, reps in ((15, 600), (120, 300)):          # exact / normal-approximation branch
        covered = 0
        for _ in range(reps):
            lo, hi = inf.hodges_lehmann_ci(0.3 + rng.standard_t(3, n))
            covered += lo <= 0.3 <= hi
        assert covered / reps == pytest.approx(0.95, abs=0.035)


def test_bootstrap_median_ci():
    rng = np.random.default_rng(6)
    x = rng.normal(2.0, 1.0, 2000)
    small = inf.bootstrap_median_ci(x[:200], n_boot=2000)
    large = inf.bootstrap_median_ci(x, n_boot=2000)
    assert small[0] <= inf.hodges_lehmann(x[:200]) <= small[1]
    assert large[0] <= inf.hodges_lehmann(x) <= large[1]
    assert large[1] - large[0] < 0.6 * (small[1] - small[0])
    assert inf.bootstrap_median_ci(x[:200], n_boot=2000) == small   # seeded


# ------------------------------------------------------------------------ multiplicity
def test_bonferroni_ci_by_hand():
    n, m, se = 5, D_SMALL.mean(), D_SMALL.std(ddof=1) / math.sqrt(5)
    for k in (1, 4, 12):
        q = sps.t.ppf(1 - 0.05 / (2 * k), n - 1)
        assert inf.bonferroni_ci(D_SMALL, k) == pytest.approx((m - q * se, m + q * se))
    ref = core_stats.paired_stats(D_SMALL, np.zeros(5))
    assert inf.bonferroni_ci(D_SMALL, 1) == pytest.approx((ref["ci_low"], ref["ci_high"]))


def test_intersection_union_and_holm_reused():
    assert inf.intersection_union_p([0.01, 0.04, 0.002]) == 0.04
    assert inf.holm is core_stats.holm


# ----------------------------------------------------------------------- the summary
def test_paired_tests_summary():
    r = inf.paired_tests(D_SMALL)
    ref = core_stats.paired_stats(D_SMALL, np.zeros(5))
    assert (r.n, r.mean, r.sd) == pytest.approx((5, D_SMALL.mean(), D_SMALL.std(ddof=1)))
    assert r.t_p == pytest.approx(ref["p_value"])
    assert (r.ci_low, r.ci_high) == pytest.approx((ref["ci_low"], ref["ci_high"]))
    assert r.g_z == pytest.approx(ref["effect_size"] * inf.hedges_j(4))
    assert (r.gz_low, r.gz_high) == pytest.approx(inf.gz_ci(D_SMALL))
    assert r.sign_flip_p == pytest.approx(_brute_sign_flip(D_SMALL, "two-sided"))
    assert r.sign_flip_floor == 1 / 16
    assert r.mde80 == pytest.approx(inf.min_detectable_difference(D_SMALL.std(ddof=1), 5))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.n = 3  # type: ignore[misc]
    flat = inf.paired_tests([0.2, 0.2, 0.2, 0.2, 0.2])
    assert flat.sign_flip_p == 1 / 16 and flat.ci_low == flat.ci_high == pytest.approx(0.2)
    assert all(math.isnan(v) for v in (flat.t_p, flat.g_z, flat.gz_low, flat.mde80))
    two = inf.paired_tests([0.1, 0.3])
    assert math.isnan(two.g_z) and not math.isnan(two.gz_low) and two.sign_flip_floor == 0.5


# ------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call, pattern", [
    (lambda: inf.paired_tests([0.1]), r"^diffs must hold at least 2 .*got 1"),
    (lambda: inf.paired_tests([0.1, math.nan, 0.2]), r"^diffs must be finite .*index \[1\]"),
    (lambda: inf.sign_flip_p([[0.1, 0.2]]), r"^diffs must be a 1-D .*shape \(1, 2\)"),
    (lambda: inf.sign_flip_p([0.1], "bigger"), r"^alternative must be one of .*'bigger'"),
    (lambda: inf.sign_flip_floor(-1), r"^n must be an integer >= 0; got -1"),
    (lambda: inf.tost(D_SMALL, 0.0), r"^margin must be a finite number > 0; got 0.0"),
    (lambda: inf.noninferiority(D_SMALL, -1), r"^margin .*got -1"),
    (lambda: inf.tost(D_SMALL, 0.1, alpha=0.0), r"^alpha must be .*between 0 and 1; got 0.0"),
    (lambda: inf.gz_ci(D_SMALL, 1.2), r"^confidence must be .*got 1.2"),
    (lambda: inf.gz_ci([1.0, 1.0, 1.0]), r"^diffs must not all be equal"),
    (lambda: inf.hedges_gz([0.1, 0.2]), r"^diffs must hold at least 3 .*got 2"),
    (lambda: inf.hedges_j(1), r"^df must be a finite number > 1; got 1"),
    (lambda: inf.min_detectable_difference(-1.0, 5), r"^sd must be .*> 0; got -1.0"),
    (lambda: inf.min_detectable_difference(1.0, 1), r"^n must be an integer >= 2; got 1"),
    (lambda: inf.min_detectable_difference(1.0, 5, power=0.03), r"^power must exceed alpha"),
    (lambda: inf.power_paired_t(math.inf, 1.0, 5), r"^delta must be a finite number; got inf"),
    (lambda: inf.hodges_lehmann_ci([1.0, 2.0, 3.0]), r"^x holds 3 value\(s\): too few"),
    (lambda: inf.hodges_lehmann([]), r"^x must hold at least 1 value"),
    (lambda: inf.bootstrap_median_ci([1.0, 2.0], n_boot=0), r"^n_boot must be .*got 0"),
    (lambda: inf.bonferroni_ci(D_SMALL, 0), r"^n_comparisons must be .*>= 1; got 0"),
    (lambda: inf.intersection_union_p([0.2, 1.5]), r"^pvalues must lie in \[0, 1\]"),
    (lambda: inf.intersection_union_p([0.2, math.nan]), r"^pvalues must be finite"),
])
def test_validation_names_argument_and_value(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_import_is_torch_free():
    code = ("import sys, rkdo_core.reporting.inference; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
