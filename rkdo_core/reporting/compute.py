"""The compute-matched view: metrics against optimizer steps and measured FLOPs, not epochs.

The paper's Table 3 says RKDO at 1–2 epochs matches I-Con at 5 "with 60–80 % fewer
resources", counting resources in epochs. Here both sides are put on the same axis — real
optimizer steps and training FLOPs measured per step (``flops_per_step``, forward +
backward, ``torch.utils.flop_counter.FlopCounterMode`` convention; ``train_flops`` =
steps × flops_per_step) — and the claim is re-tested at matched compute (RKDO@e vs I-Con@e,
the same steps and the same FLOPs up to the loss) and at mismatched compute (RKDO@early vs
I-Con@late), seeds paired.

Metrics files from before the FLOP and yardstick columns existed still work: what they lack
is drawn without, and named "not measured" in the caption and the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..datasets import dataset_label, dataset_order, n_classes
from .figures import METHOD_STYLE, method_colors, run_facts, select_protocol
from .fmt import (
    NO_COUNTERPART,
    finish_table,
    fmt_ci,
    fmt_large,
    fmt_mean_std,
    fmt_num,
    format_p,
)
from .stats import (
    ALPHA_LEVEL,
    HOLM_FAMILIES,
    METHOD_LABELS,
    METRIC_LABELS,
    canonical_holm,
    mde_at,
    measured,
    paired_stats,
    paired_values,
)
from .tables import DEFAULT_TABLE3_PAIRS

#: metric -> (label, lower is better); the yardstick columns come from the evaluation
COMPUTE_METRICS = {
    "linear_eval": (METRIC_LABELS["linear_eval"], False),
    "neighborhood_acc": ("5-NN accuracy", False),
    "yardstick_icon": ("yardstick: I-Con objective (lower is better)", True),
    "yardstick_rkdo": ("yardstick: RKDO objective (lower is better)", True),
}
FIGURE_METRICS = ("linear_eval", "neighborhood_acc", "yardstick_icon")
TABLE_METRICS = ("linear_eval", "neighborhood_acc")
FLOP_CONVENTION = "forward + backward FLOPs of one optimizer step, FlopCounterMode convention"
_X_AXES = {"steps": "optimizer steps", "train_flops": "training FLOPs (fwd + bwd)"}


def with_train_flops(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``train_flops`` filled as steps × flops_per_step where the metrics file
    did not store it (and flops_per_step is there). Never modifies ``df``."""
    out = df.copy()
    if "flops_per_step" in out and "steps" in out:
        computed = out["steps"].astype(float) * out["flops_per_step"].astype(float)
        out["train_flops"] = (out["train_flops"].astype(float).fillna(computed)
                              if "train_flops" in out else computed)
    return out


def curve(df: pd.DataFrame, dataset: str, protocol: str, method: str, metric: str,
          x: str) -> pd.DataFrame:
    """One method's points: per budget (epoch) the mean of ``x`` and the mean, std (ddof 1)
    and count over seeds of ``metric``, sorted by epoch; rows without a value are dropped."""
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)]
    g = g[g[metric].notna() & g[x].notna()] if metric in g and x in g else g.iloc[:0]
    if g.empty:
        return pd.DataFrame(columns=["epoch", "x", "mean", "std", "n"])
    agg = g.groupby("epoch").agg(x=(x, "mean"), mean=(metric, "mean"),
                                 std=(metric, lambda v: v.std(ddof=1) if len(v) > 1 else np.nan),
                                 n=(metric, "size"))
    return agg.reset_index().sort_values("epoch").reset_index(drop=True)


def _flops_per_step_text(df: pd.DataFrame) -> str:
    if not measured(df, "flops_per_step"):
        return ("FLOPs: not measured in these metrics files (no flops_per_step), so only the "
                "optimizer-step axis is drawn.")
    parts = []
    for method in ("rkdo", "icon"):
        v = df[(df.method == method)]["flops_per_step"].dropna().astype(float)
        if len(v):
            lo, hi = v.min(), v.max()
            parts.append(f"{METHOD_LABELS[method]} {fmt_large(lo, 6)}" if lo == hi
                         else f"{METHOD_LABELS[method]} {fmt_large(lo, 6)}–{fmt_large(hi, 6)}")
    return f"FLOPs per optimizer step ({FLOP_CONVENTION}): {', '.join(parts)}."


def fig_compute_matched(df: pd.DataFrame, protocol: str | None = None,
                        metrics: Sequence[str] = FIGURE_METRICS) -> tuple[Figure, str]:
    """Per dataset, linear eval, 5-NN accuracy and the yardstick (I-Con objective) against
    real optimizer steps and against training FLOPs, both methods, error bars ± 1 std over
    seeds, budget 0 (the untrained encoder) at x = 0. Rows: metrics; columns: dataset ×
    x axis. Metrics or FLOPs the results lack are left out and named in the caption."""
    for m in metrics:
        if m not in COMPUTE_METRICS:
            raise ValueError(f"invalid metric {m!r}: allowed {sorted(COMPUTE_METRICS)}")
    df = with_train_flops(df)
    sub, protocol = select_protocol(df, protocol)
    datasets = dataset_order(sub.dataset.unique())
    rows = [m for m in metrics if measured(sub, m)]
    absent = [m for m in metrics if m not in rows]
    if not rows:
        raise ValueError(f"none of the metrics {list(metrics)} is in the results")
    xaxes = [x for x in _X_AXES if measured(sub, x)]
    if not xaxes:
        raise ValueError("the results hold neither optimizer steps nor FLOPs (steps, "
                         "train_flops) to draw against")
    cols = [(d, x) for d in datasets for x in xaxes]
    fig = Figure(figsize=(max(6.5, 3.6 * len(cols) + 0.6), 2.9 * len(rows) + 0.8),
                 layout="constrained")
    axes = fig.subplots(len(rows), len(cols), squeeze=False)
    colors = method_colors()
    for i, metric in enumerate(rows):
        label, lower = COMPUTE_METRICS[metric]
        for j, (d, x) in enumerate(cols):
            ax = axes[i][j]
            for method in ("rkdo", "icon"):
                c = curve(sub, d, protocol, method, metric, x)
                if c.empty:
                    continue
                yerr = c["std"].to_numpy(float)
                ax.errorbar(c["x"].to_numpy(float), c["mean"].to_numpy(float),
                            yerr=np.where(np.isfinite(yerr), yerr, 0.0), fmt="o",
                            linestyle=METHOD_STYLE[method], color=colors[method], capsize=3,
                            markersize=4, label=METHOD_LABELS[method])
            if metric in ("linear_eval", "neighborhood_acc") and n_classes(d):
                ax.axhline(1 / n_classes(d), color="grey", linestyle=":", linewidth=1,
                           label="chance (1 / classes)")
            ax.set_title(f"{dataset_label(d)}: {label.split(' (')[0]}", fontsize=9)
            ax.set_xlabel(_X_AXES[x], fontsize=8)
            ax.set_ylabel(label if j == 0 else "", fontsize=8)
            if x == "train_flops":
                ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"Compute-matched view ({protocol} protocol):\nRKDO vs I-Con against "
                 f"{' and '.join(_X_AXES[x] for x in xaxes)}", fontsize=10)
    measured_names = ", ".join(COMPUTE_METRICS[m][0] for m in rows)
    caption = " ".join(filter(None, [
        f"Compute-matched view: {measured_names} against "
        f"{' and against '.join(_X_AXES[x] for x in xaxes)}, per dataset; RKDO solid, I-Con "
        "dashed; each point is the mean over seeds at one budget, the untrained encoder "
        "(budget 0) at x = 0; error bars ± 1 std (ddof 1) over seeds.",
        "The yardstick scores both encoders on the same fixed objective over held-out test "
        "images with fixed seeded views (lower is better)."
        if any(m.startswith("yardstick") for m in rows) else "",
        run_facts(sub, protocol),
        _flops_per_step_text(sub),
        ("Not measured in these metrics files: "
         + ", ".join(COMPUTE_METRICS[m][0] for m in absent) + ".") if absent else "",
    ]))
    return fig, caption


# ---------------------------------------------------------------------------- the table


def _mean_of(df, dataset, protocol, method, epoch, column) -> float:
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
           & (df.epoch == epoch)]
    if column not in g or g[column].isna().all():
        return np.nan
    return float(g[column].astype(float).mean())


def default_pairs(df: pd.DataFrame,
                  mismatched: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS) -> list:
    """Matched pairs (e, e) for every trained budget both methods have, then the
    mismatched Table 3 pairs."""
    r = set(df[df.method == "rkdo"].epoch.astype(int))
    i = set(df[df.method == "icon"].epoch.astype(int))
    matched = [(e, e) for e in sorted(r & i) if e > 0]
    return matched + [(int(a), int(b)) for a, b in mismatched if (int(a), int(b)) not in matched]


def _fmt_flops(x: float) -> str:
    return "not measured" if not np.isfinite(x) else fmt_large(x, 4)


def compute_matched_table(df: pd.DataFrame, pairs: Sequence[Sequence[int]] | None = None,
                          metrics: Sequence[str] = TABLE_METRICS, *,
                          mismatched: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS
                          ) -> pd.DataFrame:
    """RKDO@a vs I-Con@b for each (a, b) in ``pairs`` (default :func:`default_pairs`),
    per protocol, dataset and metric, seeds paired.

    ``comparison`` is "matched" (a = b: same steps, FLOPs equal up to the loss) or
    "mismatched" (RKDO at fewer budgets). ``rkdo_flops``/``icon_flops``: mean train FLOPs of
    each side; ``compute_saved_pct`` = 100 (1 − RKDO FLOPs / I-Con FLOPs) from the measured
    FLOPs (NaN, shown "not measured", without them); ``steps_saved_pct`` likewise from
    optimizer steps; mean ± std over seeds; ``diff_mean`` RKDO − I-Con with its 95 %
    t-interval, ``g_z`` (Hedges), ``p_value`` (paired t over seeds, scipy ttest_rel),
    ``sign_flip_p``, ``p_holm`` — looked up in the one family definition
    (:func:`rkdo_core.reporting.stats.canonical_holm`): matched rows share Tables 1/2/4's
    family, mismatched rows Table 3's — and ``mde80`` at the Holm worst-case level of that
    family (``mde_alpha``). Pairs whose budgets are not in the
    results are left out and listed in ``attrs["omitted"]``. ``mismatched``: the Table 3
    pairs of the grid (default pairs and the mismatched Holm family).
    """
    for m in metrics:
        if m not in COMPUTE_METRICS:
            raise ValueError(f"invalid metric {m!r}: allowed {sorted(COMPUTE_METRICS)}")
    df = with_train_flops(df)
    pairs = (default_pairs(df, mismatched) if pairs is None
             else [(int(a), int(b)) for a, b in pairs])
    for a, b in pairs:
        if not 0 <= a <= b:
            raise ValueError(f"invalid pair ({a}, {b}): need 0 ≤ RKDO budget ≤ I-Con budget")
    rows, omitted = [], []
    missing: dict[tuple, list[str]] = {}  # (dataset, protocol, a, b) -> metrics without it
    for protocol in sorted(df.protocol.unique()):
        for dataset in dataset_order(df[df.protocol == protocol].dataset.unique()):
            for metric in metrics:
                if metric not in df or df[metric].isna().all():
                    omitted.append(f"{dataset_label(dataset)} ({protocol}), "
                                   f"{COMPUTE_METRICS[metric][0]}: not measured")
                    continue
                for a, b in pairs:
                    seeds, r, i = paired_values(df, dataset, protocol, metric, a, b,
                                                   finite_only=True)
                    if not seeds:
                        missing.setdefault((dataset, protocol, a, b), []).append(
                            COMPUTE_METRICS[metric][0])
                        continue
                    rf, if_ = (_mean_of(df, dataset, protocol, m, e, "train_flops")
                               for m, e in (("rkdo", a), ("icon", b)))
                    rs, is_ = (_mean_of(df, dataset, protocol, m, e, "steps")
                               for m, e in (("rkdo", a), ("icon", b)))
                    rows.append({
                        "dataset": dataset, "protocol": protocol, "metric": metric,
                        "comparison": "matched" if a == b else "mismatched",
                        "rkdo_epochs": a, "icon_epochs": b, "rkdo_steps": rs,
                        "icon_steps": is_, "rkdo_flops": rf, "icon_flops": if_,
                        "compute_saved_pct": 100.0 * (1 - rf / if_) if if_ > 0 else np.nan,
                        "steps_saved_pct": 100.0 * (1 - rs / is_) if is_ > 0 else np.nan,
                        "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds)),
                        "rkdo_mean": float(r.mean()),
                        "rkdo_std": float(r.std(ddof=1)) if len(r) > 1 else np.nan,
                        "icon_mean": float(i.mean()),
                        "icon_std": float(i.std(ddof=1)) if len(i) > 1 else np.nan,
                        **paired_stats(r, i),
                    })
    # a pair missing from the results: once, naming the metrics it is missing for
    omitted += [f"{dataset_label(d)} ({p}), RKDO@{a} vs I-Con@{b}: not in the results "
                f"({', '.join(labels)})" for (d, p, a, b), labels in missing.items()]
    title = ("Table 7. Compute-matched comparison: RKDO vs I-Con at matched and mismatched "
             "compute")
    out = pd.DataFrame(rows)
    if out.empty:
        out.attrs.update(csv=[], display=[], title=title, omitted=omitted,
                         note="No row: " + " ".join(omitted) if omitted else "no data")
        return out
    lookup = canonical_holm(df, [(a, b) for a, b in mismatched], metrics)
    found = [lookup.get((p, d, m, int(a), int(b)), (np.nan, ALPHA_LEVEL))
             for p, d, m, a, b in zip(out.protocol, out.dataset, out.metric, out.rkdo_epochs,
                                      out.icon_epochs)]
    out["p_holm"] = [p for p, _ in found]
    # the MDE at the level the row's Holm p is judged at (its family's worst case α/m)
    out["mde_alpha"] = [a for _, a in found]
    out["mde80"] = [mde_at(sd, n, a) for sd, n, a in
                    zip(out.sd_diff, out.n_seeds, out.mde_alpha)]
    out = out.drop(columns=["effect_size"])
    csv = list(out.columns)
    display = {
        "Dataset": out.dataset.map(dataset_label), "Protocol": out.protocol,
        "Metric": [COMPUTE_METRICS[m][0] for m in out.metric],
        "Compute": out.comparison,
        "RKDO epochs (steps)": [f"{a} ({fmt_num(s, 0)})" for a, s in
                                zip(out.rkdo_epochs, out.rkdo_steps)],
        "I-Con epochs (steps)": [f"{a} ({fmt_num(s, 0)})" for a, s in
                                 zip(out.icon_epochs, out.icon_steps)],
        "RKDO FLOPs": [_fmt_flops(x) for x in out.rkdo_flops],
        "I-Con FLOPs": [_fmt_flops(x) for x in out.icon_flops],
        "Compute saved (FLOPs)": ["not measured" if not np.isfinite(x) else f"{x:.2f} %"
                                  for x in out.compute_saved_pct],
        "n": out.n_seeds.astype(str),
        "RKDO": [fmt_mean_std(m, s) for m, s in zip(out.rkdo_mean, out.rkdo_std)],
        "I-Con": [fmt_mean_std(m, s) for m, s in zip(out.icon_mean, out.icon_std)],
        "RKDO − I-Con [95 % CI]": [f"{fmt_num(d, sign=True)} {fmt_ci(lo, hi)}" for d, lo, hi in
                                   zip(out.diff_mean, out.ci_low, out.ci_high)],
        "p": [format_p(x) for x in out.p_value],
        "p (Holm)": [format_p(x) for x in out.p_holm],
        "MDE80 (Holm level)": [
            NO_COUNTERPART if (np.isfinite(h) and h < ALPHA_LEVEL) else fmt_num(m)
            for m, h in zip(out.mde80, out.p_holm)],
    }
    flops_note = ("Compute saved = 100 (1 − RKDO FLOPs / I-Con FLOPs) from the measured "
                  f"training FLOPs (steps × {FLOP_CONVENTION}), not from epochs."
                  if out.compute_saved_pct.notna().any() else
                  "FLOPs not measured in these metrics files (no flops_per_step/train_flops): "
                  "compute saved is shown as not measured; steps saved = "
                  "100 (1 − RKDO steps / I-Con steps) is in the CSV.")
    note = " ".join(filter(None, [
        "Matched: both methods at the same budget (same optimizer steps; FLOPs equal up to "
        "the loss). Mismatched: RKDO at the early budget vs I-Con at the late one (the "
        "paper's Table 3). Seeds paired; mean ± std (ddof 1) over seeds; RKDO − I-Con: mean "
        "paired difference with its 95 % t-interval; p: paired t-test over seeds (scipy "
        f"ttest_rel); p (Holm): the same adjusted p as wherever the comparison appears "
        f"({HOLM_FAMILIES}); {NO_COUNTERPART}: no test possible. MDE80 (Holm level): the "
        f"true difference the paired t-test had 80 % power to detect at the Holm worst-case "
        f"level of the row's family (mde_alpha), shown where the row is not significant — "
        f"power, not an exclusion.",
        flops_note,
        ("Omitted: " + "; ".join(omitted) + ".") if omitted else "",
    ]))
    return finish_table(out, csv, display, title, note, omitted)
