"""The audit's gates and rules: positive control, gap decomposition, one Holm family per
comparison, claim (b) with sensitivity / margin / non-inferiority, wall-time CI, the theory
caveat, and the params file's aggregate section. Every verdict is flipped on synthetic data
made true, false and untestable."""

import numpy as np
import pandas as pd
import pytest
from helpers import synthetic_rows

from rkdo_core.config import ConfigError, load_params
from rkdo_core.reporting import inference as inf
from rkdo_core.reporting.claims import (
    CAVEAT,
    FAILS,
    HOLDS,
    HOLDS_WHERE_CHECKED,
    UNTESTABLE,
    UNTESTABLE_REGIME,
    UNTESTABLE_SENSITIVITY,
    _claim_c,
    _claim_d,
    _lag1,
    claims_checklist,
)
from rkdo_core.reporting.compute import compute_matched_table
from rkdo_core.reporting.stats import (
    CONTROL_NOT_SHOWN,
    GATED,
    gap_decomposition,
    paired_comparison,
    positive_control,
    protocol_conclusions,
    yardstick_verdicts,
)
from rkdo_core.reporting.tables import table2, table3, table4

FIVE = (1, 2, 3, 4, 5)
EPOCHS = (0, 1, 2, 5)


def frame(lin, *, yard=None, seeds=FIVE, epochs=EPOCHS, noise=0.002, datasets=("digits",),
          protocol="paper", extra=None, rng_seed=0):
    """``lin(method, epoch)`` -> linear eval mean; ``yard(method, epoch)`` -> dict."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for d in datasets:
        for s in seeds:
            for e in epochs:
                for m in ("rkdo", "icon"):
                    v = {"train_loss": (2.6 - 0.04 * e) * (0.7 if m == "rkdo" else 1.0),
                         "linear_eval": lin(m, e), "nmi": 0.3, "ari": 0.2,
                         "neighborhood_acc": 0.5}
                    if yard is not None:
                        v.update(yard(m, e))
                    if extra is not None:
                        v.update(extra(m, e))
                    rows.append({"dataset": d, "protocol": protocol, "method": m, "seed": s,
                                 "epoch": e, "steps": 10 * e, "device": "cpu",
                                 **{k: x + noise * rng.normal() for k, x in v.items()}})
    return pd.DataFrame(rows)


def row(table, prefix):
    sub = table[table.claim.str.startswith(prefix)]
    assert len(sub) == 1, (prefix, list(table.claim))
    return sub.iloc[0]


def learning(m, e):  # training helps: I-Con 0.30 -> 0.60; RKDO early 0.55
    if e == 0:
        return 0.30
    return {"icon": {1: 0.45, 2: 0.50, 5: 0.60}, "rkdo": {1: 0.59, 2: 0.60, 5: 0.62}}[m][e]


# ------------------------------------------------------------------ 0. positive control
def test_positive_control_flips_and_gates_downstream_only():
    ok = positive_control(frame(learning))
    assert ok.status.tolist() == ["passes"] and not ok.gated.iloc[0]
    flat = frame(lambda m, e: 0.5)  # training does not help
    bad = positive_control(flat)
    assert bad.status.tolist() == ["fails"] and bad.gated.iloc[0]
    no0 = positive_control(flat[flat.epoch > 0])
    # a control that cannot be computed gates; it never switches the gate off (issue 24.4)
    assert no0.status.tolist() == ["not testable"] and no0.gated.iloc[0]
    # linear_cv is preferred where measured
    cv = positive_control(frame(lambda m, e: 0.5, extra=lambda m, e: {"linear_cv": 0.3 + e}))
    assert cv.metric.iloc[0] == "linear_cv" and cv.status.iloc[0] == "passes"

    t = claims_checklist(flat)
    assert row(t, "(audit, first) positive control").verdict == CONTROL_NOT_SHOWN
    assert row(t, "60–80 % fewer epochs").verdict == UNTESTABLE_REGIME
    assert row(t, "~30 % lower loss").verdict == HOLDS  # loss side: not gated
    t_ok = claims_checklist(frame(learning))
    assert row(t_ok, "(audit, first) positive control").verdict == "passes"
    assert row(t_ok, "60–80 % fewer epochs").verdict != UNTESTABLE_REGIME
    # Table 6's downstream conclusions are gated too
    both = pd.concat([flat, flat.assign(protocol="full")])
    pc = protocol_conclusions(paired_comparison(both), gated={("digits", "paper")})
    assert set(pc.paper_conclusion) == {GATED} and GATED not in set(pc.full_conclusion)


# ------------------------------------------------------------------ 1. decomposition
def _yard(m, e):
    # I-Con objective on each encoder, RKDO objective on each encoder
    train = 0.1 * (e > 0)
    return {"yardstick_icon": 2.5 + (0.05 if m == "rkdo" else 0) * (e > 0),
            "yardstick_rkdo": 1.7 - (train if m == "rkdo" else 0.0)}


def test_decomposition_sums_exactly_and_only_training_is_tested():
    df = frame(learning, yard=_yard, noise=0.01)
    dec = gap_decomposition(df)
    assert not dec.empty
    for r in dec.itertuples():
        g = df[(df.epoch == r.epoch)]
        rr = g[g.method == "rkdo"].sort_values("seed").yardstick_rkdo.to_numpy()
        ri = g[g.method == "icon"].sort_values("seed").yardstick_rkdo.to_numpy()
        ii = g[g.method == "icon"].sort_values("seed").yardstick_icon.to_numpy()
        ir = g[g.method == "rkdo"].sort_values("seed").yardstick_icon.to_numpy()
        assert r.own_gap_mean == pytest.approx((rr - ii).mean(), abs=1e-12)
        assert r.function_mean + r.training_mean == pytest.approx(r.own_gap_mean, abs=1e-12)
        assert r.function_pct + r.training_pct == pytest.approx(r.own_gap_pct, abs=1e-9)
        shapley = ((rr - ri) + (ir - ii)) / 2
        assert r.training_mean == pytest.approx(shapley.mean(), abs=1e-12)
        if r.epoch > 0:
            assert r.training_p == pytest.approx(inf.paired_tests(shapley).t_p)
        else:
            assert np.isnan(r.training_p_holm)
    assert "gap_beyond_step0" not in dir(__import__("rkdo_core.reporting.stats",
                                                    fromlist=["x"]))


@pytest.mark.parametrize("train, verdict", [(0.9, HOLDS), (0.0, FAILS), (None, UNTESTABLE)])
def test_decomposition_claim_flips(train, verdict):
    if train is None:
        df = frame(learning)
    else:
        # the RKDO-trained encoder is better by ``train`` on both objectives, so the
        # training term is the same in both orders of the decomposition
        df = frame(learning, noise=0.01, yard=lambda m, e: {
            "yardstick_icon": 2.5 - (train if m == "rkdo" else 0) * (e > 0),
            "yardstick_rkdo": 2.3 - (train if m == "rkdo" else 0) * (e > 0)})
    r = row(claims_checklist(df), "(audit) the loss gap is produced by training")
    assert r.verdict == verdict
    if verdict == FAILS:
        assert "the function term" in r.evidence and "carries the gap" in r.evidence


# ------------------------------------------------------------------ 3. Holm families
def test_same_comparison_same_holm_p_everywhere():
    df = pd.DataFrame(synthetic_rows(datasets=("cifar10", "digits"), yardstick=True))
    comp = paired_comparison(df)
    t2, t4 = table2(comp), table4(comp, epoch=2)
    t7 = compute_matched_table(df, mismatched=((1, 5), (2, 5)))
    t3 = table3(df, None, ((1, 5), (2, 5)))
    for d in ("cifar10", "digits"):
        ref = comp[(comp.dataset == d) & (comp.epoch == 2) & (comp.metric == "linear_eval")]
        p = float(ref.p_holm.iloc[0])
        assert float(t2[(t2.dataset == d) & (t2.epochs == 2)].p_holm.iloc[0]) == p
        assert float(t4[(t4.dataset == d) & (t4.epochs == 2)
                        & (t4.metric == "linear_eval")].p_holm.iloc[0]) == p
        assert float(t7[(t7.dataset == d) & (t7.rkdo_epochs == 2) & (t7.icon_epochs == 2)
                        & (t7.metric == "linear_eval")].p_holm.iloc[0]) == p
        m3 = float(t3[(t3.dataset == d) & (t3.rkdo_epochs == 1) & (t3.icon_epochs == 5)
                      ].p_holm.iloc[0])
        m7 = float(t7[(t7.dataset == d) & (t7.rkdo_epochs == 1) & (t7.icon_epochs == 5)
                      & (t7.metric == "linear_eval")].p_holm.iloc[0])
        assert m3 == m7 and np.isfinite(m3)
    # the matched family of a metric: datasets × trained budgets, epoch 0 not counted
    fam = comp[(comp.metric == "linear_eval") & (comp.protocol == "paper")]
    np.testing.assert_allclose(fam[fam.epoch > 0].p_holm, inf.holm(fam[fam.epoch > 0].p_value))
    assert (fam[fam.epoch > 0].holm_m == 8).all()


# ------------------------------------------------------------------ 5. claim (b)
def _b(icon_late, rkdo_early, icon_early=0.45):
    def lin(m, e):
        if e == 0:
            return 0.30
        if m == "icon":
            return {1: icon_early, 2: icon_early + 0.01, 5: icon_late}[e]
        return {1: rkdo_early, 2: rkdo_early, 5: rkdo_early}[e]
    return frame(lin, noise=0.005)


def test_claim_b_true_false_untestable():
    pairs = ((1, 5),)
    holds = claims_checklist(_b(0.60, 0.60), table3_pairs=pairs)
    assert row(holds, "60–80 %").verdict == HOLDS
    assert "Bonferroni" in row(holds, "60–80 %").rule
    inferior = claims_checklist(_b(0.60, 0.50), table3_pairs=pairs)  # RKDO not comparable
    assert row(inferior, "60–80 %").verdict == FAILS
    ev = row(inferior, "60–80 %").evidence
    # the power of the test applied (non-inferiority at M), never "excluded" by power
    assert "the non-inferiority test (one-sided" in ev and "excluded" not in ev
    # longer I-Con training does not help (but training helps at all: 0.30 -> 0.6)
    flat = claims_checklist(_b(0.60, 0.60, icon_early=0.60), table3_pairs=pairs)
    assert row(flat, "60–80 %").verdict == UNTESTABLE_SENSITIVITY
    # an absolute margin from the params file changes the verdict: M = 0.12 admits 0.50
    wide = claims_checklist(_b(0.60, 0.50), table3_pairs=pairs, min_important_difference=0.12)
    assert row(wide, "60–80 %").verdict == HOLDS and "M = 0.12" in row(wide, "60–80 %").evidence


# ------------------------------------------------------------------ 6. wall time
def _flops(steps=None, paired=None):
    data = {"overhead_pct": {"forward_profiler": 0.001, "fwd_bwd_flopcounter": 0.0,
                             "wall_time": 0.5}, "rows": [], "device": "cpu"}
    if steps is not None:
        data["wall_time_paired_overhead_pct_steps"] = list(steps)
    if paired is not None:
        data["wall_time_paired_overhead_pct"] = paired
    return data


def test_wall_time_verdict_from_hodges_lehmann_ci():
    rng = np.random.default_rng(0)
    wall = [r for r in _claim_d(_flops(steps=0.001 * rng.normal(size=200) - 0.5), 0.03)
            if "wall time" in r["claim"]][0]
    assert wall["verdict"] == HOLDS and "Hodges–Lehmann" in wall["evidence"]
    wall = [r for r in _claim_d(_flops(steps=rng.normal(size=200) + 5.0), 0.03)
            if "wall time" in r["claim"]][0]
    assert wall["verdict"] == FAILS
    wall = [r for r in _claim_d(_flops(steps=10 * rng.normal(size=200)), 0.03)
            if "wall time" in r["claim"]][0]
    assert wall["verdict"] == UNTESTABLE and "spans" in wall["evidence"]
    x = np.random.default_rng(3).normal(size=50)
    assert abs(_lag1(x)) < 2 / np.sqrt(50)  # independent steps: the plain HL interval
    wall = [r for r in _claim_d(_flops(steps=x), 0.03) if "wall time" in r["claim"]][0]
    lo, hi = inf.hodges_lehmann_ci(x)
    assert f"[{lo:.3g}, {hi:.3g}]" in wall["evidence"]
    old = [r for r in _claim_d(_flops(paired={"median": 0.0, "p10": -0.01, "p90": 0.01}), 0.03)
           if "wall time" in r["claim"]][0]
    assert old["verdict"] == HOLDS and "predates the raw per-step" in old["evidence"]


# ------------------------------------------------------------------ 9. neutral yardsticks
def test_neutral_yardsticks_named_when_they_separate():
    def yard(m, e):
        better = m == "rkdo" and e > 0
        return {"yardstick_icon": 2.5, "yardstick_rkdo": 1.7,
                "yard_alignment": 0.5 - 0.2 * better, "yard_rankme": 20.0}
    v = yardstick_verdicts(frame(learning, yard=yard, noise=0.01)).iloc[0]
    assert "alignment (RKDO-trained better)" in v.separating
    assert "RankMe" not in v.separating and v.n_yardsticks == 4


# ------------------------------------------------------------------ 10. theory caveat
def test_theory_audit_is_a_caveat_not_a_verdict():
    checks = [{"name": n, "holds": True, "detail": ""} for n in
              ("Lemma 1", "Lemma 2 [unrestricted]", "Theorem 3 [unrestricted]",
               "Theorem 3 [frozen]")]
    main, caveat = _claim_c(checks)
    assert main["verdict"] == HOLDS_WHERE_CHECKED and caveat["verdict"] == CAVEAT
    assert "toy fields" in main["evidence"] and "not on the trained encoders" in main["evidence"]
    assert "not the paper's claim" in caveat["claim"]
    t = claims_checklist(frame(learning), theory_checks=checks)
    assert f"0 {CAVEAT}" not in t.attrs["note"] and "are not counted" in t.attrs["note"]


# ------------------------------------------------------------------ params
def _grid(tmp_path, text):
    p = tmp_path / "g.yaml"
    p.write_text(text)
    return load_params(p)


def test_params_accept_ten_seeds_and_validate_the_margin(tmp_path):
    seeds = list(range(10))
    spec = _grid(tmp_path, f"datasets: [digits]\nseeds: {seeds}\nepochs: [1, 2]\n"
                           "aggregate: {min_important_difference: 0.02}\n")
    assert len(spec.seeds) == 10 and spec.aggregate["min_important_difference"] == 0.02
    for bad in ("-0.1", "0", "2", "'big'", "true"):
        with pytest.raises(ConfigError, match="min_important_difference"):
            _grid(tmp_path, "datasets: [digits]\nseeds: [1, 2]\nepochs: [1]\n"
                            f"aggregate: {{min_important_difference: {bad}}}\n")
