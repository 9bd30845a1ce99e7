"""The claims checklist: each claim of the paper beside the evidence of this run and a verdict
computed from the data by a stated rule — never typed by hand.

Rows (docs/method.md §1 a–d and the three rows of the paper's Table 3), per protocol where the
claim depends on the grid:

- (a) "~30 % lower loss than I-Con at every training length", tested literally, plus two
  audit rows: (a′) the gap is produced by training (not already there at step 0) and (a″)
  RKDO's lower loss survives the common yardstick (both encoders scored on the same fixed
  objectives);
- (b) "60–80 % fewer epochs to comparable results", with the I-Con@early control;
- (c) the linear-rate theorem, from the theory notebook's ``checks.json``, and (c′) the
  audit of what the decay shows (the frozen model, docs/method.md §6.2);
- (d) "< 0.03 % FLOP overhead of depth 3 vs 1", from ``flops.json``, per FLOP convention;
- Table 3's rows, on their own datasets when the grid has them.

Every verdict is one of :data:`VERDICTS`; every row states its ``rule``. "does not hold"
means the data of this run do not show the claim under the rule (with 5 seeds a claim can
fail for lack of power — the evidence gives the interval that decided it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import dataset_label, dataset_order
from .fmt import finish_table, format_p, table_markdown
from .reported import load_reported
from .stats import (
    ALPHA_LEVEL,
    METHOD_LABELS,
    YARDSTICK,
    gap_beyond_step0,
    measured,
    paired_comparison,
    paired_stats,
    paired_values,
    yardstick_verdicts,
)

HOLDS = "holds"
FAILS = "does not hold"
UNTESTABLE = "not testable with this grid"
VERDICTS = (HOLDS, FAILS, UNTESTABLE)
#: significance level of every test in the checklist (Holm-corrected where stated)
ALPHA = ALPHA_LEVEL  # the level of the generated sentences too (one source)
#: "~30 %": the loss improvement must lie in this band (percentage points) at every budget
LOSS_BAND = (20.0, 40.0)
#: step-0 share of the final loss gap above which the gap is not "produced by training"
STEP0_SHARE_MAX = 0.5
#: comparability margin δ, relative to the reference mean: "comparable" = the 95 % CI of
#: the paired difference lies above −δ (non-inferiority); "similar" = inside (−δ, +δ)
COMPARABLE_MARGIN = 0.05
#: tolerance (percentage points) on the paper's "x % fewer resources" when re-measured
SAVING_TOLERANCE = 1.0
YARDSTICKS = YARDSTICK  # metrics-file key -> label, as the yardstick tables use
#: theory checks claim (c) rests on: the theorem under A1 + A2 and its two lemmas
THEORY_CHECKS = ("Lemma 1", "Lemma 2 [unrestricted]", "Theorem 3 [unrestricted]")
FROZEN_CHECK = "Theorem 3 [frozen]"
ANY_PROTOCOL = "any"
COLUMNS = ["claim", "source", "protocol", "datasets", "evidence", "verdict", "rule"]
_REQUIRED = ("dataset", "protocol", "method", "seed", "epoch")


# ---------------------------------------------------------------------------- helpers


def _g(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def _ci(st: dict, digits: int = 3) -> str:
    if not np.isfinite(st["ci_low"]):
        return "no CI (fewer than 2 seeds)"
    return f"95 % CI [{st['ci_low']:+.{digits}g}, {st['ci_high']:+.{digits}g}]"


def _test(st: dict, n: int) -> str:
    return f"{_ci(st)}, paired t-test p = {format_p(st['p_value'])}, n = {n} seeds"


def _row(claim, source, protocol, datasets, evidence, verdict, rule) -> dict:
    if verdict not in VERDICTS:  # a programming error, never data
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return {"claim": claim, "source": source, "protocol": protocol,
            "datasets": ", ".join(dataset_label(d) for d in datasets), "evidence": evidence,
            "verdict": verdict, "rule": rule}


def _all(verdicts: Sequence[str]) -> str:
    """Claim over several datasets/budgets: holds if every part holds; not testable if no
    part was testable; otherwise does not hold."""
    tested = [v for v in verdicts if v != UNTESTABLE]
    if not tested:
        return UNTESTABLE
    return HOLDS if all(v == HOLDS for v in verdicts) else FAILS


def _steps(df: pd.DataFrame, dataset: str, protocol: str, method: str, epoch: int,
           column: str = "steps") -> float:
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
           & (df.epoch == epoch)]
    if column not in g or g[column].isna().all():
        return np.nan
    return float(g[column].astype(float).mean())


def _saved(df, dataset, protocol, re_, ie) -> tuple[float, str]:
    """Compute saved by RKDO@re_ against I-Con@ie, in %, from measured train FLOPs where the
    metrics hold them, else from optimizer steps; and which of the two it is."""
    for column, what in (("train_flops", "train FLOPs"), ("steps", "optimizer steps")):
        r = _steps(df, dataset, protocol, "rkdo", re_, column)
        i = _steps(df, dataset, protocol, "icon", ie, column)
        if np.isfinite(r) and np.isfinite(i) and i > 0:
            return 100.0 * (1.0 - r / i), what
    return np.nan, "not measured"


def _load_json(obj: Any) -> Any:
    if obj is None:
        return None
    if isinstance(obj, (str, Path)):
        path = Path(obj)
        if not path.is_file():
            return None
        return json.loads(path.read_text())
    return obj


def _theory_dicts(theory_checks: Any) -> list[dict] | None:
    """checks.json's list, from a path, a list of dicts or a list of theory.Check."""
    raw = _load_json(theory_checks)
    if raw is None:
        return None
    out = []
    for c in raw:
        if isinstance(c, dict):
            name = c.get("name") or c.get("statement")
            out.append({"name": name, "holds": bool(c["holds"]), "detail": c.get("detail", "")})
        else:  # rkdo_core.theory.Check
            out.append({"name": c.statement, "holds": bool(c.holds), "detail": c.detail})
    return out


def _table3_rows(reported) -> list[dict]:
    rows = []
    for r in reported.table3.to_dict("records"):
        ratio = r.get("accuracy_ratio_pct")
        rows.append({**r, "accuracy_ratio_pct": None if ratio is None or pd.isna(ratio)
                     else float(ratio)})
    return rows


def _table3_kind(row: dict) -> str:
    """How a Table 3 row's wording is tested: a stated accuracy ratio, "superior", or
    "similar"/"comparable" — derived from the paper's row, not typed per dataset."""
    if row.get("accuracy_ratio_pct") is not None:
        return "ratio"
    return "superior" if "superior" in str(row.get("claim", "")).lower() else "similar"


# ---------------------------------------------------------------------------- (a)


def _claim_a(df, protocol, datasets) -> dict:
    claim = "~30 % lower loss than I-Con at every training length"
    rule = (f"holds if, on every dataset of the grid and every trained budget (epoch > 0), "
            f"RKDO's mean training loss is below I-Con's with Holm-corrected paired p < {ALPHA} "
            f"(Holm over the protocol's dataset × budget comparisons) and the improvement "
            f"100 (I-Con − RKDO)/I-Con lies in [{LOSS_BAND[0]:g}, {LOSS_BAND[1]:g}] %; "
            f"not testable without a trained budget or with fewer than 2 seeds")
    comp = paired_comparison(df, metrics=("train_loss",)) if "train_loss" in df else None
    if comp is None or comp.empty:
        return _row(claim, "docs/method.md §1 a", protocol, datasets, "no training loss in the "
                    "metrics", UNTESTABLE, rule)
    comp = comp[comp.epoch > 0]
    parts, verdicts = [], []
    for d in datasets:
        c = comp[comp.dataset == d]
        if c.empty or c.p_holm.isna().all():
            verdicts.append(UNTESTABLE)
            parts.append(f"{dataset_label(d)}: no trained budget with 2+ seeds")
            continue
        ok = ((c.diff_mean < 0) & (c.p_holm < ALPHA) & c.improvement_pct.between(*LOSS_BAND))
        verdicts.append(HOLDS if ok.all() else FAILS)
        parts.append(
            f"{dataset_label(d)}: improvement {c.improvement_pct.min():.1f}–"
            f"{c.improvement_pct.max():.1f} % over budgets {sorted(c.epoch.astype(int))} "
            f"(n = {int(c.n_seeds.min())} seeds), Holm p ≤ {format_p(c.p_holm.max())}; "
            f"{int(ok.sum())} of {len(c)} budgets meet the rule")
    return _row(claim, "docs/method.md §1 a", protocol, datasets, "; ".join(parts) + ".",
                _all(verdicts), rule)


def _claim_a_step0(df, protocol, datasets) -> dict:
    claim = "(audit) the loss gap is produced by training, not present at step 0"
    rule = (f"per dataset, at the last trained budget (rkdo_core.stats.gap_beyond_step0): the "
            f"per-seed improvement % minus that of the untrained encoder (epoch 0), paired "
            f"over seeds, has its 95 % CI above 0, and the step-0 gap is less than "
            f"{STEP0_SHARE_MAX:.0%} of the final gap; holds if so on every dataset; not "
            f"testable without epoch 0 or with fewer than 2 seeds")
    gaps = gap_beyond_step0(df) if "train_loss" in df else pd.DataFrame()
    parts, verdicts = [], []
    for d in datasets:
        g = gaps[gaps.dataset == d] if not gaps.empty else gaps
        if g.empty or g[g.epoch == g.epoch.max()].n_seeds.iloc[0] < 2:
            epochs = sorted(int(e) for e in df[df.dataset == d].epoch.unique())
            verdicts.append(UNTESTABLE)
            parts.append(f"{dataset_label(d)}: epoch 0, a trained budget or 2 paired seeds "
                         f"missing (budgets {epochs})")
            continue
        r = g[g.epoch == g.epoch.max()].iloc[0]
        share = r.share_at_step0_pct / 100.0 if r.improvement_pct > 0 else np.nan
        ok = (r.improvement_pct > 0 and np.isfinite(r.beyond_ci_low) and r.beyond_ci_low > 0
              and share < STEP0_SHARE_MAX)
        verdicts.append(HOLDS if ok else FAILS)
        steps = _steps(df, d, protocol, "rkdo", int(r.epoch))
        share_txt = (f"{100 * share:.0f} % of the final gap exists at step 0"
                     if np.isfinite(share) else "no final gap")
        st = {"ci_low": r.beyond_ci_low, "ci_high": r.beyond_ci_high, "p_value": r.beyond_p}
        parts.append(
            f"{dataset_label(d)}: gap at step 0 {r.gap0_pct:.2f} %, at {int(r.epoch)} epochs"
            f"{f' ({int(steps)} steps)' if np.isfinite(steps) else ''} "
            f"{r.improvement_pct:.2f} % — {share_txt}; beyond step 0 {r.beyond_mean:+.2f} "
            f"points ({_test(st, int(r.n_seeds))})")
    return _row(claim, "docs/method.md §1 a (audit, §6.1)", protocol, datasets,
                "; ".join(parts) + ".", _all(verdicts), rule)


def _claim_a_yardstick(df, protocol, datasets) -> dict:
    claim = "(audit) RKDO's lower loss survives the common yardstick"
    rule = (f"per dataset, at the last trained budget (rkdo_core.stats.yardstick_verdicts): "
            f"the RKDO-trained encoder scores lower than the I-Con-trained one on both fixed "
            f"objectives ({', '.join(YARDSTICKS.values())}; held-out images, fixed seeded "
            f"views), each with a paired p, Holm-adjusted over the protocol's trained budgets, "
            f"below {ALPHA}; holds if so on every dataset; not testable where the yardstick "
            "was not measured")
    missing = [c for c in YARDSTICKS if not measured(df, c)]
    if missing:
        return _row(claim, "docs/method.md §1 a (audit, §6.1)", protocol, datasets,
                    f"not measured: the metrics files hold no {', '.join(missing)} (results "
                    "from before the yardstick was added to the evaluation).", UNTESTABLE, rule)
    ver = yardstick_verdicts(df)
    verdicts, parts = [], []
    for d in datasets:
        v = ver[ver.dataset == d]
        if v.empty or v.outcome.iloc[0] == "not measured":
            verdicts.append(UNTESTABLE)
            parts.append(f"{dataset_label(d)}: not measured at the last trained budget")
            continue
        v = v.iloc[0]
        verdicts.append(HOLDS if v.survives else FAILS)
        bits = []
        for key, label in YARDSTICKS.items():
            k = key.removeprefix("yardstick_")
            st = {"ci_low": v[f"{k}_ci_low"], "ci_high": v[f"{k}_ci_high"]}
            bits.append(f"{label}: RKDO-trained {v[f'{k}_rkdo_mean']:.4g} vs I-Con-trained "
                        f"{v[f'{k}_icon_mean']:.4g}, difference {v[f'{k}_diff_mean']:+.3g} "
                        f"({_ci(st)}, Holm p = {format_p(v[f'{k}_p_holm'])}, "
                        f"n = {int(v[f'{k}_n_seeds'])})")
        own = (f"; on its own objective RKDO is {v.own_gap_pct:.2f} % below"
               if np.isfinite(v.own_gap_pct) else "")
        parts.append(f"{dataset_label(d)} at {int(v.epoch)} epochs: {v.outcome}{own}; "
                     + "; ".join(bits))
    return _row(claim, "docs/method.md §1 a (audit, §6.1)", protocol, datasets,
                "; ".join(parts) + ".", _all(verdicts), rule)


# ---------------------------------------------------------------------------- (b), Table 3


def _pair_test(df, dataset, protocol, re_, ie, metric="linear_eval", scale: float = 1.0):
    """RKDO@re_ − scale · I-Con@ie, seeds paired; None without 2 common seeds."""
    seeds, r, i = paired_values(df, dataset, protocol, metric, re_, ie)
    if len(seeds) < 2:
        return None
    return {"seeds": seeds, "rkdo": float(r.mean()), "icon": float(i.mean()),
            **paired_stats(r, scale * i)}


def _icon_control(df, dataset, protocol, early, late, metric="linear_eval"):
    """I-Con@early − I-Con@late, seeds paired (same seed, two budgets)."""
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == "icon")]
    a = g[g.epoch == early].set_index("seed")[metric]
    b = g[g.epoch == late].set_index("seed")[metric]
    seeds = sorted(set(a.index) & set(b.index))
    if len(seeds) < 2:
        return None
    x, y = a.loc[seeds].astype(float).to_numpy(), b.loc[seeds].astype(float).to_numpy()
    return {"seeds": seeds, "early": float(x.mean()), **paired_stats(x, y)}


def _has(df, dataset, protocol, method, epoch) -> bool:
    return bool(((df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
                 & (df.epoch == epoch)).any())


def _claim_b(df, protocol, datasets, pairs) -> dict:
    claim = "60–80 % fewer epochs to results comparable to longer I-Con training"
    rule = (f"per (early, late) pair {list(pairs)} on linear eval, seeds paired: RKDO@early is "
            f"comparable to I-Con@late when the 95 % CI of RKDO − I-Con lies above −δ, "
            f"δ = {COMPARABLE_MARGIN:.0%} of I-Con@late's mean (non-inferiority; 'not "
            f"significantly different' is not enough); control: if I-Con@early is comparable "
            f"to I-Con@late by the same rule, the saving is not specific to RKDO and the pair "
            f"does not support the claim. A dataset supports the claim if some pair does; "
            f"holds if every dataset of the grid does; not testable without a pair")
    verdicts, parts = [], []
    for d in datasets:
        tested, bits = [], []
        for re_, ie in pairs:
            if not (_has(df, d, protocol, "rkdo", re_) and _has(df, d, protocol, "icon", ie)
                    and _has(df, d, protocol, "icon", re_)):
                continue
            t = _pair_test(df, d, protocol, re_, ie)
            c = _icon_control(df, d, protocol, re_, ie)
            if t is None or c is None:
                continue
            delta = COMPARABLE_MARGIN * abs(t["icon"])
            comparable = np.isfinite(t["ci_low"]) and t["ci_low"] > -delta
            control = np.isfinite(c["ci_low"]) and c["ci_low"] > -delta
            saved, what = _saved(df, d, protocol, re_, ie)
            tested.append(HOLDS if comparable and not control else FAILS)
            bits.append(
                f"RKDO@{re_} {t['rkdo']:.4f} vs I-Con@{ie} {t['icon']:.4f} ({saved:.0f} % "
                f"fewer {what}): RKDO − I-Con {t['diff_mean']:+.4f} ({_test(t, len(t['seeds']))}"
                f"), δ = {delta:.4f} → {'comparable' if comparable else 'not shown comparable'};"
                f" control I-Con@{re_} {c['early']:.4f} vs I-Con@{ie}: difference "
                f"{c['diff_mean']:+.4f} ({_ci(c)}) → "
                f"{'also comparable' if control else 'not comparable'}")
        if not tested:
            verdicts.append(UNTESTABLE)
            parts.append(f"{dataset_label(d)}: no (early, late) pair with both budgets and "
                         "2+ seeds")
        else:
            verdicts.append(HOLDS if HOLDS in tested else FAILS)
            parts.append(f"{dataset_label(d)}: " + "; ".join(bits))
    return _row(claim, "docs/method.md §1 b", protocol, datasets, "; ".join(parts) + ".",
                _all(verdicts), rule)


def _table3_rule(kind: str, row: dict) -> str:
    base = ("linear eval, seeds paired, RKDO@{r} vs I-Con@{i}: ").format(
        r=row["rkdo_epochs"], i=row["icon_epochs"])
    tail = (f"; and the compute saved (from measured train FLOPs, else optimizer steps) is at "
            f"least the paper's {row['fewer_epochs_pct']:g} % minus {SAVING_TOLERANCE:g} point; "
            "not testable when the dataset or a budget is not in the grid")
    if kind == "ratio":
        return base + (f"holds if the 95 % CI of RKDO − {row['accuracy_ratio_pct']:g} % × I-Con "
                       f"lies above −δ, δ = {COMPARABLE_MARGIN:.0%} of I-Con's mean") + tail
    if kind == "superior":
        return base + "holds if the 95 % CI of RKDO − I-Con lies above 0" + tail
    return base + (f"holds if the 95 % CI of RKDO − I-Con lies inside (−δ, +δ), "
                   f"δ = {COMPARABLE_MARGIN:.0%} of I-Con's mean (equivalence)") + tail


def _table3_evaluate(df, dataset, protocol, row, kind) -> tuple[str, str]:
    re_, ie = int(row["rkdo_epochs"]), int(row["icon_epochs"])
    if not (_has(df, dataset, protocol, "rkdo", re_) and _has(df, dataset, protocol, "icon", ie)):
        return UNTESTABLE, f"RKDO@{re_} or I-Con@{ie} not in the grid"
    ratio = (row["accuracy_ratio_pct"] / 100.0) if kind == "ratio" else 1.0
    t = _pair_test(df, dataset, protocol, re_, ie, scale=ratio)
    if t is None:
        return UNTESTABLE, "fewer than 2 paired seeds"
    delta = COMPARABLE_MARGIN * abs(t["icon"])
    lo, hi = t["ci_low"], t["ci_high"]
    if kind == "ratio":
        ok = np.isfinite(lo) and lo > -delta
    elif kind == "superior":
        ok = np.isfinite(lo) and lo > 0
    else:
        ok = np.isfinite(lo) and lo > -delta and hi < delta
    saved, what = _saved(df, dataset, protocol, re_, ie)
    saving_ok = np.isfinite(saved) and saved >= row["fewer_epochs_pct"] - SAVING_TOLERANCE
    diff = "RKDO − I-Con" if kind != "ratio" else f"RKDO − {ratio:.2f} × I-Con"
    ev = (f"RKDO@{re_} {t['rkdo']:.4f} vs I-Con@{ie} {t['icon']:.4f} (ratio "
          f"{100 * t['rkdo'] / t['icon']:.0f} %), {diff} {t['diff_mean']:+.4f} "
          f"({_test(t, len(t['seeds']))}), δ = {delta:.4f}; compute saved {_g(saved, 3)} % "
          f"({what})")
    return (HOLDS if ok and saving_ok else FAILS), ev


def _table3_rows_for(df, protocol, datasets, reported) -> list[dict]:
    out = []
    rows = _table3_rows(reported)
    for row in rows:
        kind = _table3_kind(row)
        d = row["dataset"]
        claim = (f"Table 3, {dataset_label(d)}: RKDO@{row['rkdo_epochs']} vs "
                 f"I-Con@{row['icon_epochs']} — \"{row['claim']}\"")
        rule = _table3_rule(kind, row)
        if d in datasets:
            verdict, ev = _table3_evaluate(df, d, protocol, row, kind)
            out.append(_row(claim, "paper Table 3", protocol, [d], ev + ".", verdict, rule))
            continue
        analogue = [a for a in datasets if a not in {r["dataset"] for r in rows}]
        bits = []
        for a in analogue:
            v, ev = _table3_evaluate(df, a, protocol, row, kind)
            bits.append(f"{dataset_label(a)} analogue under the same rule: {v} — {ev}")
        ev = (f"{dataset_label(d)} is not in this grid"
              + ("; " + "; ".join(bits) if bits else "") + ".")
        out.append(_row(claim, "paper Table 3", protocol, [d], ev, UNTESTABLE, rule))
    return out


# ---------------------------------------------------------------------------- (c), (d)


def _claim_c(theory_checks) -> list[dict]:
    claim = "linear-rate convergence L(t) ≤ (1 − α)^t L(0) (Theorem 3)"
    rule = ("holds if the theory notebook's checks " + ", ".join(THEORY_CHECKS) + " (the "
            "theorem and its lemmas under assumptions A1 + A2) all hold; does not hold if one "
            "fails; not testable without checks.json (rkdo theory) or with one missing")
    claim2 = "(audit) the theorem's decay shows that the model learns"
    rule2 = (f"does not hold if the check {FROZEN_CHECK!r} holds — a model with learning rate "
             "0 satisfies the bound (docs/method.md §6.2), so the decay cannot show learning; "
             "holds if that check fails; not testable without it")
    checks = _theory_dicts(theory_checks)
    if checks is None:
        ev = "not measured: no theory checks (checks.json from `rkdo theory`) were given."
        return [_row(claim, "docs/method.md §1 c", ANY_PROTOCOL, [], ev, UNTESTABLE, rule),
                _row(claim2, "docs/method.md §1 c (audit, §6.2)", ANY_PROTOCOL, [], ev, UNTESTABLE,
                     rule2)]
    by_name = {c["name"]: c for c in checks}
    missing = [n for n in THEORY_CHECKS if n not in by_name]
    n_hold = sum(c["holds"] for c in checks)
    summary = f"{n_hold} of {len(checks)} numerical checks hold"
    if missing:
        verdict, ev = UNTESTABLE, f"{summary}; missing check(s): {', '.join(missing)}."
    else:
        used = [by_name[n] for n in THEORY_CHECKS]
        verdict = HOLDS if all(c["holds"] for c in used) else FAILS
        ev = (summary + "; " + "; ".join(
            f"{c['name']}: {'holds' if c['holds'] else 'FAILS'} ({c['detail']})" for c in used)
            + ". Caveat (docs/method.md §6.2): the bound also holds for a frozen model — see the "
            "next row.")
    frozen = by_name.get(FROZEN_CHECK)
    if frozen is None:
        row2 = _row(claim2, "docs/method.md §1 c (audit, §6.2)", ANY_PROTOCOL, [],
                    f"no {FROZEN_CHECK!r} check in checks.json.", UNTESTABLE, rule2)
    else:
        row2 = _row(claim2, "docs/method.md §1 c (audit, §6.2)", ANY_PROTOCOL, [],
                    f"{FROZEN_CHECK}: {'holds' if frozen['holds'] else 'FAILS'} "
                    f"({frozen['detail']}) — learning rate 0, the model never changes.",
                    FAILS if frozen["holds"] else HOLDS, rule2)
    return [_row(claim, "docs/method.md §1 c", ANY_PROTOCOL, [], ev, verdict, rule), row2]


_FLOP_COLUMNS = {"forward_profiler": "forward_profiler_flops",
                 "fwd_bwd_flopcounter": "fwd_bwd_flopcounter_flops",
                 "wall_time": "seconds_per_step_median"}


def _claim_d(flops, bound: float) -> list[dict]:
    data = _load_json(flops)
    names = {"forward_profiler": "FLOPs, forward pass only, torch profiler (the paper's way)",
             "fwd_bwd_flopcounter": "FLOPs, forward + backward, FlopCounterMode",
             "wall_time": "wall time per optimizer step (audit, not a FLOP count)"}
    out = []
    for conv, label in names.items():
        claim = f"< {bound:g} % overhead of recursion depth 3 vs 1 — {label}"
        source = "docs/method.md §1 d" + (" (audit)" if conv == "wall_time" else "")
        rule = (f"holds if flops.json's overhead_pct[{conv!r}] = 100 (depth 3 − depth 1)/"
                f"depth 1 is below {bound:g} %; not testable without flops.json "
                "(rkdo flops) or that convention")
        if conv == "wall_time":
            rule = (f"with the per-step paired overheads of flops.json "
                    f"(wall_time_paired_overhead_pct): holds if their p90 is below "
                    f"{bound:g} %, does not hold if their p10 is above it, not "
                    f"testable if p10…p90 spans it (timing noise coarser than the threshold); "
                    f"without them, the median overhead (overhead_pct['wall_time']) decides; "
                    f"not testable without flops.json")
        if data is None:
            out.append(_row(claim, source, ANY_PROTOCOL, [], "not measured: no flops.json "
                            "(rkdo flops --out RESULTS/flops.json) was given.", UNTESTABLE, rule))
            continue
        pct = (data.get("overhead_pct") or {}).get(conv)
        if pct is None or not np.isfinite(float(pct)):
            out.append(_row(claim, source, ANY_PROTOCOL, [], f"flops.json has no {conv} "
                            "overhead.", UNTESTABLE, rule))
            continue
        pct = float(pct)
        col = _FLOP_COLUMNS[conv]
        per_depth = {int(r["depth"]): r.get(col) for r in data.get("rows", [])
                     if "depth" in r and r.get("method", "rkdo") == "rkdo"}
        vals = "; ".join(f"depth {k}: {_g(float(v), 6)}" for k, v in sorted(per_depth.items())
                         if v is not None)
        conventions = data.get("conventions") or {}
        conv_text = conventions.get(conv) or conventions.get(col) or conventions.get(
            col.removesuffix("_median"), "")
        extra = ""
        verdict = HOLDS if pct < bound else FAILS
        if conv == "forward_profiler" and data.get("paper_overhead_reported_pct") is not None:
            extra = (f"; the paper's own printed FLOPs give "
                     f"{float(data['paper_overhead_reported_pct']):.4g} %")
        if conv != "wall_time" and data.get("loss_elementwise_extra_ops") is not None:
            extra += (f"; the loss's elementwise work, which neither counter counts, grows by "
                      f"{int(data['loss_elementwise_extra_ops']):,} element-ops per step")
        paired = data.get("wall_time_paired_overhead_pct") or {}
        if conv == "wall_time" and {"median", "p10", "p90"} <= set(paired):
            lo, hi = float(paired["p10"]), float(paired["p90"])
            extra = (f"; step-by-step paired overhead median {paired['median']:.3g} % "
                     f"(p10 {lo:.3g} %, p90 {hi:.3g} %)")
            verdict = (HOLDS if hi < bound else FAILS if lo > bound
                       else UNTESTABLE)
            if verdict == UNTESTABLE:
                extra += f" — the timing noise spans the {bound:g} % threshold"
        paper = data.get("paper_overhead_pct", bound)
        device = data.get("device", "not recorded")
        ev = (f"overhead {pct:.4g} % (paper: < {paper} %){extra}"
              f"{'; ' + vals if vals else ''}; device {device}"
              f"{'; ' + str(data['steps']) + ' steps measured' if 'steps' in data else ''}"
              f"{'; convention: ' + conv_text.rstrip('.') if conv_text else ''}.")
        out.append(_row(claim, source, ANY_PROTOCOL, [], ev, verdict, rule))
    return out


# ---------------------------------------------------------------------------- the table


def claims_checklist(df: pd.DataFrame, *, flops: Any = None, theory_checks: Any = None,
                     reported=None, table3_pairs: Sequence[Sequence[int]] = ((1, 5), (2, 5))
                     ) -> pd.DataFrame:
    """The paper's claims, the evidence of this run and a computed verdict, one row each.

    ``df``: :func:`rkdo_core.reporting.results.load_metrics`'s frame. ``flops``:
    ``flops.json`` (a path or the loaded dict; a path that does not exist counts as absent).
    ``theory_checks``: ``checks.json`` of ``rkdo theory`` (path, list of dicts, or list of
    :class:`rkdo_core.theory.Check`). ``reported``:
    :class:`rkdo_core.reporting.reported.Reported` (for Table 3's rows and the FLOP bound;
    default ``params/reported.yaml``). Columns :data:`COLUMNS` plus display columns;
    ``attrs`` as :func:`rkdo_core.reporting.fmt.write_table` expects. Claims (a), (b) and
    Table 3 get one row per protocol in the results.
    """
    reported = load_reported() if reported is None else reported
    missing = [c for c in _REQUIRED if c not in df]
    if missing:
        raise ValueError(f"metrics frame lacks column(s) {missing}; it needs {list(_REQUIRED)} "
                         "(rkdo_core.reporting.results.load_metrics's frame)")
    pairs = [(int(a), int(b)) for a, b in table3_pairs]
    for a, b in pairs:
        if not 0 < a < b:
            raise ValueError(f"invalid table3_pairs entry ({a}, {b}): the early budget must be "
                             "positive and below the late one")
    rows = []
    for protocol in sorted(df.protocol.unique()):
        sub = df[df.protocol == protocol]
        datasets = dataset_order(sub.dataset.unique())
        rows += [_claim_a(sub, protocol, datasets), _claim_a_step0(sub, protocol, datasets),
                 _claim_a_yardstick(sub, protocol, datasets),
                 _claim_b(sub, protocol, datasets, pairs)]
        rows += _table3_rows_for(sub, protocol, datasets, reported)
    rows += _claim_c(theory_checks)
    rows += _claim_d(flops, reported.overhead_pct_max)
    out = pd.DataFrame(rows, columns=COLUMNS)
    counts = out.verdict.value_counts()
    note = (f"Verdicts computed from the data by each row's rule (significance level {ALPHA}, "
            f"comparability margin δ = {COMPARABLE_MARGIN:.0%} of the reference mean, loss "
            f"band {LOSS_BAND[0]:g}–{LOSS_BAND[1]:g} %); 'does not hold' = this run does not "
            f"show the claim under the rule. Methods: {', '.join(METHOD_LABELS.values())}. "
            + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS) + ".")
    display = {"Claim": out.claim, "Source": out.source, "Protocol": out.protocol,
               "Evidence (this run)": out.evidence, "Verdict": out.verdict, "Rule": out.rule}
    return finish_table(out, COLUMNS, display,
                        "Claims checklist: the paper's claims against this run", note, [])


def checklist_markdown(table: pd.DataFrame) -> str:
    """The checklist as Markdown (title, the display columns, the note)."""
    return table_markdown(table)
