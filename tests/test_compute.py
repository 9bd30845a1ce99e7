"""The compute-matched view: table numbers recomputed by hand, the figure's points and caption,
and metrics files without FLOP or yardstick columns."""

import numpy as np
import pandas as pd
import pytest
from helpers import SEEDS, STEPS_PER_EPOCH, synthetic_rows
from matplotlib.container import ErrorbarContainer
from scipy import stats as sps

from rkdo_core.reporting.compute import (
    compute_matched_table,
    default_pairs,
    fig_compute_matched,
    with_train_flops,
)
from rkdo_core.reporting.figures import close
from rkdo_core.reporting.fmt import write_table
from rkdo_core.reporting.stats import holm

FLOPS = {"rkdo": 2.0004e9, "icon": 2.0e9}


def frame(flops=True, yardstick=True, datasets=("digits",), protocol="paper"):
    df = pd.DataFrame(synthetic_rows(datasets=datasets, protocol=protocol))
    rng = np.random.default_rng(1)
    if flops:
        df["flops_per_step"] = df.method.map(FLOPS)
    if yardstick:
        df["yardstick_icon"] = 2.5 - 0.01 * df.epoch + 0.02 * rng.normal(size=len(df))
        df["yardstick_rkdo"] = 1.8 - 0.01 * df.epoch + 0.02 * rng.normal(size=len(df))
    return df


def _values(df, method, epoch, col, dataset="digits"):
    g = df[(df.method == method) & (df.epoch == epoch) & (df.dataset == dataset)]
    return g.sort_values("seed")[col].to_numpy(float)


def test_table_recomputed_by_hand():
    df = frame()
    t = compute_matched_table(df)
    assert default_pairs(df) == [(1, 1), (2, 2), (5, 5), (10, 10), (1, 5), (2, 5)]
    assert len(t) == 2 * 6
    for r in t.itertuples():
        a = _values(df, "rkdo", r.rkdo_epochs, r.metric)
        b = _values(df, "icon", r.icon_epochs, r.metric)
        assert r.comparison == ("matched" if r.rkdo_epochs == r.icon_epochs else "mismatched")
        assert r.n_seeds == len(SEEDS)
        assert r.rkdo_mean == pytest.approx(a.mean()) and r.icon_std == pytest.approx(
            b.std(ddof=1))
        assert r.diff_mean == pytest.approx((a - b).mean())
        assert r.p_value == pytest.approx(sps.ttest_rel(a, b).pvalue)
        half = sps.t.ppf(0.975, len(a) - 1) * (a - b).std(ddof=1) / np.sqrt(len(a))
        assert r.ci_low == pytest.approx((a - b).mean() - half)
        steps_r = STEPS_PER_EPOCH["digits"] * r.rkdo_epochs
        steps_i = STEPS_PER_EPOCH["digits"] * r.icon_epochs
        assert r.rkdo_flops == pytest.approx(steps_r * FLOPS["rkdo"])
        assert r.compute_saved_pct == pytest.approx(
            100 * (1 - steps_r * FLOPS["rkdo"] / (steps_i * FLOPS["icon"])))
        assert r.steps_saved_pct == pytest.approx(100 * (1 - steps_r / steps_i))
    # matched compute: RKDO spends the loss's extra FLOPs (a negative saving); 1 vs 5 epochs
    # saves slightly less than the 80 % counted in epochs
    m = t[(t.rkdo_epochs == 1) & (t.icon_epochs == 1)].iloc[0]
    assert m.compute_saved_pct == pytest.approx(-0.02)
    mm = t[(t.rkdo_epochs == 1) & (t.icon_epochs == 5)].iloc[0]
    assert 79.99 < mm.compute_saved_pct < 80.0
    assert mm["Compute saved (FLOPs)"] == "80.00 %"
    # Holm from the one family definition: matched and mismatched rows are separate families
    for _, g in t.groupby(["metric", "comparison"]):
        np.testing.assert_allclose(g.p_holm, holm(g.p_value.to_numpy()))


def test_train_flops_from_files_wins_over_steps_times_flops():
    df = frame()
    df["train_flops"] = np.where(df.epoch == 5, 1.0, np.nan)
    out = with_train_flops(df)
    assert (out[df.epoch == 5].train_flops == 1.0).all()
    assert out[df.epoch == 2].train_flops.iloc[0] == pytest.approx(
        2 * STEPS_PER_EPOCH["digits"] * df[df.epoch == 2].flops_per_step.iloc[0])
    assert "train_flops" not in df or df.train_flops.isna().any()  # input left alone


def test_old_results_without_flops_say_not_measured(tmp_path):
    t = compute_matched_table(frame(flops=False, yardstick=False))
    assert len(t) == 12 and t.compute_saved_pct.isna().all()
    assert set(t["Compute saved (FLOPs)"]) == {"not measured"}
    assert t.steps_saved_pct.notna().all() and "FLOPs not measured" in t.attrs["note"]
    t = compute_matched_table(frame(flops=False), metrics=("linear_eval", "yardstick_icon"))
    assert set(t.metric) == {"linear_eval", "yardstick_icon"}
    t = compute_matched_table(frame(yardstick=False), metrics=("yardstick_icon",))
    assert t.empty and "not measured" in t.attrs["note"]
    files = write_table(compute_matched_table(frame()), tmp_path, "table7_compute_matched")
    assert pd.read_csv(files[0]).shape[0] == 12
    with pytest.raises(ValueError, match="invalid metric 'loss'"):
        compute_matched_table(frame(), metrics=("loss",))
    with pytest.raises(ValueError, match=r"invalid pair \(5, 1\)"):
        compute_matched_table(frame(), pairs=[(5, 1)])


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_figure_points_include_budget_zero_and_flops_axis():
    df = frame()
    fig, caption = fig_compute_matched(df)
    axes = fig.axes
    # rows: linear eval, 5-NN accuracy, yardstick; columns: steps, FLOPs (one dataset)
    assert len(axes) == 3 * 2
    steps = [STEPS_PER_EPOCH["digits"] * e for e in (0, 1, 2, 5, 10)]
    for k, ax in enumerate(axes):
        bars = _errorbars(ax)
        assert [c.get_label() for c in bars] == ["RKDO", "I-Con"]
        for c, method in zip(bars, ("rkdo", "icon")):
            x, y = c.lines[0].get_data()
            expect_x = steps if k % 2 == 0 else [s * FLOPS[method] for s in steps]
            np.testing.assert_allclose(x, expect_x)
            assert x[0] == 0
            metric = ("linear_eval", "neighborhood_acc", "yardstick_icon")[k // 2]
            np.testing.assert_allclose(y, [_values(df, method, e, metric).mean()
                                           for e in (0, 1, 2, 5, 10)])
    for fact in ("5 seeds" if len(SEEDS) == 5 else f"{len(SEEDS)} seeds", "paper protocol",
                 "0 → 0, 1 → 3, 2 → 6, 5 → 15, 10 → 30", "RKDO 2.0004 × 10⁹, I-Con 2 × 10⁹.",
                 "FlopCounterMode", "device: cpu", "x = 0", "± 1 std"):
        assert fact in caption, fact
    close(fig)


def test_figure_without_flops_or_yardstick_draws_what_there_is():
    fig, caption = fig_compute_matched(frame(flops=False, yardstick=False),
                                       metrics=("linear_eval", "neighborhood_acc",
                                                "yardstick_icon"))
    assert len(fig.axes) == 2  # two metrics x steps only
    assert "FLOPs: not measured" in caption
    assert "Not measured in these metrics files: yardstick: I-Con objective" in caption
    close(fig)
    two = pd.concat([frame(), frame(protocol="full")])
    with pytest.raises(ValueError, match="several protocols"):
        fig_compute_matched(two)
    fig, caption = fig_compute_matched(two, protocol="full")
    assert "full protocol" in caption
    close(fig)


def test_mde_is_stated_at_the_holm_level_of_each_row():
    # Table 7 printed the two-sided MDE at 0.05 beside a p judged at Holm's α/m
    from rkdo_core.reporting.inference import min_detectable_difference
    df = pd.DataFrame(synthetic_rows(datasets=("cifar10", "digits"), yardstick=True))
    t = compute_matched_table(df, mismatched=((1, 5), (2, 5)))
    checked = 0
    for r in t.itertuples():
        if not np.isfinite(r.p_holm):
            continue
        r_, i_ = (df[(df.dataset == r.dataset) & (df.method == m) & (df.epoch == e)]
                  .sort_values("seed")[r.metric].to_numpy()
                  for m, e in (("rkdo", r.rkdo_epochs), ("icon", r.icon_epochs)))
        d = r_ - i_
        m = 8 if r.comparison == "matched" else 4  # 2 datasets × 4 budgets / × 2 pairs
        assert r.mde_alpha == pytest.approx(0.05 / m)
        assert r.mde80 == pytest.approx(min_detectable_difference(d.std(ddof=1), len(d),
                                                                  alpha=0.05 / m))
        checked += 1
    assert checked > 0 and "MDE80 (Holm level)" in t.attrs["display"]
