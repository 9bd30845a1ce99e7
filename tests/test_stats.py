"""Aggregation statistics against hand computations."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rkdo_core.stats import (
    format_comparison,
    holm,
    improvement_pct,
    load_metrics,
    paired_comparison,
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
    # Holm within the metric's family (2 budgets).
    fam = table[table.metric == "train_loss"].sort_values("epoch")
    np.testing.assert_allclose(fam.p_holm, holm(fam.p_value))
    # Identical values in both methods: no test is possible, p is NaN, not 1 or 0.
    assert np.isnan(table[table.metric == "nmi"].p_value).all()
    assert "training loss" in format_comparison(table)


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
    df = load_metrics(tmp_path)
    assert sorted(df.method) == ["icon", "rkdo"] and sorted(df.x) == [0, 1]
    with pytest.raises(FileNotFoundError, match="no metrics files"):
        load_metrics(tmp_path / "empty")
