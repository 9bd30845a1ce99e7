"""The claims checklist: each claim of the paper beside the evidence of this run and a verdict
computed from the data by a stated rule — never typed by hand.

Rows (docs/method.md §1 a–d and the three rows of the paper's Table 3), per protocol where the
claim depends on the grid:

- the positive control first (docs/method.md §6.5): per dataset and protocol, does I-Con at
  its last budget beat the untrained encoder on the linear probe? Where it fails, every
  downstream verdict (claim b, Table 3) is :data:`GATED`; loss-side claims are not gated;
- (a) "~30 % lower loss than I-Con at every training length", tested literally, plus two
  audit rows: (a′) the own-loss gap decomposed into the function term and the training term
  (which one carries it; only the training term is tested) and (a″) RKDO's lower loss
  survives the common yardstick (both encoders scored on the same fixed objectives);
- (b) "60–80 % fewer epochs to comparable results": sensitivity first (longer I-Con training
  must help), a margin M stated up front, non-inferiority against I-Con@late and
  superiority over I-Con@early;
- (c) the linear-rate theorem, from the theory notebook's ``checks.json``, and beside it (c′)
  a caveat — ours, not the paper's claim — on what the decay shows (the frozen model,
  docs/method.md §6.2), verdict :data:`CAVEAT`, not counted as a verdict on the paper;
- (d) "< 0.03 % FLOP overhead of depth 3 vs 1", from ``flops.json``, per FLOP convention;
- Table 3's rows, on their own datasets when the grid has them.

Every verdict is one of :data:`VERDICTS`; every row states its ``rule`` and its multiplicity
rule: conjunctions ("at every budget", "on both objectives", "on every dataset") by
intersection–union (each part at α, no adjustment); disjunctions ("some pair") with
Bonferroni-adjusted intervals over the pairs. "does not hold" means the data of this run do
not show the claim under the rule (with 5 seeds a claim can fail for lack of power — the
evidence gives the interval that decided it and the minimal detectable difference).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..datasets import dataset_label, dataset_order
from .fmt import finish_table, fmt_large, format_p, table_markdown
from .inference import (
    format_sign_flip,
    hodges_lehmann,
    hodges_lehmann_ci,
    min_detectable_difference,
    power_paired_t,
    shown_above,
    tost,
)
from .reported import load_reported
from .stats import (
    ALPHA_LEVEL,
    CONTROL_HURTS,
    CONTROL_NOT_SHOWN,
    GATED,
    GATED_NO_CONTROL,
    HOLM_FAMILIES,
    METHOD_LABELS,
    METRIC_LABELS,
    YARDSTICK,
    control_probe,
    control_test_text,
    decomposition_orders_text,
    gap_decomposition,
    gated_pairs,
    mde_at,
    measured,
    paired_comparison,
    paired_stats,
    positive_control,
    power_text,
    yardstick_verdicts,
)

HOLDS = "holds"
#: the FLOP rows: the paper's number is reproduced, but the counter cannot see the recursion
HOLDS_AS_MEASURED = "holds as the paper measured it"
#: claim (c): the theorem's bound holds on the suite's numerical checks, nothing wider
HOLDS_WHERE_CHECKED = "holds on the checked toy fields (A1 + A2)"
FAILS = "does not hold"
UNTESTABLE = "not testable with this grid"
#: the positive control failed: training does not help in this regime (stats.GATED)
UNTESTABLE_REGIME = GATED
#: claim (b) / Table 3's sensitivity check failed
UNTESTABLE_SENSITIVITY = "not testable (longer I-Con training does not help here)"
#: our interpretation beside a claim, not a verdict on the paper (not counted)
CAVEAT = "caveat"
#: the positive control's own row
PASSES, CONTROL_FAILS = "passes", "fails"
#: a positive control that could not be computed gates too (stats.GATED_NO_CONTROL)
UNTESTABLE_NO_CONTROL = GATED_NO_CONTROL
VERDICTS = (HOLDS, HOLDS_AS_MEASURED, HOLDS_WHERE_CHECKED, FAILS, UNTESTABLE,
            UNTESTABLE_REGIME, UNTESTABLE_NO_CONTROL, UNTESTABLE_SENSITIVITY, CAVEAT, PASSES,
            CONTROL_FAILS, CONTROL_HURTS, CONTROL_NOT_SHOWN)
UNTESTABLES = (UNTESTABLE, UNTESTABLE_REGIME, UNTESTABLE_NO_CONTROL, UNTESTABLE_SENSITIVITY)
#: the one-sided level of every part of claim (b) and Table 3 — sensitivity, margin test
#: (non-inferiority or TOST) and the control against I-Con at the early budget — before the
#: Bonferroni split of claim (b)'s disjunction over pairs: the lower end of a 90 % interval
ONE_SIDED = ALPHA_LEVEL
#: significance level of every test in the checklist (Holm-corrected where stated)
ALPHA = ALPHA_LEVEL  # the level of the generated sentences too (one source)
#: "~30 %": the loss improvement must lie in this band (percentage points) at every budget
LOSS_BAND = (20.0, 40.0)
#: share of the own-loss gap the training term must carry for the gap to be "produced by
#: training with RKDO" rather than by the two loss functions
TRAINING_SHARE_MIN = 0.5
#: without a minimal important difference in the params file, the margin M of claim (b) and
#: Table 3 is this fraction of the lower 95 % bound of I-Con's own gain (late − early)
MARGIN_FRACTION_OF_GAIN = 0.5
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
    if bool(st.get("no_spread", False)):
        return "no interval (the differences have no spread beyond rounding)"
    if not np.isfinite(st["ci_low"]):
        return "no CI (fewer than 2 seeds)"
    return f"95 % CI [{st['ci_low']:+.{digits}g}, {st['ci_high']:+.{digits}g}]"


def _significant(st: dict) -> bool:
    """The 95 % interval excludes 0 (without spread: the exact sign-flip test, two-sided,
    at ALPHA)."""
    if bool(st.get("no_spread", False)):
        p = st.get("sign_flip_p", np.nan)
        return bool(np.isfinite(p) and p < ALPHA)
    lo, hi = st.get("ci_low", np.nan), st.get("ci_high", np.nan)
    return bool(np.isfinite(lo) and (lo > 0 or hi < 0))


def _test(st: dict, n: int, alpha: float = ALPHA) -> str:
    """Interval, t and exact sign-flip p, n and — only where the result is not significant —
    the power the paired t-test had at the level applied (a power calculation excludes
    nothing; an interval does)."""
    flip = format_sign_flip(st.get("sign_flip_p", np.nan), st.get("sign_flip_floor"))
    text = (f"{_ci(st)}, paired t-test p = {format_p(st['p_value'])}, exact sign-flip p = "
            f"{flip}, n = {n} seeds")
    if not _significant(st):
        text += "; " + power_text(mde_at(st.get("sd_diff", np.nan), n, alpha), alpha)
    return text


def _row(claim, source, protocol, datasets, evidence, verdict, rule) -> dict:
    if verdict not in VERDICTS:  # a programming error, never data
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return {"claim": claim, "source": source, "protocol": protocol,
            "datasets": ", ".join(dataset_label(d) for d in datasets), "evidence": evidence,
            "verdict": verdict, "rule": rule}


def _all(verdicts: Sequence[str]) -> str:
    """Claim over several datasets/budgets (a conjunction, intersection–union): holds if
    every part holds; does not hold if a tested part does not; otherwise not testable (the
    most specific reason when all parts share it)."""
    tested = [v for v in verdicts if v not in UNTESTABLES]
    if not tested:
        reasons = set(verdicts)
        return reasons.pop() if len(reasons) == 1 else UNTESTABLE
    if FAILS in tested:
        return FAILS
    return HOLDS if all(v == HOLDS for v in verdicts) else UNTESTABLE


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
            f"RKDO's mean training loss is below I-Con's with paired p < {ALPHA} and the 95 % "
            f"interval of the improvement 100 (I-Con − RKDO)/I-Con (t-interval of the per-seed "
            f"improvements) lies inside [{LOSS_BAND[0]:g}, {LOSS_BAND[1]:g}] % — the interval, "
            f"not the point estimate; multiplicity: 'at every budget, on every dataset' is a "
            f"conjunction, tested by intersection–union (each comparison at {ALPHA}, no "
            f"adjustment); the Holm p of each comparison's family is reported beside it "
            f"({HOLM_FAMILIES}); the untrained encoder's gap (epoch 0, the same encoder under "
            f"both functions: a difference, not a test) is stated beside it, since a gap "
            f"present before training says nothing about training; not testable without a "
            f"trained budget or with fewer than 2 seeds")
    comp = paired_comparison(df, metrics=("train_loss",)) if "train_loss" in df else None
    if comp is None or comp.empty:
        return _row(claim, "docs/method.md §1 a", protocol, datasets, "no training loss in the "
                    "metrics", UNTESTABLE, rule)
    step0 = comp[comp.epoch == 0]
    comp = comp[comp.epoch > 0]
    parts, verdicts = [], []
    for d in datasets:
        c = comp[comp.dataset == d]
        if c.empty or c.p_value.isna().all():
            verdicts.append(UNTESTABLE)
            parts.append(f"{dataset_label(d)}: no trained budget with 2+ seeds")
            continue
        lo, hi = c.improvement_pct - c.improvement_ci, c.improvement_pct + c.improvement_ci
        ok = ((c.diff_mean < 0) & (c.p_value < ALPHA) & (lo >= LOSS_BAND[0])
              & (hi <= LOSS_BAND[1]))
        verdicts.append(HOLDS if ok.all() else FAILS)
        per = "; ".join(f"epoch {int(e)}: {x:.1f} % [{a:.1f}, {b:.1f}]"
                        for e, x, a, b in zip(c.epoch, c.improvement_pct, lo, hi))
        s0 = step0[step0.dataset == d]
        at0 = (f"; the untrained encoder (epoch 0) already shows {s0.improvement_pct.iloc[0]:.1f}"
               f" % (the same encoder under both functions: a difference, not a test)"
               if len(s0) and np.isfinite(s0.improvement_pct.iloc[0]) else
               "; no untrained encoder (epoch 0) in the results")
        parts.append(
            f"{dataset_label(d)}: improvement with its 95 % interval — {per} "
            f"(n = {int(c.n_seeds.min())} seeds), paired p ≤ {format_p(c.p_value.max())} "
            f"(Holm p ≤ {format_p(c.p_holm.max())}, exact sign-flip p ≥ "
            f"{format_sign_flip(c.sign_flip_p.min())}){at0}; {int(ok.sum())} of {len(c)} "
            "budgets meet the rule")
    return _row(claim, "docs/method.md §1 a", protocol, datasets, "; ".join(parts) + ".",
                _all(verdicts), rule)


def _claim_a_decomposition(df, protocol, datasets) -> dict:
    claim = ("(audit) the loss gap is produced by training with RKDO, not by the difference "
             "between the two loss functions")
    rule = (f"per dataset, at the last trained budget, on the common yardstick "
            f"(rkdo_core.reporting.stats.gap_decomposition): own-loss gap L_RKDO(θ_RKDO) − "
            f"L_I-Con(θ_I-Con) = function term + training term, in two orders — A: function "
            f"term on the I-Con-trained encoder, training term scored by RKDO's objective; B: "
            f"training term scored by I-Con's objective, function term on the RKDO-trained "
            f"encoder — and their average (Shapley), which decides; only the training term is "
            f"tested: holds if the Shapley training term's 95 % interval lies below 0 (without "
            f"spread: the exact one-sided sign-flip test at {ALPHA / 2:g}; the same rule as "
            f"the decomposition sentence) and it carries at least {TRAINING_SHARE_MIN:.0%} of "
            f"the own-loss gap; 'on every dataset' is a conjunction (intersection–union, each "
            f"at {ALPHA}); the evidence names the term that carries the paper's ~30 % and "
            f"gives both orders; not testable without the yardstick or 2 seeds")
    dec = gap_decomposition(df)
    parts, verdicts = [], []
    for d in datasets:
        g = dec[(dec.dataset == d) & (dec.epoch > 0)] if not dec.empty else dec
        if g.empty or g[g.epoch == g.epoch.max()].n_seeds.iloc[0] < 2:
            verdicts.append(UNTESTABLE)
            why = ("the common yardstick (yardstick_icon / yardstick_rkdo) was not measured"
                   if dec.empty else "no trained budget with 2 paired seeds")
            parts.append(f"{dataset_label(d)}: {why}")
            continue
        r = g[g.epoch == g.epoch.max()].iloc[0]
        own = r.own_gap_mean
        share = r.training_mean / own if own < 0 else np.nan
        ok = own < 0 and r.training_verdict == "lower" and share >= TRAINING_SHARE_MIN
        verdicts.append(HOLDS if ok else FAILS)
        carrier = ("the training term" if abs(r.training_pct) > abs(r.function_pct)
                   else "the function term (the two loss functions differ on the same "
                        "encoder)")
        steps = f" ({int(r.steps_max)} steps)" if np.isfinite(r.steps_max) else ""
        st = {"ci_low": r.training_ci_low, "ci_high": r.training_ci_high,
              "p_value": r.training_p, "sign_flip_p": r.training_sign_flip_p,
              "sign_flip_floor": r.training_sign_flip_floor, "sd_diff": r.training_sd,
              "no_spread": r.training_no_spread}
        parts.append(
            f"{dataset_label(d)} at {int(r.epoch)} epochs{steps}: training-loss gap at step 0 "
            f"{r.gap0_pct:.2f} %; own-loss gap on the yardstick {r.own_gap_pct:.2f} % = "
            f"function term {r.function_pct:.2f} points (95 % interval of the loss difference "
            f"[{r.function_ci_low:+.3g}, {r.function_ci_high:+.3g}], a description, not a "
            f"test) + training term {r.training_pct:.2f} points (Shapley, loss difference "
            f"{r.training_mean:+.3g}, {_test(st, int(r.n_seeds))}: {r.training_verdict}; Holm "
            f"p over the protocol's trained budgets {format_p(r.training_p_holm)}); "
            f"{decomposition_orders_text(r)}; {carrier} carries the gap")
    return _row(claim, "docs/method.md §1 a (audit, §6.1)", protocol, datasets,
                "; ".join(parts) + ".", _all(verdicts), rule)


def _claim_a_yardstick(df, protocol, datasets) -> dict:
    claim = "(audit) RKDO's lower loss survives the common yardstick"
    rule = (f"per dataset, at the last trained budget (rkdo_core.reporting.stats."
            f"yardstick_verdicts): the RKDO-trained encoder scores lower than the "
            f"I-Con-trained one on both fixed objectives ({', '.join(YARDSTICKS.values())}; "
            f"held-out images, fixed seeded views); 'on both objectives' and 'on every "
            f"dataset' are conjunctions: intersection–union, each paired p below {ALPHA}, no "
            f"adjustment; the evidence names every measured yardstick (neutral ones "
            f"included) that separates the encoders (Bonferroni over them); not testable "
            "where the yardstick was not measured")
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
                        f"({_ci(st)}, p = {format_p(v[f'{k}_p_value'])}, sign-flip p = "
                        f"{format_sign_flip(v[f'{k}_sign_flip_p'])}, n = "
                        f"{int(v[f'{k}_n_seeds'])}"
                        + ("" if v[f"{k}_p_value"] < ALPHA else
                           f"; {power_text(v[f'{k}_mde_iu'], ALPHA)}") + ")")
        own = (f"; on its own objective RKDO is {v.own_gap_pct:.2f} % below"
               if np.isfinite(v.own_gap_pct) else "")
        sep = (f"; yardsticks that separate the encoders (Bonferroni over "
               f"{int(v.n_yardsticks)}): {v.separating or 'none'}")
        parts.append(f"{dataset_label(d)} at {int(v.epoch)} epochs: {v.outcome}{own}; "
                     + "; ".join(bits) + sep)
    return _row(claim, "docs/method.md §1 a (audit, §6.1)", protocol, datasets,
                "; ".join(parts) + ".", _all(verdicts), rule)


# ---------------------------------------------------------------------------- (b), Table 3


def _values(df, dataset, protocol, method, epoch, metric) -> pd.Series:
    g = df[(df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
           & (df.epoch == epoch)]
    if metric not in g:
        return pd.Series(dtype=float)
    return g.set_index("seed")[metric].dropna().astype(float)


def _diff(df, dataset, protocol, a: tuple[str, int], b: tuple[str, int],
          metric: str = "linear_eval", scale: float = 1.0):
    """method_a@epoch_a − scale · method_b@epoch_b, seeds paired: (diffs, mean a, mean b,
    paired_stats) or None without 2 common seeds."""
    x = _values(df, dataset, protocol, *a, metric)
    y = _values(df, dataset, protocol, *b, metric)
    seeds = sorted(set(x.index) & set(y.index))
    if len(seeds) < 2:
        return None
    xa, ya = x.loc[seeds].to_numpy(), y.loc[seeds].to_numpy()
    return {"d": xa - scale * ya, "a": float(xa.mean()), "b": float(ya.mean()),
            "n": len(seeds), **paired_stats(xa, scale * ya)}


def _has(df, dataset, protocol, method, epoch) -> bool:
    return bool(((df.dataset == dataset) & (df.protocol == protocol) & (df.method == method)
                 & (df.epoch == epoch)).any())


def _probe(df, dataset, protocol) -> str:
    """The probe claim (b) and Table 3 are judged on: the positive control's own
    (:func:`rkdo_core.reporting.stats.control_probe`), so the gate and the claims it gates
    read the same metric."""
    g = df[(df.dataset == dataset) & (df.protocol == protocol)]
    return control_probe(g) or "linear_eval"


def _margin(gain: dict, mid: float | None, level: float) -> tuple[float, str]:
    """The margin M of "comparable"/"similar": the params file's absolute minimal
    important difference (stated before any run), else — derived from the data, so not
    stated up front, and said so — half the one-sided (1 − level) lower bound of I-Con's own
    gain from longer training."""
    if mid is not None:
        return float(mid), (f"M = {float(mid):g} (min_important_difference of the params "
                            "file's aggregate: section, stated before any run)")
    lower = shown_above(gain["d"], 0.0, level).lower
    m = MARGIN_FRACTION_OF_GAIN * lower
    return m, (f"M = {MARGIN_FRACTION_OF_GAIN:g} × the one-sided lower bound of I-Con's gain "
               f"{lower:+.4g} = {m:.4g} (no min_important_difference in the params file: "
               f"derived from the data, not stated up front)")


def _sensitivity(df, d, protocol, early, late, metric, mid, level):
    """Longer I-Con training must help by more than the margin: I-Con@late − I-Con@early
    shown above M at the one-sided ``level`` (with M = 0, the fallback margin's own rule,
    above 0). Returns (ok, gain stats or None, margin, margin text, decision)."""
    gain = _diff(df, d, protocol, ("icon", late), ("icon", early), metric)
    if gain is None:
        return False, None, np.nan, "", None
    margin, mtxt = _margin(gain, mid, level)
    if not np.isfinite(margin):
        return False, gain, margin, mtxt, None
    dec = shown_above(gain["d"], margin if mid is not None else 0.0, level)
    return dec.ok, gain, margin, mtxt, dec


def _gain_text(gain, early, late, margin=np.nan, dec=None, mid=None) -> str:
    if gain is None:
        return f"I-Con@{late} − I-Con@{early}: fewer than 2 paired seeds"
    bar = f"M = {margin:.4g}" if mid is not None and np.isfinite(margin) else "0"
    how = (f"; must exceed {bar}: {dec.text()} → "
           f"{'longer training helps by more than the bar' if dec.ok else 'not shown'}"
           if dec is not None else "")
    return (f"sensitivity: I-Con@{late} − I-Con@{early} = {gain['diff_mean']:+.4f} "
            f"({_ci(gain)}, n = {gain['n']}{how})")


def _ni_power_text(d, margin: float, level: float) -> str:
    """The power of the non-inferiority test actually applied (one-sided at ``level``,
    H0: μ ≤ −M): at a true difference of 0, and the true difference it detects with 80 %
    power."""
    d = np.asarray(d, dtype=float)
    sd, n = float(d.std(ddof=1)), len(d)
    if not (np.isfinite(sd) and sd > 0 and n >= 2 and margin > 0):
        return "power of the non-inferiority test not computable (no spread, or M ≤ 0)"
    p0 = power_paired_t(margin, sd, n, level, "greater")
    x80 = -margin + min_detectable_difference(sd, n, level, alternative="greater")
    return (f"the non-inferiority test (one-sided, level {level:.3g}, margin M = {margin:.4g}) "
            f"had {100 * p0:.0f} % power if the two are truly equal and 80 % power for a "
            f"true difference of {x80:+.4f} or more")


def _tost_power_text(d, margin: float, level: float) -> str:
    """A lower bound of the TOST's power at a true difference of 0: both one-sided tests
    at ``level`` must reject, so power ≥ 2 P₁ − 1 (P₁ the power of one of them)."""
    d = np.asarray(d, dtype=float)
    sd, n = float(d.std(ddof=1)), len(d)
    if not (np.isfinite(sd) and sd > 0 and n >= 2 and margin > 0):
        return "power of the TOST not computable (no spread, or M ≤ 0)"
    p1 = power_paired_t(margin, sd, n, level, "greater")
    return (f"the TOST (two one-sided tests at level {level:.3g}, margin ±{margin:.4g}) had at "
            f"least {100 * max(0.0, 2 * p1 - 1):.0f} % power if the two are truly equal")


_CLAIM_B_RULE = (
    "per dataset and (early, late) pair {pairs}, seeds paired, on the positive control's "
    "probe (linear_cv where measured, else linear eval — the same metric as the gate): every "
    "part is a one-sided test at one level, α' = " + f"{ONE_SIDED:g}" + "/m with m the "
    "dataset's testable pairs ('some pair holds' is a disjunction: Bonferroni), decided by "
    "the one-sided t lower bound, or by the exact sign-flip test where the differences have "
    "no spread; (1) a margin M stated before the test: the params file's "
    "min_important_difference where given, else {frac:g} × the lower bound of I-Con's gain "
    "(derived from the data, and said so); (2) sensitivity first — I-Con@late − I-Con@early "
    "must be shown above M (longer I-Con training must help by more than the margin, else "
    "'comparable within M' is empty), else the pair is '" + UNTESTABLE_SENSITIVITY + "'; "
    "(3) the pair holds if RKDO@early − I-Con@late is shown above −M (non-inferiority) and "
    "RKDO@early − I-Con@early above 0 (RKDO beats I-Con at the same early budget; both "
    "parts: intersection–union); the evidence gives the power of the non-inferiority test "
    "applied; a dataset supports the claim if some pair holds; 'on every dataset' is a "
    "conjunction (intersection–union); gated by the positive control: where I-Con@last "
    "does not beat the untrained encoder, '" + UNTESTABLE_REGIME + "', and where the "
    "control cannot be computed, '" + UNTESTABLE_NO_CONTROL + "'")


def _claim_b(df, protocol, datasets, pairs, gated, mid) -> dict:
    claim = "60–80 % fewer epochs to results comparable to longer I-Con training"
    rule = _CLAIM_B_RULE.format(pairs=list(pairs), frac=MARGIN_FRACTION_OF_GAIN)
    verdicts, parts = [], []
    for d in datasets:
        if (d, protocol) in gated:
            why = _gate_text(gated, d, protocol)
            verdicts.append(why)
            parts.append(f"{dataset_label(d)}: {why}")
            continue
        metric = _probe(df, d, protocol)
        present = [(e, l_) for e, l_ in pairs
                   if all(_has(df, d, protocol, m, x) for m, x in
                          (("rkdo", e), ("icon", l_), ("icon", e)))]
        # the Bonferroni split counts the pairs with data (fixed before any outcome)
        level = ONE_SIDED / max(len(present), 1)
        sens = {p: _sensitivity(df, d, protocol, *p, metric, mid, level) for p in present}
        testable = [p for p in present if sens[p][0]]
        bits = [f"RKDO@{e} vs I-Con@{l_}: {UNTESTABLE_SENSITIVITY} — "
                + _gain_text(sens[(e, l_)][1], e, l_, sens[(e, l_)][2], sens[(e, l_)][4], mid)
                for e, l_ in present if not sens[(e, l_)][0]]
        tested = []
        for e, l_ in testable:
            _, gain, margin, mtxt, sdec = sens[(e, l_)]
            late = _diff(df, d, protocol, ("rkdo", e), ("icon", l_), metric)
            early = _diff(df, d, protocol, ("rkdo", e), ("icon", e), metric)
            if late is None or early is None:
                continue
            ni = shown_above(late["d"], -margin, level)
            sup = shown_above(early["d"], 0.0, level)
            tested.append(HOLDS if ni.ok and sup.ok else FAILS)
            saved, what = _saved(df, d, protocol, e, l_)
            bits.append(
                f"RKDO@{e} vs I-Con@{l_} on {METRIC_LABELS.get(metric, metric)} "
                f"({_g(saved, 3)} % fewer {what}): {mtxt}; "
                f"{_gain_text(gain, e, l_, margin, sdec, mid)}; RKDO@{e} − I-Con@{l_} = "
                f"{late['diff_mean']:+.4f}, {ni.text()} vs −M → "
                f"{'non-inferior' if ni.ok else 'not shown non-inferior'}"
                + ("" if ni.ok else f" ({_ni_power_text(late['d'], margin, level)})")
                + f"; RKDO@{e} − I-Con@{e} = {early['diff_mean']:+.4f}, {sup.text()} → "
                f"{'RKDO better' if sup.ok else 'RKDO not shown better'}")
        if tested:
            verdicts.append(HOLDS if HOLDS in tested else FAILS)
        elif present:
            verdicts.append(UNTESTABLE_SENSITIVITY)
        else:
            verdicts.append(UNTESTABLE)
            bits.append("no (early, late) pair with both budgets and 2+ seeds")
        parts.append(f"{dataset_label(d)}: " + "; ".join(bits))
    return _row(claim, "docs/method.md §1 b", protocol, datasets, "; ".join(parts) + ".",
                _all(verdicts), rule)


def _gate_text(gated, dataset, protocol) -> str:
    """The downstream verdict of a gated (dataset, protocol)."""
    return gated[(dataset, protocol)] if isinstance(gated, dict) else UNTESTABLE_REGIME


def _table3_rule(kind: str, row: dict) -> str:
    r, i = row["rkdo_epochs"], row["icon_epochs"]
    base = (f"on the positive control's probe (linear_cv where measured, else linear eval), "
            f"seeds paired, RKDO@{r} vs I-Con@{i}; every part one-sided at level {ONE_SIDED:g} "
            f"(t lower bound; the exact sign-flip test where the differences have no spread); "
            f"margin M = the params file's min_important_difference (else "
            f"{MARGIN_FRACTION_OF_GAIN:g} × the lower bound of I-Con's gain, derived from the "
            f"data and said so); sensitivity first — I-Con@{i} − I-Con@{r} must be shown "
            f"above M, else '{UNTESTABLE_SENSITIVITY}'; control: RKDO@{r} − I-Con@{r} shown "
            f"above 0; ")
    tail = (f"; and the compute saved (from measured train FLOPs, else optimizer steps) is at "
            f"least the paper's {row['fewer_epochs_pct']:g} % minus {SAVING_TOLERANCE:g} point; "
            f"all parts a conjunction (intersection–union, each at {ONE_SIDED:g}); the evidence "
            f"gives the power of the margin test applied; gated by the positive control "
            f"('{UNTESTABLE_REGIME}'; '{UNTESTABLE_NO_CONTROL}'); not testable when the "
            "dataset or a budget is not in the grid")
    if kind == "ratio":
        return base + (f"holds if RKDO − {row['accuracy_ratio_pct']:g} % × I-Con is shown "
                       "above −M (non-inferiority)") + tail
    if kind == "superior":
        return base + "holds if RKDO − I-Con is shown above 0" + tail
    return base + ("holds if RKDO − I-Con is equivalent within ±M by TOST (shown above −M "
                   "and below +M: the 90 % interval inside (−M, +M))") + tail


def _table3_evaluate(df, dataset, protocol, row, kind, gated=frozenset(), mid=None
                     ) -> tuple[str, str]:
    re_, ie = int(row["rkdo_epochs"]), int(row["icon_epochs"])
    if not (_has(df, dataset, protocol, "rkdo", re_) and _has(df, dataset, protocol, "icon", ie)
            and _has(df, dataset, protocol, "icon", re_)):
        return UNTESTABLE, f"RKDO@{re_}, I-Con@{re_} or I-Con@{ie} not in the grid"
    if (dataset, protocol) in gated:
        why = _gate_text(gated, dataset, protocol)
        return why, ("the positive control fails (training does not help here)"
                     if why == UNTESTABLE_REGIME else "the positive control could not be "
                     "computed (a control that cannot be computed gates)")
    level = ONE_SIDED
    metric = _probe(df, dataset, protocol)
    ok_sens, gain, margin, mtxt, sdec = _sensitivity(df, dataset, protocol, re_, ie, metric,
                                                     mid, level)
    if not ok_sens:
        return UNTESTABLE_SENSITIVITY, (f"{mtxt + '; ' if mtxt else ''}"
                                        f"{_gain_text(gain, re_, ie, margin, sdec, mid)}")
    ratio = (row["accuracy_ratio_pct"] / 100.0) if kind == "ratio" else 1.0
    t = _diff(df, dataset, protocol, ("rkdo", re_), ("icon", ie), metric, scale=ratio)
    c = _diff(df, dataset, protocol, ("rkdo", re_), ("icon", re_), metric)
    if t is None or c is None:
        return UNTESTABLE, "fewer than 2 paired seeds"
    if kind == "ratio":
        dec = shown_above(t["d"], -margin, level)
        ok = dec.ok
        extra = (f"; non-inferiority: {dec.text()} vs −M"
                 + ("" if ok else f" ({_ni_power_text(t['d'], margin, level)})"))
    elif kind == "superior":
        dec = shown_above(t["d"], 0.0, level)
        ok = dec.ok
        extra = f"; superiority: {dec.text()} vs 0"
        sd = float(np.std(t["d"], ddof=1))
        if not ok and np.isfinite(sd) and sd > 0:
            extra += (f"; the one-sided t-test had 80 % power to detect a true difference of "
                      f"{min_detectable_difference(sd, t['n'], level, alternative='greater'):.3g}"
                      f" at level {level:g}")
    else:
        lo_dec = shown_above(t["d"], -margin, level)
        hi_dec = shown_above(-t["d"], -margin, level)
        ok = lo_dec.ok and hi_dec.ok
        res = tost(t["d"], margin, level) if not t["no_spread"] else None
        extra = (f"; TOST: {lo_dec.text()} vs −M, and from above {hi_dec.text()} vs −M on "
                 f"I-Con − RKDO" + (f", TOST p = {format_p(res.p)}" if res else "")
                 + ("" if ok else f" ({_tost_power_text(t['d'], margin, level)})"))
    control = shown_above(c["d"], 0.0, level)
    saved, what = _saved(df, dataset, protocol, re_, ie)
    saving_ok = np.isfinite(saved) and saved >= row["fewer_epochs_pct"] - SAVING_TOLERANCE
    diff = "RKDO − I-Con" if kind != "ratio" else f"RKDO − {ratio:.2f} × I-Con"
    ev = (f"on {METRIC_LABELS.get(metric, metric)}: {mtxt}; "
          f"{_gain_text(gain, re_, ie, margin, sdec, mid)}; RKDO@{re_} {t['a']:.4f} vs "
          f"I-Con@{ie} {t['b']:.4f} (ratio {100 * t['a'] / t['b']:.0f} %), {diff} "
          f"{t['diff_mean']:+.4f} ({_ci(t)}, paired t-test p = {format_p(t['p_value'])}, "
          f"n = {t['n']}{extra}); control RKDO@{re_} − "
          f"I-Con@{re_} {c['diff_mean']:+.4f} ({control.text()}) → "
          f"{'RKDO better' if control.ok else 'not shown'}; compute saved {_g(saved, 3)} % "
          f"({what})")
    return (HOLDS if ok and control.ok and saving_ok else FAILS), ev


def _table3_rows_for(df, protocol, datasets, reported, gated=frozenset(), mid=None,
                     grid: Sequence[str] | None = None) -> list[dict]:
    """Table 3's rows in the setting of ``datasets`` (one dataset of the grid when the
    checklist is judged per dataset; ``grid``: every dataset of the protocol). A row whose
    dataset is in the grid is judged in that dataset's setting only; a row whose dataset is
    not, in the setting of each grid dataset that is not one of Table 3's (its analogue, in
    the evidence), else once, in the first grid dataset's setting."""
    out = []
    rows = _table3_rows(reported)
    grid = list(datasets) if grid is None else list(grid)
    table3_sets = {r["dataset"] for r in rows}
    analogues = [a for a in grid if a not in table3_sets]
    for row in rows:
        kind = _table3_kind(row)
        d = row["dataset"]
        if d in grid and d not in datasets:
            continue  # judged in its own dataset's setting
        if d not in grid and not (set(datasets) & set(analogues)
                                  or (not analogues and grid[:1] == list(datasets[:1]))):
            continue  # judged in an analogue's setting, or once in the first dataset's
        claim = (f"Table 3, {dataset_label(d)}: RKDO@{row['rkdo_epochs']} vs "
                 f"I-Con@{row['icon_epochs']} — \"{row['claim']}\"")
        rule = _table3_rule(kind, row)
        if d in datasets:
            verdict, ev = _table3_evaluate(df, d, protocol, row, kind, gated, mid)
            out.append(_row(claim, "paper Table 3", protocol, [d], ev + ".", verdict, rule))
            continue
        analogue = [a for a in datasets if a not in {r["dataset"] for r in rows}]
        bits = []
        for a in analogue:
            v, ev = _table3_evaluate(df, a, protocol, row, kind, gated, mid)
            bits.append(f"{dataset_label(a)} analogue under the same rule: {v} — {ev}")
        ev = (f"{dataset_label(d)} is not in this grid"
              + ("; " + "; ".join(bits) if bits else "") + ".")
        # judged in the setting of the grid's dataset(s) (its analogue is in the evidence)
        out.append(_row(claim, "paper Table 3", protocol, datasets or [d], ev, UNTESTABLE,
                        rule))
    return out


def _positive_control_row(control: pd.DataFrame, protocol, datasets) -> dict:
    claim = "(audit, first) positive control: training helps in this regime"
    rule = ("per dataset: I-Con at its last trained budget against the untrained encoder "
            "(epoch 0, same seed) on the linear probe (linear_cv where measured, else "
            "linear_eval — the probe claim (b) and Table 3 are then judged on); passes if the "
            "paired 95 % CI of I-Con@last − untrained lies above 0 (without spread: the exact "
            f"one-sided sign-flip test at {ALPHA / 2:g}); fails, named apart, as "
            f"'{CONTROL_HURTS}' or '{CONTROL_NOT_SHOWN}'; where it fails, every downstream "
            f"verdict of that dataset and protocol (claim b, Table 3) is '{UNTESTABLE_REGIME}'"
            f"; a control that cannot be computed gates too ('{UNTESTABLE_NO_CONTROL}'); "
            "loss-side claims are not gated; 'passes' for the protocol needs every dataset "
            "(conjunction)")
    c = control[control.protocol == protocol] if not control.empty else control
    parts, states = [], []
    for d in datasets:
        r = c[c.dataset == d]
        if r.empty or r.status.iloc[0] == "not testable":
            states.append(UNTESTABLE)
            why = r.reason.iloc[0] if len(r) else "no data"
            parts.append(f"{dataset_label(d)}: not testable ({why}); downstream verdicts "
                         f"gated")
            continue
        r = r.iloc[0]
        states.append(r.outcome)
        parts.append(f"{dataset_label(d)}: {r.outcome} — I-Con@{int(r.epoch)} "
                     f"{r.icon_last_mean:.4f} vs untrained {r.untrained_mean:.4f} on "
                     f"{r.metric} ({control_test_text(r)})")
    fails = [s for s in (CONTROL_HURTS, CONTROL_NOT_SHOWN) if s in states]
    verdict = (fails[0] if len(fails) == 1 else CONTROL_FAILS if fails else PASSES
               if states and all(s == PASSES for s in states) else UNTESTABLE)
    return _row(claim, "docs/method.md §6.5", protocol, datasets, "; ".join(parts) + ".",
                verdict, rule)


# ---------------------------------------------------------------------------- (c), (d)


def _claim_c(theory_checks) -> list[dict]:
    claim = "linear-rate convergence L(t) ≤ (1 − α)^t L(0) (Theorem 3)"
    rule = (f"'{HOLDS_WHERE_CHECKED}' if the theory notebook's numerical checks "
            + ", ".join(THEORY_CHECKS) + " (the theorem and its lemmas, on the toy fields "
            "rkdo theory builds under assumptions A1 + A2 — not on the trained encoders) all "
            "hold; does not hold if one fails; not testable without checks.json (rkdo theory) "
            "or with one missing")
    claim2 = ("(caveat, our interpretation — not the paper's claim) the theorem's decay does "
              "not show that the model learns")
    rule2 = (f"a caveat beside claim (c), not a verdict on the paper and not counted among "
             f"holds / does not hold: shown when the check {FROZEN_CHECK!r} holds — a model "
             "with learning rate 0 satisfies the bound (docs/method.md §6.2), so the decay "
             "cannot show learning; not testable without that check")
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
        verdict = HOLDS_WHERE_CHECKED if all(c["holds"] for c in used) else FAILS
        ev = ("checked numerically on the toy fields of `rkdo theory` under assumptions "
              "A1 + A2, not on the trained encoders: " + summary + "; " + "; ".join(
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
                    f"({frozen['detail']}) — learning rate 0, the model never changes"
                    + (": the bound holds without any learning." if frozen["holds"] else
                       ": the frozen model violates the bound here, so this caveat does not "
                       "apply to these checks."), CAVEAT if frozen["holds"] else UNTESTABLE,
                    rule2)
    return [_row(claim, "docs/method.md §1 c", ANY_PROTOCOL, [], ev, verdict, rule), row2]


_FLOP_COLUMNS = {"forward_profiler": "forward_profiler_flops",
                 "fwd_bwd_flopcounter": "fwd_bwd_flopcounter_flops",
                 "wall_time": "seconds_per_step_median"}


#: fewest per-step overheads for the distribution-free 95 % interval (Wilcoxon signed-rank
#: inversion needs n ≥ 6: below, no two-sided 95 % interval exists; a percentile bootstrap
#: of the median covers only 0.54 / 0.72 / 0.93 at n = 2 / 3 / 5)
WALL_TIME_MIN_STEPS = 6
#: consecutive steps averaged into one block when the per-step overheads are autocorrelated
WALL_TIME_BLOCK = 5


def _lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of a series (NaN for fewer than 3 values or no spread)."""
    if len(x) < 3 or not np.std(x) > 0:
        return float("nan")
    c = x - x.mean()
    return float((c[:-1] * c[1:]).sum() / (c * c).sum())


def _wall_time_verdict(steps_raw, bound: float) -> tuple[str, str]:
    """The wall-time row from the raw per-step paired overheads: the Hodges–Lehmann estimate
    with its distribution-free 95 % interval, which assumes independent steps. Where the
    lag-1 autocorrelation exceeds its ±2/√n band, the steps are averaged in non-overlapping
    blocks of :data:`WALL_TIME_BLOCK` and the interval is taken over the block means. Fewer
    than :data:`WALL_TIME_MIN_STEPS` values (steps, or blocks): not testable — no valid
    interval exists there."""
    x = np.asarray(steps_raw, dtype=float)
    x = x[np.isfinite(x)]
    r1 = _lag1(x)
    unit, how = x, "steps, treated as independent"
    if np.isfinite(r1) and abs(r1) > 2 / np.sqrt(len(x)):
        k = len(x) // WALL_TIME_BLOCK
        unit = x[:k * WALL_TIME_BLOCK].reshape(k, WALL_TIME_BLOCK).mean(axis=1)
        how = (f"steps autocorrelated (lag-1 r = {r1:.2f} beyond ±{2 / np.sqrt(len(x)):.2f}), "
               f"so means of {k} non-overlapping blocks of {WALL_TIME_BLOCK} steps")
    elif np.isfinite(r1):
        how = (f"steps treated as independent (lag-1 autocorrelation r = {r1:.2f}, within "
               f"±{2 / np.sqrt(len(x)):.2f})")
    if len(unit) < WALL_TIME_MIN_STEPS:
        return UNTESTABLE, (f"; {len(x)} per-step paired overheads ({how}): too few for a "
                            f"valid 95 % interval (needs {WALL_TIME_MIN_STEPS}; median "
                            f"{float(np.median(x)) if len(x) else float('nan'):.3g} %, not "
                            f"tested)")
    est = hodges_lehmann(unit)
    lo, hi = hodges_lehmann_ci(unit)
    verdict = HOLDS if hi < bound else FAILS if lo > bound else UNTESTABLE
    extra = (f"; {len(x)} per-step paired overheads ({how}): Hodges–Lehmann {est:.3g} %, "
             f"95 % CI [{lo:.3g}, {hi:.3g}] %")
    if verdict == UNTESTABLE:
        extra += f" — the interval spans the {bound:g} % threshold (timing noise)"
    return verdict, extra


def _claim_d(flops, bound: float) -> list[dict]:
    data = _load_json(flops)
    names = {"forward_profiler": "FLOPs, forward pass only, torch profiler (the paper's way)",
             "fwd_bwd_flopcounter": "FLOPs, forward + backward, FlopCounterMode",
             "wall_time": "wall time per optimizer step (audit, not a FLOP count)"}
    out = []
    for conv, label in names.items():
        claim = f"< {bound:g} % overhead of recursion depth 3 vs 1 — {label}"
        source = "docs/method.md §1 d" + (" (audit)" if conv == "wall_time" else "")
        rule = (f"'{HOLDS_AS_MEASURED}' if flops.json's overhead_pct[{conv!r}] = 100 "
                f"(depth 3 − depth 1)/depth 1 is below {bound:g} % — not plain 'holds': the "
                f"counter cannot see the recursion's elementwise work (docs/method.md §6.10); "
                f"not testable without flops.json (rkdo flops) or that convention")
        if conv == "wall_time":
            rule = (f"from the raw per-step paired overheads of flops.json "
                    f"(wall_time_paired_overhead_pct_steps, 100 (t_depth3/t_depth1 − 1) per "
                    f"interleaved step): the Hodges–Lehmann estimate of their centre with its "
                    f"distribution-free 95 % CI (Wilcoxon signed-rank inversion), which "
                    f"assumes independent steps — where the lag-1 autocorrelation exceeds "
                    f"±2/√n, over means of non-overlapping blocks of {WALL_TIME_BLOCK} steps; "
                    f"not testable below {WALL_TIME_MIN_STEPS} steps (or blocks), where no "
                    f"valid interval exists; holds if the CI lies below the "
                    f"paper's {bound:g} % (reported.overhead_pct_max), does not hold if it lies "
                    f"above, not testable if it spans it (timing noise coarser than the "
                    f"threshold); older flops.json without the raw steps: the old rule (p90 of "
                    f"the paired overheads below {bound:g} % holds, p10 above does not hold, "
                    f"else not testable; without those, the median overhead decides), with a "
                    f"note; not testable without flops.json")
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
        unit = (lambda v: f"{_g(v, 6)} s per step") if conv == "wall_time" else (
            lambda v: f"{fmt_large(v, 6)} FLOPs")  # as Table 7 writes FLOPs, not 7.77258e+09
        vals = "; ".join(f"depth {k}: {unit(float(v))}" for k, v in sorted(per_depth.items())
                         if v is not None)
        conventions = data.get("conventions") or {}
        conv_text = conventions.get(conv) or conventions.get(col) or conventions.get(
            col.removesuffix("_median"), "")
        extra = ""
        # a FLOP counter reproduces the paper's measurement, but cannot see the recursion's
        # elementwise work (docs/method.md §6.10): "holds" only as the paper measured it
        verdict = (HOLDS if conv == "wall_time" else HOLDS_AS_MEASURED) if pct < bound \
            else FAILS
        if conv == "forward_profiler" and data.get("paper_overhead_reported_pct") is not None:
            extra = (f"; the paper's own printed FLOPs give "
                     f"{float(data['paper_overhead_reported_pct']):.4g} %")
        if conv != "wall_time":
            extra += ("; the counter cannot see the recursion: it adds only elementwise work "
                      "on B × B matrices, which the FLOP counters do not count in the suite's "
                      "log-space loss (docs/method.md §6.10), so the figure says little about "
                      "what the recursion costs")
        if conv != "wall_time" and data.get("loss_elementwise_extra_ops") is not None:
            extra += (f"; the loss's elementwise work, which neither counter counts, grows by "
                      f"{int(data['loss_elementwise_extra_ops']):,} element-ops per step")
        paired = data.get("wall_time_paired_overhead_pct") or {}
        steps_raw = data.get("wall_time_paired_overhead_pct_steps")
        if conv == "wall_time" and steps_raw is not None:
            verdict, extra = _wall_time_verdict(steps_raw, bound)
        elif conv == "wall_time" and {"median", "p10", "p90"} <= set(paired):
            lo, hi = float(paired["p10"]), float(paired["p90"])
            extra = (f"; step-by-step paired overhead median {paired['median']:.3g} % "
                     f"(p10 {lo:.3g} %, p90 {hi:.3g} %)")
            verdict = (HOLDS if hi < bound else FAILS if lo > bound
                       else UNTESTABLE)
            if verdict == UNTESTABLE:
                extra += f" — the timing noise spans the {bound:g} % threshold"
            extra += ("; note: this flops.json predates the raw per-step overheads, so the "
                      "old p10/p90 rule decided (re-run `rkdo flops` for a CI)")
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
                     reported=None, table3_pairs: Sequence[Sequence[int]] = ((1, 5), (2, 5)),
                     min_important_difference: float | None = None,
                     control: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims, the evidence of this run and a computed verdict, one row each.

    ``df``: :func:`rkdo_core.reporting.results.load_metrics`'s frame. ``flops``:
    ``flops.json`` (a path or the loaded dict; a path that does not exist counts as absent).
    ``theory_checks``: ``checks.json`` of ``rkdo theory`` (path, list of dicts, or list of
    :class:`rkdo_core.theory.Check`). ``reported``:
    :class:`rkdo_core.reporting.reported.Reported` (for Table 3's rows and the FLOP bound;
    default ``params/reported.yaml``). Columns :data:`COLUMNS` plus display columns;
    ``attrs`` as :func:`rkdo_core.reporting.fmt.write_table` expects. Claims (a), (b) and
    Table 3 get one row per dataset and protocol in the results (``datasets``: that
    dataset's label), after the positive control's row
    (:func:`rkdo_core.reporting.stats.positive_control`, or ``control``), which gates the
    downstream rows. ``min_important_difference``: the params file's absolute margin M of
    claim (b) and Table 3 (None: half the lower bound of I-Con's gain).
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
    mid = None if min_important_difference is None else float(min_important_difference)
    control = positive_control(df) if control is None else control
    gated = gated_pairs(df, control)
    rows = []
    # one verdict per dataset and protocol: a dataset where training helps is judged on its
    # own, next to one where it does not (never a conjunction across datasets)
    for protocol in sorted(df.protocol.unique()):
        for dataset in dataset_order(df[df.protocol == protocol].dataset.unique()):
            sub = df[(df.protocol == protocol) & (df.dataset == dataset)]
            datasets = [dataset]
            rows += [_positive_control_row(control, protocol, datasets),
                     _claim_a(sub, protocol, datasets),
                     _claim_a_decomposition(sub, protocol, datasets),
                     _claim_a_yardstick(sub, protocol, datasets),
                     _claim_b(sub, protocol, datasets, pairs, gated, mid)]
            rows += _table3_rows_for(sub, protocol, datasets, reported, gated, mid,
                                     grid=dataset_order(df[df.protocol == protocol]
                                                        .dataset.unique()))
    rows += _claim_c(theory_checks)
    rows += _claim_d(flops, reported.overhead_pct_max)
    out = pd.DataFrame(rows, columns=COLUMNS)
    counts = out.verdict.value_counts()
    margin = (f"margin M = {mid:g} (min_important_difference)" if mid is not None else
              f"margin M = {MARGIN_FRACTION_OF_GAIN:g} × the lower 95 % bound of I-Con's "
              "gain from longer training")
    note = (f"Verdicts computed from the data by each row's rule (significance level {ALPHA}; "
            f"{margin}; loss band {LOSS_BAND[0]:g}–{LOSS_BAND[1]:g} %). Multiplicity: "
            f"conjunctions by intersection–union (each part at {ALPHA}), disjunctions with "
            f"Bonferroni intervals. The positive control comes first and gates the downstream "
            f"rows. 'does not hold' = this run does not show the claim under the rule (the "
            f"evidence states the minimal detectable difference); '{CAVEAT}' rows are our "
            f"interpretation, not verdicts on the paper, and are not counted. Methods: "
            f"{', '.join(METHOD_LABELS.values())}. "
            + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS if v != CAVEAT) + ".")
    display = {"Claim": out.claim, "Source": out.source, "Dataset": out.datasets,
               "Protocol": out.protocol,
               "Evidence (this run)": out.evidence, "Verdict": out.verdict, "Rule": out.rule}
    return finish_table(out, COLUMNS, display,
                        "Claims checklist: the paper's claims against this run", note, [])


def checklist_markdown(table: pd.DataFrame) -> str:
    """The checklist as Markdown (title, the display columns, the note)."""
    return table_markdown(table)
