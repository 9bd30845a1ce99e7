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
from .inference import (
    format_sign_flip,
    gz_ci,
    has_spread,
    hedges_gz,
    holm,
    min_detectable_difference,
    shown_above,
    sign_flip_floor,
    sign_flip_p,
)

__all__ = ["holm"]  # re-exported: Holm's adjustment lives in .inference (one implementation)

#: metric -> True where lower is better (the loss). Order = order in tables.
METRICS: dict[str, bool] = {
    "train_loss": True,
    "linear_eval": False,
    "nmi": False,
    "ari": False,
    "neighborhood_acc": False,
}
#: downstream metrics of newer evaluations (full protocol), compared where measured
EXTRA_METRICS: dict[str, bool] = {"linear_cv": False, "knn20": False, "knn5_cosine": False}
#: every metric the paired comparison covers (present columns only)
ALL_METRICS: dict[str, bool] = {**METRICS, **EXTRA_METRICS}
#: the representation-quality (downstream) metrics, gated by the positive control
DOWNSTREAM_METRICS = tuple(m for m, lower in ALL_METRICS.items() if not lower)
METRIC_LABELS = {"train_loss": "training loss", "linear_eval": "linear eval", "nmi": "NMI",
                 "ari": "ARI", "neighborhood_acc": "neighborhood acc",
                 "linear_cv": "linear probe (cross-validated)", "knn20": "weighted 20-NN",
                 "knn5_cosine": "5-NN (cosine)"}
METHOD_LABELS = {"rkdo": "RKDO", "icon": "I-Con"}
#: budgets left out of the Holm families: epoch 0 is the untrained encoder, a baseline and
#: not one of the comparisons the paper claims (its 12 dataset × budget tests per metric)
HOLM_EXCLUDED_EPOCHS = (0,)
CONFIDENCE = 0.95
#: epoch 0 holds the same untrained encoder for both methods: its RKDO − I-Con difference is
#: one between two functions (or exactly 0), shown as a difference, never as inference
UNTRAINED_INFERENCE = ("none: epoch 0 is the same untrained encoder for both methods, so "
                       "RKDO − I-Con there is a difference between two functions, not a test")
UNTRAINED_NO_INFERENCE = ("ci_low", "ci_high", "g_z", "gz_low", "gz_high", "p_value",
                          "sign_flip_p", "sign_flip_floor", "mde80")
#: significance level of every test, claim and generated sentence (stated in each)
ALPHA_LEVEL = 0.05


def improvement_pct(rkdo: float, icon: float, lower_is_better: bool) -> float:
    """The paper's definition: (I-Con − RKDO)/I-Con for the loss, (RKDO − I-Con)/I-Con else."""
    if icon == 0:
        return float("nan")
    return 100.0 * ((icon - rkdo) if lower_is_better else (rkdo - icon)) / icon


def paired_stats(rkdo, icon, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Paired statistics of two arrays aligned by seed, on the difference d = RKDO − I-Con.

    ``diff_mean``; ``ci_low``/``ci_high``: the t-interval mean(d) ± t_{n−1} · sd(d)/√n
    (sd with ddof=1); ``sd_diff``: sd(d); ``effect_size``: Cohen's d_z = mean(d)/sd(d) (kept
    for the API; the tables report ``g_z``); ``g_z``: Hedges' bias-corrected g_z
    (:func:`.inference.hedges_gz`, n ≥ 3) with its exact interval ``gz_low``/``gz_high``
    (:func:`.inference.gz_ci`); ``p_value``: scipy's paired t-test; ``sign_flip_p``: the
    exact two-sided sign-flip (permutation) p (:func:`.inference.sign_flip_p`) and
    ``sign_flip_floor`` the smallest value it can take (2/2^n, 1/16 at n = 5); ``mde80``:
    the minimal difference a paired t-test detects with 80 % power at level 0.05 two-sided
    from the observed sd (:func:`.inference.min_detectable_difference`; tables recompute it
    at the multiplicity level they apply). Test quantities are NaN when n < 2 or the
    differences have no spread beyond floating-point rounding (:func:`.inference.has_spread`:
    all equal, e.g. every seed gaining exactly 2/141) — the tests are undefined there, not 0
    or 1 — and so is the interval (``ci_low``/``ci_high`` NaN, ``no_spread`` True): a
    zero-width interval would pass every "CI above 0" rule, so such differences are decided
    by the exact sign-flip test (:func:`.inference.shown_above`), never by an interval.
    """
    r = np.asarray(rkdo, dtype=float)
    i = np.asarray(icon, dtype=float)
    d = r - i
    n = len(d)
    nan = np.nan
    out = {"diff_mean": float(d.mean()) if n else nan, "ci_low": nan, "ci_high": nan,
           "sd_diff": nan, "effect_size": nan, "g_z": nan, "gz_low": nan, "gz_high": nan,
           "p_value": nan, "sign_flip_p": nan, "sign_flip_floor": nan, "mde80": nan,
           "no_spread": False}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    out["sd_diff"] = sd
    out["sign_flip_p"] = sign_flip_p(d)
    out["sign_flip_floor"] = sign_flip_floor(int(np.count_nonzero(d)))
    scale = float(np.max(np.abs(np.r_[r, i, d])))
    out["no_spread"] = not has_spread(d, scale=scale)
    if not out["no_spread"]:
        half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
        out["ci_low"], out["ci_high"] = out["diff_mean"] - half, out["diff_mean"] + half
        out["effect_size"] = out["diff_mean"] / sd
        out["p_value"] = float(sps.ttest_rel(r, i).pvalue)
        out["gz_low"], out["gz_high"] = gz_ci(d, confidence)
        out["mde80"] = min_detectable_difference(sd, n)
        if n >= 3:
            out["g_z"] = hedges_gz(d)
    return out


def mde_at(sd: float, n: int, alpha: float) -> float:
    """:func:`.inference.min_detectable_difference` at 80 % power, NaN where undefined
    (sd 0 or NaN, fewer than 2 seeds)."""
    if not (np.isfinite(sd) and sd > 0 and n >= 2 and 0 < alpha < 0.8):
        return float("nan")
    return min_detectable_difference(float(sd), int(n), alpha=float(alpha))


def eval_size_mde(n: int, p: float = 0.8, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest difference of two accuracies near ``p`` that ``n`` test images resolve
    with ``power`` at two-sided level ``alpha``, taking the two as independent binomial
    proportions (the worst case: scoring both encoders on the same images only lowers it):
    ``(z_{1-alpha/2} + z_power) * sqrt(2 p (1 - p) / n)``. It sizes the Fashion grid's test
    subset (params/fashion.yaml)."""
    if not (n >= 1 and 0 < p < 1 and 0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"eval_size_mde(n={n}, p={p}, alpha={alpha}, power={power}): need "
                         "n >= 1 and p, alpha, power in (0, 1)")
    z = sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)
    return float(z * np.sqrt(2 * p * (1 - p) / n))


def power_text(mde: float, alpha: float, unit: str = "") -> str:
    """"80 % power to detect a true difference of X at level α" — what a test that did not
    reject could have found (docs/design.md "Statistics conventions"). A power calculation
    excludes nothing: "excluded" is said only from an interval or a TOST /
    non-inferiority bound, and this text is attached only to results that are not
    significant."""
    if not np.isfinite(mde):
        return ("power not computable (fewer than 2 seeds, or differences without spread)")
    return (f"the paired t-test had 80 % power to detect a true difference of {mde:.3g}{unit} "
            f"at level {alpha:.3g} (two-sided)")


# ---------------------------------------------------------------------------- Holm families
#: the one definition of the multiple-comparison families, stated in every caption
HOLM_FAMILIES = (
    "Holm families (one definition for every table and claim, rkdo_core.reporting.stats."
    "holm_family): the matched comparisons RKDO@e vs I-Con@e form one family per (protocol, "
    "metric) over datasets × trained budgets (e > 0); the mismatched comparisons "
    "RKDO@early vs I-Con@late (Tables 3 and 7) a separate family per (protocol, metric) "
    "over datasets × pairs; comparisons with the untrained encoder (epoch 0) are not counted")


def holm_family(protocol: str, metric: str, rkdo_epoch: int, icon_epoch: int):
    """The Holm family of the comparison RKDO@``rkdo_epoch`` vs I-Con@``icon_epoch`` on
    ``metric`` under ``protocol`` (see :data:`HOLM_FAMILIES`): ``(protocol, metric,
    "matched" | "mismatched")``, or None for a comparison with the untrained encoder
    (not counted)."""
    if int(rkdo_epoch) <= 0 or int(icon_epoch) <= 0:
        return None
    kind = "matched" if int(rkdo_epoch) == int(icon_epoch) else "mismatched"
    return (str(protocol), str(metric), kind)


def with_holm(frame: pd.DataFrame, *, rkdo_col: str = "rkdo_epoch",
              icon_col: str = "icon_epoch", metric_col: str = "metric",
              alpha: float = ALPHA_LEVEL) -> pd.DataFrame:
    """``frame`` with ``holm_family`` (text), ``holm_m`` (family size), ``p_holm`` (Holm
    within the family, :func:`holm_family`) and ``mde80`` / ``mde_alpha``: the minimal
    detectable difference at 80 % power at the level the family actually applies
    (Holm's worst case α/m; α for rows outside a family) from ``sd_diff`` and ``n_seeds``.
    Rows with a NaN p are in their family but not counted (``holm`` ignores NaN)."""
    out = frame.copy()
    if out.empty:
        return out
    fam = [holm_family(p, m, a, b) for p, m, a, b in
           zip(out.protocol, out[metric_col], out[rkdo_col], out[icon_col])]
    out["holm_family"] = ["" if f is None else "/".join(f) for f in fam]
    out["p_holm"] = np.nan
    out["holm_m"] = 0
    for _key, idx in out[out.holm_family != ""].groupby("holm_family").groups.items():
        p = out.loc[idx, "p_value"].to_numpy(dtype=float)
        out.loc[idx, "p_holm"] = holm(p)
        out.loc[idx, "holm_m"] = int(np.count_nonzero(~np.isnan(p)))
    out["mde_alpha"] = [alpha / max(int(m), 1) for m in out.holm_m]
    if "sd_diff" in out and "n_seeds" in out:
        out["mde80"] = [mde_at(sd, n, a) for sd, n, a in
                        zip(out.sd_diff, out.n_seeds, out.mde_alpha)]
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
                  rkdo_epoch: int, icon_epoch: int, *, finite_only: bool = False
                  ) -> tuple[list, np.ndarray, np.ndarray]:
    """(seeds, RKDO values, I-Con values) for one dataset/protocol/metric, RKDO at
    ``rkdo_epoch`` and I-Con at ``icon_epoch``, aligned on the seeds both have (sorted);
    with ``finite_only`` the seeds where either value is missing (NaN) are dropped."""
    g = df[(df.dataset == dataset) & (df.protocol == protocol)]
    r = g[(g.method == "rkdo") & (g.epoch == rkdo_epoch)].set_index("seed")[metric]
    i = g[(g.method == "icon") & (g.epoch == icon_epoch)].set_index("seed")[metric]
    seeds = sorted(set(r.index) & set(i.index))
    rv, iv = r.loc[seeds].astype(float).to_numpy(), i.loc[seeds].astype(float).to_numpy()
    if finite_only:
        ok = ~(np.isnan(rv) | np.isnan(iv))
        seeds, rv, iv = [s for s, k in zip(seeds, ok) if k], rv[ok], iv[ok]
    return seeds, rv, iv


def paired_comparison(df: pd.DataFrame, metrics=tuple(ALL_METRICS), *,
                      holm_excluded_epochs=HOLM_EXCLUDED_EPOCHS) -> pd.DataFrame:
    """One row per (dataset, protocol, epoch, metric), seeds paired — ``comparison.csv``.

    Columns: ``n_seeds``, ``seeds`` (comma-separated), ``rkdo_mean``/``rkdo_std``,
    ``icon_mean``/``icon_std`` (std with ddof=1), ``improvement_pct`` (the paper's definition,
    from the means), ``improvement_ci`` (half-width of the 95 % t-interval of the per-seed
    improvement %), ``diff_mean`` (RKDO − I-Con) with its 95 % t-interval ``ci_low``/
    ``ci_high``, ``sd_diff``, ``g_z`` (Hedges' bias-corrected paired effect size) with its
    exact 95 % interval ``gz_low``/``gz_high``, ``p_value`` (paired t-test) and beside it
    ``sign_flip_p`` (exact permutation p; ``sign_flip_floor`` = its smallest possible value,
    1/16 with 5 seeds) — all of these NaN at epoch 0 (``inference`` says why:
    :data:`UNTRAINED_INFERENCE`), ``p_holm``/``holm_family``/``holm_m`` (:func:`with_holm`: the one
    family definition :data:`HOLM_FAMILIES`; budgets in ``holm_excluded_epochs`` and NaN
    p-values are not counted), ``mde80``/``mde_alpha`` (minimal detectable difference at
    80 % power at the Holm worst-case level), ``steps_min``/``steps_max`` (real optimizer
    steps of the budget) and ``device``. Metrics absent from the results are skipped.
    """
    rows = []
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        for metric in metrics:
            if metric not in g:
                continue
            seeds, r, i = paired_values(df, dataset, protocol, metric, epoch, epoch,
                                           finite_only=True)
            if len(seeds) == 0:
                continue
            steps_min, steps_max = _steps(g)
            lower = ALL_METRICS.get(metric, False)
            imp = per_seed_improvement(r, i, lower)
            st = paired_stats(r, i)
            st.pop("effect_size")  # d_z: the tables report the bias-corrected g_z
            untrained = int(epoch) in set(int(e) for e in holm_excluded_epochs)
            if untrained:  # the same encoder under two functions: a difference, no test
                st.update({k: np.nan for k in UNTRAINED_NO_INFERENCE})
            rows.append({
                "dataset": dataset, "protocol": protocol, "epoch": int(epoch), "metric": metric,
                "n_seeds": len(seeds), "seeds": ",".join(str(s) for s in seeds),
                "rkdo_mean": float(r.mean()), "rkdo_std": _std(r),
                "icon_mean": float(i.mean()), "icon_std": _std(i),
                "improvement_pct": improvement_pct(r.mean(), i.mean(), lower),
                "improvement_ci": np.nan if untrained else t_halfwidth(imp),
                **st, "inference": UNTRAINED_INFERENCE if untrained else "paired",
                "steps_min": steps_min, "steps_max": steps_max,
                "device": ",".join(sorted(g["device"].dropna().astype(str).unique()))
                if "device" in g else "",
            })
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    excluded = set(int(e) for e in holm_excluded_epochs)
    out["holm_epoch"] = [0 if int(e) in excluded else int(e) for e in out.epoch]
    out = with_holm(out, rkdo_col="holm_epoch", icon_col="holm_epoch").drop(
        columns="holm_epoch")
    out.loc[out.inference != "paired", "mde80"] = np.nan  # no test, so no power either
    order = {m: k for k, m in enumerate(ALL_METRICS)}
    return (out.assign(_m=out.metric.map(order)).sort_values(["_m", "protocol", "dataset",
                                                              "epoch"])
            .drop(columns="_m").reset_index(drop=True))


def mismatched_comparison(df: pd.DataFrame, pairs, metrics=("linear_eval",)) -> pd.DataFrame:
    """RKDO@early vs I-Con@late for each (early, late) of ``pairs`` with early < late, per
    protocol, dataset and metric, seeds paired: :func:`paired_stats` columns plus
    ``rkdo_epoch``/``icon_epoch``, and ``p_holm`` from :func:`with_holm` (the mismatched
    family of each (protocol, metric); pairs with early = 0 are reported, not counted).
    Tables 3 and 7 both read their mismatched p (Holm) from here."""
    rows = []
    pairs = [(int(a), int(b)) for a, b in pairs if int(a) < int(b)]
    for (dataset, protocol), _ in df.groupby(["dataset", "protocol"]):
        for metric in metrics:
            if metric not in df:
                continue
            for a, b in pairs:
                seeds, r, i = paired_values(df, dataset, protocol, metric, a, b,
                                               finite_only=True)
                if not seeds:
                    continue
                rows.append({"dataset": dataset, "protocol": protocol, "metric": metric,
                             "rkdo_epoch": a, "icon_epoch": b, "n_seeds": len(seeds),
                             "rkdo_mean": float(r.mean()), "icon_mean": float(i.mean()),
                             **paired_stats(r, i)})
    return with_holm(pd.DataFrame(rows))


def canonical_holm(df: pd.DataFrame, pairs, metrics) -> dict:
    """(protocol, dataset, metric, rkdo_epoch, icon_epoch) -> (p_holm, mde_alpha) for every
    matched comparison (:func:`paired_comparison`) and every mismatched one of ``pairs``
    (:func:`mismatched_comparison`): the single source tables look their Holm p up in, so
    a comparison gets the same adjusted p wherever it appears, and beside it the Holm
    worst-case level of its family, so a table states its MDE at the level its Holm p is
    judged at."""
    out = {}
    comp = paired_comparison(df, metrics=tuple(metrics))
    for r in comp.itertuples():
        out[(r.protocol, r.dataset, r.metric, int(r.epoch), int(r.epoch))] = (
            r.p_holm, r.mde_alpha)
    mis = mismatched_comparison(df, pairs, metrics)
    for r in mis.itertuples():
        out[(r.protocol, r.dataset, r.metric, int(r.rkdo_epoch), int(r.icon_epoch))] = (
            r.p_holm, r.mde_alpha)
    return out


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


def holm_family_sizes(comp: pd.DataFrame) -> dict[str, int]:
    """Testable comparisons (a Holm p) per protocol in rows of one metric: the size of each
    (protocol, metric) Holm family; 0 where nothing was testable."""
    return {str(p): int(n) for p, n in comp.p_holm.notna().groupby(comp.protocol).sum().items()}


def format_comparison(table: pd.DataFrame) -> str:
    """A plain-text rendering of :func:`paired_comparison` for the terminal."""
    lines = []
    for metric in ALL_METRICS:
        sub = table[table.metric == metric]
        if sub.empty:
            continue
        sizes = holm_family_sizes(sub)
        tested = [f"{n} ({p})" for p, n in sizes.items() if n]
        family = (f"Holm within each protocol over its testable comparisons of this metric: "
                  f"{', '.join(tested)}, epoch 0 excluded" if tested else
                  "no trained budget testable (paired differences without spread, or too "
                  "few seeds), so no Holm family")
        floor = sub.sign_flip_floor.dropna()
        lines.append(f"\n{METRIC_LABELS[metric]}  (mean ± std over seeds; g_z = Hedges' "
                     f"bias-corrected paired effect size; paired t-test p and exact sign-flip "
                     f"p (floor {floor.min():.3g} with these seeds); {family}; "
                     "MDE80 = minimal detectable difference at 80 % power, Holm level)"
                     if len(floor) else f"\n{METRIC_LABELS[metric]}")
        lines.append(f"{'protocol':<8} {'dataset':<9} {'epoch':>5} {'n':>2}  {'RKDO':>17}  "
                     f"{'I-Con':>17}  {'improv.':>8}  {'g_z':>6}  {'p':>8}  {'p_flip':>7}  "
                     f"{'p_Holm':>8}  {'MDE80':>8}")
        for _, r in sub.iterrows():
            lines.append(
                f"{r.protocol:<8} {r.dataset:<9} {r.epoch:>5d} {r.n_seeds:>2d}  "
                f"{r.rkdo_mean:>8.4f} ± {r.rkdo_std:<6.4f}  "
                f"{r.icon_mean:>8.4f} ± {r.icon_std:<6.4f}  "
                f"{r.improvement_pct:>+7.2f}%  {r.g_z:>6.2f}  {r.p_value:>8.2g}  "
                f"{r.sign_flip_p:>7.3g}  {r.p_holm:>8.2g}  {r.mde80:>8.3g}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the audit
# What the paper's Table 1 does not show: whether training helps at all in the regime (the
# positive control, docs/method.md §6.5), how the own-loss gap splits into the difference of
# the two loss *functions* and what training with RKDO buys (§6.1), and whether the lower
# loss survives when both encoders are scored on the same fixed objectives.

#: objectives of the common yardstick: metrics-file key -> label. Lower is better.
YARDSTICK = {"yardstick_icon": "I-Con objective", "yardstick_rkdo": "RKDO objective"}
#: neutral yardsticks of newer evaluations: key -> (label, lower is better). Neither method
#: optimises them (rkdo_core/neutral.py), except yard_rkdo_fixed: RKDO's objective with a
#: frozen teacher shared by both encoders.
NEUTRAL_YARDSTICKS: dict[str, tuple[str, bool]] = {
    "yard_alignment": ("alignment", True),
    "yard_uniformity": ("uniformity", True),
    "yard_rankme": ("RankMe", False),
    "yard_infonce_t01": ("InfoNCE (τ = 0.1)", True),
    "yard_infonce_t05": ("InfoNCE (τ = 0.5)", True),
    "yard_rkdo_fixed": ("RKDO objective, frozen shared teacher", True),
}
#: every yardstick: key -> (label, lower is better)
ALL_YARDSTICKS: dict[str, tuple[str, bool]] = {
    **{k: (v, True) for k, v in YARDSTICK.items()}, **NEUTRAL_YARDSTICKS}
#: what "training does not help" makes of a downstream verdict
GATED = "not testable (training does not help in this regime)"
#: ... and a positive control that could not be computed (it gates too, never ungates)
GATED_NO_CONTROL = "not testable (the positive control could not be computed)"
#: the two ways the positive control fails, named apart
CONTROL_HURTS = "fails (training hurts: CI below 0)"
CONTROL_NOT_SHOWN = "fails (not shown to help: CI spans 0)"
#: the positive control's probe: the cross-validated probe where measured, else the paper's
POSITIVE_CONTROL_METRICS = ("linear_cv", "linear_eval")


def yardstick_name(key: str) -> str:
    """``scored_with`` value of a yardstick key: ``icon``, ``rkdo``, ``alignment``, ..."""
    return key.removeprefix("yardstick_").removeprefix("yard_")


def measured(df: pd.DataFrame, column: str) -> bool:
    """The metrics frame has ``column`` with at least one value (results made before a
    column existed lack it, or hold it only for some runs)."""
    return column in df and df[column].notna().any()


def has_yardstick(df: pd.DataFrame) -> bool:
    return all(measured(df, k) for k in YARDSTICK)


def _label(dataset: str, protocol: str) -> str:
    return f"{dataset_label(dataset)} ({protocol} protocol)"


# ----------------------------------------------------------------- positive control (§6.5)
def positive_control(df: pd.DataFrame, alpha: float = ALPHA_LEVEL) -> pd.DataFrame:
    """Per (dataset, protocol): does training help at all? I-Con at the last trained budget
    against the untrained encoder (epoch 0) of the same seed, on the gate's probe
    (:func:`control_probe`: ``linear_cv`` where measured for that dataset and protocol, else
    ``linear_eval`` — the same probe claim (b) and Table 3 are then judged on): paired
    differences I-Con@last − untrained, 95 % t-interval; differences without spread are
    decided by the exact sign-flip test (:func:`.inference.shown_above`), never by a
    zero-width interval.

    ``status``: ``passes`` (interval above 0), ``fails`` (not above 0: every downstream
    verdict of that dataset and protocol becomes :data:`GATED`) with ``outcome`` naming which
    failure — :data:`CONTROL_HURTS` (interval below 0) or :data:`CONTROL_NOT_SHOWN` (it spans
    0) — or ``not testable`` (no epoch 0, no trained budget, the probe missing at one of the
    two budgets, fewer than 2 paired seeds). A control that cannot be computed gates too
    (``gated`` True, downstream verdicts :data:`GATED_NO_CONTROL`): it never switches the
    gate off. Columns: dataset, protocol, metric, epoch, n_seeds, icon_last_mean,
    untrained_mean, diff_mean, ci_low, ci_high, p_value, sign_flip_p, sign_flip_floor, g_z,
    mde80 (level ``alpha``), no_spread, decided_by, status, outcome, gated, reason."""
    rows = []
    for (dataset, protocol), g in df.groupby(["dataset", "protocol"]):
        icon = g[g.method == "icon"]
        metric = control_probe(g)
        epochs = sorted(int(e) for e in icon.epoch.unique())
        trained = [e for e in epochs if e > 0]
        row = {"dataset": dataset, "protocol": protocol, "metric": metric or "",
               "epoch": trained[-1] if trained else np.nan, "n_seeds": 0}
        reason = ("no linear probe in the metrics" if metric is None else
                  "no untrained encoder (epoch 0)" if 0 not in epochs else
                  "no trained budget" if not trained else "")
        if not reason:
            a = icon[icon.epoch == trained[-1]].set_index("seed")[metric].dropna()
            b = icon[icon.epoch == 0].set_index("seed")[metric].dropna()
            seeds = sorted(set(a.index) & set(b.index))
            if len(seeds) < 2:
                reason = (f"{metric} measured for fewer than 2 seeds at both epoch 0 and "
                          f"epoch {trained[-1]} (seeds with it: epoch 0 {sorted(b.index)}, "
                          f"epoch {trained[-1]} {sorted(a.index)})")
            else:
                x = a.loc[seeds].astype(float).to_numpy()
                y = b.loc[seeds].astype(float).to_numpy()
                st = paired_stats(x, y)
                row.update(n_seeds=len(seeds), icon_last_mean=float(x.mean()),
                           untrained_mean=float(y.mean()),
                           **{k: st[k] for k in ("diff_mean", "ci_low", "ci_high", "p_value",
                                                 "sign_flip_p", "sign_flip_floor", "g_z",
                                                 "no_spread")},
                           mde80=mde_at(st["sd_diff"], len(seeds), alpha))
                helps = shown_above(x - y, 0.0, alpha / 2)
                hurts = shown_above(y - x, 0.0, alpha / 2)
                outcome = ("passes" if helps.ok else CONTROL_HURTS if hurts.ok
                           else CONTROL_NOT_SHOWN)
                row.update(status="passes" if helps.ok else "fails", outcome=outcome,
                           gated=not helps.ok, reason="", decided_by=helps.by,
                           one_sided_p=helps.p)
        if reason:
            row.update(status="not testable", outcome="not testable", gated=True,
                       reason=reason, decided_by="")
        rows.append(row)
    return pd.DataFrame(rows)


def control_probe(g: pd.DataFrame) -> str | None:
    """The probe of a (dataset, protocol)'s positive control and of the claims it gates
    (claim b, Table 3): ``linear_cv`` where the I-Con runs measured it at any budget, else
    ``linear_eval``; None without either. Chosen from which metric exists, never from its
    values."""
    icon = g[g.method == "icon"]
    return next((m for m in POSITIVE_CONTROL_METRICS if measured(icon, m)), None)


def gated_pairs(df: pd.DataFrame, control: pd.DataFrame | None = None) -> dict:
    """{(dataset, protocol): what its downstream verdicts read} for every pair whose
    positive control does not pass: :data:`GATED` where it fails, :data:`GATED_NO_CONTROL`
    where it could not be computed. ``in`` works on it as on a set."""
    control = positive_control(df) if control is None else control
    if control.empty:
        return {}
    return {(r.dataset, r.protocol): (GATED_NO_CONTROL if r.status == "not testable"
                                      else GATED)
            for r in control.itertuples() if r.gated}


def control_test_text(r) -> str:
    """The positive control's test in words: the interval (or, without spread, the exact
    sign-flip decision), the t and sign-flip p, n; power only where it did not decide."""
    flip = format_sign_flip(r.sign_flip_p, r.sign_flip_floor)
    if bool(getattr(r, "no_spread", False)):
        return (f"I-Con@{int(r.epoch)} − untrained = {r.diff_mean:+.4f} for every seed (no "
                f"spread, so no interval: decided by the exact sign-flip test, one-sided "
                f"p = {format_sign_flip(r.one_sided_p)} against level {ALPHA_LEVEL / 2:g}), "
                f"n = {int(r.n_seeds)} seeds")
    text = (f"I-Con@{int(r.epoch)} − untrained = {r.diff_mean:+.4f}, 95 % CI "
            f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}], paired t p = {_p(r.p_value)}, exact "
            f"sign-flip p = {flip}, n = {int(r.n_seeds)} seeds")
    if r.outcome == CONTROL_NOT_SHOWN:
        text += "; " + power_text(r.mde80, ALPHA_LEVEL)
    return text


def positive_control_sentences(control: pd.DataFrame) -> list[str]:
    """One sentence per (dataset, protocol): does training help here (the gate)? The
    datasets where it passes come first (a stable reordering: the README leads with them)."""
    out = []
    if not control.empty:
        passing = set(control.dataset[control.status == "passes"])
        control = control.assign(_lead=~control.dataset.isin(passing)).sort_values(
            "_lead", kind="stable")
    for r in control.itertuples():
        name = _label(r.dataset, r.protocol)
        if r.status == "not testable":
            out.append(f"{name}: positive control not testable ({r.reason}); a control that "
                       f"cannot be computed gates, so every downstream verdict here is "
                       f"{GATED_NO_CONTROL}.")
            continue
        probe = METRIC_LABELS.get(r.metric, r.metric)
        test = control_test_text(r)
        if r.status == "passes":
            out.append(f"{name}: positive control passes — training helps: I-Con after "
                       f"{int(r.epoch)} epoch(s) beats the untrained encoder on the {probe} "
                       f"({r.icon_last_mean:.4f} vs {r.untrained_mean:.4f}; {test}).")
            continue
        what = ("I-Con after {e} epoch(s) is significantly WORSE than the untrained encoder"
                if r.outcome == CONTROL_HURTS else
                "I-Con after {e} epoch(s) is not shown to beat the untrained encoder"
                ).format(e=int(r.epoch))
        out.append(f"{name}: positive control {r.outcome} — {what} on the {probe} "
                   f"({r.icon_last_mean:.4f} vs {r.untrained_mean:.4f}; {test}). Every "
                   f"downstream verdict here (linear eval, NMI, ARI, neighbour accuracies, "
                   f"claim b, Table 3) is {GATED}; the loss-side audit is not gated.")
    return out


def _p(p: float) -> str:
    return "n/a" if p is None or not np.isfinite(p) else f"{p:.2g}"


# ------------------------------------------------------- the own-loss gap, decomposed (§6.1)
#: the decomposition's Holm family key (one per protocol over datasets × trained budgets)
TRAINING_TERM = "training_term"


def gap_decomposition(df: pd.DataFrame) -> pd.DataFrame:
    """The own-loss gap on the common yardstick, split in two, per (dataset, protocol,
    budget), seeds paired. With L_obj(θ) the yardstick value of objective ``obj`` on the
    encoder θ (same held-out images and views for all four cells of the 2 × 2), the
    own-loss gap L_RKDO(θ_RKDO) − L_I-Con(θ_I-Con) splits in two orders:

    order A (function first):  function term L_RKDO(θ_I-Con) − L_I-Con(θ_I-Con) (the two
      functions on the I-Con-trained encoder) + training term L_RKDO(θ_RKDO) − L_RKDO(θ_I-Con)
      (what training with RKDO buys, scored by RKDO's objective);
    order B (training first):  training term L_I-Con(θ_RKDO) − L_I-Con(θ_I-Con) (scored by
      I-Con's objective) + function term L_RKDO(θ_RKDO) − L_I-Con(θ_RKDO) (the two functions
      on the RKDO-trained encoder).

    The two orders can disagree (an interaction); the headline terms ``function_*`` /
    ``training_*`` are their average, the Shapley decomposition (each term's mean
    contribution over both orders; it does not depend on an order), and both orders are
    reported beside it (``function_a_*``, ``training_a_*``, ``function_b_*``,
    ``training_b_*``). Negative = RKDO lower.

    Columns: dataset, protocol, epoch, n_seeds, steps_max, icon_own_mean (L_I-Con(θ_I-Con)),
    own_gap_mean, function_mean, training_mean and the per-order means (own = function +
    training seed by seed, in each order and for the average), ``*_pct`` (100 × −term /
    icon_own_mean, the paper's improvement convention; function_pct + training_pct =
    own_gap_pct), function_share_pct (100 function / own); the function term's 95 %
    t-interval ``function_ci_low``/``_high`` — a description, not a test: it is the
    difference between two functions on the same encoder, nearly deterministic, so it gets
    no p-value or effect size; the training term's test (Shapley term): 95 % t-interval
    ``training_ci_*`` (NaN without spread), ``training_p`` (paired t),
    ``training_sign_flip_p``, ``training_g_z``, ``training_p_holm`` (family: protocol ×
    training term over datasets × trained budgets), ``training_mde80`` (Holm worst-case
    level), ``training_no_spread``, ``training_verdict`` (:func:`training_term_verdict`:
    lower / higher / not shown, at the 95 % interval's level); ``gap0_pct``: the
    training-loss improvement of the untrained encoders (epoch 0) — the step-0 gap of
    Table 1. Empty without the yardstick."""
    if not has_yardstick(df):
        return pd.DataFrame()
    rows = []
    cols = ("yardstick_rkdo", "yardstick_icon")
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        r = g[g.method == "rkdo"].set_index("seed")
        i = g[g.method == "icon"].set_index("seed")
        seeds = sorted(set(r.index) & set(i.index))
        seeds = [s for s in seeds if all(np.isfinite(float(x.loc[s, c]))
                                         for x in (r, i) for c in cols)]
        if not seeds:
            continue
        rr = r.loc[seeds, "yardstick_rkdo"].astype(float).to_numpy()
        ri = i.loc[seeds, "yardstick_rkdo"].astype(float).to_numpy()
        ii = i.loc[seeds, "yardstick_icon"].astype(float).to_numpy()
        ir = r.loc[seeds, "yardstick_icon"].astype(float).to_numpy()
        own = rr - ii
        terms = {"function_a": ri - ii, "training_a": rr - ri,
                 "training_b": ir - ii, "function_b": rr - ir}
        function = (terms["function_a"] + terms["function_b"]) / 2
        training = (terms["training_a"] + terms["training_b"]) / 2
        ts = paired_stats(training, np.zeros_like(training))
        half = t_halfwidth(function)
        base = float(ii.mean())
        _, s_max = _steps(g)
        row = {
            "dataset": dataset, "protocol": protocol, "epoch": int(epoch),
            "n_seeds": len(seeds), "steps_max": s_max, "icon_own_mean": base,
            "own_gap_mean": float(own.mean()), "function_mean": float(function.mean()),
            "training_mean": float(training.mean()),
            "function_ci_low": float(function.mean()) - half,
            "function_ci_high": float(function.mean()) + half,
            "training_ci_low": ts["ci_low"], "training_ci_high": ts["ci_high"],
            "own_gap_pct": -100.0 * float(own.mean()) / base,
            "function_pct": -100.0 * float(function.mean()) / base,
            "training_pct": -100.0 * float(training.mean()) / base,
            "function_share_pct": (100.0 * float(function.mean()) / float(own.mean())
                                   if own.mean() != 0 else np.nan),
            "p_value": ts["p_value"], "sign_flip_p": ts["sign_flip_p"],
            "sign_flip_floor": ts["sign_flip_floor"], "g_z": ts["g_z"],
            "sd_diff": ts["sd_diff"], "training_no_spread": ts["no_spread"],
            "training_verdict": training_term_verdict(training),
            "metric": TRAINING_TERM, "rkdo_epoch": int(epoch), "icon_epoch": int(epoch)}
        for k, v in terms.items():
            row[f"{k}_mean"] = float(v.mean())
            row[f"{k}_pct"] = -100.0 * float(v.mean()) / base
        rows.append(row)
    out = with_holm(pd.DataFrame(rows))
    if out.empty:
        return out
    out = out.rename(columns={"p_value": "training_p", "sign_flip_p": "training_sign_flip_p",
                              "sign_flip_floor": "training_sign_flip_floor",
                              "g_z": "training_g_z", "p_holm": "training_p_holm",
                              "mde80": "training_mde80", "mde_alpha": "training_mde_alpha",
                              "sd_diff": "training_sd"})
    gap0 = {}
    if measured(df, "train_loss"):
        for (dataset, protocol), _ in df.groupby(["dataset", "protocol"]):
            seeds, r0, i0 = paired_values(df, dataset, protocol, "train_loss", 0, 0,
                                          finite_only=True)
            if seeds:
                gap0[(dataset, protocol)] = improvement_pct(r0.mean(), i0.mean(), True)
    out["gap0_pct"] = [gap0.get((d, p), np.nan) for d, p in zip(out.dataset, out.protocol)]
    return out.drop(columns=["metric", "rkdo_epoch", "icon_epoch", "holm_m"]).reset_index(
        drop=True)


def training_term_verdict(training) -> str:
    """The Shapley training term (per-seed values) judged at one level everywhere (the
    decomposition sentence and the checklist): ``lower`` (RKDO's training lowers the loss:
    the 95 % interval lies below 0 — without spread, the exact one-sided sign-flip test at
    0.025, :func:`.inference.shown_above`), ``higher`` (above 0) or ``not shown``."""
    t = np.asarray(training, dtype=float)
    if len(t) < 2:
        return "not shown"
    if shown_above(-t, 0.0, ALPHA_LEVEL / 2).ok:
        return "lower"
    if shown_above(t, 0.0, ALPHA_LEVEL / 2).ok:
        return "higher"
    return "not shown"


def decomposition_orders_text(r) -> str:
    """Both orders of one decomposition row, in points of the I-Con loss."""
    return (f"order A (function term first, on the I-Con-trained encoder): function "
            f"{r.function_a_pct:+.2f}, training {r.training_a_pct:+.2f} points; order B "
            f"(training term first, scored by I-Con's objective): training "
            f"{r.training_b_pct:+.2f}, function {r.function_b_pct:+.2f} points")


def epoch0_gap_sentences(df: pd.DataFrame) -> list[str]:
    """One computed sentence per (dataset, protocol) at the last trained budget: the step-0
    gap of the training loss, and the own-loss gap on the common yardstick split into the
    function term and the training term (:func:`gap_decomposition`, the Shapley average of
    both orders, each order beside it); only the training term is tested, judged by its
    95 % interval (:func:`training_term_verdict`, the checklist's rule). Says so where
    epoch 0, a trained budget or the yardstick is missing."""
    dec = gap_decomposition(df)
    out = []
    for (dataset, protocol), g in df.groupby(["dataset", "protocol"]):
        name = _label(dataset, protocol)
        epochs = sorted(int(e) for e in g.epoch.unique())
        trained = [e for e in epochs if e > 0]
        gap0 = np.nan
        if 0 in epochs and measured(g, "train_loss"):
            seeds, r0, i0 = paired_values(df, dataset, protocol, "train_loss", 0, 0,
                                          finite_only=True)
            gap0 = improvement_pct(r0.mean(), i0.mean(), True) if seeds else np.nan
        step0 = (f"the untrained encoder (epoch 0) already shows a training-loss gap of "
                 f"{gap0:.2f} %" if np.isfinite(gap0) else
                 "no training loss of the untrained encoder (epoch 0) in the results")
        d = dec[(dec.dataset == dataset) & (dec.protocol == protocol)] if not dec.empty \
            else dec
        if not trained or d.empty or d[d.epoch == trained[-1]].empty:
            why = ("no trained budget" if not trained else
                   "the common yardstick (yardstick_icon / yardstick_rkdo) was not measured")
            out.append(f"{name}: {step0}; the own-loss gap cannot be decomposed ({why}; "
                       f"budgets present: {epochs}).")
            continue
        r = d[d.epoch == trained[-1]].iloc[0]
        steps = f" ({int(r.steps_max)} optimizer steps)" if np.isfinite(r.steps_max) else ""
        verdict = r.training_verdict
        carrier = "training term" if abs(r.training_pct) > abs(r.function_pct) else \
            "function term"
        if bool(r.training_no_spread):
            test = (f"no spread, so no interval; exact sign-flip p = "
                    f"{format_sign_flip(r.training_sign_flip_p, r.training_sign_flip_floor)}"
                    f", n = {int(r.n_seeds)} seeds")
        else:
            test = (f"95 % CI [{r.training_ci_low:+.4f}, {r.training_ci_high:+.4f}], paired "
                    f"t p = {_p(r.training_p)}, sign-flip p = "
                    f"{format_sign_flip(r.training_sign_flip_p, r.training_sign_flip_floor)}"
                    f", n = {int(r.n_seeds)} seeds")
        judged = {"lower": "so training with RKDO lowers RKDO's loss beyond the "
                           "I-Con-trained encoder (interval below 0, level 0.05)",
                  "higher": "so the RKDO-trained encoder scores worse than the I-Con-trained "
                            "one (interval above 0, level 0.05)",
                  "not shown": "so the training term is not shown to differ from 0 (interval "
                               "spans 0, level 0.05; "
                               + power_text(mde_at(r.training_sd, int(r.n_seeds),
                                                   ALPHA_LEVEL), ALPHA_LEVEL) + ")"}[verdict]
        out.append(
            f"{name}: {step0}. After {int(r.epoch)} epoch(s){steps}, on the common yardstick "
            f"RKDO's own loss is {r.own_gap_pct:.2f} % below I-Con's; averaged over both "
            f"orders of the decomposition (Shapley), {r.function_pct:.2f} points are the "
            f"function term (the RKDO objective is lower than the I-Con objective on the same "
            f"encoder; 95 % interval of the loss difference [{r.function_ci_low:+.4f}, "
            f"{r.function_ci_high:+.4f}], a description of two functions, not a test) and "
            f"{r.training_pct:.2f} points the training term (what training with RKDO changes, "
            f"{r.training_mean:+.4f}: {test}; {judged}; Holm p over the protocol's trained "
            f"budgets {_p(r.training_p_holm)}, for the decomposition table's family). "
            f"In {decomposition_orders_text(r)}. The {carrier} carries the gap.")
    return out


# ---------------------------------------------------------------------------- the yardstick
def yardstick_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The common yardstick as a "trained with × scored with" comparison: one row per
    (dataset, protocol, epoch, scored_with), seeds paired. ``rkdo_*`` = the encoder trained
    with RKDO, ``icon_*`` = trained with I-Con, both scored with the yardstick
    ``scored_with`` (``icon`` | ``rkdo`` — the two objectives — and, where measured, the
    neutral yardsticks :data:`NEUTRAL_YARDSTICKS`) on the same held-out images and views.

    Columns as :func:`paired_comparison` (diff = RKDO-trained − I-Con-trained) plus
    ``scored_with``, ``yardstick`` (the metrics key), ``lower_is_better``; ``p_holm`` is
    Holm within each (protocol, yardstick) family over datasets × trained budgets
    (:func:`holm_family`; epoch 0 — two identical untrained encoders — not counted). Empty
    when the metrics carry no yardstick."""
    if not any(measured(df, k) for k in ALL_YARDSTICKS):
        return pd.DataFrame()
    return _yardstick_rows(df)


def _yardstick_rows(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    keys = [k for k in ALL_YARDSTICKS if measured(df, k)]
    for (dataset, protocol, epoch), g in df.groupby(["dataset", "protocol", "epoch"]):
        for key in keys:
            seeds, r, i = paired_values(df, dataset, protocol, key, epoch, epoch,
                                           finite_only=True)
            if not seeds:
                continue
            steps_min, steps_max = _steps(g)
            lower = ALL_YARDSTICKS[key][1]
            rows.append({"dataset": dataset, "protocol": protocol, "epoch": int(epoch),
                         "scored_with": yardstick_name(key), "yardstick": key,
                         "lower_is_better": lower, "metric": key,
                         "n_seeds": len(seeds), "seeds": ",".join(map(str, seeds)),
                         "rkdo_mean": float(r.mean()), "rkdo_std": _std(r),
                         "icon_mean": float(i.mean()), "icon_std": _std(i),
                         "improvement_pct": improvement_pct(r.mean(), i.mean(), lower),
                         **paired_stats(r, i), "steps_min": steps_min,
                         "steps_max": steps_max})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out = with_holm(out, rkdo_col="epoch", icon_col="epoch")
    order = {yardstick_name(k): n for n, k in enumerate(ALL_YARDSTICKS)}
    return (out.assign(_o=out.scored_with.map(order))
            .sort_values(["protocol", "dataset", "epoch", "_o"]).drop(columns="_o")
            .reset_index(drop=True))


def _verdict_word(diff: float, p: float, lower_is_better: bool = True) -> str:
    """'lower' / 'higher' (RKDO-trained vs I-Con-trained, significant at ALPHA_LEVEL) or
    'not different'; for a higher-is-better yardstick 'lower' still means RKDO better."""
    if np.isnan(p) or p >= ALPHA_LEVEL:
        return "not different"
    better = diff < 0 if lower_is_better else diff > 0
    return "lower" if better else "higher"


def yardstick_verdicts(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, protocol), at the last trained budget: does RKDO's lower training loss
    survive the common yardstick? A conjunction ("better on both objectives"), so tested by
    intersection–union: ``survives`` is True when the RKDO-trained encoder scores lower than
    the I-Con-trained one on BOTH fixed objectives, each with its own paired p below
    :data:`ALPHA_LEVEL` (no multiplicity adjustment: each part at α). ``outcome``:
    ``survives`` / ``reversed`` (I-Con-trained lower on both) / ``mixed`` / ``no difference``
    / ``not measured``. ``separating``: the yardsticks (objectives and neutral ones, where
    measured) that separate the encoders at that budget — a disjunction over the m
    yardsticks, so each at the Bonferroni level α/m — with the better side;
    ``n_yardsticks`` = m. ``own_gap_pct`` is Table 1's improvement on each method's own
    loss at that budget."""
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
        objectives = sub[sub.yardstick.isin(list(YARDSTICK))] if not sub.empty else sub
        if ys.empty or objectives.empty or len(objectives) < len(YARDSTICK):
            row.update(outcome="not measured", survives=False, separating="",
                       n_yardsticks=0)
            rows.append(row)
            continue
        words = {}
        for r in objectives.itertuples():
            words[r.scored_with] = _verdict_word(r.diff_mean, r.p_value)
        for r in sub.itertuples():
            for k in ("rkdo_mean", "icon_mean", "diff_mean", "ci_low", "ci_high", "p_value",
                      "sign_flip_p", "p_holm", "n_seeds", "mde80"):
                row[f"{r.scored_with}_{k}"] = getattr(r, k)
            row[f"{r.scored_with}_mde_iu"] = mde_at(r.sd_diff, r.n_seeds, ALPHA_LEVEL)
        m = len(sub)
        sep = []
        for r in sub.itertuples():
            if np.isfinite(r.p_value) and r.p_value < ALPHA_LEVEL / m:
                better = (r.diff_mean < 0) if r.lower_is_better else (r.diff_mean > 0)
                label = ALL_YARDSTICKS[r.yardstick][0]
                sep.append(f"{label} ({'RKDO' if better else 'I-Con'}-trained better)")
        vals = set(words.values())
        outcome = ("survives" if vals == {"lower"} else "reversed" if vals == {"higher"}
                   else "no difference" if vals == {"not different"} else "mixed")
        row.update(outcome=outcome, survives=outcome == "survives",
                   separating="; ".join(sep), n_yardsticks=m,
                   **{f"{k}_word": v for k, v in words.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def yardstick_sentences(df: pd.DataFrame) -> list[str]:
    """One generated sentence per (dataset, protocol): does RKDO's lower loss survive the
    common yardstick, and which yardsticks separate the encoders (see
    :func:`yardstick_verdicts` for the rules)?"""
    out = []
    for v in yardstick_verdicts(df).itertuples():
        name = _label(v.dataset, v.protocol)
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
                f", p = {_p(getattr(v, f'{k}_p_value'))}, sign-flip p = "
                f"{format_sign_flip(getattr(v, f'{k}_sign_flip_p'))})")
        powers = "; ".join(
            f"{label}: " + power_text(getattr(v, f"{yardstick_name(key)}_mde_iu"), ALPHA_LEVEL)
            for key, label in YARDSTICK.items())
        verdict = {
            "survives": "RKDO's lower loss survives the common yardstick: the RKDO-trained "
                        "encoder is better on both objectives",
            "reversed": "RKDO's lower loss does not survive the common yardstick: the "
                        "I-Con-trained encoder is better on both objectives",
            "no difference": "RKDO's lower loss does not survive the common yardstick: "
                             f"neither objective separates the two encoders ({powers})",
            "mixed": "RKDO's lower loss does not survive the common yardstick as a whole: "
                     "the two objectives disagree",
        }[v.outcome]
        sep = (f" Yardsticks that separate the encoders (Bonferroni over the "
               f"{int(v.n_yardsticks)} measured, each at {ALPHA_LEVEL / v.n_yardsticks:.3g}): "
               + (v.separating if v.separating else "none") + ".")
        rule = (f"paired t-tests over {int(v.icon_n_seeds)} seeds; 'better on both objectives' "
                f"is a conjunction: intersection–union, each objective at level {ALPHA_LEVEL}, "
                "no multiplicity adjustment")
        out.append(f"{name}, after {int(v.epoch)} epoch(s): "
                   + "; ".join(filter(None, [own, *parts])) + f". {verdict} ({rule})." + sep)
    return out


def protocol_conclusions(comp: pd.DataFrame, metrics: tuple[str, ...] = DOWNSTREAM_METRICS,
                         gated: set | frozenset = frozenset()) -> pd.DataFrame:
    """Does the conclusion of a paired comparison change between protocols? One row per
    (dataset, metric, epoch) present under at least two protocols, with each protocol's
    conclusion — ``RKDO better`` / ``I-Con better`` (p_Holm < ALPHA_LEVEL) or
    ``no difference`` — its means, p_Holm, steps and ``<protocol>_mde80`` (the minimal
    detectable difference at 80 % power at the Holm level applied), and ``same`` (all
    protocols agree). Where (dataset, protocol) is in ``gated`` (the positive control fails,
    :func:`gated_pairs`) the conclusion is :data:`GATED`. Epoch 0 (identical untrained
    encoders, no test) is kept as the baseline row."""
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
            if (dataset, p) in gated:
                better = gated[(dataset, p)] if isinstance(gated, dict) else GATED
            elif not np.isnan(r.p_holm) and r.p_holm < ALPHA_LEVEL:
                higher_better = not ALL_METRICS[metric]
                better = ("RKDO better" if (r.diff_mean > 0) == higher_better
                          else "I-Con better")
            words.append(better)
            row.update({f"{p}_conclusion": better, f"{p}_rkdo_mean": r.rkdo_mean,
                        f"{p}_icon_mean": r.icon_mean, f"{p}_p_holm": r.p_holm,
                        f"{p}_steps": r.steps_max,
                        f"{p}_mde80": getattr(r, "mde80", np.nan),
                        f"{p}_mde_alpha": getattr(r, "mde_alpha", np.nan)})
        row["same"] = len(set(words)) == 1
        rows.append(row)
    return pd.DataFrame(rows)
