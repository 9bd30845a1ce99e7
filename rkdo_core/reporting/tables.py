"""Tables 1–4 of the paper, re-drawn from the metrics files beside the numbers it reports.

Tables 1–4 of the paper, and the audit's Table 5 (common yardstick) and Table 6 (paper vs
full protocol); Table 7 is :mod:`.compute`'s, the claims checklist :mod:`.claims`'. Every
builder follows :mod:`.fmt`'s convention (numbers and display columns in one DataFrame).
The paper's numbers come from ``params/reported.yaml`` and are matched
only where dataset, budget and protocol (the paper's own) agree; every other cell says
"no counterpart in the paper".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ..datasets import dataset_label, dataset_order
from .fmt import (
    NO_COUNTERPART,
    finish_table,
    fmt_ci,
    fmt_mean_std,
    fmt_num,
    fmt_pct,
    fmt_steps,
    format_p,
    format_p_up,
)
from .reported import Reported
from .stats import (
    ALL_YARDSTICKS,
    ALPHA_LEVEL,
    CONTROL_HURTS,
    CONTROL_NOT_SHOWN,
    GATED,
    GATED_NO_CONTROL,
    HOLM_FAMILIES,
    METHOD_LABELS,
    METRIC_LABELS,
    METRICS,
    YARDSTICK,
    holm_family_sizes,
    mismatched_comparison,
    paired_stats,
    paired_values,
    positive_control,
    power_text,
    protocol_conclusions,
    yardstick_comparison,
    yardstick_name,
)

DEFAULT_TABLE3_PAIRS = ((1, 5), (2, 5))
TABLE_NAMES = {"positive_control": "table0_positive_control",
               "table1": "table1_training_loss", "table2": "table2_linear_eval",
               "table3": "table3_early_rkdo_vs_late_icon", "table4": "table4_all_metrics",
               "yardstick": "table5_common_yardstick",
               "protocols": "table6_paper_vs_full_protocol",
               "compute": "table7_compute_matched", "claims": "claims_checklist"}


# ---------------------------------------------------------------------------- formatting


def _paired_display(sub: pd.DataFrame, diff_label: str) -> dict[str, list]:
    """The display columns Tables 1, 2 and 4 share, from steps to the paper's numbers."""
    return {
        "Steps": [fmt_steps(a, b) for a, b in zip(sub.steps_min, sub.steps_max)],
        "n": sub.n_seeds.astype(str),
        "RKDO": [fmt_mean_std(m, s) for m, s in zip(sub.rkdo_mean, sub.rkdo_std)],
        "I-Con": [fmt_mean_std(m, s) for m, s in zip(sub.icon_mean, sub.icon_std)],
        diff_label: [fmt_pct(x) for x in sub.improvement_pct],
        "RKDO − I-Con [95 % CI]": [f"{fmt_num(d, sign=True)} {fmt_ci(lo, hi)}" for d, lo, hi in
                                   zip(sub.diff_mean, sub.ci_low, sub.ci_high)],
        "g_z [95 % CI]": [f"{fmt_num(g, 2)} {fmt_ci(lo, hi, 2)}" for g, lo, hi in
                          zip(sub.g_z, sub.gz_low, sub.gz_high)],
        "p": [format_p(x) for x in sub.p_value],
        "p (sign-flip)": [format_p_up(x) for x in sub.sign_flip_p],
        "p (Holm)": [format_p(x) for x in sub.p_holm],
        "MDE80": [fmt_num(x, 4) for x in sub.mde80],
        "Paper RKDO": [fmt_mean_std(m, s) for m, s in
                       zip(sub.reported_rkdo_mean, sub.reported_rkdo_std)],
        "Paper I-Con": [fmt_mean_std(m, s) for m, s in
                        zip(sub.reported_icon_mean, sub.reported_icon_std)],
        f"Paper {diff_label.lower()}": [fmt_pct(x) for x in sub.reported_pct],
    }


def _counterpart_reason(dataset: str, protocol: str, epoch: int | None,
                        reported: Reported | None, have: bool, paper_epochs) -> str:
    """Why a row has no reported value ("" where it has one)."""
    if have:
        return ""
    if reported is None:
        return "no reported numbers loaded"
    if dataset not in reported.datasets:
        return f"{dataset_label(dataset)} is not in the paper"
    if protocol != reported.protocol:
        return f"{protocol} protocol (the paper's numbers are its {reported.protocol} protocol)"
    if epoch == 0:
        return "epoch 0 (untrained encoder) is not reported"
    return f"the paper reports epochs {sorted(paper_epochs)} only"


def _no_counterpart_note(reasons: Iterable[str]) -> str:
    reasons = sorted({r for r in reasons if r})
    if not reasons:
        return ""
    return (f"{NO_COUNTERPART} in the paper's columns: no counterpart in the paper ("
            + "; ".join(reasons) + ").")


# ---------------------------------------------------------------------------- Tables 1, 2

_STATS_NOTE = (
    "RKDO − I-Con: mean paired difference over seeds with its 95 % t-interval; g_z: Hedges' "
    "bias-corrected paired effect size with its exact 95 % interval (noncentral t); p: paired "
    "t-test across seeds (scipy ttest_rel); p (sign-flip): exact permutation p over the 2^n "
    "sign vectors — its floor with n seeds is 2/2^n (1/16 with 5 seeds), so it can never "
    "reach the paper's p < 0.001 (printed rounded up, never below its floor); MDE80: the "
    "true difference the paired t-test had 80 % power to detect at the Holm worst-case "
    "level α/m of the row's family (α for rows outside a family), from the observed paired "
    "SD and n — a statement of power, not an exclusion (only an interval excludes). Epoch 0 "
    "is the same untrained encoder for both methods: its RKDO − I-Con is a difference "
    "between two functions, shown without interval or test.")


def _comparison_table(comp: pd.DataFrame, metric: str, reported: Reported | None,
                      rep: pd.DataFrame | None, rep_pct: str, title: str,
                      paper_label: str) -> pd.DataFrame:
    sub = comp[comp.metric == metric].copy() if not comp.empty else pd.DataFrame()
    if sub.empty:
        out = pd.DataFrame()
        out.attrs.update(csv=[], display=[], title=title, note=f"no {METRIC_LABELS[metric]} "
                         "values in the results", omitted=[])
        return out
    sub["_d"] = sub.dataset.map({d: k for k, d in enumerate(dataset_order(sub.dataset))})
    sub = sub.sort_values(["protocol", "_d", "epoch"]).drop(columns="_d").reset_index(drop=True)
    lookup = {} if rep is None else {(r.dataset, int(r.epochs)): r for r in rep.itertuples()}
    paper_epochs = set() if rep is None else set(rep.epochs.astype(int))
    cols = {k: [] for k in ("reported_rkdo_mean", "reported_rkdo_std", "reported_icon_mean",
                            "reported_icon_std", "reported_pct", "has_reported",
                            "no_counterpart_reason")}
    for r in sub.itertuples():
        hit = lookup.get((r.dataset, int(r.epoch))) if (
            reported is not None and r.protocol == reported.protocol) else None
        cols["has_reported"].append(hit is not None)
        cols["no_counterpart_reason"].append(_counterpart_reason(
            r.dataset, r.protocol, r.epoch, reported, hit is not None, paper_epochs))
        for key, attr in (("reported_rkdo_mean", "rkdo_mean"), ("reported_rkdo_std", "rkdo_std"),
                          ("reported_icon_mean", "icon_mean"), ("reported_icon_std", "icon_std"),
                          ("reported_pct", rep_pct)):
            cols[key].append(float(getattr(hit, attr)) if hit is not None else np.nan)
    for k, v in cols.items():
        sub[k] = v
    sub = sub.rename(columns={"epoch": "epochs"})
    csv = ["dataset", "protocol", "epochs", "steps_min", "steps_max", "n_seeds", "seeds",
           "rkdo_mean", "rkdo_std", "icon_mean", "icon_std", "improvement_pct",
           "improvement_ci", "diff_mean", "ci_low", "ci_high", "sd_diff", "g_z", "gz_low",
           "gz_high", "p_value", "sign_flip_p", "sign_flip_floor", "p_holm", "holm_family",
           "holm_m", "mde80", "mde_alpha", "device", *cols]
    display = {
        "Dataset": sub.dataset.map(dataset_label),
        "Protocol": sub.protocol,
        "Epochs": sub.epochs.astype(str),
        **_paired_display(sub, paper_label),
    }
    note = _table_note(sub, metric, cols["no_counterpart_reason"])
    return finish_table(sub[csv].copy(), csv, display, title, note, [])


def _table_note(sub: pd.DataFrame, metric: str, reasons: Iterable[str]) -> str:
    lower = METRICS[metric]
    definition = ("100 (I-Con − RKDO)/I-Con of the seed means" if lower
                  else "100 (RKDO − I-Con)/I-Con of the seed means")
    parts = [
        f"Mean ± std (ddof 1) over seeds; improvement = {definition} (the paper's definition).",
        _STATS_NOTE,
        _holm_note(sub, METRIC_LABELS[metric]),
        f"{NO_COUNTERPART} for p: no test possible (identical values or one seed).",
        "Steps: real optimizer steps of the budget, from the metrics files.",
    ]
    extra = _no_counterpart_note(reasons)
    if extra:
        parts.append(extra)
    return " ".join(parts)


def _holm_note(sub: pd.DataFrame, label: str) -> str:
    """How many comparisons each protocol's Holm family holds — and, where a family is
    empty (no comparison testable: one seed, identical values, or the positive control
    failed), that nothing was adjusted."""
    n_holm = holm_family_sizes(sub)
    tested = [f"{n} comparison{'s' if n != 1 else ''} ({p})" for p, n in n_holm.items() if n]
    empty = [p for p, n in n_holm.items() if not n]
    family = f"(protocol, {label}, matched)"
    if not tested:
        return (f"p (Holm): {NO_COUNTERPART} throughout — no comparison of the family "
                f"{family} was testable here, so none was adjusted; {HOLM_FAMILIES}.")
    none = (f"; none testable under the {' and '.join(empty)} protocol"
            f"{'s' if len(empty) > 1 else ''} ({NO_COUNTERPART})" if empty else "")
    return f"p (Holm): family = {family} over {', '.join(tested)}{none}; {HOLM_FAMILIES}."


def table1(comp: pd.DataFrame, reported: Reported | None = None,
           gap: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1: final training loss per dataset × epoch budget, RKDO vs I-Con, with the
    paper's Table 1 beside it. ``comp`` is :func:`rkdo_core.reporting.stats.paired_comparison`'s;
    ``gap`` (:func:`rkdo_core.reporting.stats.gap_decomposition`) adds the "gap at step 0"
    and the own-loss gap on the common yardstick split into its function term and its
    training term (with CIs; only the training term tested)."""
    out = _comparison_table(comp, "train_loss", reported,
                            None if reported is None else reported.table1, "improvement_pct",
                            "Table 1. Final training loss, RKDO vs I-Con", "Improvement")
    if out.empty:
        return out
    if gap is not None and not gap.empty:
        out = _with_decomposition(out, gap)
    if reported is not None and reported.p_claim and "note" in out.attrs:
        out.attrs["note"] += f" The paper states {reported.p_claim}."
    return out


_GAP_COLS = ["gap0_pct", "own_gap_pct", "function_pct", "function_mean", "function_ci_low",
             "function_ci_high", "training_pct", "training_mean", "training_ci_low",
             "training_ci_high", "training_p", "training_sign_flip_p", "training_g_z",
             "training_p_holm", "training_mde80", "function_share_pct", "training_verdict",
             "function_a_pct", "training_a_pct", "training_b_pct", "function_b_pct"]


def _with_decomposition(out: pd.DataFrame, gap: pd.DataFrame) -> pd.DataFrame:
    """Table 1 plus, per row, the step-0 gap (training loss of the untrained encoders) and
    the decomposition of the own-loss gap on the yardstick (same dataset, protocol, seeds)."""
    attrs = dict(out.attrs)
    key = ["dataset", "protocol", "epochs"]
    g = gap.rename(columns={"epoch": "epochs"})[key + _GAP_COLS]
    merged = out.merge(g, on=key, how="left")
    display_cols = attrs["display"]
    i = display_cols.index("Improvement") + 1

    def ci(m, lo, hi):
        return NO_COUNTERPART if np.isnan(m) else f"{m:+.4f} [{lo:+.4f}, {hi:+.4f}]"

    new_display = {
        "Gap at step 0": [fmt_pct(x) for x in merged.gap0_pct],
        "Own-loss gap (yardstick)": [fmt_pct(x) for x in merged.own_gap_pct],
        "Function term [95 % CI]": [
            NO_COUNTERPART if np.isnan(p) else f"{p:+.2f} pts; {ci(m, lo, hi)}"
            for p, m, lo, hi in zip(merged.function_pct, merged.function_mean,
                                    merged.function_ci_low, merged.function_ci_high)],
        "Training term [95 % CI]": [
            NO_COUNTERPART if np.isnan(p) else f"{p:+.2f} pts; {ci(m, lo, hi)}"
            for p, m, lo, hi in zip(merged.training_pct, merged.training_mean,
                                    merged.training_ci_low, merged.training_ci_high)],
        "Training term p (sign-flip; Holm)": [
            NO_COUNTERPART if np.isnan(f) else
            f"{format_p(p)} ({format_p_up(f)}; {format_p(h)})"
            for p, f, h in zip(merged.training_p, merged.training_sign_flip_p,
                               merged.training_p_holm)],
        "Orders A / B (function, training)": [
            NO_COUNTERPART if np.isnan(fa) else
            f"A: {fa:+.2f}, {ta:+.2f}; B: {fb:+.2f}, {tb:+.2f} pts"
            for fa, ta, fb, tb in zip(merged.function_a_pct, merged.training_a_pct,
                                      merged.function_b_pct, merged.training_b_pct)],
    }
    for col in display_cols:  # keep the existing display values, in order
        new_display.setdefault(col, out[col].tolist())
    added = list(new_display)[:6]
    order = display_cols[:i] + added + display_cols[i:]
    csv = attrs["csv"] + _GAP_COLS
    note = attrs["note"] + (
        " Gap at step 0: the training-loss improvement % of the untrained encoders (epoch 0, "
        "same seeds) — the part of the \"improvement\" that exists before any optimizer "
        "step (docs/method.md §6.1). Own-loss gap (yardstick): 100 (L_I-Con(θ_I-Con) − "
        "L_RKDO(θ_RKDO)) / L_I-Con(θ_I-Con) on the common yardstick's held-out views, split "
        "exactly into a function term (the two loss functions on the same encoder) and a "
        "training term (what training with RKDO changes), in two orders — A: function term "
        "[L_RKDO(θ_I-Con) − L_I-Con(θ_I-Con)] on the I-Con-trained encoder, training term "
        "[L_RKDO(θ_RKDO) − L_RKDO(θ_I-Con)] scored by RKDO's objective; B: training term "
        "[L_I-Con(θ_RKDO) − L_I-Con(θ_I-Con)] scored by I-Con's objective, function term "
        "[L_RKDO(θ_RKDO) − L_I-Con(θ_RKDO)] on the RKDO-trained encoder. The two columns "
        "Function / Training term are their average (Shapley, order-free), in points of the "
        "I-Con loss (sum = own-loss gap) and as the mean loss difference with its 95 % "
        "t-interval (negative favours RKDO); both orders beside them. The function term's "
        "interval describes two functions and is not a test; only the training term is "
        "tested: paired t, exact sign-flip (rounded up), Holm within the family (protocol, "
        "training term) over datasets × trained budgets.")
    result = merged[csv].copy()
    return finish_table(result, csv, {c: new_display[c] for c in order}, attrs["title"], note,
                        attrs.get("omitted", []))


def table2(comp: pd.DataFrame, reported: Reported | None = None) -> pd.DataFrame:
    """Table 2: linear evaluation accuracy per dataset × epoch budget, with the paper's
    Table 2 beside it."""
    return _comparison_table(comp, "linear_eval", reported,
                             None if reported is None else reported.table2, "difference_pct",
                             "Table 2. Linear evaluation accuracy, RKDO vs I-Con",
                             "Difference")


# ---------------------------------------------------------------------------- Table 3


def _steps_at(df: pd.DataFrame, dataset: str, protocol: str, method: str, epoch: int) -> float:
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
           & (df.epoch == epoch)]
    if "steps" not in g or g.steps.isna().all():
        return np.nan
    return float(g.steps.max())


def table3(df: pd.DataFrame, reported: Reported | None = None,
           pairs: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS,
           metric: str = "linear_eval") -> pd.DataFrame:
    """Table 3: RKDO after few epochs vs I-Con after more, per dataset and
    (rkdo_epoch, icon_epoch) pair, seeds paired. Pairs whose budgets are not in the results
    are omitted; ``attrs["omitted"]`` says which and why."""
    pairs = [(int(a), int(b)) for a, b in pairs]
    # Budget 0 as a baseline row per late I-Con budget: the untrained encoder against the
    # trained I-Con. If it already "matches", a trained early RKDO matching says little.
    baselines = [(0, ie) for ie in dict.fromkeys(ie for _, ie in pairs) if (0, ie) not in pairs]
    rows, omitted = [], []
    rep = {} if reported is None else {
        (r.dataset, int(r.rkdo_epochs), int(r.icon_epochs)): r
        for r in reported.table3.itertuples()}
    for protocol in sorted(df.protocol.unique()):
        for dataset in dataset_order(df[df.protocol == protocol].dataset):
            g = df[(df.protocol == protocol) & (df.dataset == dataset)]
            for re_, ie in [*baselines, *pairs]:
                label = (f"{dataset_label(dataset)} ({protocol}), RKDO {re_} vs I-Con {ie} "
                         "epochs")
                have_r = set(g[g.method == "rkdo"].epoch.astype(int))
                have_i = set(g[g.method == "icon"].epoch.astype(int))
                missing = [f"{METHOD_LABELS[m]} at {e} epochs" for m, e, have in
                           (("rkdo", re_, have_r), ("icon", ie, have_i)) if e not in have]
                if missing:
                    omitted.append(f"{label}: omitted — {' and '.join(missing)} not in the "
                                   f"results (budgets present: {sorted(have_r | have_i)})")
                    continue
                seeds, r, i = paired_values(df, dataset, protocol, metric, re_, ie,
                                            finite_only=True)
                if not seeds:
                    omitted.append(f"{label}: omitted — no seed has both runs")
                    continue
                st = paired_stats(r, i)
                rs, is_ = (_steps_at(df, dataset, protocol, m, e)
                           for m, e in (("rkdo", re_), ("icon", ie)))
                # I-Con at the early budget, same seeds: what RKDO@early must beat, and the
                # sensitivity of the pair (does longer I-Con training help at all?)
                e_seeds, r_e, i_e = paired_values(df, dataset, protocol, metric, re_, re_,
                                                  finite_only=True)
                early = ({"icon_early_mean": np.nan, "icon_early_std": np.nan,
                          "rkdo_minus_icon_early": np.nan} if re_ == 0 or not e_seeds else
                         {"icon_early_mean": float(i_e.mean()),
                          "icon_early_std": float(i_e.std(ddof=1)) if len(i_e) > 1
                          else np.nan,
                          "rkdo_minus_icon_early": float((r_e - i_e).mean())})
                hit = rep.get((dataset, re_, ie)) if (
                    reported is not None and protocol == reported.protocol) else None
                reason = ""
                if hit is None:
                    reason = _counterpart_reason(dataset, protocol, None, reported, False, [])
                    if reported is not None and dataset in reported.datasets and \
                            protocol == reported.protocol:
                        reason = "the paper's Table 3 has no such pair for this dataset"
                rep_ratio = np.nan
                if hit is not None:
                    rep_ratio = (float(hit.accuracy_ratio_pct)
                                 if hit.accuracy_ratio_pct is not None
                                 and not pd.isna(hit.accuracy_ratio_pct)
                                 else 100.0 * hit.rkdo_mean / hit.icon_mean)
                rows.append({
                    "dataset": dataset, "protocol": protocol, "metric": metric,
                    "baseline": re_ == 0, "rkdo_epochs": re_, "icon_epochs": ie,
                    "rkdo_steps": rs, "icon_steps": is_,
                    "fewer_epochs_pct": 100.0 * (1 - re_ / ie) if ie else np.nan,
                    "fewer_steps_pct": 100.0 * (1 - rs / is_) if is_ else np.nan,
                    "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds)),
                    "rkdo_mean": float(r.mean()),
                    "rkdo_std": float(r.std(ddof=1)) if len(r) > 1 else np.nan,
                    "icon_mean": float(i.mean()),
                    "icon_std": float(i.std(ddof=1)) if len(i) > 1 else np.nan,
                    "ratio_pct": 100.0 * r.mean() / i.mean() if i.mean() else np.nan,
                    **early, **st,
                    "reported_rkdo_mean": float(hit.rkdo_mean) if hit is not None else np.nan,
                    "reported_icon_mean": float(hit.icon_mean) if hit is not None else np.nan,
                    "reported_ratio_pct": rep_ratio,
                    "reported_fewer_epochs_pct":
                        float(hit.fewer_epochs_pct) if hit is not None else np.nan,
                    "reported_claim": hit.claim if hit is not None else "",
                    "has_reported": hit is not None, "no_counterpart_reason": reason,
                })
    out = pd.DataFrame(rows)
    title = (f"Table 3. Early RKDO vs later I-Con ({METRIC_LABELS[metric]}), "
             f"pairs (RKDO epochs, I-Con epochs) = {pairs}")
    if out.empty:
        out.attrs.update(csv=[], display=[], title=title, omitted=omitted,
                         note="No row: " + " ".join(omitted) if omitted else "no data")
        return out
    mis = mismatched_comparison(df, pairs, (metric,))
    lookup = {} if mis.empty else {
        (r.protocol, r.dataset, int(r.rkdo_epoch), int(r.icon_epoch)): r.p_holm
        for r in mis.itertuples()}
    out["p_holm"] = [lookup.get((p, d, int(a), int(b)), np.nan) if a > 0 else np.nan
                     for p, d, a, b in zip(out.protocol, out.dataset, out.rkdo_epochs,
                                           out.icon_epochs)]
    out = out.drop(columns=["effect_size"], errors="ignore")
    csv = list(out.columns)
    display = {
        "Dataset": out.dataset.map(dataset_label), "Protocol": out.protocol,
        "RKDO epochs (steps)": [("0, untrained" if a == 0 else f"{a} ({fmt_steps(s, s)})")
                                for a, s in zip(out.rkdo_epochs, out.rkdo_steps)],
        "I-Con epochs (steps)": [f"{a} ({fmt_steps(s, s)})" for a, s in
                                 zip(out.icon_epochs, out.icon_steps)],
        "Fewer epochs": [f"{x:.0f} %" for x in out.fewer_epochs_pct],
        "n": out.n_seeds.astype(str),
        "RKDO": [fmt_mean_std(m, s) for m, s in zip(out.rkdo_mean, out.rkdo_std)],
        "I-Con": [fmt_mean_std(m, s) for m, s in zip(out.icon_mean, out.icon_std)],
        "I-Con@early": [fmt_mean_std(m, s) for m, s in
                        zip(out.icon_early_mean, out.icon_early_std)],
        "RKDO − I-Con@early": [fmt_num(x, sign=True) for x in out.rkdo_minus_icon_early],
        "RKDO / I-Con": [fmt_num(x, 1) + " %" if not np.isnan(x) else NO_COUNTERPART
                         for x in out.ratio_pct],
        "RKDO − I-Con [95 % CI]": [f"{fmt_num(d, sign=True)} {fmt_ci(lo, hi)}" for d, lo, hi in
                                   zip(out.diff_mean, out.ci_low, out.ci_high)],
        "p": [format_p(x) for x in out.p_value],
        "p (sign-flip)": [format_p_up(x) for x in out.sign_flip_p],
        "p (Holm)": [format_p(x) for x in out.p_holm],
        "Paper RKDO": [fmt_num(x) for x in out.reported_rkdo_mean],
        "Paper I-Con": [fmt_num(x) for x in out.reported_icon_mean],
        "Paper RKDO / I-Con": [fmt_num(x, 1) + " %" if not np.isnan(x) else NO_COUNTERPART
                               for x in out.reported_ratio_pct],
        "Paper's wording": [c if c else NO_COUNTERPART for c in out.reported_claim],
    }
    note = " ".join(filter(None, [
        "RKDO at the first budget vs I-Con at the second, seeds paired (same seed, different "
        "budgets); mean ± std over seeds; I-Con@early: I-Con at RKDO's budget, the bar RKDO "
        "must clear and the measure of what longer I-Con training adds (the claims "
        "checklist tests both); RKDO / I-Con = ratio of the seed means; fewer "
        "epochs = 1 − RKDO epochs / I-Con epochs; steps = real optimizer steps; p: paired "
        "t-test across seeds; p (sign-flip): exact permutation p (floor 2/2^n); p (Holm): "
        "the mismatched family of the protocol and metric (the same p as in Table 7; "
        f"{HOLM_FAMILIES}). "
        "Rows with RKDO epochs 0 are the baseline: the untrained encoder (the same weights "
        "for both methods at a seed) against the trained I-Con. The paper prints only "
        "the means here; its RKDO / I-Con is the stated percentage where it gives one, else "
        "the ratio of its printed means.",
        _no_counterpart_note(out.no_counterpart_reason),
        ("Omitted: " + " ".join(omitted)) if omitted else "",
    ]))
    return finish_table(out, csv, display, title, note, omitted)


# ---------------------------------------------------------------------------- Table 4


def table4(comp: pd.DataFrame, reported: Reported | None = None, epoch: int = 2) -> pd.DataFrame:
    """Table 4: linear eval, NMI, ARI and neighborhood accuracy at one budget, with the
    paper's Table 4 (2 epochs) beside it. A budget not in the results gives an empty table
    whose note says so."""
    metrics = [m for m in METRICS if not METRICS[m]]
    title = f"Table 4. All evaluation metrics at {epoch} epoch(s), RKDO vs I-Con"
    sub = comp[(comp.epoch == epoch) & comp.metric.isin(metrics)].copy() if not comp.empty \
        else pd.DataFrame()
    if not sub.empty and epoch != 0:  # the untrained encoder (budget 0) as baseline rows
        sub = comp[comp.epoch.isin([0, epoch]) & comp.metric.isin(metrics)].copy()
    if sub.empty:
        present = sorted(int(e) for e in comp.epoch.unique()) if not comp.empty else []
        msg = (f"Table 4 not drawn: epoch {epoch} is not in the results "
               f"(budgets present: {present}).")
        out = pd.DataFrame()
        out.attrs.update(csv=[], display=[], title=title, note=msg, omitted=[msg])
        return out
    sub["_d"] = sub.dataset.map({d: k for k, d in enumerate(dataset_order(sub.dataset))})
    sub["_m"] = sub.metric.map({m: k for k, m in enumerate(metrics)})
    sub = sub.sort_values(["protocol", "_d", "epoch", "_m"]).drop(columns=["_d", "_m"])
    sub = sub.reset_index(drop=True)
    lookup = {}
    if reported is not None and reported.table4_epoch == epoch:
        lookup = {(r.dataset, r.metric): r for r in reported.table4.itertuples()}
    extra = {k: [] for k in ("reported_rkdo_mean", "reported_rkdo_std", "reported_icon_mean",
                             "reported_icon_std", "reported_pct", "has_reported",
                             "no_counterpart_reason")}
    for r in sub.itertuples():
        hit = lookup.get((r.dataset, r.metric)) if (
            reported is not None and r.protocol == reported.protocol) else None
        if r.epoch != epoch:
            hit = None
        reason = _counterpart_reason(r.dataset, r.protocol, r.epoch, reported,
                                     hit is not None,
                                     [] if reported is None else [reported.table4_epoch])
        extra["has_reported"].append(hit is not None)
        extra["no_counterpart_reason"].append(reason)
        for key, attr in (("reported_rkdo_mean", "rkdo_mean"), ("reported_rkdo_std", "rkdo_std"),
                          ("reported_icon_mean", "icon_mean"), ("reported_icon_std", "icon_std"),
                          ("reported_pct", "difference_pct")):
            extra[key].append(float(getattr(hit, attr)) if hit is not None else np.nan)
    for k, v in extra.items():
        sub[k] = v
    sub = sub.rename(columns={"epoch": "epochs"})
    csv = ["dataset", "protocol", "epochs", "metric", "steps_min", "steps_max", "n_seeds",
           "seeds", "rkdo_mean", "rkdo_std", "icon_mean", "icon_std", "improvement_pct",
           "diff_mean", "ci_low", "ci_high", "sd_diff", "g_z", "gz_low", "gz_high", "p_value",
           "sign_flip_p", "sign_flip_floor", "p_holm", "holm_family", "holm_m", "mde80",
           "mde_alpha", *extra]
    display = {
        "Dataset": sub.dataset.map(dataset_label), "Protocol": sub.protocol,
        "Epochs": ["0 (untrained)" if e == 0 else str(e) for e in sub.epochs],
        "Metric": sub.metric.map(METRIC_LABELS),
        **_paired_display(sub, "Difference"),
    }
    note = " ".join(filter(None, [
        "Mean ± std over seeds; difference = 100 (RKDO − I-Con)/I-Con of the seed means (the "
        "paper's definition). " + _STATS_NOTE + " p (Holm): the matched family of each metric "
        f"and protocol — the same p as in Tables 1, 2 and 7 ({HOLM_FAMILIES}). Epoch-0 rows: "
        "the untrained "
        "encoder (identical weights for both methods at a seed), the baseline every trained "
        "row should beat.",
        _no_counterpart_note(extra["no_counterpart_reason"]),
    ]))
    return finish_table(sub[csv].copy(), csv, display, title, note, [])


# ---------------------------------------------------------------------------- the audit


def table0_positive_control(df: pd.DataFrame, control: pd.DataFrame | None = None
                            ) -> pd.DataFrame:
    """Table 0, computed and shown first: per dataset and protocol, does training help at
    all? I-Con at the last trained budget vs the untrained encoder (epoch 0, same seed) on
    the linear probe (:func:`rkdo_core.reporting.stats.positive_control`). Where it fails,
    every downstream verdict of that dataset and protocol is "not testable"."""
    title = ("Table 0. Positive control: does I-Con at its last budget beat the untrained "
             "encoder on the linear probe?")
    pc = positive_control(df) if control is None else control.copy()
    if pc.empty:
        out = pd.DataFrame()
        out.attrs.update(csv=[], display=[], title=title, note="no data", omitted=[])
        return out
    pc["_d"] = pc.dataset.map({d: k for k, d in enumerate(dataset_order(pc.dataset))})
    pc = pc.sort_values(["protocol", "_d"]).drop(columns="_d").reset_index(drop=True)
    for col in ("icon_last_mean", "untrained_mean", "diff_mean", "ci_low", "ci_high",
                "p_value", "sign_flip_p", "sign_flip_floor", "g_z", "mde80"):
        if col not in pc:
            pc[col] = np.nan
    csv = list(pc.columns)
    display = {
        "Dataset": pc.dataset.map(dataset_label), "Protocol": pc.protocol,
        "Probe": [METRIC_LABELS.get(m, m or NO_COUNTERPART) for m in pc.metric],
        "I-Con epochs": [NO_COUNTERPART if pd.isna(e) else str(int(e)) for e in pc.epoch],
        "n": pc.n_seeds.astype(str),
        "I-Con@last": [fmt_num(x) for x in pc.icon_last_mean],
        "Untrained": [fmt_num(x) for x in pc.untrained_mean],
        "Difference [95 % CI]": [f"{fmt_num(d, sign=True)} {fmt_ci(lo, hi)}" for d, lo, hi in
                                 zip(pc.diff_mean, pc.ci_low, pc.ci_high)],
        "p (sign-flip)": [f"{format_p(p)} ({format_p_up(f)})" for p, f in
                          zip(pc.p_value, pc.sign_flip_p)],
        "MDE80": [fmt_num(x) if o == CONTROL_NOT_SHOWN else NO_COUNTERPART
                  for x, o in zip(pc.mde80, pc.outcome)],
        "Control": [o if s != "not testable" else f"not testable ({r})"
                    for s, o, r in zip(pc.status, pc.outcome, pc.reason)],
        "Downstream verdicts": [(GATED_NO_CONTROL if s == "not testable" else GATED) if g
                                else "tested" for s, g in zip(pc.status, pc.gated)],
    }
    note = (f"Paired differences I-Con@last − untrained encoder (epoch 0, the same seed's "
            f"initial weights), 95 % t-interval, paired t-test and exact sign-flip p; the "
            f"probe is the cross-validated linear probe (linear_cv) where measured, else the "
            f"paper's linear eval — the same probe claim (b) and Table 3 are judged on. The "
            f"control passes when the interval lies above 0 (differences without spread: the "
            f"exact one-sided sign-flip test at {ALPHA_LEVEL / 2:g}); it fails as "
            f"\"{CONTROL_HURTS}\" or \"{CONTROL_NOT_SHOWN}\". Where it fails, every "
            f"downstream verdict for that dataset and protocol — claim (b), Table 3's rows, "
            f"Table 6's conclusions about linear eval, NMI, ARI and neighbour accuracies — is "
            f"\"{GATED}\"; a control that cannot be computed gates too (\"{GATED_NO_CONTROL}\""
            f"); the loss-side audit (the gap, the yardstick) is not gated. MDE80 (only where "
            f"the control is not shown to help): the true difference the paired t-test had "
            f"80 % power to detect at level {ALPHA_LEVEL} — power, not an exclusion.")
    return finish_table(pc, csv, display, title, note, [])



def table_yardstick(df: pd.DataFrame) -> pd.DataFrame:
    """Table 5: the common yardstick — "trained with × scored with", one row per dataset,
    protocol and budget (the 2 × 2 flattened: RKDO- and I-Con-trained encoders, each scored
    with the I-Con and the RKDO objective on the same held-out images and views), with the
    paired test of RKDO-trained − I-Con-trained under each objective. Lower is better."""
    title = ("Table 5. Common yardstick: both trained encoders scored with the same fixed "
             "objectives (trained with × scored with)")
    ys = yardstick_comparison(df)
    if ys.empty:
        out = pd.DataFrame()
        msg = ("not measured: the metrics files carry no yardstick_icon / yardstick_rkdo "
               "(made before the yardstick existed); re-evaluate the runs "
               "(`rkdo evaluate RUN --force`) to measure it")
        out.attrs.update(csv=[], display=[], title=title, note=msg, omitted=[msg])
        return out
    rows = []
    for (dataset, protocol, epoch), g in ys.groupby(["dataset", "protocol", "epoch"]):
        row = {"dataset": dataset, "protocol": protocol, "epochs": int(epoch),
               "steps_max": g.steps_max.iloc[0], "n_seeds": int(g.n_seeds.min())}
        for r in g.itertuples():
            k = r.scored_with
            row.update({f"{k}_obj_rkdo_trained_mean": r.rkdo_mean,
                        f"{k}_obj_rkdo_trained_std": r.rkdo_std,
                        f"{k}_obj_icon_trained_mean": r.icon_mean,
                        f"{k}_obj_icon_trained_std": r.icon_std,
                        f"{k}_obj_diff_mean": r.diff_mean, f"{k}_obj_ci_low": r.ci_low,
                        f"{k}_obj_ci_high": r.ci_high, f"{k}_obj_p_value": r.p_value,
                        f"{k}_obj_p_holm": r.p_holm})
        # the paper's kind of comparison, on the held-out yardstick: each encoder on the
        # objective it was trained with (the diagonal of the 2 × 2)
        own_r, own_i = row.get("rkdo_obj_rkdo_trained_mean"), row.get(
            "icon_obj_icon_trained_mean")
        row["own_objective_gap_pct"] = (100.0 * (own_i - own_r) / own_i
                                        if own_r is not None and own_i else np.nan)
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_d"] = out.dataset.map({d: k for k, d in enumerate(dataset_order(out.dataset))})
    out = out.sort_values(["protocol", "_d", "epochs"]).drop(columns="_d").reset_index(
        drop=True)
    csv = list(out.columns)
    display = {"Dataset": out.dataset.map(dataset_label), "Protocol": out.protocol,
               "Epochs (steps)": ["0 (untrained)" if e == 0 else f"{e} ({fmt_steps(s, s)})"
                                  for e, s in zip(out.epochs, out.steps_max)],
               "n": out.n_seeds.astype(str),
               "Own objective: RKDO below I-Con": [fmt_pct(x) for x in
                                                   out.own_objective_gap_pct]}
    present = set(ys.scored_with)
    for key, (label, lower) in ALL_YARDSTICKS.items():
        k = yardstick_name(key)
        if k not in present:
            continue
        short = {"icon": "I-Con obj.", "rkdo": "RKDO obj."}.get(
            k, f"{label} ({'lower' if lower else 'higher'} better)")

        def col(name, k=k):
            return out[f"{k}_obj_{name}"] if f"{k}_obj_{name}" in out else [np.nan] * len(out)

        display[f"{short}: RKDO-trained"] = [fmt_mean_std(m, sd) for m, sd in
                                             zip(col("rkdo_trained_mean"),
                                                 col("rkdo_trained_std"))]
        display[f"{short}: I-Con-trained"] = [fmt_mean_std(m, sd) for m, sd in
                                              zip(col("icon_trained_mean"),
                                                  col("icon_trained_std"))]
        display[f"{short}: difference [95 % CI]"] = [
            f"{fmt_num(d, sign=True)} {fmt_ci(lo, hi)}" for d, lo, hi in
            zip(col("diff_mean"), col("ci_low"), col("ci_high"))]
        display[f"{short}: p (Holm)"] = [
            NO_COUNTERPART if np.isnan(p) else f"{format_p(p)} ({format_p(h)})"
            for p, h in zip(col("p_value"), col("p_holm"))]
    note = (
        "Both trained encoders of a seed are scored with the I-Con objective and with the "
        "RKDO objective (the run's loss settings), and — where the evaluation measured them — "
        "with the neutral yardsticks neither method optimises (alignment, uniformity, RankMe, "
        "InfoNCE at τ 0.1 and 0.5, the RKDO objective with a frozen shared teacher), on the "
        "same held-out test images and the same seeded views (fixed across runs), in eval "
        "mode; mean ± std over seeds. Difference = RKDO-trained − I-Con-trained (for a "
        "lower-is-better yardstick negative favours RKDO's training), 95 % t-interval of the "
        "per-seed differences, paired t-test across seeds, Holm within each yardstick and "
        "protocol over datasets × trained budgets (the matched family of "
        f"{HOLM_FAMILIES.split(': ', 1)[0]}). Own objective: "
        "100 (I-Con-trained on the I-Con objective − RKDO-trained on the RKDO objective) / "
        "the former — the paper's Table 1 comparison (each method on its own loss) measured "
        "on these held-out views; the two objectives are different functions, so this "
        "number is not evidence that either encoder is better. Epoch 0: the untrained "
        "encoders, identical for both methods at a seed (difference 0, no test).")
    return finish_table(out, csv, display, title, note, [])


def yardstick_2x2(df: pd.DataFrame, dataset: str, protocol: str, epoch: int) -> pd.DataFrame:
    """The literal 2 × 2 of one dataset, protocol and budget: rows "trained with", columns
    "scored with", cells mean ± std over seeds."""
    sub = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.epoch == epoch)]
    cells = {}
    for key, label in YARDSTICK.items():
        cells[f"scored with the {label}"] = [
            fmt_mean_std(*((v.mean(), v.std(ddof=1)) if len(v) > 1 else (v.mean(), np.nan)))
            if len(v) else NO_COUNTERPART
            for v in (sub[sub.method == m][key].astype(float).dropna()
                      if key in sub else pd.Series(dtype=float) for m in ("rkdo", "icon"))]
    return pd.DataFrame(cells, index=pd.Index(["trained with RKDO", "trained with I-Con"],
                                              name=f"{dataset_label(dataset)}, {protocol}, "
                                                   f"{epoch} epoch(s)"))


def table_protocols(comp: pd.DataFrame, gated: set | frozenset = frozenset()
                    ) -> pd.DataFrame:
    """Table 6: do the conclusions of Tables 2–4 (linear eval, NMI, ARI, neighborhood
    accuracy; RKDO vs I-Con at the same budget) change between the paper protocol and the
    full protocol? One row per dataset × metric × budget present under both."""
    title = "Table 6. Conclusions of Tables 2–4 under the paper protocol and the full protocol"
    pc = protocol_conclusions(comp, gated=gated)
    if pc.empty:
        msg = ("not drawn: no dataset × budget was run under more than one protocol (run "
               "params/default_full.yaml beside params/default.yaml)")
        out = pd.DataFrame()
        out.attrs.update(csv=[], display=[], title=title, note=msg, omitted=[msg])
        return out
    protocols = sorted({c.split("_", 1)[0] for c in pc.columns if c.endswith("_conclusion")})
    pc["_d"] = pc.dataset.map({d: k for k, d in enumerate(dataset_order(pc.dataset))})
    pc["_m"] = pc.metric.map({m: k for k, m in enumerate(METRICS)})
    pc = pc.sort_values(["_d", "_m", "epoch"]).drop(columns=["_d", "_m"]).reset_index(
        drop=True).rename(columns={"epoch": "epochs"})
    display = {"Dataset": pc.dataset.map(dataset_label), "Metric": pc.metric.map(METRIC_LABELS),
               "Epochs": ["0 (untrained)" if e == 0 else str(e) for e in pc.epochs]}
    for p in protocols:
        display[f"{p}: RKDO / I-Con (steps)"] = [
            f"{r:.4f} / {i:.4f} ({fmt_steps(s, s)})" for r, i, s in
            zip(pc[f"{p}_rkdo_mean"], pc[f"{p}_icon_mean"], pc[f"{p}_steps"])]
        display[f"{p}: conclusion (p Holm)"] = [
            c if c == GATED else
            f"{c} ({format_p(h)}; {power_text(m, a)})" if c == "no difference" else
            f"{c} ({format_p(h)})"
            for c, h, m, a in zip(pc[f"{p}_conclusion"], pc[f"{p}_p_holm"],
                                  pc[f"{p}_mde80"], pc[f"{p}_mde_alpha"])]
    display["Same conclusion"] = ["yes" if x else "NO" for x in pc.same]
    n_diff = int((~pc.same).sum())
    note = (f"Conclusion: \"RKDO better\" / \"I-Con better\" where the paired t-test across "
            f"seeds, Holm-adjusted within the metric and protocol, is below 0.05, else \"no "
            f"difference\" — stated with its minimal detectable difference at 80 % power at "
            f"the Holm worst-case level ({HOLM_FAMILIES}); where the positive control fails "
            f"(I-Con@last does not beat the untrained encoder), \"{GATED}\". "
            f"An epoch means 10 batches under the paper protocol and a full "
            f"pass under the full protocol (steps in brackets); the full protocol evaluates "
            f"on the whole test set with the probe trained on train-set features. "
            f"{n_diff} of {len(pc)} conclusions differ between protocols.")
    return finish_table(pc, list(pc.columns), display, title, note, [])


# ---------------------------------------------------------------------------- writing


