"""Tables 1–4 against values recomputed by hand from synthetic run folders, and the paper's
reported numbers against docs/method.md §4."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import SEEDS, STEPS_PER_EPOCH, synthetic_rows, write_synthetic_results
from scipy import stats as sps

from rkdo_core.reporting.aggregate import aggregate, build_tables
from rkdo_core.reporting.claims import VERDICTS
from rkdo_core.reporting.fmt import format_p, write_table, write_tables
from rkdo_core.reporting.inference import hedges_j
from rkdo_core.reporting.reported import DEFAULT_REPORTED, load_reported
from rkdo_core.reporting.results import load_metrics
from rkdo_core.reporting.stats import paired_comparison
from rkdo_core.reporting.tables import TABLE_NAMES, table1, table3, table4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    rows = write_synthetic_results(root, datasets=("cifar10", "digits"))
    df = load_metrics(root)
    return root, rows, df, paired_comparison(df), load_reported()


@pytest.fixture(scope="module")
def written(results, tmp_path_factory):
    _, _, df, comp, reported = results
    out = tmp_path_factory.mktemp("tables")
    tables = build_tables(df, comp, reported)
    entries = write_tables(tables, out)
    return out, tables, entries


def _pair(rows, dataset, metric, rkdo_epoch, icon_epoch=None):
    icon_epoch = rkdo_epoch if icon_epoch is None else icon_epoch
    r = rows[(rows.dataset == dataset) & (rows.method == "rkdo") & (rows.epoch == rkdo_epoch)]
    i = rows[(rows.dataset == dataset) & (rows.method == "icon") & (rows.epoch == icon_epoch)]
    return (r.sort_values("seed")[metric].to_numpy(float),
            i.sort_values("seed")[metric].to_numpy(float))


def _holm(p):
    p = np.asarray(p, float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, k in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[k]))
        adj[k] = running
    return adj


def test_table1_csv_matches_hand_computation(results, written):
    _, rows, _, _, _ = results
    out, _, _ = written
    csv = pd.read_csv(out / f"{TABLE_NAMES['table1']}.csv")
    assert len(csv) == 2 * 5  # 2 datasets × budgets 0, 1, 2, 5, 10
    assert csv.rkdo_mean.dtype == float and csv.p_value.dtype == float
    expected_p = {}
    for row in csv.itertuples():
        r, i = _pair(rows, row.dataset, "train_loss", row.epochs)
        d = r - i
        assert row.n_seeds == len(SEEDS)
        assert row.rkdo_mean == pytest.approx(r.mean()) and row.icon_mean == pytest.approx(
            i.mean())
        assert row.rkdo_std == pytest.approx(r.std(ddof=1))
        assert row.icon_std == pytest.approx(i.std(ddof=1))
        assert row.improvement_pct == pytest.approx(100 * (i.mean() - r.mean()) / i.mean())
        assert row.steps_min == row.steps_max == STEPS_PER_EPOCH[row.dataset] * row.epochs
        if row.epochs == 0:  # the same untrained encoder: a difference, not a test
            assert row.diff_mean == pytest.approx(d.mean())
            assert np.isnan(row.ci_low) and np.isnan(row.p_value) and np.isnan(row.g_z)
            assert np.isnan(row.p_holm)
            continue
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert (row.ci_low, row.ci_high) == pytest.approx((d.mean() - half, d.mean() + half))
        assert row.g_z == pytest.approx(d.mean() / d.std(ddof=1) * hedges_j(len(d) - 1))
        assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
        expected_p[(row.dataset, row.epochs)] = row.p_value
    keys = list(expected_p)
    adj = dict(zip(keys, _holm([expected_p[k] for k in keys])))
    for row in csv[csv.epochs > 0].itertuples():
        assert row.p_holm == pytest.approx(adj[(row.dataset, row.epochs)])


def test_table1_reported_columns_and_no_counterpart(written):
    out, tables, _ = written
    csv = pd.read_csv(out / f"{TABLE_NAMES['table1']}.csv")
    c10 = csv[(csv.dataset == "cifar10") & (csv.epochs == 1)].iloc[0]
    assert (c10.reported_rkdo_mean, c10.reported_icon_mean, c10.reported_pct) == (
        1.9384, 2.6768, 27.59)
    assert (c10.reported_rkdo_std, c10.reported_icon_std) == (0.0403, 0.0369)
    assert bool(c10.has_reported)
    c10_10 = csv[(csv.dataset == "cifar10") & (csv.epochs == 10)].iloc[0]
    assert (c10_10.reported_rkdo_mean, c10_10.reported_pct) == (1.6200, 29.95)
    digits = csv[csv.dataset == "digits"]
    assert not digits.has_reported.any() and digits.reported_rkdo_mean.isna().all()
    assert (digits.no_counterpart_reason == "digits is not in the paper").all()
    e0 = csv[(csv.dataset == "cifar10") & (csv.epochs == 0)].iloc[0]
    assert not e0.has_reported and "epoch 0" in e0.no_counterpart_reason
    md = (out / f"{TABLE_NAMES['table1']}.md").read_text()
    assert "1.9384 ± 0.0403" in md and "2.6768 ± 0.0369" in md and "+27.59 %" in md
    assert "no counterpart in the paper" in md and "p < 0.001 for every row" in md
    disp = tables[TABLE_NAMES["table1"]]
    digit_rows = disp[disp.dataset == "digits"]
    assert (digit_rows["Paper RKDO"] == "—").all() and (digit_rows["Paper I-Con"] == "—").all()
    assert "Table 1" in md.splitlines()[0]


def test_table2_reported_linear_eval(written):
    out, _, _ = written
    csv = pd.read_csv(out / f"{TABLE_NAMES['table2']}.csv")
    row = csv[(csv.dataset == "cifar10") & (csv.epochs == 10)].iloc[0]
    assert (row.reported_rkdo_mean, row.reported_icon_mean, row.reported_pct) == (
        0.2894, 0.3206, -9.73)
    # Epoch 0: identical untrained encoder -> difference 0, no test, nothing in Holm.
    e0 = csv[csv.epochs == 0]
    assert (e0.diff_mean == 0).all() and e0.p_value.isna().all() and e0.p_holm.isna().all()


def test_table3_values_and_reported_pairs(results, written):
    _, rows, _, _, _ = results
    out, tables, _ = written
    csv = pd.read_csv(out / f"{TABLE_NAMES['table3']}.csv", keep_default_na=False,
                      na_values=[""])
    # 2 datasets × (the untrained baseline (0, 5), then the pairs (1, 5), (2, 5))
    assert len(csv) == 6
    assert list(csv.rkdo_epochs) == [0, 1, 2] * 2 and list(csv.baseline) == [True, False,
                                                                              False] * 2
    for row in csv.itertuples():
        r, i = _pair(rows, row.dataset, "linear_eval", row.rkdo_epochs, row.icon_epochs)
        assert row.rkdo_mean == pytest.approx(r.mean()) and row.icon_mean == pytest.approx(
            i.mean())
        assert row.ratio_pct == pytest.approx(100 * r.mean() / i.mean())
        assert row.fewer_epochs_pct == pytest.approx(100 * (1 - row.rkdo_epochs / 5))
        assert row.rkdo_steps == STEPS_PER_EPOCH[row.dataset] * row.rkdo_epochs
        assert row.icon_steps == STEPS_PER_EPOCH[row.dataset] * 5
        assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
        d = r - i
        half = sps.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        assert row.ci_high == pytest.approx(d.mean() + half)
    trained = csv[~csv.baseline]
    np.testing.assert_allclose(trained.p_holm, _holm(trained.p_value))
    assert csv[csv.baseline].p_holm.isna().all() and csv[csv.baseline].p_value.notna().all()
    assert (csv[csv.baseline].rkdo_steps == 0).all()
    c10 = csv[(csv.dataset == "cifar10") & (csv.rkdo_epochs == 1)].iloc[0]
    assert (c10.reported_rkdo_mean, c10.reported_icon_mean, c10.reported_ratio_pct) == (
        0.2496, 0.3291, 76)
    assert "80 % fewer" in c10.reported_claim
    c10_2 = csv[(csv.dataset == "cifar10") & (csv.rkdo_epochs == 2)].iloc[0]
    assert not c10_2.has_reported and "no such pair" in c10_2.no_counterpart_reason
    assert not csv[csv.dataset == "digits"].has_reported.any()
    assert tables[TABLE_NAMES["table3"]].attrs["omitted"] == []


def test_table3_missing_budgets_are_omitted_with_a_reason(results):
    _, rows, _, _, reported = results
    smoke = rows[rows.epoch.isin([0, 1, 2])]
    t = table3(smoke, reported, pairs=[(1, 5), (2, 5)])
    assert t.empty and len(t.attrs["omitted"]) == 6  # baseline (0, 5) too
    assert all("I-Con at 5 epochs not in the results (budgets present: [0, 1, 2])" in r
               for r in t.attrs["omitted"])
    assert "No row" in t.attrs["note"]
    # Mixed: CIFAR-10 has the budgets, digits does not.
    mixed = rows[(rows.dataset == "cifar10") | rows.epoch.isin([0, 1, 2])]
    t = table3(mixed, reported, pairs=[(1, 5)])
    assert list(t.dataset) == ["cifar10"] * 2 and len(t.attrs["omitted"]) == 2
    assert t.attrs["omitted"][1].startswith("digits (paper), RKDO 1 vs I-Con 5 epochs: omitted")
    assert "Omitted:" in t.attrs["note"]
    # A pair both budgets of which exist works on a smoke grid.
    t = table3(smoke, reported, pairs=[[1, 2]])
    assert len(t) == 4 and not t.has_reported.any() and t.baseline.sum() == 2


def test_table4_values_reported_and_missing_epoch(results, written):
    _, rows, _, comp, reported = results
    out, _, _ = written
    csv = pd.read_csv(out / f"{TABLE_NAMES['table4']}.csv")
    # 2 datasets × 4 metrics × (epoch 0, the untrained baseline; epoch 2)
    assert len(csv) == 2 * 4 * 2 and set(csv.metric) == {"linear_eval", "nmi", "ari",
                                                           "neighborhood_acc"}
    assert set(csv.epochs) == {0, 2}
    assert not csv[csv.epochs == 0].has_reported.any()
    for row in csv.itertuples():
        r, i = _pair(rows, row.dataset, row.metric, row.epochs)
        if row.epochs == 0:
            assert row.diff_mean == 0 and np.isnan(row.p_value)
            continue
        assert row.rkdo_mean == pytest.approx(r.mean()) and row.icon_std == pytest.approx(
            i.std(ddof=1))
        assert row.improvement_pct == pytest.approx(100 * (r.mean() - i.mean()) / i.mean())
        assert row.p_value == pytest.approx(sps.ttest_rel(r, i).pvalue)
    nmi = csv[(csv.dataset == "cifar10") & (csv.metric == "nmi") & (csv.epochs == 2)].iloc[0]
    assert (nmi.reported_rkdo_mean, nmi.reported_icon_mean, nmi.reported_pct) == (
        0.1211, 0.1255, -3.48)
    assert not csv[csv.dataset == "digits"].has_reported.any()
    missing = table4(comp, reported, epoch=7)
    assert missing.empty and "epoch 7 is not in the results" in missing.attrs["note"]
    other = table4(comp, reported, epoch=1)
    assert not other.has_reported.any()
    c10 = other[other.dataset == "cifar10"]
    assert (c10[c10.epochs == 1].no_counterpart_reason
            == "the paper reports epochs [2] only").all()
    assert (c10[c10.epochs == 0].no_counterpart_reason
            == "epoch 0 (untrained encoder) is not reported").all()


def test_write_table_formats(written):
    out, _, entries = written
    assert [e["name"] for e in entries] == list(TABLE_NAMES.values())
    for e in entries:
        assert [p.suffix for p in e["files"]] == [".csv", ".md", ".tex"]
        assert all(p.stat().st_size > 0 for p in e["files"])
    tex = (out / f"{TABLE_NAMES['table1']}.tex").read_text()
    body = tex.split("\\begin{table}")[1]
    assert "\\begin{tabular}" in body and "\\%" in body and "$\\pm$" in body
    assert "±" not in body and " %" not in body.replace("\\%", "")
    # A plain DataFrame without attrs is written whole.
    paths = write_table(pd.DataFrame({"a": [1.5], "b": ["x"]}), out, "plain", "Plain", "n.")
    assert pd.read_csv(paths[0]).a.iloc[0] == 1.5 and "Plain" in paths[1].read_text()


def test_format_p():
    assert format_p(0.0123) == "0.012" and format_p(0.5) == "0.5"
    assert format_p(3.24e-5) == "3.2e-05" and format_p(float("nan")) == "—"
    assert format_p(0.001) == "0.001"


def test_tables_on_a_single_seed_do_not_crash():
    df = pd.DataFrame(synthetic_rows(datasets=("digits",), seeds=(1,), epochs=(1, 2)))
    comp = paired_comparison(df)
    t = table1(comp, load_reported())
    assert t.p_value.isna().all() and (t["p"] == "—").all() and t.rkdo_std.isna().all()


def test_reported_file_matches_paper_md():
    rep = load_reported()
    assert DEFAULT_REPORTED.name == "reported.yaml"
    assert len(rep.table1) == len(rep.table2) == 12 and len(rep.table4) == 12
    assert rep.table4_epoch == 2 and rep.protocol == "paper"
    assert set(rep.table4.metric) == {"linear_eval", "nmi", "ari", "neighborhood_acc"}
    assert list(zip(rep.table3.dataset, rep.table3.rkdo_epochs, rep.table3.icon_epochs)) == [
        ("cifar10", 1, 5), ("cifar100", 2, 5), ("stl10", 2, 5)]
    # Transcription check: each printed percentage lies within what the printed means
    # (rounded to 4 decimals, ± 0.00005) allow.
    for frame, col, lower in ((rep.table1, "improvement_pct", True),
                              (rep.table2, "difference_pct", False),
                              (rep.table4, "difference_pct", False)):
        for r in frame.itertuples():
            h = 0.00005
            corners = [100 * ((ic - rk) if lower else (rk - ic)) / ic
                       for rk in (r.rkdo_mean - h, r.rkdo_mean + h)
                       for ic in (r.icon_mean - h, r.icon_mean + h)]
            assert min(corners) - 0.005 <= getattr(r, col) <= max(corners) + 0.005, r
    # Table 4's linear eval is Table 2 at 2 epochs.
    t2 = rep.table2[rep.table2.epochs == 2].set_index("dataset")
    t4 = rep.table4[rep.table4.metric == "linear_eval"].set_index("dataset")
    pd.testing.assert_series_equal(t2.rkdo_mean, t4.rkdo_mean)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reported("/nonexistent/reported.yaml")


def test_aggregate_writes_manifest(tmp_path):
    write_synthetic_results(tmp_path / "res", datasets=("digits",), seeds=(1, 2, 3),
                            epochs=(0, 1, 2))
    out = tmp_path / "res" / "aggregate"
    data = aggregate(tmp_path / "res", out, table3_pairs=[(1, 2)]).manifest
    on_disk = json.loads((out / "aggregate.json").read_text())
    assert on_disk["n_runs"] == data["n_runs"] == 6 and on_disk["seeds"] == [1, 2, 3]
    assert on_disk["skipped_incomplete"] == 1
    assert on_disk["skipped_runs"] == ["digits/paper/rkdo/seed_999"]
    assert [t["name"] for t in on_disk["tables"]] == list(TABLE_NAMES.values())
    # no yardstick in these synthetic metrics: Fig. 6 is left out, the others are drawn
    assert [f["name"] for f in on_disk["figures"]] == [
        "fig1_loss_improvement_by_dataset", "fig2_loss_improvement_by_budget",
        "fig3_rkdo1_vs_icon2", "fig4_early_learning", "fig5_loss_vs_training_length",
        "fig7_compute_matched"]  # Figure 3: the grid's one Table 3 pair
    assert on_disk["yardstick_sentences"] == [
        "digits (paper protocol): the common yardstick was not measured (metrics files "
        "without yardstick_icon / yardstick_rkdo; re-evaluate the runs)."]
    verdicts = {c["source"]: c["verdict"] for c in on_disk["claims"]}
    assert verdicts and set(verdicts.values()) <= set(VERDICTS)
    assert on_disk["positive_control_sentences"] and on_disk["positive_control"]
    for entry in on_disk["tables"] + on_disk["figures"]:
        assert entry["files"] and all((out / f).stat().st_size > 0 for f in entry["files"])
    assert (out / on_disk["comparison"]).is_file()
    assert len(on_disk["epoch0_sentences"]) == 1


def test_table3_shows_icon_at_the_early_budget():
    from rkdo_core.reporting.tables import table3
    df = pd.DataFrame(synthetic_rows(datasets=("digits",)))
    t = table3(df, None, ((1, 5), (2, 5)))
    for r in t[t.rkdo_epochs > 0].itertuples():
        g = df[df.epoch == r.rkdo_epochs]
        i_e = g[g.method == "icon"].sort_values("seed").linear_eval.to_numpy()
        r_e = g[g.method == "rkdo"].sort_values("seed").linear_eval.to_numpy()
        assert r.icon_early_mean == pytest.approx(i_e.mean())
        assert r.rkdo_minus_icon_early == pytest.approx((r_e - i_e).mean())
    assert t[t.rkdo_epochs == 0].icon_early_mean.isna().all()  # the untrained baseline rows
    assert "I-Con@early" in t.attrs["display"]
