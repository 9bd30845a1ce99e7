"""Statistical primitives of the audit: exact, small-sample tests of paired differences.

The suite compares two methods over n paired seeds (typically 5, sometimes 10); per seed
d_i = metric(RKDO) − metric(I-Con). With so few pairs, what a test *can* show matters as
much as what it shows, so beside the paired t-test of :mod:`rkdo_core.reporting.stats` this
module gives the exact sign-flip test and its floor, the minimum detectable difference, the
bias-corrected effect size with an exact interval, equivalence / non-inferiority tests,
distribution-free location estimates for per-step wall-time overheads, and multiplicity
helpers, Holm's adjustment among them (:func:`holm`, defined here and re-exported by
:mod:`rkdo_core.reporting.stats`: one implementation).

numpy + scipy (and the formatting of :mod:`.fmt`) only: importing this module never imports
torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps
from scipy.special import gammaln

from .fmt import format_sign_flip

__all__ = [
    "PairedTests",
    "NonInferiorityResult",
    "TostResult",
    "AboveResult",
    "bonferroni_ci",
    "bootstrap_median_ci",
    "gz_ci",
    "has_spread",
    "hedges_gz",
    "hedges_j",
    "hodges_lehmann",
    "hodges_lehmann_ci",
    "holm",
    "intersection_union_p",
    "min_detectable_difference",
    "noninferiority",
    "paired_tests",
    "power_paired_t",
    "sign_flip_floor",
    "shown_above",
    "sign_flip_p",
    "tost",
]

ALTERNATIVES = ("two-sided", "greater", "less")
#: at most this many non-zero differences are enumerated exactly (2^20 sums, 8 MB)
SIGN_FLIP_MAX_EXACT = 20
#: Monte-Carlo draws of the sign-flip test above :data:`SIGN_FLIP_MAX_EXACT`
SIGN_FLIP_MC_DRAWS = 100_000
#: up to this n the Wilcoxon signed-rank distribution is enumerated exactly (counts < 2^53)
SIGNED_RANK_MAX_EXACT = 50
#: differences whose SD is at most this fraction of their scale (the largest magnitude
#: involved) vary only by floating-point rounding: they have no spread, and t-based
#: quantities (t, its interval, g_z) are undefined there, not huge
SPREAD_RTOL = 1e-9
#: above this |t| the exact interval of δ_z uses the large-|t| limit of the noncentral t
#: (:func:`gz_ci`): scipy's nct is ~8 % off at |t| = 1e6 and does not converge beyond
GZ_LARGE_T = 1e3


# ------------------------------------------------------------------------------ validation
def _show(a: np.ndarray) -> str:
    return np.array2string(a, threshold=12, precision=6, separator=", ")


def _values(x, name: str, min_n: int) -> np.ndarray:
    """``x`` as a 1-D float array of at least ``min_n`` finite values, else ValueError."""
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers; got shape {a.shape}")
    if len(a) < min_n:
        raise ValueError(f"{name} must hold at least {min_n} value(s); got {len(a)}: {_show(a)}")
    bad = np.flatnonzero(~np.isfinite(a))
    if len(bad):
        raise ValueError(f"{name} must be finite (no NaN or inf); got {len(bad)} non-finite "
                         f"value(s) at index {bad[:10].tolist()}: {_show(a)}")
    return a


def _open01(value: float, name: str) -> float:
    if not (isinstance(value, (int, float, np.number)) and 0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must be a number strictly between 0 and 1; got {value!r}")
    return float(value)


def _positive(value: float, name: str) -> float:
    if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _integer(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _alternative(value: str) -> str:
    if value not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}; got {value!r}")
    return value


def _t(num: float, se: float) -> float:
    """num/se, with the limits ±inf (and 0 for 0/0) when the differences have no spread."""
    if se > 0:
        return num / se
    return 0.0 if num == 0 else math.copysign(math.inf, num)


def has_spread(d, scale: float | None = None) -> bool:
    """True when the differences ``d`` vary by more than floating-point rounding: their SD
    (ddof=1) exceeds :data:`SPREAD_RTOL` × ``scale`` (default: the largest |d|). Differences
    that are all equal in exact arithmetic (every seed gaining exactly 2/141, or
    r − (r − 0.1)) have no spread: a t-interval would have zero width and a t statistic of
    1e16 would be an artefact of rounding, so such differences are decided by the exact
    sign-flip test instead (:func:`sign_flip_p`)."""
    a = np.asarray(d, dtype=float)
    if len(a) < 2 or not np.isfinite(a).all():
        return False
    sd = float(a.std(ddof=1))
    ref = float(np.max(np.abs(a))) if scale is None else float(scale)
    return sd > SPREAD_RTOL * max(ref, float(np.max(np.abs(a))), np.finfo(float).tiny)


def _mean_se(d: np.ndarray) -> tuple[float, float, int]:
    """(mean, standard error sd/√n with ddof=1, df = n − 1)."""
    n = len(d)
    return float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n), n - 1


# ------------------------------------------------------------------------ sign-flip test
def sign_flip_p(diffs, alternative: str = "two-sided", *, seed: int = 0) -> float:
    """Exact paired permutation (sign-flip) p-value of the mean difference.

    Under H0 (each d_i symmetric about 0) every sign vector s ∈ {−1, +1}^n is equally
    likely; the p-value is the share of the 2^n statistics T(s) = Σ s_i |d_i| that are at
    least as extreme as the observed T = Σ d_i: |T(s)| ≥ |T| (two-sided), T(s) ≥ T
    (``greater``), T(s) ≤ T (``less``) (Fisher 1935; Good, *Permutation Tests*, 2005 §3).
    The sum ranks sign vectors exactly as the mean does. "At least as extreme" allows a
    relative tolerance of 1e-9·Σ|d_i| so that sums equal in exact arithmetic count as ties
    (conservative).

    Zero differences are kept: flipping a zero leaves T unchanged, so each zero doubles the
    extreme and the total counts alike and the p-value equals the one without the zeros;
    they are dropped before enumerating (all differences zero gives p = 1). The floor is
    therefore :func:`sign_flip_floor` of the number of *non-zero* differences.

    Exact by enumeration up to :data:`SIGN_FLIP_MAX_EXACT` (20) non-zero differences
    (2^n sums built by doubling, O(2^n) time and memory). Above, a Monte-Carlo estimate
    from :data:`SIGN_FLIP_MC_DRAWS` (100,000) random sign vectors drawn with
    ``numpy.random.default_rng(seed)``, as (1 + #extreme)/(1 + draws) so that it is never
    0 (Phipson & Smyth 2010); its standard error is at most 0.0016.
    """
    d = _values(diffs, "diffs", 1)
    alternative = _alternative(alternative)
    a = np.abs(d[d != 0])
    obs = float(d.sum())
    tol = 1e-9 * float(a.sum())
    if len(a) <= SIGN_FLIP_MAX_EXACT:
        sums = np.zeros(1)
        for v in a:
            sums = np.concatenate([sums + v, sums - v])
        return float(_n_extreme(sums, obs, tol, alternative)) / len(sums)
    rng = np.random.default_rng(seed)
    rows = max(1, 2**20 // len(a))
    hits = 0
    for start in range(0, SIGN_FLIP_MC_DRAWS, rows):
        k = min(rows, SIGN_FLIP_MC_DRAWS - start)
        signs = rng.integers(0, 2, size=(k, len(a))) * 2 - 1
        hits += _n_extreme(signs @ a, obs, tol, alternative)
    return (1 + hits) / (1 + SIGN_FLIP_MC_DRAWS)


def _n_extreme(sums: np.ndarray, obs: float, tol: float, alternative: str) -> int:
    if alternative == "two-sided":
        return int(np.count_nonzero(np.abs(sums) >= abs(obs) - tol))
    if alternative == "greater":
        return int(np.count_nonzero(sums >= obs - tol))
    return int(np.count_nonzero(sums <= obs + tol))


def sign_flip_floor(n: int, alternative: str = "two-sided") -> float:
    """Smallest p-value the exact sign-flip test can reach with ``n`` non-zero differences:
    2/2^n two-sided (the observed sign vector and its mirror image; 1/16 for n = 5, capped
    at 1), 1/2^n one-sided. Ties among the |d_i| can only raise it. Below this floor no
    significance level is attainable, whatever the data.
    """
    n = _integer(n, "n", 0)
    alternative = _alternative(alternative)
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / 2.0**n)


# ----------------------------------------------------------------------- power and MDE
def _nct_cdf(x: float, df: int, nc: float) -> float:
    """P(T ≤ x), T ~ nct(df, nc), as P(−T ≥ −x) with −T ~ nct(df, −nc): scipy's ``nct.cdf``
    returns NaN in far tails (e.g. x = −12.7, df = 1, nc = 15; scipy 1.17) where its
    ``nct.sf`` stays finite and agrees with it to 1e-16 elsewhere."""
    return float(sps.nct.sf(-x, df, -nc))


def _power_nc(nc: float, df: int, alpha: float, alternative: str) -> float:
    """Power of the one-sample t-test with df degrees of freedom at noncentrality nc."""
    if alternative == "two-sided":
        crit = sps.t.ppf(1 - alpha / 2, df)
        return float(sps.nct.sf(crit, df, nc)) + _nct_cdf(-crit, df, nc)
    crit = sps.t.ppf(1 - alpha, df)
    if alternative == "greater":
        return float(sps.nct.sf(crit, df, nc))
    return _nct_cdf(-crit, df, nc)


def power_paired_t(delta: float, sd: float, n: int, alpha: float = 0.05,
                   alternative: str = "two-sided") -> float:
    """Exact power of the paired t-test with ``n`` pairs at true mean difference ``delta``
    and paired SD ``sd``: with df = n − 1, noncentrality λ = delta·√n/sd and T ~ nct(df, λ),
    P(|T| > t_{1−α/2,df}) two-sided, P(T > t_{1−α,df}) ``greater``, P(T < −t_{1−α,df})
    ``less`` (Cohen 1988 §2; scipy.stats.nct).
    """
    if not (isinstance(delta, (int, float, np.number)) and math.isfinite(delta)):
        raise ValueError(f"delta must be a finite number; got {delta!r}")
    sd = _positive(sd, "sd")
    n = _integer(n, "n", 2)
    alpha = _open01(alpha, "alpha")
    alternative = _alternative(alternative)
    return _power_nc(float(delta) * math.sqrt(n) / sd, n - 1, alpha, alternative)


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.80,
                              alternative: str = "two-sided") -> float:
    """Smallest true mean paired difference that a paired t-test with ``n`` pairs and paired
    SD ``sd`` detects with probability ``power`` at level ``alpha``.

    Solves :func:`power_paired_t` (noncentral t, exact) = ``power`` for the noncentrality
    λ with Brent's method and returns λ·sd/√n. Returned as a magnitude: for ``less`` the
    detectable difference is −MDE (the t-test is symmetric). For large n it tends to the
    normal closed form (z_{1−α/2} + z_{power})·sd/√n (two-sided; z_{1−α} one-sided).

    ``alpha`` may be a multiplicity-adjusted level. For a Holm family of m tests the
    worst-case level is alpha/m: Holm compares the smallest p-value with alpha/m, so only
    an effect detectable at alpha/m is sure to survive whatever the other tests show.
    ``power`` must exceed the test's size ``alpha`` (the power at a zero difference).
    """
    sd = _positive(sd, "sd")
    n = _integer(n, "n", 2)
    alpha = _open01(alpha, "alpha")
    power = _open01(power, "power")
    alternative = _alternative(alternative)
    if power <= alpha:
        raise ValueError(f"power must exceed alpha (the power at a zero difference) = "
                         f"{alpha}; got {power!r}")
    side = "two-sided" if alternative == "two-sided" else "greater"
    df = n - 1

    def gap(nc: float) -> float:
        return _power_nc(nc, df, alpha, side) - power

    hi = 1.0 + sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    while gap(hi) < 0:
        hi *= 2.0
    nc = optimize.brentq(gap, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return nc * sd / math.sqrt(n)


# ------------------------------------------------------------------------- effect sizes
def hedges_j(df: float) -> float:
    """Exact small-sample bias correction J(df) = Γ(df/2) / (√(df/2) · Γ((df − 1)/2))
    (Hedges 1981, eq. 6e; computed through log-gamma), the factor that makes J·d unbiased.
    J(4) = √(2/π) ≈ 0.7978845608; J → 1 as df → ∞ (≈ 1 − 3/(4df − 1), not used here).
    Defined for df > 1 (the estimator's mean is infinite at df = 1).
    """
    if not (isinstance(df, (int, float, np.number)) and math.isfinite(df) and df > 1):
        raise ValueError(f"df must be a finite number > 1; got {df!r}")
    return math.exp(gammaln(df / 2) - gammaln((df - 1) / 2)) / math.sqrt(df / 2)


def hedges_gz(diffs) -> float:
    """Bias-corrected standardized mean of paired differences g_z = d_z · J(n − 1), with
    d_z = mean(d)/sd(d) (ddof=1; Cohen's d_z) and J the exact :func:`hedges_j`; unbiased
    for the population δ_z = μ_d/σ_d under normality (Hedges 1981; Lakens 2013 eq. 4–5).
    Needs n ≥ 3 pairs and differences that are not all equal.
    """
    d = _values(diffs, "diffs", 3)
    sd = float(d.std(ddof=1))
    if not has_spread(d):
        raise ValueError(f"diffs must not all be equal (no spread beyond rounding, g_z "
                         f"undefined); got {_show(d)}")
    return float(d.mean()) / sd * hedges_j(len(d) - 1)


def _solve_nc(t_obs: float, df: int, q: float) -> float:
    """The noncentrality λ with nct.cdf(t_obs; df, λ) = q (the cdf falls as λ grows)."""

    def gap(nc: float) -> float:
        return _nct_cdf(t_obs, df, nc) - q

    lo = hi = t_obs
    step = 1.0 + abs(t_obs)
    while gap(lo) < 0:
        lo -= step
        step *= 2.0
    step = 1.0 + abs(t_obs)
    while gap(hi) > 0:
        hi += step
        step *= 2.0
    return optimize.brentq(gap, lo, hi, xtol=1e-10, rtol=1e-10)


def gz_ci(diffs, confidence: float = 0.95) -> tuple[float, float]:
    """Exact confidence interval of the population standardized mean difference δ_z
    (the parameter :func:`hedges_gz` estimates) by inverting the noncentral t.

    With t = mean/(sd/√n) and df = n − 1, T ~ nct(df, λ = δ_z·√n); the bounds are the λ
    with P(T ≤ t; λ) = (1 + c)/2 (low) and = (1 − c)/2 (high), divided by √n
    (Steiger & Fouladi 1997; Cumming & Finch 2001). Exact coverage under normality.

    For |t| > :data:`GZ_LARGE_T` the noncentral t is replaced by its large-λ limit: with
    T = (Z + λ)/S, S = √(χ²_df/df), P(T ≤ t) → P(S ≥ λ/t), so λ = t·√(χ²_df quantile / df)
    (relative error O(1/|t|), below 1e-5 at |t| = 1e3 against a 40-digit quadrature of
    the exact cdf; scipy's nct is 8 % off at |t| = 1e6 and does not converge beyond).

    Method note: the bounds are *not* multiplied by J(n − 1). Scaling by J (as some
    software does) gives an interval for J·δ_z, not for δ_z: in simulation at n = 5 it
    covers δ_z = 2 only ≈ 87 % of the time at nominal 95 %. So g_z (shrunk towards 0 by J)
    can sit left of the interval's centre; the interval is the honest one for δ_z.
    Needs n ≥ 2 and differences that are not all equal.
    """
    d = _values(diffs, "diffs", 2)
    confidence = _open01(confidence, "confidence")
    mean, se, df = _mean_se(d)
    if not has_spread(d):
        raise ValueError(f"diffs must not all be equal (no spread beyond rounding, δ_z "
                         f"undefined); got {_show(d)}")
    t_obs = mean / se
    root_n = math.sqrt(len(d))
    if abs(t_obs) > GZ_LARGE_T:  # T ≈ λ/S: the bounds scale t by quantiles of S
        q_lo, q_hi = (math.sqrt(sps.chi2.ppf(q, df) / df) for q in
                      ((1 - confidence) / 2, (1 + confidence) / 2))
        lo, hi = (t_obs * q_lo, t_obs * q_hi) if t_obs > 0 else (t_obs * q_hi, t_obs * q_lo)
        return lo / root_n, hi / root_n
    return (_solve_nc(t_obs, df, (1 + confidence) / 2) / root_n,
            _solve_nc(t_obs, df, (1 - confidence) / 2) / root_n)


# ------------------------------------------------------- equivalence / non-inferiority
@dataclass(frozen=True)
class TostResult:
    """Two one-sided tests of |μ_d| < margin. ``p`` = max(p_lower, p_upper);
    (``ci_low``, ``ci_high``) = the (1 − 2α) t-interval; ``equivalent`` = p < alpha."""

    p: float
    p_lower: float
    p_upper: float
    ci_low: float
    ci_high: float
    equivalent: bool
    margin: float
    alpha: float


def tost(diffs, margin: float, alpha: float = 0.05) -> TostResult:
    """Equivalence of the paired mean difference within ±``margin`` by two one-sided
    t-tests (Schuirmann 1987): H0⁻: μ_d ≤ −margin, p_lower = P(T_{n−1} ≥ (mean + margin)/se);
    H0⁺: μ_d ≥ +margin, p_upper = P(T_{n−1} ≤ (mean − margin)/se); se = sd/√n (ddof=1).
    Equivalence is declared at level α when both reject, i.e. p = max(p_lower, p_upper)
    < α — the same as the (1 − 2α) interval mean ± t_{1−α,n−1}·se lying inside ±margin.
    With zero spread the t statistics take their limits (±inf).
    """
    d = _values(diffs, "diffs", 2)
    margin = _positive(margin, "margin")
    alpha = _open01(alpha, "alpha")
    mean, se, df = _mean_se(d)
    p_lower = float(sps.t.sf(_t(mean + margin, se), df))
    p_upper = float(sps.t.cdf(_t(mean - margin, se), df))
    half = float(sps.t.ppf(1 - alpha, df)) * se
    p = max(p_lower, p_upper)
    return TostResult(p=p, p_lower=p_lower, p_upper=p_upper, ci_low=mean - half,
                      ci_high=mean + half, equivalent=bool(p < alpha), margin=margin,
                      alpha=alpha)


@dataclass(frozen=True)
class NonInferiorityResult:
    """One-sided test of μ_d > −margin: ``bound`` = the one-sided (1 − α) lower confidence
    bound of μ_d, ``p`` its p-value, ``noninferior`` = p < alpha (⇔ bound > −margin)."""

    bound: float
    p: float
    noninferior: bool
    margin: float
    alpha: float


def noninferiority(diffs, margin: float, alpha: float = 0.05) -> NonInferiorityResult:
    """Non-inferiority of the paired mean difference: H0: μ_d ≤ −margin vs H1: μ_d > −margin,
    higher d better (pass −d for a lower-is-better metric such as a loss).

    One-sided t-test at level α: p = P(T_{n−1} ≥ (mean + margin)/se); the matching bound
    is the one-sided (1 − α) lower confidence bound mean − t_{1−α,n−1}·se, which equals the
    lower end of the two-sided (1 − 2α) interval. The CONSORT / ICH E9 convention "lower
    end of the two-sided 95 % CI above −margin" is alpha = 0.025 here.
    """
    d = _values(diffs, "diffs", 2)
    margin = _positive(margin, "margin")
    alpha = _open01(alpha, "alpha")
    mean, se, df = _mean_se(d)
    p = float(sps.t.sf(_t(mean + margin, se), df))
    bound = mean - float(sps.t.ppf(1 - alpha, df)) * se
    return NonInferiorityResult(bound=bound, p=p, noninferior=bool(p < alpha), margin=margin,
                                alpha=alpha)


# ------------------------------------------------- distribution-free location estimates
def _walsh(x: np.ndarray) -> np.ndarray:
    """All n(n + 1)/2 Walsh averages (x_i + x_j)/2, i ≤ j (O(n²) memory, no n×n array)."""
    n = len(x)
    out = np.empty(n * (n + 1) // 2)
    pos = 0
    for i in range(n):
        out[pos:pos + n - i] = (x[i] + x[i:]) / 2
        pos += n - i
    return out


def hodges_lehmann(x) -> float:
    """Hodges–Lehmann one-sample location estimate: the median of the n(n + 1)/2 Walsh
    averages (x_i + x_j)/2, i ≤ j (Hodges & Lehmann 1963; Hollander & Wolfe 1999 §3.2).
    The estimate that goes with the Wilcoxon signed-rank test. O(n²) time and memory
    (n = 5,000: 12.5 M averages, 100 MB).
    """
    return float(np.median(_walsh(_values(x, "x", 1))))


def _signed_rank_k(n: int, confidence: float) -> int:
    """Largest k with P(T⁺ ≤ k − 1) ≤ (1 − confidence)/2 under H0 (0 when none), T⁺ the
    Wilcoxon signed-rank statistic of n values: exact up to SIGNED_RANK_MAX_EXACT by
    counting subsets of {1..n} with each rank sum, normal approximation with continuity
    correction above (k = ⌊μ + ½ − z·σ⌋, μ = n(n+1)/4, σ² = n(n+1)(2n+1)/24)."""
    half_alpha = (1 - confidence) / 2
    n_sums = n * (n + 1) // 2
    if n <= SIGNED_RANK_MAX_EXACT:
        counts = np.zeros(n_sums + 1)
        counts[0] = 1.0
        for r in range(1, n + 1):
            counts[r:] = counts[r:] + counts[:n_sums + 1 - r]
        cdf = np.cumsum(counts) / 2.0**n
        return int(np.searchsorted(cdf, half_alpha * (1 + 1e-12), side="right"))
    mu = n * (n + 1) / 4
    sigma = math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    return max(0, math.floor(mu + 0.5 - sps.norm.ppf(1 - half_alpha) * sigma))


def hodges_lehmann_ci(x, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the centre of symmetry that goes with
    :func:`hodges_lehmann`: (W_(k), W_(N+1−k)) of the sorted Walsh averages, N = n(n+1)/2,
    with k the largest integer such that P(T⁺ ≤ k − 1) ≤ (1 − confidence)/2 under the
    Wilcoxon signed-rank null (Hollander & Wolfe 1999 §3.3; Bauer 1972).

    Coverage 1 − 2·P(T⁺ ≤ k − 1) ≥ confidence for continuous symmetric data; the exact
    signed-rank distribution is counted for n ≤ 50, the normal approximation with
    continuity correction is used above. Ties make it approximate. Raises ValueError when
    n is too small for any interval at this level (n < 6 at 95 %). O(n²).
    """
    x = _values(x, "x", 1)
    confidence = _open01(confidence, "confidence")
    k = _signed_rank_k(len(x), confidence)
    if k < 1:
        raise ValueError(f"x holds {len(x)} value(s): too few for a distribution-free "
                         f"{confidence:.0%} interval (the smallest attainable two-sided level "
                         f"is 2/2^n = {2 / 2.0**len(x):.3g}); got {_show(x)}")
    w = _walsh(x)
    lo, hi = k - 1, len(w) - k
    part = np.partition(w, [lo, hi])
    return float(part[lo]), float(part[hi])


def bootstrap_median_ci(x, confidence: float = 0.95, n_boot: int = 10_000,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (scipy.stats.bootstrap,
    method="percentile", ``n_boot`` resamples, ``numpy.random.default_rng(seed)``;
    Efron & Tibshirani 1993 §13). Percentile rather than BCa: BCa's acceleration comes from
    the jackknife, which is inconsistent for the median (a non-smooth statistic). Resamples
    are drawn in batches of about 2 M values to bound memory for long timing series.
    """
    x = _values(x, "x", 2)
    confidence = _open01(confidence, "confidence")
    n_boot = _integer(n_boot, "n_boot", 1)
    res = sps.bootstrap((x,), np.median, n_resamples=n_boot, vectorized=True,
                        batch=max(1, 2_000_000 // len(x)), confidence_level=confidence,
                        method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# --------------------------------------------------------------- one-sided decisions
@dataclass(frozen=True)
class AboveResult:
    """Is the mean paired difference shown to exceed ``bound``? (:func:`shown_above`)"""

    ok: bool
    lower: float  # the one-sided (1 − level) t lower confidence bound; NaN without spread
    p: float  # one-sided p of H0: μ_d ≤ bound (t-test, or exact sign-flip without spread)
    level: float  # the one-sided level applied
    by: str  # "t" (interval) or "sign-flip" (differences without spread)

    def text(self) -> str:
        """How it was decided, for evidence columns."""
        if self.by == "t":
            return (f"one-sided {1 - self.level:.4g} lower bound {self.lower:+.4f} "
                    f"(level {self.level:.3g})")
        return (f"no spread beyond rounding, so no interval: exact one-sided sign-flip "
                f"p = {format_sign_flip(self.p)} vs level {self.level:.3g}")


def shown_above(diffs, bound: float = 0.0, level: float = 0.025) -> AboveResult:
    """Decide "μ_d > ``bound``" at the one-sided ``level`` (0.025 = the lower end of the
    two-sided 95 % t-interval above ``bound``).

    With spread (:func:`has_spread`): the one-sided (1 − level) t lower bound
    mean − t_{1−level,n−1}·sd/√n must exceed ``bound``. Without spread — every difference
    equal up to rounding, where the interval has zero width and would pass any bound the
    mean exceeds — the exact one-sided sign-flip test of d − bound decides: p < level
    (with n differences its floor is 1/2^n, 1/32 at n = 5, so 5 identical gains do not
    pass at 0.025)."""
    d = _values(diffs, "diffs", 2)
    level = _open01(level, "level")
    if not (isinstance(bound, (int, float, np.number)) and math.isfinite(bound)):
        raise ValueError(f"bound must be a finite number; got {bound!r}")
    x = d - float(bound)
    if has_spread(d, scale=float(np.max(np.abs(np.r_[d, bound])))):
        mean, se, df = _mean_se(d)
        lower = mean - float(sps.t.ppf(1 - level, df)) * se
        p = float(sps.t.sf((mean - bound) / se, df))
        return AboveResult(bool(lower > bound), lower, p, level, "t")
    p = sign_flip_p(np.where(np.abs(x) <= SPREAD_RTOL * max(1.0, abs(float(bound))), 0.0, x),
                    "greater")
    return AboveResult(bool(p < level and float(x.mean()) > 0), float("nan"), p, level,
                       "sign-flip")


# ------------------------------------------------------------------------ multiplicity
def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaNs stay NaN and are not counted; Holm 1979).

    Written here (a few lines) rather than adding statsmodels as a dependency for it.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bonferroni_ci(diffs, n_comparisons: int, confidence: float = 0.95) -> tuple[float, float]:
    """Paired t-interval mean ± t_{1−α'/2,n−1}·sd/√n at the Bonferroni level
    1 − α' = 1 − (1 − confidence)/m, m = ``n_comparisons``: m such intervals hold
    simultaneously with probability ≥ ``confidence`` (Dunn 1961)."""
    d = _values(diffs, "diffs", 2)
    m = _integer(n_comparisons, "n_comparisons", 1)
    confidence = _open01(confidence, "confidence")
    mean, se, df = _mean_se(d)
    half = float(sps.t.ppf(1 - (1 - confidence) / (2 * m), df)) * se
    return mean - half, mean + half


def intersection_union_p(pvalues) -> float:
    """p-value of a conjunction ("better at every budget", "lower on both objectives"):
    max(p_k) (Berger 1982; Berger & Hsu 1996).

    The claim holds only if every component holds, so its null is the *union* of the
    component nulls; rejecting it means rejecting each one. If every component test has
    level α, the test "reject when all p_k ≤ α" has level α: whichever component null is
    true, rejecting needs that component's test to reject, which has probability ≤ α. No
    multiplicity adjustment is needed (it would only cost power) — unlike a disjunction
    ("better at *some* budget"), which needs Holm (:func:`holm`).
    """
    p = _values(pvalues, "pvalues", 1)
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"pvalues must lie in [0, 1]; got {_show(p)}")
    return float(p.max())


# ----------------------------------------------------------------------- the summary
@dataclass(frozen=True)
class PairedTests:
    """One-stop summary of n paired differences (see :func:`paired_tests`)."""

    n: int
    mean: float
    sd: float
    t_p: float
    sign_flip_p: float
    sign_flip_floor: float
    ci_low: float
    ci_high: float
    g_z: float
    gz_low: float
    gz_high: float
    mde80: float
    confidence: float


def paired_tests(diffs, confidence: float = 0.95) -> PairedTests:
    """Everything the reports state about one set of paired differences d = RKDO − I-Con.

    ``mean``, ``sd`` (ddof=1); ``t_p``: two-sided one-sample t-test of mean(d) = 0 (the
    paired t-test; NaN when all d are equal, as in
    :func:`rkdo_core.reporting.stats.paired_stats`);
    ``sign_flip_p``: :func:`sign_flip_p` two-sided, with ``sign_flip_floor`` the
    :func:`sign_flip_floor` of the number of non-zero differences; ``ci_low``/``ci_high``:
    the t-interval mean ± t_{(1+c)/2,n−1}·sd/√n; ``g_z`` (:func:`hedges_gz`, NaN for n < 3
    or sd = 0) with ``gz_low``/``gz_high`` (:func:`gz_ci`, NaN for sd = 0);
    ``mde80``: :func:`min_detectable_difference` at the observed sd, power 0.80,
    alpha 0.05 two-sided (NaN for sd = 0).
    """
    d = _values(diffs, "diffs", 2)
    confidence = _open01(confidence, "confidence")
    n = len(d)
    mean, se, df = _mean_se(d)
    sd = se * math.sqrt(n)
    half = float(sps.t.ppf((1 + confidence) / 2, df)) * se
    spread = has_spread(d)
    nan = float("nan")
    gz_low, gz_high = gz_ci(d, confidence) if spread else (nan, nan)
    return PairedTests(
        n=n, mean=mean, sd=sd,
        t_p=float(sps.ttest_1samp(d, 0.0).pvalue) if spread else nan,
        sign_flip_p=sign_flip_p(d),
        sign_flip_floor=sign_flip_floor(int(np.count_nonzero(d))),
        ci_low=mean - half, ci_high=mean + half,
        g_z=hedges_gz(d) if spread and n >= 3 else nan,
        gz_low=gz_low, gz_high=gz_high,
        mde80=min_detectable_difference(sd, n) if spread else nan,
        confidence=confidence,
    )
