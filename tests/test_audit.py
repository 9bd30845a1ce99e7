"""The audit's statistics (issue 5): the gap at step 0 and the improvement beyond it, the
common yardstick ("trained with × scored with") and its generated verdict, and whether the
conclusions change between protocols — against hand computations, with verdicts that can
flip."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rkdo_core.reporting.stats import (
    gap_decomposition,
    holm,
    paired_comparison,
    protocol_conclusions,
    yardstick_comparison,
    yardstick_sentences,
    yardstick_verdicts,
)
from rkdo_core.reporting.tables import table1, table_protocols, table_yardstick, yardstick_2x2

SEEDS = (1, 2, 3, 4, 5)
EPOCHS = (0, 1, 2)


def frame(yard_shift=(-0.2, -0.2), protocols=("paper",), loss_gap0=0.25, loss_growth=0.05,
          eval_shift=None, seed=0, yardstick=True):
    """Synthetic metrics rows. ``yard_shift``: (I-Con objective, RKDO objective) shift of the
    RKDO-trained encoder against the I-Con-trained one at trained budgets (negative = RKDO
    lower). ``eval_shift``: protocol -> linear-eval shift of RKDO."""
    rng = np.random.default_rng(seed)
    rows = []
    for protocol in protocols:
        for s in SEEDS:
            for e in EPOCHS:
                base = 2.8 - 0.05 * e + 0.01 * rng.normal()
                gap = loss_gap0 + loss_growth * e + 0.003 * rng.normal()
                yi, yr = 2.5 - 0.1 * e + 0.02 * rng.normal(), 1.8 - 0.1 * e + 0.02 * rng.normal()
                le = 0.6 + 0.01 * rng.normal()
                for m in ("rkdo", "icon"):
                    row = {"dataset": "digits", "protocol": protocol, "method": m, "seed": s,
                           "epoch": e, "steps": 10 * e, "device": "cpu",
                           "train_loss": base * (1 - gap) if m == "rkdo" else base,
                           "linear_eval": le, "nmi": 0.5, "ari": 0.3,
                           "neighborhood_acc": 0.7}
                    if m == "rkdo" and e > 0:
                        row["linear_eval"] = le + (eval_shift or {}).get(protocol, 0.0) \
                            + 0.002 * rng.normal()
                    if yardstick:
                        trained_rkdo = m == "rkdo" and e > 0
                        row["yardstick_icon"] = yi + (yard_shift[0] + 0.01 * rng.normal()
                                                      if trained_rkdo else 0.0)
                        row["yardstick_rkdo"] = yr + (yard_shift[1] + 0.01 * rng.normal()
                                                      if trained_rkdo else 0.0)
                    rows.append(row)
    return pd.DataFrame(rows)


def _vals(df, method, epoch, col, protocol="paper"):
    g = df[(df.method == method) & (df.epoch == epoch) & (df.protocol == protocol)]
    return g.sort_values("seed")[col].to_numpy(float)


def test_gap_decomposition_matches_hand_computation():
    df = frame()
    dec = gap_decomposition(df)
    assert list(dec.epoch) == [0, 1, 2]
    r0, i0 = _vals(df, "rkdo", 0, "train_loss"), _vals(df, "icon", 0, "train_loss")
    g0 = 100 * (i0.mean() - r0.mean()) / i0.mean()
    for row in dec.itertuples():
        rr = _vals(df, "rkdo", row.epoch, "yardstick_rkdo")
        ri = _vals(df, "icon", row.epoch, "yardstick_rkdo")
        ii = _vals(df, "icon", row.epoch, "yardstick_icon")
        ir = _vals(df, "rkdo", row.epoch, "yardstick_icon")
        assert row.gap0_pct == pytest.approx(g0)
        # both orders, and their average (Shapley) as the headline terms
        assert row.function_a_mean == pytest.approx((ri - ii).mean())
        assert row.training_a_mean == pytest.approx((rr - ri).mean())
        assert row.training_b_mean == pytest.approx((ir - ii).mean())
        assert row.function_b_mean == pytest.approx((rr - ir).mean())
        t = ((rr - ri) + (ir - ii)) / 2
        assert row.training_mean == pytest.approx(t.mean())
        assert row.function_mean == pytest.approx(((ri - ii) + (rr - ir)).mean() / 2)
        # the two terms sum exactly to the own-loss gap on the yardstick, in every order
        for f, tr in (("function", "training"), ("function_a", "training_a"),
                      ("function_b", "training_b")):
            assert getattr(row, f"{f}_mean") + getattr(row, f"{tr}_mean") == pytest.approx(
                (rr - ii).mean())
        assert row.own_gap_pct == pytest.approx(-100 * (rr - ii).mean() / ii.mean())
        if row.epoch > 0:
            assert row.training_p == pytest.approx(sps.ttest_1samp(t, 0).pvalue)
    trained = dec[dec.epoch > 0]
    np.testing.assert_allclose(trained.training_p_holm, holm(trained.training_p))
    # the synthetic RKDO-trained encoder is 0.2 lower on both objectives: both orders and
    # their average (Shapley) give -0.2; a shift on one objective only splits the orders
    for col in ("training_a_mean", "training_b_mean", "training_mean"):
        assert trained[col].tolist() == pytest.approx([-0.2, -0.2], abs=0.02)
    one = gap_decomposition(frame(yard_shift=(0.0, -0.2)))
    one = one[one.epoch > 0]
    assert one.training_a_mean.tolist() == pytest.approx([-0.2, -0.2], abs=0.02)
    assert one.training_b_mean.tolist() == pytest.approx([0.0, 0.0], abs=0.02)
    assert one.training_mean.tolist() == pytest.approx([-0.1, -0.1], abs=0.02)
    assert gap_decomposition(frame(yardstick=False)).empty


def test_table1_gains_the_decomposition_columns():
    df = frame()
    t = table1(paired_comparison(df), None, gap_decomposition(df))
    assert list(t.epochs) == [0, 1, 2]
    assert t.gap0_pct.nunique() == 1
    assert (t.function_pct + t.training_pct).tolist() == pytest.approx(t.own_gap_pct.tolist())
    disp = t.attrs["display"]
    assert disp.index("Gap at step 0") == disp.index("Improvement") + 1
    assert "Training term [95 % CI]" in disp and "Function term [95 % CI]" in disp
    assert not any("Beyond" in c for c in disp) and "beyond_pct" not in t.attrs["csv"]
    assert "before any optimizer step" in t.attrs["note"]


def test_yardstick_comparison_matches_scipy_and_excludes_epoch0_from_holm():
    df = frame()
    ys = yardstick_comparison(df)
    assert set(ys.scored_with) == {"icon", "rkdo"} and len(ys) == 2 * len(EPOCHS)
    for row in ys.itertuples():
        col = f"yardstick_{row.scored_with}"
        r, i = _vals(df, "rkdo", row.epoch, col), _vals(df, "icon", row.epoch, col)
        assert row.rkdo_mean == pytest.approx(r.mean()) and row.icon_mean == pytest.approx(
            i.mean())
        if row.epoch == 0:  # identical untrained encoders
            assert row.diff_mean == 0 and np.isnan(row.p_value) and np.isnan(row.p_holm)
        else:
            assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
    fam = ys[(ys.scored_with == "icon") & (ys.epoch > 0)]
    np.testing.assert_allclose(fam.p_holm, holm(fam.p_value))


@pytest.mark.parametrize("shift, outcome", [
    ((-0.2, -0.2), "survives"),
    ((+0.2, +0.2), "reversed"),
    ((-0.2, +0.2), "mixed"),
    ((0.0, 0.0), "no difference"),
])
def test_yardstick_verdict_flips_with_the_data(shift, outcome):
    df = frame(yard_shift=shift)
    v = yardstick_verdicts(df).iloc[0]
    assert v.outcome == outcome and v.epoch == 2
    assert bool(v.survives) == (outcome == "survives")
    sentence = yardstick_sentences(df)[0]
    assert sentence.startswith("digits (paper protocol), after 2 epoch(s)")
    if outcome == "survives":
        assert "RKDO's lower loss survives the common yardstick" in sentence
    else:
        assert "does not survive the common yardstick" in sentence
    # the sentence quotes the numbers it rests on
    assert f"{v.icon_rkdo_mean:.4f} vs {v.icon_icon_mean:.4f}" in sentence


def test_without_yardstick_says_not_measured():
    df = frame(yardstick=False)
    assert yardstick_comparison(df).empty
    assert yardstick_verdicts(df).outcome.tolist() == ["not measured"]
    assert "was not measured" in yardstick_sentences(df)[0]
    t = table_yardstick(df)
    assert t.empty and "not measured" in t.attrs["note"]


def test_table_yardstick_and_the_2x2():
    df = frame()
    t = table_yardstick(df)
    assert list(t.epochs) == list(EPOCHS)
    last = t.iloc[-1]
    assert last.icon_obj_rkdo_trained_mean == pytest.approx(
        _vals(df, "rkdo", 2, "yardstick_icon").mean())
    own_r = _vals(df, "rkdo", 2, "yardstick_rkdo").mean()
    own_i = _vals(df, "icon", 2, "yardstick_icon").mean()
    assert last.own_objective_gap_pct == pytest.approx(100 * (own_i - own_r) / own_i)
    box = yardstick_2x2(df, "digits", "paper", 2)
    assert box.shape == (2, 2) and list(box.index) == ["trained with RKDO", "trained with I-Con"]
    v = _vals(df, "icon", 2, "yardstick_rkdo")
    assert box.iloc[1, 1] == f"{v.mean():.4f} ± {v.std(ddof=1):.4f}"


def test_protocol_conclusions_flag_a_changed_conclusion():
    # linear eval: RKDO clearly better under "full", no difference under "paper"
    df = frame(protocols=("paper", "full"), eval_shift={"full": 0.05, "paper": 0.0})
    comp = paired_comparison(df)
    pc = protocol_conclusions(comp)
    le = pc[pc.metric == "linear_eval"].set_index("epoch")
    assert list(le.index) == list(EPOCHS)  # the untrained baseline is a row
    assert le.loc[0, "same"] and le.loc[0, "full_conclusion"] == "no difference"
    trained = le.loc[[e for e in EPOCHS if e > 0]]
    assert (trained.full_conclusion == "RKDO better").all()
    assert (trained.paper_conclusion == "no difference").all() and not trained.same.any()
    # NMI identical across methods: "no difference" in both -> same
    assert pc[pc.metric == "nmi"].same.all()
    t = table_protocols(comp)
    assert "NO" in t["Same conclusion"].tolist()
    n_diff = int((~pc.same).sum())
    assert f"{n_diff} of {len(pc)} conclusions differ" in t.attrs["note"]
    # one protocol only: nothing to compare, and the table says so
    single = table_protocols(paired_comparison(frame()))
    assert single.empty and "more than one protocol" in single.attrs["note"]


def test_fig6_common_yardstick_draws_the_files_numbers():
    from rkdo_core.reporting.aggregate import build_figures
    from rkdo_core.reporting.figures import close, fig6_common_yardstick

    df = frame()
    fig, caption = fig6_common_yardstick(df)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if ln.get_gid()}
    assert sorted(lines) == ["icon/icon/digits", "icon/rkdo/digits", "rkdo/icon/digits",
                             "rkdo/rkdo/digits"]
    ln = lines["icon/rkdo/digits"]
    assert list(ln.get_xdata()) == list(EPOCHS)  # budget 0 is a point
    np.testing.assert_allclose(ln.get_ydata(), [_vals(df, "rkdo", e, "yardstick_icon").mean()
                                                for e in EPOCHS])
    r, i = _vals(df, "rkdo", 2, "yardstick_icon"), _vals(df, "icon", 2, "yardstick_icon")
    from rkdo_core.reporting.fmt import format_p

    assert f"p = {format_p(sps.ttest_rel(r, i).pvalue)}" in caption
    assert "seeds 1, 2, 3, 4, 5" in caption or "1, 2, 3, 4, 5" in caption
    close(fig)
    assert fig6_common_yardstick(frame(yardstick=False)) is None
    names = [n for n, f, _ in build_figures(frame(yardstick=False))]
    assert not any(n.startswith("fig6") for n in names)
    names = [n for n, f, _ in build_figures(df)]
    assert names[-2:] == ["fig6_common_yardstick", "fig7_compute_matched"]
