"""Aggregation of metrics files: mean ± std over seeds and paired RKDO-vs-I-Con tests.

Reads only files the runs wrote (``metrics/epoch_NNN.json``), never printed output.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

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


def load_metrics(results_dir: str | Path) -> pd.DataFrame:
    """Every ``metrics/epoch_*.json`` below ``results_dir`` as one row each."""
    files = sorted(Path(results_dir).rglob("metrics/epoch_*.json"))
    rows = [json.loads(p.read_text()) for p in files]
    if not rows:
        raise FileNotFoundError(f"no metrics files (metrics/epoch_*.json) below {results_dir}")
    return pd.DataFrame(rows)


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


def paired_comparison(df: pd.DataFrame, metrics=tuple(METRICS)) -> pd.DataFrame:
    """One row per (dataset, protocol, epoch, metric): mean ± std (ddof=1) per method over
    seeds, the paper's improvement %, the mean paired difference RKDO − I-Con, its paired
    t-test p-value (seeds paired) and the Holm-adjusted p within each metric's family."""
    rows = []
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        wide = {m: g[g.method == m].set_index("seed") for m in ("rkdo", "icon")}
        seeds = sorted(set(wide["rkdo"].index) & set(wide["icon"].index))
        for metric in metrics:
            r = wide["rkdo"].loc[seeds, metric].astype(float).to_numpy()
            i = wide["icon"].loc[seeds, metric].astype(float).to_numpy()
            if len(seeds) == 0 or np.isnan(r).all() or np.isnan(i).all():
                continue
            p = float("nan")
            if len(seeds) >= 2 and np.ptp(r - i) > 0:
                p = float(sps.ttest_rel(r, i).pvalue)
            rows.append({
                "dataset": dataset, "protocol": protocol, "epoch": int(epoch), "metric": metric,
                "n_seeds": len(seeds),
                "rkdo_mean": r.mean(), "rkdo_std": r.std(ddof=1) if len(r) > 1 else np.nan,
                "icon_mean": i.mean(), "icon_std": i.std(ddof=1) if len(i) > 1 else np.nan,
                "improvement_pct": improvement_pct(r.mean(), i.mean(), METRICS[metric]),
                "diff_mean": float(np.mean(r - i)), "p_value": p,
            })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = np.nan
    for _, idx in out.groupby("metric").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "p_value"].to_numpy())
    return out


def format_comparison(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`paired_comparison` for the terminal."""
    lines = []
    for metric in METRICS:
        sub = table[table.metric == metric]
        if sub.empty:
            continue
        lines.append(f"\n{METRIC_LABELS[metric]}  (mean ± std over seeds; paired t-test; "
                     f"Holm over the {len(sub)} comparisons of this metric)")
        lines.append(f"{'dataset':<9} {'epoch':>5} {'n':>2}  {'RKDO':>17}  {'I-Con':>17}  "
                     f"{'improv.':>8}  {'p':>8}  {'p_Holm':>8}")
        for _, r in sub.iterrows():
            lines.append(
                f"{r.dataset:<9} {r.epoch:>5d} {r.n_seeds:>2d}  "
                f"{r.rkdo_mean:>8.4f} ± {r.rkdo_std:<6.4f}  "
                f"{r.icon_mean:>8.4f} ± {r.icon_std:<6.4f}  "
                f"{r.improvement_pct:>+7.2f}%  {r.p_value:>8.2g}  {r.p_holm:>8.2g}")
    return "\n".join(lines)
