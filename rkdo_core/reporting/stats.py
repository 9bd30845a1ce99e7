"""Aggregation of metrics files: mean ± std over seeds and paired RKDO-vs-I-Con tests.

Reads only files the runs wrote (``RUN/metrics/epoch_NNN.json``), never printed output, and
by default only runs the grid marked complete (``RUN/run_complete.json``, written last).
Budget (epoch) 0 is the untrained encoder: it flows through every function like any other
budget, so the gap that exists before training (docs/method.md §6.1) sits next to the gaps after.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..datasets import dataset_label

#: metric -> True where lower is better (the loss). Order = order in tables.
METRICS: dict[str, bool] = {
    "train_loss": True,
    "linear_eval": False,
    "nmi": False,
    "ari": False,
    "neighborhood_acc": False,
}
METRIC_LABELS = {"train_loss": "training loss", "linear_eval": "linear eval", "nmi": "NMI",
                 "ari": "ARI", "neighborhood_acc": "neighborhood acc"}
METHOD_LABELS = {"rkdo": "RKDO", "icon": "I-Con"}
#: budgets left out of the Holm families: epoch 0 is the untrained encoder, a baseline and
#: not one of the comparisons the paper claims (its 12 dataset × budget tests per metric)
HOLM_EXCLUDED_EPOCHS = (0,)
CONFIDENCE = 0.95


def improvement_pct(rkdo: float, icon: float, lower_is_better: bool) -> float:
    """The paper's definition: (I-Con − RKDO)/I-Con for the loss, (RKDO − I-Con)/I-Con else."""
    if icon == 0:
        return float("nan")
    return 100.0 * ((icon - rkdo) if lower_is_better else (rkdo - icon)) / icon


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaNs stay NaN and are not counted).

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


def paired_stats(rkdo, icon, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Paired statistics of two arrays aligned by seed, on the difference d = RKDO − I-Con.

    ``diff_mean``; ``ci_low``/``ci_high``: the t-interval mean(d) ± t_{n−1} · sd(d)/√n
    (sd with ddof=1); ``effect_size``: Cohen's d_z = mean(d)/sd(d) (NaN when sd(d) = 0);
    ``p_value``: scipy's paired t-test (NaN when n < 2 or all differences are equal, where
    the test is undefined — not 0 or 1).
    """
    r = np.asarray(rkdo, dtype=float)
    i = np.asarray(icon, dtype=float)
    d = r - i
    n = len(d)
    out = {"diff_mean": float(d.mean()) if n else np.nan, "ci_low": np.nan, "ci_high": np.nan,
           "effect_size": np.nan, "p_value": np.nan}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
    out["ci_low"], out["ci_high"] = out["diff_mean"] - half, out["diff_mean"] + half
    if sd > 0 and np.ptp(d) > 0:
        out["effect_size"] = out["diff_mean"] / sd
        out["p_value"] = float(sps.ttest_rel(r, i).pvalue)
    return out


def t_halfwidth(values, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t-interval of the mean of ``values`` (NaN for fewer than 2)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return float("nan")
    return float(sps.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def per_seed_improvement(rkdo, icon, lower_is_better: bool) -> np.ndarray:
    """The paper's improvement % seed by seed: 100 (I-Con_s − RKDO_s)/I-Con_s for the loss,
    100 (RKDO_s − I-Con_s)/I-Con_s otherwise."""
    r = np.asarray(rkdo, dtype=float)
    i = np.asarray(icon, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * ((i - r) if lower_is_better else (r - i)) / i


def _std(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else np.nan


def _steps(g: pd.DataFrame) -> tuple[float, float]:
    if "steps" not in g or g["steps"].isna().all():
        return np.nan, np.nan
    s = g["steps"].dropna().astype(float)
    return float(s.min()), float(s.max())


def paired_values(df: pd.DataFrame, dataset: str, protocol: str, metric: str,
                  rkdo_epoch: int, icon_epoch: int) -> tuple[list, np.ndarray, np.ndarray]:
    """(seeds, RKDO values, I-Con values) for one dataset/protocol/metric, RKDO at
    ``rkdo_epoch`` and I-Con at ``icon_epoch``, aligned on the seeds both have (sorted)."""
    g = df[(df.dataset == dataset) & (df.protocol == protocol)]
    r = g[(g.method == "rkdo") & (g.epoch == rkdo_epoch)].set_index("seed")[metric]
    i = g[(g.method == "icon") & (g.epoch == icon_epoch)].set_index("seed")[metric]
    seeds = sorted(set(r.index) & set(i.index))
    return seeds, r.loc[seeds].astype(float).to_numpy(), i.loc[seeds].astype(float).to_numpy()


def paired_comparison(df: pd.DataFrame, metrics=tuple(METRICS), *,
                      holm_excluded_epochs=HOLM_EXCLUDED_EPOCHS) -> pd.DataFrame:
    """One row per (dataset, protocol, epoch, metric), seeds paired.

    Columns: ``n_seeds``, ``seeds`` (comma-separated), ``rkdo_mean``/``rkdo_std``,
    ``icon_mean``/``icon_std`` (std with ddof=1), ``improvement_pct`` (the paper's definition,
    from the means), ``improvement_ci`` (half-width of the 95 % t-interval of the per-seed
    improvement %), ``diff_mean`` (RKDO − I-Con) with its 95 % t-interval ``ci_low``/
    ``ci_high``, ``effect_size`` (paired Cohen's d_z), ``p_value`` (paired t-test),
    ``p_holm`` (Holm within each (protocol, metric) family across dataset × epoch; budgets in
    ``holm_excluded_epochs`` — the untrained encoder — and NaN p-values are not counted and
    get NaN), ``steps_min``/``steps_max`` (real optimizer steps of the budget) and ``device``.
    """
    rows = []
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        for metric in metrics:
            if metric not in g:
                continue
            seeds, r, i = paired_values(df, dataset, protocol, metric, epoch, epoch)
            if len(seeds) == 0 or np.isnan(r).all() or np.isnan(i).all():
                continue
            steps_min, steps_max = _steps(g)
            imp = per_seed_improvement(r, i, METRICS[metric])
            rows.append({
                "dataset": dataset, "protocol": protocol, "epoch": int(epoch), "metric": metric,
                "n_seeds": len(seeds), "seeds": ",".join(str(s) for s in seeds),
                "rkdo_mean": float(r.mean()), "rkdo_std": _std(r),
                "icon_mean": float(i.mean()), "icon_std": _std(i),
                "improvement_pct": improvement_pct(r.mean(), i.mean(), METRICS[metric]),
                "improvement_ci": t_halfwidth(imp),
                **paired_stats(r, i),
                "steps_min": steps_min, "steps_max": steps_max,
                "device": ",".join(sorted(g["device"].dropna().astype(str).unique()))
                if "device" in g else "",
            })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    excluded = out.epoch.isin(list(holm_excluded_epochs))
    for _, idx in out[~excluded].groupby(["protocol", "metric"]).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].to_numpy())
    order = {m: k for k, m in enumerate(METRICS)}
    return (out.assign(_m=out.metric.map(order)).sort_values(["_m", "protocol", "dataset",
                                                              "epoch"])
            .drop(columns="_m").reset_index(drop=True))


def run_summary(df: pd.DataFrame) -> dict:
    """What the metrics frame holds: runs, seeds, datasets, protocols, budgets, devices."""
    runs = df.drop_duplicates(["dataset", "protocol", "method", "seed"])
    return {
        "n_runs": int(len(runs)),
        "seeds": sorted(int(s) for s in df.seed.unique()),
        "datasets": sorted(df.dataset.unique()),
        "protocols": sorted(df.protocol.unique()),
        "methods": sorted(df.method.unique()),
        "epochs": sorted(int(e) for e in df.epoch.unique()),
        "devices": sorted(df["device"].dropna().astype(str).unique()) if "device" in df else [],
    }


def epoch0_gap_sentences(df: pd.DataFrame, metric: str = "train_loss") -> list[str]:
    """One computed sentence per (dataset, protocol): is the loss "improvement" at the last
    budget larger than the gap already present for the untrained encoder (epoch 0)?

    Compares the per-seed improvement % at the last budget with the same seed's at epoch 0
    (paired t-test over seeds). Needs budget 0 in the data; says so where it is missing.
    """
    lower = METRICS[metric]
    out = []
    for (dataset, protocol), g in df.groupby(["dataset", "protocol"]):
        name = f"{dataset_label(dataset)} ({protocol} protocol)"
        epochs = sorted(int(e) for e in g.epoch.unique())
        trained = [e for e in epochs if e > 0]
        if 0 not in epochs or not trained:
            missing = "epoch 0 (the untrained encoder)" if 0 not in epochs else "a trained budget"
            out.append(f"{name}: no comparison with the untrained encoder possible — "
                       f"{missing} is not in the results (budgets present: {epochs}).")
            continue
        last = trained[-1]
        s0, r0, i0 = paired_values(df, dataset, protocol, metric, 0, 0)
        s1, r1, i1 = paired_values(df, dataset, protocol, metric, last, last)
        seeds = sorted(set(s0) & set(s1))
        if not seeds:
            out.append(f"{name}: no seed has both methods at epoch 0 and epoch {last}.")
            continue
        k0 = [s0.index(s) for s in seeds]
        k1 = [s1.index(s) for s in seeds]
        imp0 = per_seed_improvement(r0[k0], i0[k0], lower)
        imp1 = per_seed_improvement(r1[k1], i1[k1], lower)
        g0 = improvement_pct(r0[k0].mean(), i0[k0].mean(), lower)
        g1 = improvement_pct(r1[k1].mean(), i1[k1].mean(), lower)
        st = paired_stats(imp1, imp0)
        steps = g[g.epoch == last]["steps"].dropna() if "steps" in g else pd.Series(dtype=float)
        steps_txt = f" ({int(steps.max())} optimizer steps)" if len(steps) else ""
        p = st["p_value"]
        test = (f"per-seed improvement, last budget − epoch 0: mean {st['diff_mean']:+.2f} "
                f"points, 95 % CI [{st['ci_low']:+.2f}, {st['ci_high']:+.2f}], paired t-test "
                f"over {len(seeds)} seeds p = {p:.2g}"
                if not np.isnan(p) else f"{len(seeds)} seed(s), no test possible")
        if g1 > g0:
            verdict = "larger than"
        elif g1 < g0:
            verdict = "smaller than"
        else:
            verdict = "equal to"
        significant = not np.isnan(p) and p < 0.05
        out.append(
            f"{name}: after {last} epoch(s){steps_txt}, RKDO's {METRIC_LABELS[metric]} is "
            f"{g1:.2f} % below I-Con's; the untrained encoder already shows {g0:.2f} %, so the "
            f"\"improvement\" at the last budget is {verdict} the gap present before training "
            f"by {abs(g1 - g0):.2f} points ({test}"
            f"{'' if significant or np.isnan(p) else '; not significant at 0.05'}).")
    return out


def format_comparison(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`paired_comparison` for the terminal."""
    lines = []
    for metric in METRICS:
        sub = table[table.metric == metric]
        if sub.empty:
            continue
        n_holm = int(sub.p_holm.notna().sum())
        lines.append(f"\n{METRIC_LABELS[metric]}  (mean ± std over seeds; paired t-test; "
                     f"Holm over the {n_holm} testable comparisons of this metric and "
                     "protocol, epoch 0 excluded)")
        lines.append(f"{'dataset':<9} {'epoch':>5} {'n':>2}  {'RKDO':>17}  {'I-Con':>17}  "
                     f"{'improv.':>8}  {'d_z':>6}  {'p':>8}  {'p_Holm':>8}")
        for _, r in sub.iterrows():
            d_z = getattr(r, "effect_size", np.nan)
            lines.append(
                f"{r.dataset:<9} {r.epoch:>5d} {r.n_seeds:>2d}  "
                f"{r.rkdo_mean:>8.4f} ± {r.rkdo_std:<6.4f}  "
                f"{r.icon_mean:>8.4f} ± {r.icon_std:<6.4f}  "
                f"{r.improvement_pct:>+7.2f}%  {d_z:>6.2f}  {r.p_value:>8.2g}  {r.p_holm:>8.2g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the audit
# (issue 5) What the paper's Table 1 does not show: how much of the loss "improvement"
# exists before training, and whether the lower loss survives when both encoders are scored
# on the same fixed objectives (docs/method.md §6.1).

#: objectives of the common yardstick: metrics-file key -> label. Lower is better.
YARDSTICK = {"yardstick_icon": "I-Con objective", "yardstick_rkdo": "RKDO objective"}
#: significance level of the generated verdict sentences (stated in each sentence)
ALPHA_LEVEL = 0.05


def _aligned(df: pd.DataFrame, dataset: str, protocol: str, metric: str,
             e_a: int, e_b: int) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds that have both methods at both budgets, and (RKDO, I-Con) values at each."""
    s0, r0, i0 = paired_values(df, dataset, protocol, metric, e_a, e_a)
    s1, r1, i1 = paired_values(df, dataset, protocol, metric, e_b, e_b)
    seeds = sorted(set(s0) & set(s1))
    k0 = [s0.index(s) for s in seeds]
    k1 = [s1.index(s) for s in seeds]
    return seeds, r0[k0], i0[k0], r1[k1], i1[k1]


def gap_beyond_step0(df: pd.DataFrame, metric: str = "train_loss") -> pd.DataFrame:
    """Per (dataset, protocol, trained budget): the paper's improvement % at the budget, the
    gap already present at step 0 (the untrained encoder, same seeds) and the improvement
    *beyond* it — per seed, improvement(budget) − improvement(0), with its 95 % t-interval,
    a paired t-test across seeds and Holm within each protocol over the trained budgets.

    Columns: dataset, protocol, epoch, n_seeds, improvement_pct, gap0_pct, beyond_pct
    (= improvement_pct − gap0_pct, of the seed means), beyond_mean / beyond_ci_low /
    beyond_ci_high / beyond_p / beyond_p_holm (per-seed differences), share_at_step0_pct
    (100 gap0 / improvement). Empty when epoch 0 is absent."""
    lower = METRICS[metric]
    rows = []
    for (dataset, protocol), g in df.groupby(["dataset", "protocol"]):
        epochs = sorted(int(e) for e in g.epoch.unique())
        if 0 not in epochs or metric not in g:
            continue
        for e in (x for x in epochs if x > 0):
            seeds, r0, i0, r1, i1 = _aligned(df, dataset, protocol, metric, 0, e)
            if not seeds:
                continue
            imp0 = per_seed_improvement(r0, i0, lower)
            imp1 = per_seed_improvement(r1, i1, lower)
            g0 = improvement_pct(r0.mean(), i0.mean(), lower)
            g1 = improvement_pct(r1.mean(), i1.mean(), lower)
            st = paired_stats(imp1, imp0)
            rows.append({"dataset": dataset, "protocol": protocol, "epoch": e,
                         "n_seeds": len(seeds), "improvement_pct": g1, "gap0_pct": g0,
                         "beyond_pct": g1 - g0, "beyond_mean": st["diff_mean"],
                         "beyond_ci_low": st["ci_low"], "beyond_ci_high": st["ci_high"],
                         "beyond_p": st["p_value"],
                         "share_at_step0_pct": 100.0 * g0 / g1 if g1 else np.nan})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["beyond_p_holm"] = np.nan
    for _, idx in out.groupby("protocol").groups.items():
        out.loc[idx, "beyond_p_holm"] = holm(out.loc[idx, "beyond_p"].to_numpy())
    return out


def measured(df: pd.DataFrame, column: str) -> bool:
    """The metrics frame has ``column`` with at least one value (results made before a
    column existed lack it, or hold it only for some runs)."""
    return column in df and df[column].notna().any()


def has_yardstick(df: pd.DataFrame) -> bool:
    return all(measured(df, k) for k in YARDSTICK)


def yardstick_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The common yardstick as a "trained with × scored with" comparison: one row per
    (dataset, protocol, epoch, scored_with), seeds paired. ``rkdo_*`` = the encoder trained
    with RKDO, ``icon_*`` = trained with I-Con, both scored with the objective ``scored_with``
    (``icon`` | ``rkdo``) on the same held-out images and views; lower is better.

    Columns as :func:`paired_comparison` (diff = RKDO-trained − I-Con-trained, so a negative
    difference favours RKDO's training) plus ``scored_with``; ``p_holm`` is Holm within each
    (protocol, scored_with) family over the trained budgets (epoch 0 — two identical
    untrained encoders — not counted). Empty when the metrics carry no yardstick."""
    if not has_yardstick(df):
        return pd.DataFrame()
    return _yardstick_rows(df)


def _yardstick_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        for key in YARDSTICK:
            seeds, r, i = paired_values(df, dataset, protocol, key, epoch, epoch)
            ok = ~(np.isnan(r) | np.isnan(i))
            seeds = [s for s, k in zip(seeds, ok) if k]
            r, i = r[ok], i[ok]
            if not seeds:
                continue
            steps_min, steps_max = _steps(g)
            rows.append({"dataset": dataset, "protocol": protocol, "epoch": int(epoch),
                         "scored_with": key.removeprefix("yardstick_"),
                         "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds)),
                         "rkdo_mean": float(r.mean()), "rkdo_std": _std(r),
                         "icon_mean": float(i.mean()), "icon_std": _std(i),
                         "improvement_pct": improvement_pct(r.mean(), i.mean(), True),
                         **paired_stats(r, i), "steps_min": steps_min,
                         "steps_max": steps_max})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    trained = out[out.epoch > 0]
    for _, idx in trained.groupby(["protocol", "scored_with"]).groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].to_numpy())
    return out.sort_values(["protocol", "dataset", "epoch", "scored_with"]).reset_index(
        drop=True)


def _verdict_word(diff: float, p: float) -> str:
    """'lower' / 'higher' (significant at ALPHA_LEVEL) or 'not different'."""
    if np.isnan(p) or p >= ALPHA_LEVEL:
        return "not different"
    return "lower" if diff < 0 else "higher"


def yardstick_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol), at the last trained budget: does RKDO's lower training loss
    survive the common yardstick? ``survives`` is True when the RKDO-trained encoder scores
    lower than the I-Con-trained one on BOTH fixed objectives, each with a paired p
    (Holm-adjusted within its family) below :data:`ALPHA_LEVEL`; ``outcome`` is one of
    ``survives`` / ``reversed`` (I-Con-trained lower on both) / ``mixed`` / ``no difference``
    / ``not measured``. ``own_gap_pct`` is Table 1's improvement on each method's own loss
    at that budget."""
    ys = yardstick_comparison(df)
    own = paired_comparison(df, metrics=("train_loss",)) if "train_loss" in df else None
    rows = []
    for (dataset, protocol), g in df.groupby(["dataset", "protocol"]):
        trained = sorted(int(e) for e in g.epoch.unique() if e > 0)
        row = {"dataset": dataset, "protocol": protocol,
               "epoch": trained[-1] if trained else np.nan}
        own_row = None if own is None or own.empty or not trained else own[
            (own.dataset == dataset) & (own.protocol == protocol) & (own.epoch == trained[-1])]
        row["own_gap_pct"] = (float(own_row.improvement_pct.iloc[0])
                              if own_row is not None and len(own_row) else np.nan)
        sub = ys[(ys.dataset == dataset) & (ys.protocol == protocol)
                 & (ys.epoch == row["epoch"])] if not ys.empty else ys
        if ys.empty or sub.empty or len(sub) < len(YARDSTICK):
            row.update(outcome="not measured", survives=False)
            rows.append(row)
            continue
        words = {}
        for r in sub.itertuples():
            words[r.scored_with] = _verdict_word(r.diff_mean, r.p_holm)
            for k in ("rkdo_mean", "icon_mean", "diff_mean", "ci_low", "ci_high", "p_value",
                      "p_holm", "n_seeds"):
                row[f"{r.scored_with}_{k}"] = getattr(r, k)
        vals = set(words.values())
        outcome = ("survives" if vals == {"lower"} else "reversed" if vals == {"higher"}
                   else "no difference" if vals == {"not different"} else "mixed")
        row.update(outcome=outcome, survives=outcome == "survives",
                   **{f"{k}_word": v for k, v in words.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def yardstick_sentences(df: pd.DataFrame) -> list[str]:
    """One generated sentence per (dataset, protocol): does RKDO's lower loss survive the
    common yardstick (see :func:`yardstick_verdicts` for the rule)?"""
    out = []
    for v in yardstick_verdicts(df).itertuples():
        name = f"{dataset_label(v.dataset)} ({v.protocol} protocol)"
        if v.outcome == "not measured":
            out.append(f"{name}: the common yardstick was not measured (metrics files without "
                       "yardstick_icon / yardstick_rkdo; re-evaluate the runs).")
            continue
        own = (f"on its own objective RKDO's loss is {v.own_gap_pct:.2f} % below I-Con's"
               if not np.isnan(v.own_gap_pct) else "")
        parts = []
        for key, label in YARDSTICK.items():
            k = key.removeprefix("yardstick_")
            parts.append(
                f"scored with the {label}, the RKDO-trained encoder gets "
                f"{getattr(v, f'{k}_rkdo_mean'):.4f} vs {getattr(v, f'{k}_icon_mean'):.4f} "
                f"for the I-Con-trained one (difference {getattr(v, f'{k}_diff_mean'):+.4f}, "
                f"95 % CI [{getattr(v, f'{k}_ci_low'):+.4f}, {getattr(v, f'{k}_ci_high'):+.4f}]"
                f", p = {getattr(v, f'{k}_p_value'):.2g}, Holm {getattr(v, f'{k}_p_holm'):.2g}"
                ")")
        verdict = {
            "survives": "RKDO's lower loss survives the common yardstick: the RKDO-trained "
                        "encoder is better on both objectives",
            "reversed": "RKDO's lower loss does not survive the common yardstick: the "
                        "I-Con-trained encoder is better on both objectives",
            "no difference": "RKDO's lower loss does not survive the common yardstick: "
                             "neither objective separates the two encoders",
            "mixed": "RKDO's lower loss does not survive the common yardstick as a whole: "
                     "the two objectives disagree",
        }[v.outcome]
        rule = (f"paired t-tests over {int(v.icon_n_seeds)} seeds, Holm within each objective "
                f"over the trained budgets, level {ALPHA_LEVEL}")
        out.append(f"{name}, after {int(v.epoch)} epoch(s): "
                   + "; ".join(filter(None, [own, *parts])) + f". {verdict} ({rule}).")
    return out


def protocol_conclusions(comp: pd.DataFrame,
                         metrics: tuple[str, ...] = ("linear_eval", "nmi", "ari",
                                                     "neighborhood_acc")) -> pd.DataFrame:
    """Does the conclusion of a paired comparison change between protocols? One row per
    (dataset, metric, epoch) present under at least two protocols, with each protocol's
    conclusion — ``RKDO better`` / ``I-Con better`` (p_Holm < ALPHA_LEVEL) or
    ``no difference`` — its means, p_Holm and steps, and ``same`` (all protocols agree).
    Epoch 0 (identical untrained encoders, no test) is kept as the baseline row."""
    if comp.empty:
        return pd.DataFrame()
    sub = comp[comp.metric.isin(metrics)]  # epoch 0 too: the untrained baseline row
    protocols = sorted(sub.protocol.unique())
    rows = []
    for (dataset, metric, epoch), g in sub.groupby(["dataset", "metric", "epoch"]):
        if g.protocol.nunique() < 2:
            continue
        row = {"dataset": dataset, "metric": metric, "epoch": int(epoch)}
        words = []
        for p in protocols:
            r = g[g.protocol == p]
            if r.empty:
                continue
            r = r.iloc[0]
            better = "no difference"
            if not np.isnan(r.p_holm) and r.p_holm < ALPHA_LEVEL:
                higher_better = not METRICS[metric]
                better = ("RKDO better" if (r.diff_mean > 0) == higher_better
                          else "I-Con better")
            words.append(better)
            row.update({f"{p}_conclusion": better, f"{p}_rkdo_mean": r.rkdo_mean,
                        f"{p}_icon_mean": r.icon_mean, f"{p}_p_holm": r.p_holm,
                        f"{p}_steps": r.steps_max})
        row["same"] = len(set(words)) == 1
        rows.append(row)
    return pd.DataFrame(rows)
