"""Aggregation statistics against hand computations."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from helpers import EPOCHS, SEEDS, STEPS_PER_EPOCH, synthetic_rows, write_synthetic_results
from scipy import stats as sps

from rkdo_core.layout import RUN_COMPLETE, incomplete_runs
from rkdo_core.reporting import inference as inf
from rkdo_core.reporting.results import load_metrics
from rkdo_core.reporting.stats import (
    epoch0_gap_sentences,
    format_comparison,
    holm,
    improvement_pct,
    paired_comparison,
    paired_stats,
    run_summary,
)


def test_holm_known_example():
    # m = 4: sorted p (0.01, 0.02, 0.03, 0.04) -> 0.04, 0.06, 0.06 (monotone), 0.06.
    got = holm([0.03, 0.01, 0.04, 0.02])
    np.testing.assert_allclose(got, [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    got = holm([np.nan, 0.01, 0.2])
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], [0.02, 0.2])


def test_improvement_follows_paper_definition():
    # Table 1, CIFAR-10, 1 epoch: RKDO 1.9384, I-Con 2.6768 -> 27.59 %.
    assert improvement_pct(1.9384, 2.6768, True) == pytest.approx(27.59, abs=0.01)
    # Table 2, CIFAR-10, 10 epochs: RKDO 0.2894, I-Con 0.3206 -> -9.73 %.
    assert improvement_pct(0.2894, 0.3206, False) == pytest.approx(-9.73, abs=0.01)


def _frame():
    rng = np.random.default_rng(0)
    rows = []
    for seed in (1, 2, 3, 4, 5):
        for epoch in (0, 1):
            base = rng.normal()
            for method, shift in (("rkdo", -0.3), ("icon", 0.0)):
                rows.append({"dataset": "digits", "protocol": "paper", "method": method,
                             "seed": seed, "epoch": epoch,
                             "train_loss": 2 + shift + 0.1 * base + 0.05 * rng.normal(),
                             "linear_eval": 0.5 + 0.01 * rng.normal(),
                             "nmi": 0.3, "ari": 0.2 + 0.01 * rng.normal(),
                             "neighborhood_acc": 0.4 + 0.01 * rng.normal()})
    return pd.DataFrame(rows)


def test_paired_comparison_matches_scipy_and_numpy():
    df = _frame()
    table = paired_comparison(df)
    row = table[(table.metric == "train_loss") & (table.epoch == 1)].iloc[0]
    r = df[(df.method == "rkdo") & (df.epoch == 1)].sort_values("seed").train_loss.to_numpy()
    i = df[(df.method == "icon") & (df.epoch == 1)].sort_values("seed").train_loss.to_numpy()
    assert row.n_seeds == 5
    assert row.rkdo_mean == pytest.approx(r.mean()) and row.rkdo_std == pytest.approx(r.std(ddof=1))
    assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
    assert row.improvement_pct == pytest.approx(100 * (i.mean() - r.mean()) / i.mean())
    assert row.diff_mean == pytest.approx((r - i).mean())
    # Holm within the metric's family; epoch 0 (untrained encoder) is not in it, so the
    # single trained budget keeps its p.
    fam = table[table.metric == "train_loss"].sort_values("epoch")
    # epoch 0 is the same untrained encoder under two functions: a difference, no test
    assert np.isnan(fam.p_holm.iloc[0]) and np.isnan(fam.p_value.iloc[0])
    assert np.isnan(fam.g_z.iloc[0]) and np.isfinite(fam.diff_mean.iloc[0])
    assert fam.inference.iloc[0].startswith("none: epoch 0")
    assert fam.p_holm.iloc[1] == pytest.approx(fam.p_value.iloc[1])
    # Identical values in both methods: no test is possible, p is NaN, not 1 or 0.
    assert np.isnan(table[table.metric == "nmi"].p_value).all()
    text = format_comparison(table)
    assert "training loss" in text and "testable comparisons of this metric: 1 (paper)" in text
    # two protocols: each family counted on its own (not "over the 2 ... of this protocol"),
    # and each row says its protocol
    both = pd.concat([table, table.assign(protocol="full")])
    two = format_comparison(both)
    assert "testable comparisons of this metric: 1 (full), 1 (paper)" in two
    rows = [ln.split()[0] for ln in two.splitlines() if " digits " in f" {ln} "]
    assert rows.count("paper") == rows.count("full") > 0
    # a metric with nothing testable names no empty family ("Holm over the 0 ...")
    nmi = text[text.index("\nNMI"):].split("\n\n")[0]
    assert "no Holm family" in nmi and "Holm over the 0" not in text


def test_pairs_by_seed_not_by_position():
    df = _frame()
    shuffled = df.sample(frac=1.0, random_state=3)
    a = paired_comparison(df).set_index(["metric", "epoch"]).p_value
    b = paired_comparison(shuffled).set_index(["metric", "epoch"]).p_value
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())


def test_load_metrics_reads_run_files(tmp_path):
    for i, (method, seed) in enumerate([("rkdo", 1), ("icon", 1)]):
        p = tmp_path / method / f"seed_{seed}" / "metrics" / "epoch_001.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"method": method, "seed": seed, "epoch": 1, "x": i}))
    df = load_metrics(tmp_path, complete_only=False)
    assert sorted(df.method) == ["icon", "rkdo"] and sorted(df.x) == [0, 1]
    assert sorted(df.run_dir) == ["icon/seed_1", "rkdo/seed_1"]
    # Neither run is marked complete: the default refuses, naming the folder and the marker.
    with pytest.raises(FileNotFoundError, match=r"no complete run below .*run_complete\.json"):
        load_metrics(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no metrics files"):
        load_metrics(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_metrics(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- tests on them


def _pair(df, dataset, metric, epoch, protocol="paper"):
    g = df[(df.dataset == dataset) & (df.epoch == epoch) & (df.protocol == protocol)]
    r = g[g.method == "rkdo"].sort_values("seed")[metric].to_numpy(float)
    i = g[g.method == "icon"].sort_values("seed")[metric].to_numpy(float)
    return r, i


def test_load_metrics_counts_only_complete_runs(tmp_path):
    rows = write_synthetic_results(tmp_path)
    df = load_metrics(tmp_path)
    assert len(df) == len(rows) == 2 * 4 * 5 * 2
    assert 999 not in set(df.seed)
    everything = load_metrics(tmp_path, complete_only=False)
    assert len(everything) == len(rows) + len(EPOCHS) and 999 in set(everything.seed)
    unfinished = tmp_path / "cifar10" / "paper" / "rkdo" / "seed_999"
    assert incomplete_runs(tmp_path) == [unfinished]
    # A run still training (log only, no metrics yet) is incomplete too.
    training = tmp_path / "digits" / "paper" / "icon" / "seed_7"
    training.mkdir(parents=True)
    (training / "train_log.jsonl").write_text("")
    assert incomplete_runs(tmp_path) == [unfinished, training]
    # A marker listing a file that has gone missing does not make it complete (grid's rule).
    (unfinished / RUN_COMPLETE).write_text(json.dumps({"files": ["01_train.ipynb"]}))
    assert 999 not in set(load_metrics(tmp_path).seed)
    # Once the grid marks it complete, it counts.
    (unfinished / "01_train.ipynb").write_text("{}")
    assert 999 in set(load_metrics(tmp_path).seed)
    assert incomplete_runs(tmp_path) == [training]
    # config.json elsewhere (not in a seed_* folder) is not a run.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "config.json").write_text("{}")
    assert incomplete_runs(tmp_path) == [training]
    assert incomplete_runs(tmp_path / "nowhere") == []


def test_paired_comparison_ci_effect_size_and_holm_by_hand(tmp_path):
    rows = pd.DataFrame(synthetic_rows(datasets=("cifar10", "digits")) + synthetic_rows(
        datasets=("cifar10",), protocol="full", epochs=(0, 1, 2), rng_seed=5))
    table = paired_comparison(rows)
    for (dataset, protocol, epoch, metric), row in table.set_index(
            ["dataset", "protocol", "epoch", "metric"]).iterrows():
        r, i = _pair(rows, dataset, metric, epoch, protocol)
        d = r - i
        assert row.n_seeds == len(SEEDS) and row.seeds == ",".join(map(str, SEEDS))
        assert row.diff_mean == pytest.approx(d.mean())
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert row.steps_min == row.steps_max == STEPS_PER_EPOCH[dataset] * epoch
        assert row.device == "cpu"
        if epoch == 0:
            # The same untrained encoder for both methods: a difference between two
            # functions (the loss) or none at all, shown as a difference — no interval, no
            # test, no g_z (it printed p = 4.6e-16, g_z = -3806 for the loss)
            assert np.isnan(row.p_value) and np.isnan(row.g_z) and np.isnan(row.ci_low)
            assert np.isnan(row.sign_flip_p) and np.isnan(row.mde80)
            assert row.diff_mean == 0 or metric == "train_loss"
            continue
        assert row.ci_low == pytest.approx(d.mean() - half, abs=1e-12)
        assert row.ci_high == pytest.approx(d.mean() + half, abs=1e-12)
        assert row.g_z == pytest.approx(inf.hedges_gz(d))
        assert (row.gz_low, row.gz_high) == pytest.approx(inf.gz_ci(d))
        assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
        # the exact sign-flip p beside the t-test p, equal to brute-force enumeration
        signs = np.array(list(itertools.product((-1, 1), repeat=len(d))))
        sums = signs @ np.abs(d)
        assert row.sign_flip_p == pytest.approx(
            np.mean(np.abs(sums) >= abs(d.sum()) - 1e-12))
        assert row.sign_flip_floor == 2 / 2 ** len(d)
        # MDE at the Holm worst-case level of the family (alpha / m) from the observed sd
        if epoch > 0:
            assert row.mde_alpha == pytest.approx(0.05 / row.holm_m)
            assert row.mde80 == pytest.approx(inf.min_detectable_difference(
                d.std(ddof=1), len(d), alpha=0.05 / row.holm_m))
        imp = 100 * ((i - r) if metric == "train_loss" else (r - i)) / i
        half_imp = sps.t.ppf(0.975, len(imp) - 1) * imp.std(ddof=1) / np.sqrt(len(imp))
        assert row.improvement_ci == pytest.approx(half_imp)
    # Holm within each (protocol, metric) family over the trained budgets only.
    for _family, fam in table.groupby(["protocol", "metric"]):
        trained = fam[fam.epoch > 0]
        np.testing.assert_allclose(trained.p_holm, holm(trained.p_value))
        assert fam[fam.epoch == 0].p_holm.isna().all()
    loss_paper = table[(table.metric == "train_loss") & (table.protocol == "paper")]
    assert loss_paper.p_holm.notna().sum() == 2 * 4  # 2 datasets × budgets 1, 2, 5, 10
    # Epoch 0 of the loss is shown as a difference, not tested, and not in the family.
    assert loss_paper[loss_paper.epoch == 0].p_value.isna().all()
    assert loss_paper[loss_paper.epoch == 0].diff_mean.lt(0).all()


def test_paired_stats_degenerate_cases():
    st = paired_stats([1.0], [2.0])
    assert st["diff_mean"] == -1 and np.isnan(st["p_value"]) and np.isnan(st["ci_low"])
    st = paired_stats([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])  # constant difference
    # no zero-width interval: it would pass every "CI above 0" rule (issue 24 item 3)
    assert st["diff_mean"] == pytest.approx(0.5) and st["no_spread"]
    assert np.isnan(st["ci_low"]) and np.isnan(st["ci_high"])
    assert np.isnan(st["p_value"]) and np.isnan(st["effect_size"]) and np.isnan(st["g_z"])
    assert st["sign_flip_p"] == pytest.approx(2 / 8)  # the exact test still answers


def test_run_summary_and_epoch0_sentences(tmp_path):
    df = pd.DataFrame(synthetic_rows(datasets=("cifar10", "digits"), yardstick=True))
    s = run_summary(df)
    assert s["n_runs"] == 2 * 2 * len(SEEDS) and s["seeds"] == sorted(SEEDS)
    assert s["epochs"] == list(EPOCHS) and s["devices"] == ["cpu"]
    sentences = epoch0_gap_sentences(df)
    assert len(sentences) == 2
    r0, i0 = _pair(df, "cifar10", "train_loss", 0)
    g0 = 100 * (i0.mean() - r0.mean()) / i0.mean()
    text = sentences[0]
    assert text.startswith("CIFAR-10 (paper protocol): the untrained encoder (epoch 0) "
                           f"already shows a training-loss gap of {g0:.2f} %")
    assert "function term" in text and "training term" in text and "carries the gap" in text
    assert "beyond step 0" not in text
    no0 = epoch0_gap_sentences(pd.DataFrame(synthetic_rows(datasets=("digits",))))
    assert "cannot be decomposed" in no0[0] and "not measured" in no0[0]
