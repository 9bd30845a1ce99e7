"""Step budgets for the Fashion-MNIST grid, chosen from the learning curve by a written rule
(written with the curve's figure by `rkdo curve`: figures/fashion_learning_curve_budgets.json
and the rule's table in the caption .md). No torch: it reads the curve's CSV alone.

The rule (issue 22, item 2), on the gate method's (I-Con's) ``linear_cv``:

- the **gain** of seed s at step t is ``linear_cv(t) - linear_cv(0)`` of that seed (step 0 is
  the seed's untrained encoder, the same for both methods);
- the **noise** at step t is the larger of the gains' seed-to-seed standard deviation
  (ddof = 1) and the binomial standard error of one accuracy on the curve's test subset,
  ``sqrt(p (1 - p) / n_test)`` at the untrained encoder's mean accuracy p (so that two
  seeds that happen to agree cannot make a gain of 0.001 "beyond noise");
- step t **passes** when every seed's gain is > 0 and the mean gain exceeds the noise;
- the **gate budget** is the smallest passing step; the **early budget** (claim (b): the
  paper pairs RKDO at 20-40 % of I-Con's epochs) is the largest curve step in
  [0.2, 0.4] x the gate budget, else the smallest step above 0.4 x it.

When no step passes, ``gate_step`` is None and the rule says so: the grid then cannot be
chosen from the curve, and its budgets are the largest the CPU allows (params/fashion.yaml
says which, and why).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

GATE_METHOD = "icon"
GATE_METRIC = "linear_cv"
EARLY_FRACTION = (0.2, 0.4)

RULE = ("gate budget: the smallest step at which every seed's I-Con linear_cv beats the "
        "same seed's untrained encoder and the mean gain exceeds the noise (the larger of "
        "the gains' seed-to-seed SD and the binomial SE of one accuracy on the curve's test "
        "subset); early budget: the largest curve step within 20-40 % of the gate budget "
        "(claim (b)'s pairs), else the smallest above 40 %")


def step_table(df: pd.DataFrame, *, method: str = GATE_METHOD,
               metric: str = GATE_METRIC) -> list[dict[str, Any]]:
    """One entry per step > 0 that every seed of ``method`` has reached: the seeds' gains
    over their own step 0, mean, SD, the noise and whether the step passes."""
    sub = df[(df["method"] == method) & (df["metric"] == metric)]
    if sub.empty:
        raise ValueError(f"the curve has no {metric} rows of method {method!r}; "
                         f"methods present: {sorted(df['method'].unique())}")
    acc = sub.pivot_table(index="step", columns="seed", values="value", aggfunc="last")
    if 0 not in acc.index:
        raise ValueError("the curve has no step 0 (untrained encoder) rows: the gain of a "
                         "budget is measured against it")
    base = acc.loc[0]
    seeds = [s for s in acc.columns if not math.isnan(base[s])]
    n_test = int(sub["test_images"].iloc[0])
    p = float(base[seeds].mean())
    se = math.sqrt(p * (1 - p) / n_test)
    out = []
    for step in sorted(int(s) for s in acc.index if s > 0):
        row = acc.loc[step, seeds]
        if row.isna().any():
            continue  # not every seed has reached this step yet
        gains = (row - base[seeds]).astype(float)
        sd = float(gains.std(ddof=1)) if len(seeds) > 1 else float("nan")
        noise = se if math.isnan(sd) else max(sd, se)
        mean = float(gains.mean())
        out.append({"step": step, "gains": {int(s): round(float(g), 6) for s, g in gains.items()},
                    "mean_gain": round(mean, 6), "sd": None if math.isnan(sd) else round(sd, 6),
                    "binomial_se": round(se, 6), "noise": round(noise, 6),
                    "passes": bool((gains > 0).all() and mean > noise)})
    return out


def early_step(steps: list[int], gate: int) -> int | None:
    """Claim (b)'s early budget for a gate budget ``gate`` among the curve's ``steps``."""
    lo, hi = EARLY_FRACTION[0] * gate, EARLY_FRACTION[1] * gate
    inside = [s for s in steps if 0 < s and lo <= s <= hi]
    if inside:
        return max(inside)
    above = [s for s in steps if hi < s < gate]
    return min(above) if above else None


def choose(df: pd.DataFrame) -> dict[str, Any]:
    """The rule applied to a curve: the per-step table, ``gate_step`` and ``early_step``."""
    table = step_table(df)
    passing = [t["step"] for t in table if t["passes"]]
    gate = min(passing) if passing else None
    steps = sorted(int(s) for s in df["step"].unique())
    seeds = sorted(int(s) for s in df[df["method"] == GATE_METHOD]["seed"].unique())
    return {"rule": RULE, "method": GATE_METHOD, "metric": GATE_METRIC, "seeds": seeds,
            "curve_steps": steps, "steps": table, "gate_step": gate,
            "early_step": early_step(steps, gate) if gate is not None else None,
            "verdict": (f"I-Con's linear_cv beats the untrained encoder beyond noise from "
                        f"step {gate} on" if gate is not None else
                        "no step of the curve passes: I-Con's linear_cv does not beat the "
                        "untrained encoder beyond noise at any budget measured")}


def markdown(result: dict[str, Any]) -> str:
    """The rule's per-step table as markdown (for the curve's caption file)."""
    seeds = result["seeds"]
    head = ("| step | " + " | ".join(f"gain seed {s}" for s in seeds)
            + " | mean | SD | binomial SE | passes |")
    lines = [f"**Budgets from the curve.** Rule: {result['rule']}.", "", head,
             "|" + "---:|" * (len(seeds) + 4) + ":---|"]
    for t in result["steps"]:
        gains = " | ".join(f"{t['gains'].get(s, float('nan')):+.4f}" for s in seeds)
        sd = "n/a" if t["sd"] is None else f"{t['sd']:.4f}"
        lines.append(f"| {t['step']} | {gains} | {t['mean_gain']:+.4f} | {sd} | "
                     f"{t['binomial_se']:.4f} | {'yes' if t['passes'] else 'no'} |")
    lines += ["", f"Result: {result['verdict']}; gate budget "
              f"{result['gate_step']}, early budget {result['early_step']}."]
    return "\n".join(lines) + "\n"


def write_budgets(df: pd.DataFrame, csv_path: str | Path, out: str | Path | None = None
                  ) -> tuple[Path, dict]:
    """Apply the rule to the curve ``df`` read from ``csv_path``
    (`rkdo_core.reporting.curve_figure.load_curve`); write the JSON (default: beside the
    CSV, ``<stem>_budgets.json``)."""
    p = Path(csv_path)
    result = choose(df)
    dest = Path(out) if out is not None else p.with_name(p.stem + "_budgets.json")
    dest.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return dest, result
