"""Figures 1–5: plotted values equal the recomputed statistics; captions state what ran."""

import numpy as np
import pandas as pd
import pytest
from helpers import SEEDS, synthetic_rows
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from scipy import stats as sps

from rkdo_core.reporting.aggregate import build_figures
from rkdo_core.reporting.figures import (
    CHANCE_GID,
    FIGURE_NAMES,
    close,
    fig1_loss_improvement,
    fig2_loss_improvement_by_budget,
    fig3_rkdo_vs_icon,
    fig4_early_learning,
    fig5_loss_curves,
    run_facts,
    save_figure,
)
from rkdo_core.reporting.fmt import format_p
from rkdo_core.reporting.reported import load_reported
from rkdo_core.reporting.stats import paired_comparison

EPOCHS = (0, 1, 2, 5, 10)


@pytest.fixture(scope="module")
def data():
    df = pd.DataFrame(synthetic_rows(datasets=("cifar10", "digits"), epochs=EPOCHS))
    return df, paired_comparison(df), load_reported()


def _values(df, dataset, method, epoch, metric):
    g = df[(df.dataset == dataset) & (df.method == method) & (df.epoch == epoch)]
    return g.sort_values("seed")[metric].to_numpy(float)


def _improvement(df, dataset, epoch):
    r = _values(df, dataset, "rkdo", epoch, "train_loss")
    i = _values(df, dataset, "icon", epoch, "train_loss")
    per_seed = 100 * (i - r) / i
    half = sps.t.ppf(0.975, len(r) - 1) * per_seed.std(ddof=1) / np.sqrt(len(r))
    return 100 * (i.mean() - r.mean()) / i.mean(), half


def _bars(ax):
    return {c.get_label(): c for c in ax.containers if isinstance(c, BarContainer)}


def _assert_caption(caption, seeds=SEEDS):
    assert f"{len(seeds)} seeds ({', '.join(map(str, seeds))})" in caption
    assert "paper protocol" in caption
    assert "real optimizer steps per budget" in caption and "1 → 10" in caption
    assert "device: cpu" in caption and "Error bars:" in caption


def test_fig1_bar_heights_are_the_improvements(data):
    df, comp, reported = data
    fig, caption = fig1_loss_improvement(df, comp, reported)
    ax = fig.axes[0]
    bars = _bars(ax)
    assert sorted(bars) == ["epoch 0 (untrained)", "epoch 1", "epoch 10", "epoch 2", "epoch 5"]
    for epoch in EPOCHS:
        label = f"epoch {epoch}" + (" (untrained)" if epoch == 0 else "")
        patches = bars[label].patches
        assert [p.get_gid() for p in patches] == [f"cifar10/{epoch}", f"digits/{epoch}"]
        for p, dataset in zip(patches, ("cifar10", "digits")):
            assert p.get_height() == pytest.approx(_improvement(df, dataset, epoch)[0])
    # Error bars: the 95 % t-interval of the per-seed improvement around each bar.
    segs = np.concatenate([c.get_segments() for c in ax.collections])
    halves = sorted(round((s[1, 1] - s[0, 1]) / 2, 9) for s in segs)
    # none at epoch 0: the same untrained encoder under two functions, no interval
    expected = sorted(round(_improvement(df, d, e)[1], 9) for d in ("cifar10", "digits")
                      for e in EPOCHS if e > 0)
    np.testing.assert_allclose(halves, expected)
    # The paper's Table 1 beside ours, for CIFAR-10 only (digits has no counterpart).
    reported_y = np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_marker() == "D"])
    np.testing.assert_allclose(sorted(reported_y), sorted([27.59, 28.91, 30.90, 29.95]))
    _assert_caption(caption)
    assert "Figure 1" in caption and "untrained" in caption and "paired t-test" in caption
    assert "95 % t-interval of the per-seed paired improvement" in caption
    gap0 = _improvement(df, "cifar10", 0)[0]
    assert f"CIFAR-10 {gap0:.1f} %" in caption
    close(fig)


def test_fig2_groups_the_same_numbers_by_budget(data):
    df, comp, reported = data
    fig, caption = fig2_loss_improvement_by_budget(df, comp, reported)
    bars = _bars(fig.axes[0])
    assert sorted(bars) == ["CIFAR-10", "digits"]
    heights = [p.get_height() for p in bars["digits"].patches]
    np.testing.assert_allclose(heights, [_improvement(df, "digits", e)[0] for e in EPOCHS])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][0] == "0\n(untrained)"
    _assert_caption(caption)
    assert caption.startswith("Figure 2")


def test_fig5_lines_are_the_seed_means(data):
    df, _, reported = data
    fig, caption = fig5_loss_curves(df, reported)
    ax = fig.axes[0]
    lines = {ln.get_gid(): ln for ln in ax.lines if ln.get_gid()}
    for dataset in ("cifar10", "digits"):
        for method, style in (("rkdo", "-"), ("icon", "--")):
            ln = lines[f"{method}/{dataset}"]
            np.testing.assert_array_equal(ln.get_xdata(), EPOCHS)
            np.testing.assert_allclose(
                ln.get_ydata(), [_values(df, dataset, method, e, "train_loss").mean()
                                 for e in EPOCHS])
            assert ln.get_linestyle() == style
    paper = lines["paper/icon/cifar10"]
    np.testing.assert_allclose(paper.get_ydata(), [2.6768, 2.5176, 2.4000, 2.3127])
    assert paper.get_alpha() < 0.5 and "paper/rkdo/digits" not in lines
    # ± 1 std (ddof 1) error bars
    (cont,) = [c for c in ax.containers if c.get_label() == "digits, I-Con"]
    segs = cont.lines[2][0].get_segments()
    np.testing.assert_allclose([(s[1, 1] - s[0, 1]) / 2 for s in segs],
                               [_values(df, "digits", "icon", e, "train_loss").std(ddof=1)
                                for e in EPOCHS])
    _assert_caption(caption)
    assert "solid = RKDO" in caption and "dashed = I-Con" in caption


def test_fig3_and_its_paired_test(data):
    df, _, reported = data
    fig, caption = fig3_rkdo_vs_icon(df, reported)
    bars = _bars(fig.axes[0])
    r = _values(df, "cifar10", "rkdo", 2, "linear_eval")
    i = _values(df, "cifar10", "icon", 5, "linear_eval")
    assert bars["RKDO, 2 epochs"].patches[0].get_height() == pytest.approx(r.mean())
    assert bars["I-Con, 5 epochs"].patches[0].get_height() == pytest.approx(i.mean())
    # budget 0: the untrained encoder's bar, first, from the metrics files
    u = _values(df, "cifar10", "rkdo", 0, "linear_eval")
    assert list(bars)[0] == "untrained encoder (epoch 0)"
    assert bars["untrained encoder (epoch 0)"].patches[0].get_height() == pytest.approx(u.mean())
    assert "untrained encoder (budget 0" in caption
    assert f"p = {format_p(sps.ttest_rel(r, i).pvalue)}" in caption
    _assert_caption(caption)
    reported_y = sorted(np.concatenate([ln.get_ydata() for ln in fig.axes[0].lines
                                        if ln.get_marker() == "D"]))
    assert reported_y == pytest.approx([0.2667, 0.3291])  # Table 2: RKDO@2, I-Con@5
    assert "Not in the results" not in caption


def test_fig4_panels_per_metric(data):
    df, _, reported = data
    fig, caption = fig4_early_learning(df, reported)
    axes = {ax.get_gid(): ax for ax in fig.axes if ax.get_visible()}
    assert sorted(axes) == sorted(["linear_eval", "nmi", "ari", "neighborhood_acc"])
    for metric, ax in axes.items():
        bars = _bars(ax)
        assert sorted(bars) == ["icon/1", "icon/2", "rkdo/1", "rkdo/2", "untrained/0"]
        heights = [p.get_height() for p in bars["untrained/0"].patches]
        np.testing.assert_allclose(heights, [_values(df, d, "rkdo", 0, metric).mean()
                                             for d in ("cifar10", "digits")])
        heights = [p.get_height() for p in bars["icon/2"].patches]
        np.testing.assert_allclose(heights, [_values(df, d, "icon", 2, metric).mean()
                                             for d in ("cifar10", "digits")])
    nmi_reported = [ln.get_ydata()[0] for ln in axes["nmi"].lines if ln.get_marker() == "D"]
    assert sorted(nmi_reported) == pytest.approx([0.1211, 0.1255])
    _assert_caption(caption)


def test_smoke_grid_without_later_budgets_draws_what_exists():
    df = pd.DataFrame(synthetic_rows(datasets=("digits",), seeds=(42, 123, 456),
                                     epochs=(1, 2)))
    rep = load_reported()
    for fn in (fig1_loss_improvement, fig2_loss_improvement_by_budget):
        fig, caption = fn(df, None, rep)
        assert "42, 123, 456" in caption and "device: cpu" in caption
        close(fig)
    fig, caption = fig3_rkdo_vs_icon(df, rep)
    assert "Not in the results (not drawn): untrained encoder (epoch 0) for digits, I-Con, " \
        "5 epochs for digits" in caption
    assert "Test: none" in caption and len(_bars(fig.axes[0])) == 1
    fig, caption = fig4_early_learning(df, rep)
    assert caption.endswith("Not in the results (not drawn): the untrained encoder (epoch 0) "
                            "for digits.")
    fig, caption = fig5_loss_curves(df, rep)
    assert "1 → 3, 2 → 6" in caption
    fig, caption = fig4_early_learning(df, rep, epochs=(1, 5))
    assert "RKDO at 5 epochs for digits" in caption


def test_caption_facts_and_protocol_choice(data):
    df, _, _ = data
    both = pd.concat([df, df.assign(protocol="full", device="cuda:0")])
    with pytest.raises(ValueError, match="several protocols"):
        fig5_loss_curves(both)
    facts = run_facts(both, "full")
    assert "full protocol" in facts and "cuda:0 (16 runs)" in facts
    fewer = df[~((df.dataset == "digits") & (df.seed == 42))]
    assert "(fewer for: digits 3)" in run_facts(fewer)
    names = [n for n, fig, _ in build_figures(both)]  # the default Table 3 pairs
    assert names == [f"{name}_{p}" for p in ("full", "paper") for name in (
        FIGURE_NAMES["fig1"], FIGURE_NAMES["fig2"], "fig3_rkdo1_vs_icon5",
        "fig3_rkdo2_vs_icon5", FIGURE_NAMES["fig4"], FIGURE_NAMES["fig5"],
        FIGURE_NAMES["fig7"])]
    names = [n for n, fig, _ in build_figures(df, table3_pairs=[(0, 2), (1, 2), (1, 2)])]
    assert [n for n in names if n.startswith("fig3")] == ["fig3_rkdo1_vs_icon2"]


def test_save_figure_writes_png_and_pdf(data, tmp_path):
    df, comp, reported = data
    fig, _ = fig1_loss_improvement(df, comp, reported)
    png, pdf = save_figure(fig, tmp_path / "figs", "fig1")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1_000
    # no creation date: a re-run of `make reproduce` left every committed PDF differing
    # from the last one in its /CreationDate only
    assert b"/CreationDate" not in pdf.read_bytes()
    # Figures never go through pyplot: nothing accumulates in a long aggregation.
    import matplotlib.pyplot as plt

    build_figures(df, comp, reported)
    assert plt.get_fignums() == []


def _legend_chance_overlaps(fig) -> tuple[int, list]:
    """(chance segments drawn, those whose display-space extent meets a legend's box)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    boxes = [lg.get_window_extent(renderer) for lg in
             [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None]
    assert boxes, "no legend drawn"
    segments, hits = 0, []
    for ax in fig.axes:
        for coll in ax.collections:
            if coll.get_gid() != CHANCE_GID:
                continue
            for seg in coll.get_segments():
                (x0, y0), (x1, y1) = ax.transData.transform(seg)
                segments += 1
                hits += [(seg.tolist(), b) for b in boxes
                         if b.x0 <= max(x0, x1) and min(x0, x1) <= b.x1
                         and b.y0 <= max(y0, y1) and min(y0, y1) <= b.y1]
    return segments, hits


@pytest.mark.parametrize("datasets", [("digits",), ("cifar10", "digits")])
def test_fig3_legend_never_covers_the_chance_line(datasets):
    """One dataset with tall bars (the committed digits figure): matplotlib's "best" spot
    inside the axes was the lower left, over the dotted chance line at 0.1."""
    df = pd.DataFrame(synthetic_rows(datasets=datasets, epochs=(0, 2, 5)))
    level = {0: 0.73, 2: 0.63, 5: 0.68}
    df["linear_eval"] = [level[e] + 0.01 * k % 0.03 for k, e in enumerate(df.epoch)]
    fig, _ = fig3_rkdo_vs_icon(df, None, rkdo_epoch=2, icon_epoch=5)
    segments, hits = _legend_chance_overlaps(fig)
    assert segments == len(datasets) and hits == []
    close(fig)


def test_fig3_title_and_pairs_are_the_grids():
    """The smoke grid (budgets 1, 2; table3_pairs [[1, 2]]) gets one Figure 3, RKDO after 1
    vs I-Con after 2, drawn from data that exist — never a promised I-Con after 5."""
    df = pd.DataFrame(synthetic_rows(datasets=("digits",), seeds=(42, 123, 456),
                                     epochs=(0, 1, 2)))
    drawn = {n: (fig, cap) for n, fig, cap in build_figures(df, table3_pairs=[[1, 2]])}
    fig3 = [n for n in drawn if n.startswith("fig3")]
    assert fig3 == ["fig3_rkdo1_vs_icon2"]
    fig, caption = drawn["fig3_rkdo1_vs_icon2"]
    assert fig.axes[0].get_title() == "RKDO after 1 vs I-Con after 2 epochs"
    assert sorted(_bars(fig.axes[0])) == sorted(["untrained encoder (epoch 0)",
                                                 "RKDO, 1 epoch", "I-Con, 2 epochs"])
    assert "I-Con after 2 epochs (50 % fewer epochs for RKDO)" in caption
    assert "Not in the results" not in caption and "5 epochs" not in caption
    for fig, _ in drawn.values():
        close(fig)
