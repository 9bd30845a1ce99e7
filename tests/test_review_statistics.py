"""The statistical review of issue 24, item by item, each with the reproducing input the
review gave: every test here failed on the code before the fix.

1 power is worded as power, never "excluded"; 2 claim (b)/Table 3's sensitivity must beat
the margin M; 3 differences without spread are decided by the exact sign-flip test; 4 the
gate cannot switch itself off; 5 numerical failures; 6 wall time with few steps; 7 the
sign-flip p is never printed below its floor; 8 both orders of the decomposition, one level;
9 claims that held without evidence of what they say; 10 wording the data supports."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy import stats as sps

from rkdo_core.config import load_params
from rkdo_core.layout import repository_dir
from rkdo_core.reporting import inference as inf
from rkdo_core.reporting.aggregate import build_tables
from rkdo_core.reporting.claims import (
    FAILS,
    HOLDS,
    UNTESTABLE,
    UNTESTABLE_NO_CONTROL,
    UNTESTABLE_SENSITIVITY,
    _claim_d,
    claims_checklist,
)
from rkdo_core.reporting.figures import close, fig3_rkdo_vs_icon
from rkdo_core.reporting.fmt import format_p_up, format_sign_flip
from rkdo_core.reporting.stats import (
    CONTROL_HURTS,
    CONTROL_NOT_SHOWN,
    epoch0_gap_sentences,
    gap_decomposition,
    paired_stats,
    positive_control,
    positive_control_sentences,
    power_text,
)
from rkdo_core.reporting.tables import table3

FIVE = (1, 2, 3, 4, 5)


def frame(lin, *, seeds=FIVE, epochs=(0, 1, 2, 5), noise=0.0, sd=None, extra=None,
          yard=None, rng_seed=0, protocol="paper"):
    """Metrics rows: ``lin(method, epoch)`` -> linear eval; per-seed noise N(0, noise²), or
    with ``sd`` an exact per-seed offset pattern of that SD (the same for every cell)."""
    rng = np.random.default_rng(rng_seed)
    offsets = None
    if sd is not None:
        z = np.linspace(-1, 1, len(seeds))
        offsets = sd * z / z.std(ddof=1)
    rows = []
    for k, s in enumerate(seeds):
        for e in epochs:
            for m in ("rkdo", "icon"):
                v = {"train_loss": (2.6 - 0.04 * e) * (0.7 if m == "rkdo" else 1.0),
                     "linear_eval": lin(m, e)}
                if yard is not None:
                    v.update(yard(m, e, k))
                if extra is not None:
                    v.update(extra(m, e))
                jitter = offsets[k] if offsets is not None else 0.0
                rows.append({"dataset": "digits", "protocol": protocol, "method": m,
                             "seed": s, "epoch": e, "steps": 10 * e, "device": "cpu",
                             **{c: x + (jitter if c in ("linear_eval", "linear_cv") else 0.0)
                                + noise * rng.normal() for c, x in v.items()}})
    return pd.DataFrame(rows)


def row(table, prefix):
    sub = table[table.claim.str.startswith(prefix)]
    assert len(sub) == 1, (prefix, list(table.claim))
    return sub.iloc[0]


# ------------------------------------------------------------------ 1. power is power
def test_power_is_worded_as_power_and_not_attached_to_significant_results():
    text = power_text(0.0204, 0.05)
    assert "excluded" not in text
    assert text == ("the paired t-test had 80 % power to detect a true difference of 0.0204 "
                    "at level 0.05 (two-sided)")
    # RESULTS.md's contradiction: a control whose CI [-0.040, -0.010] lies below 0 printed
    # "differences larger than 0.0204 are excluded" beside it
    hurt = frame(lambda m, e: 0.9578 - 0.0252 * (e == 5), noise=0.008, rng_seed=3)
    pc = positive_control(hurt)
    assert pc.outcome.iloc[0] == CONTROL_HURTS and pc.ci_high.iloc[0] < 0
    sentence = positive_control_sentences(pc)[0]
    assert "excluded" not in sentence and "power" not in sentence
    assert "significantly WORSE than the untrained encoder" in sentence
    checklist = claims_checklist(hurt)
    assert "excluded" not in " ".join(checklist.evidence)
    assert row(checklist, "(audit, first) positive control").verdict == CONTROL_HURTS


# ------------------------------------------------------------------ 2. sensitivity bar
def _sensitivity_input():
    # I-Con@1/2/5 = .300/.302/.310, RKDO@1 = .305, SD .001; untrained .20 (training helps)
    def lin(m, e):
        if e == 0:
            return 0.20
        return {"icon": {1: 0.300, 2: 0.302, 5: 0.310},
                "rkdo": {1: 0.305, 2: 0.306, 5: 0.311}}[m][e]
    return frame(lin, noise=0.001, rng_seed=1)


def test_sensitivity_must_exceed_the_margin_not_zero():
    df = _sensitivity_input()
    assert positive_control(df).status.iloc[0] == "passes"
    t = claims_checklist(df, table3_pairs=((1, 5),), min_important_difference=0.02)
    b = row(t, "60–80 % fewer epochs")
    # I-Con@1 is already within M = 0.02 of I-Con@5: "comparable within M" is empty
    assert b.verdict == UNTESTABLE_SENSITIVITY, b.evidence
    assert "must exceed M = 0.02" in b.evidence
    # the Table 3 analogue on digits under the same rule
    t3 = row(t, "Table 3, CIFAR-10:")
    assert "digits analogue under the same rule: " + UNTESTABLE_SENSITIVITY in t3.evidence
    # a gain well above M makes the pair testable again (and it holds: RKDO@1 = I-Con@5)
    def lin(m, e):
        return 0.2 if e == 0 else {"icon": {1: 0.40, 2: 0.45, 5: 0.50},
                                   "rkdo": {1: 0.50, 2: 0.50, 5: 0.50}}[m][e]
    t = claims_checklist(frame(lin, noise=0.002), table3_pairs=((1, 5),),
                         min_important_difference=0.02)
    assert row(t, "60–80 % fewer epochs").verdict == HOLDS


def test_the_power_reported_is_that_of_the_non_inferiority_test():
    def lin(m, e):
        return 0.2 if e == 0 else {"icon": {1: 0.40, 2: 0.45, 5: 0.50},
                                   "rkdo": {1: 0.45, 2: 0.45, 5: 0.45}}[m][e]
    df = frame(lin, noise=0.01, rng_seed=2)
    b = row(claims_checklist(df, table3_pairs=((1, 5),), min_important_difference=0.02),
            "60–80 % fewer epochs")
    assert b.verdict == FAILS
    d = (df[(df.method == "rkdo") & (df.epoch == 1)].sort_values("seed").linear_eval.to_numpy()
         - df[(df.method == "icon") & (df.epoch == 5)].sort_values("seed").linear_eval
         .to_numpy())
    sd = d.std(ddof=1)
    p0 = inf.power_paired_t(0.02, sd, 5, 0.05, "greater")
    x80 = -0.02 + inf.min_detectable_difference(sd, 5, 0.05, alternative="greater")
    assert (f"non-inferiority test (one-sided, level 0.05, margin M = 0.02) had "
            f"{100 * p0:.0f} % power if the two are truly equal and 80 % power for a true "
            f"difference of {x80:+.4f} or more") in b.evidence


# ------------------------------------------------------------------ 3. no spread
def test_zero_variance_gain_is_decided_by_the_exact_sign_flip_test():
    # every seed gains exactly 2/141 over the untrained encoder
    def lin(m, e):
        return 100 / 141 + (2 / 141) * (e == 5)
    st = paired_stats([102 / 141] * 5, [100 / 141] * 5)
    assert st["no_spread"] and np.isnan(st["ci_low"]) and np.isnan(st["p_value"])
    pc = positive_control(frame(lin))
    # no zero-width interval: the one-sided sign-flip floor with 5 seeds is 1/32 > 0.025
    assert pc.status.iloc[0] == "fails" and pc.outcome.iloc[0] == CONTROL_NOT_SHOWN
    assert pc.decided_by.iloc[0] == "sign-flip"
    sentence = positive_control_sentences(pc)[0]
    assert "decided by the exact sign-flip test" in sentence and "1/32" in sentence
    # with 10 seeds the exact test can decide it (1/1024)
    ten = positive_control(frame(lin, seeds=tuple(range(1, 11))))
    assert ten.status.iloc[0] == "passes"
    # shown_above: the rule every "interval above X" check goes through
    assert not inf.shown_above([0.5] * 5, 0.0, 0.025).ok
    assert inf.shown_above([0.5] * 5, 0.0, 0.05).ok  # 1/32 < 0.05
    assert not inf.shown_above([0.5] * 10, 0.6, 0.025).ok  # above 0, not above 0.6


# ------------------------------------------------------------------ 4. the gate
def test_a_control_that_cannot_be_computed_gates():
    # linear_cv exists only at the last budget: it was "not testable" and gated=False,
    # so downstream verdicts ran although linear_eval would fail the control
    def lin(m, e):
        return 0.5

    df = frame(lin, noise=0.002, extra=lambda m, e: {"linear_cv": 0.8} if e == 5 else {})
    df.loc[df.epoch != 5, "linear_cv"] = np.nan
    pc = positive_control(df)
    assert pc.metric.iloc[0] == "linear_cv" and pc.status.iloc[0] == "not testable"
    assert bool(pc.gated.iloc[0]) and "fewer than 2 seeds" in pc.reason.iloc[0]
    t = claims_checklist(df, table3_pairs=((1, 5),))
    assert row(t, "60–80 % fewer epochs").verdict == UNTESTABLE_NO_CONTROL
    assert "could not be computed" in positive_control_sentences(pc)[0]


def test_claims_are_judged_on_the_probe_of_the_gate():
    def lin(m, e):  # linear eval says nothing; linear_cv learns
        return 0.5

    def cv(m, e):
        return {"linear_cv": 0.2 if e == 0 else {"icon": {1: 0.40, 2: 0.45, 5: 0.50},
                                                 "rkdo": {1: 0.50, 2: 0.50, 5: 0.50}}[m][e]}
    df = frame(lin, noise=0.002, extra=cv)
    t = claims_checklist(df, table3_pairs=((1, 5),), min_important_difference=0.02)
    b = row(t, "60–80 % fewer epochs")
    assert "on linear probe (cross-validated)" in b.evidence and b.verdict == HOLDS


# ------------------------------------------------------------------ 5. numerical failures
def _nct_cdf_reference(t, df, nc):
    """P(T ≤ t), T = (Z + nc)/√(V/df): E_V[Φ(t√(V/df) − nc)] by quadrature over the
    chi-square's probability scale u = F(v), split where the integrand steps."""
    u0 = sps.chi2.cdf(df * (nc / t) ** 2, df)

    def f(u):
        return sps.norm.cdf(t * np.sqrt(sps.chi2.ppf(u, df) / df) - nc)
    return integrate.quad(f, 0, 1, points=[u0], limit=500, epsabs=1e-12)[0]


def test_rounding_only_differences_do_not_crash():
    r = np.array([.31, .47, .52, .28, .40])
    st = paired_stats(r, r - 0.1)  # raised ValueError in gz_ci
    assert st["diff_mean"] == pytest.approx(0.1) and st["no_spread"]
    assert np.isnan(st["g_z"]) and np.isnan(st["ci_low"])


@pytest.mark.parametrize("t_obs", [1e3, 1e4, 1e6, 1e7, 1.4e8])
def test_gz_ci_is_right_at_large_t(t_obs):
    # differences with t = t_obs exactly (5 values, df = 4)
    base = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    se = base.std(ddof=1) / np.sqrt(5)
    d = 1.0 + base * (1.0 / (t_obs * se))
    lo, hi = inf.gz_ci(d)
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert t == pytest.approx(t_obs, rel=1e-6)
    # the bounds are where the exact cdf equals (1 ± 0.95)/2; 8 % off at 1e6 before
    assert _nct_cdf_reference(t, 4, lo * np.sqrt(5)) == pytest.approx(0.975, abs=2e-4)
    assert _nct_cdf_reference(t, 4, hi * np.sqrt(5)) == pytest.approx(0.025, abs=2e-4)


def test_near_deterministic_function_term_gets_no_test():
    def yard(m, e, k):  # the function term varies by 1e-9 across seeds: t ~ 1e8
        icon = 2.5 + 0.01 * k
        return {"yardstick_icon": icon + 0.1 * (m == "rkdo") * (e > 0),
                "yardstick_rkdo": icon - 0.7 + 1e-9 * k - 0.05 * (m == "rkdo") * (e > 0)}
    dec = gap_decomposition(frame(lambda m, e: 0.5, yard=yard))
    assert not any(c.startswith("function") and c.endswith(("_p", "_g_z")) for c in dec)
    assert np.isfinite(dec.function_ci_low).all()


def test_one_missing_value_does_not_stop_the_tables_or_figure3():
    def lin(m, e):
        return 0.3 + 0.01 * e
    df = frame(lin, noise=0.01)
    df.loc[(df.method == "rkdo") & (df.epoch == 1) & (df.seed == 3), "linear_eval"] = np.nan
    t3 = table3(df, None, ((1, 5),))
    r = t3[(t3.rkdo_epochs == 1) & (t3.icon_epochs == 5)].iloc[0]
    assert r.n_seeds == 4 and np.isfinite(r.diff_mean)
    tables = build_tables(df, table3_pairs=((1, 5),))
    assert "table3_early_rkdo_vs_late_icon" in tables
    fig, caption = fig3_rkdo_vs_icon(df, rkdo_epoch=1, icon_epoch=5)
    close(fig)
    assert "nan" not in caption


# ------------------------------------------------------------------ 6. wall time
@pytest.mark.parametrize("n", [2, 3, 5])
def test_wall_time_with_few_steps_is_not_testable(n):
    rows = _claim_d({"overhead_pct": {"forward_profiler": 0.0, "fwd_bwd_flopcounter": 0.0,
                                      "wall_time": 0.0}, "rows": [], "device": "cpu",
                     "wall_time_paired_overhead_pct_steps": [-0.5, -0.6, -0.4, -0.55,
                                                             -0.45][:n]}, 0.03)
    wall = [r for r in rows if "wall time" in r["claim"]][0]
    assert wall["verdict"] == UNTESTABLE and "too few for a valid 95 % interval" in \
        wall["evidence"]


def test_autocorrelated_steps_are_averaged_in_blocks():
    rng = np.random.default_rng(0)
    x = np.empty(200)
    x[0] = 0.0
    for k in range(1, 200):  # AR(1), ρ = 0.8
        x[k] = 0.8 * x[k - 1] + rng.normal()
    rows = _claim_d({"overhead_pct": {"forward_profiler": 0.0, "fwd_bwd_flopcounter": 0.0,
                                      "wall_time": 0.0}, "rows": [], "device": "cpu",
                     "wall_time_paired_overhead_pct_steps": list(x)}, 0.03)
    ev = [r for r in rows if "wall time" in r["claim"]][0]["evidence"]
    blocks = x.reshape(40, 5).mean(axis=1)
    lo, hi = inf.hodges_lehmann_ci(blocks)
    assert "autocorrelated" in ev and "40 non-overlapping blocks of 5" in ev
    assert f"[{lo:.3g}, {hi:.3g}]" in ev


# ------------------------------------------------------------------ 7. display
def test_sign_flip_p_is_never_printed_below_its_floor():
    assert format_sign_flip(0.0625) == "1/16 = 0.063"
    assert format_sign_flip(0.06, floor=0.0625) == "1/16 = 0.063"
    assert format_p_up(0.0625) == "0.063" and format_p_up(0.1234) == "0.13"
    assert format_p_up(1 / 1024) == "9.8e-04" and format_p_up(1.0) == "1"
    flat = frame(lambda m, e: 0.5, noise=0.01)
    assert "0.062" not in " ".join(positive_control_sentences(positive_control(flat)))


# ------------------------------------------------------------------ 8. decomposition
def test_both_orders_and_one_level_for_the_training_term():
    def yard(m, e, k):  # RKDO-trained: better on RKDO's objective, worse on I-Con's
        trained = (m == "rkdo") * (e > 0)
        return {"yardstick_icon": 2.5 + 0.3 * trained,
                "yardstick_rkdo": 1.7 - 0.2 * trained}
    df = frame(lambda m, e: 0.5, yard=yard, noise=0.01)
    dec = gap_decomposition(df)
    r = dec[dec.epoch == 5].iloc[0]
    assert r.training_a_mean == pytest.approx(-0.2, abs=0.02)
    assert r.training_b_mean == pytest.approx(0.3, abs=0.02)
    assert r.training_mean == pytest.approx((r.training_a_mean + r.training_b_mean) / 2)
    sentence = epoch0_gap_sentences(df)[0]
    assert "order A" in sentence and "order B" in sentence and "Shapley" in sentence
    # the sentence and the checklist judge the training term by the same rule
    ev = row(claims_checklist(df), "(audit) the loss gap is produced").evidence
    assert f": {r.training_verdict};" in ev
    word = {"lower": "interval below 0", "higher": "interval above 0",
            "not shown": "interval spans 0"}[r.training_verdict]
    assert word in sentence


# ------------------------------------------------------------------ 9. claims' evidence
def test_loss_claim_is_judged_on_its_interval_with_the_step0_gap_beside_it():
    # point estimates inside 20–40 % at every budget, but the per-seed improvement spreads
    # from ~10 % to ~50 %: its interval leaves the band
    rows = []
    for k, s in enumerate(FIVE):
        for e in (0, 1, 2):
            icon = 2.6
            factor = [0.5, 0.9, 0.7, 0.55, 0.85][k]
            for m in ("rkdo", "icon"):
                rows.append({"dataset": "digits", "protocol": "paper", "method": m, "seed": s,
                             "epoch": e, "steps": 10 * e, "device": "cpu",
                             "train_loss": icon * (factor if m == "rkdo" else 1.0),
                             "linear_eval": 0.5})
    df = pd.DataFrame(rows)
    a = row(claims_checklist(df), "~30 % lower loss")
    assert a.verdict == FAILS
    assert "the untrained encoder (epoch 0) already shows 30.0 %" in a.evidence
    assert "epoch 1: 30.0 % [" in a.evidence


def test_every_grid_states_its_margin_up_front():
    root = repository_dir()
    for name in ("paper", "full", "default", "default_full", "fashion"):
        params = load_params(root / "params" / f"{name}.yaml")
        assert params.aggregate.get("min_important_difference") is not None, name
