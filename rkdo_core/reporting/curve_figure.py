"""The learning-curve figure of `rkdo curve` (figures/fashion_learning_curve.png/.pdf) and its
caption (.md), drawn from the CSV alone (`rkdo_core.curvecsv`; no torch, no training).

Panels: the CV linear probe (the C it chose) against optimizer steps, weighted 20-NN and 5-NN
and the 5-NN agreement; below, the probe at each C of its grid. In each panel a thin line
per seed and a thick line for the mean over seeds per method, and a dotted line at the
untrained encoder (step 0: the same encoder for both methods of a seed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from ..curvecsv import read_rows
from . import budgets

METHOD_LABELS = {"icon": "I-Con", "rkdo": "RKDO"}
METHOD_COLORS = {"icon": "tab:blue", "rkdo": "tab:red"}
PANELS = (("linear_cv", "linear probe, C chosen by CV"),
          ("knn20", "weighted cosine 20-NN"),
          ("knn5", "weighted cosine 5-NN"),
          ("knn5_cosine", "5-NN agreement (test, leave-one-out)"))


def load_curve(csv_path: str | Path) -> pd.DataFrame:
    """The CSV's rows as a DataFrame; FileNotFoundError / ValueError when there are none."""
    p = Path(csv_path)
    if not p.is_file():
        raise FileNotFoundError(f"no learning-curve CSV at {p}; run `rkdo curve` first "
                                "(without --plot-only) to compute it")
    rows = read_rows(p)
    if not rows:
        raise FileNotFoundError(f"the learning-curve CSV {p} holds no complete row yet")
    return pd.DataFrame(rows)


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _one(df: pd.DataFrame, col: str) -> Any:
    vals = sorted(df[col].dropna().unique().tolist())
    return vals[0] if len(vals) == 1 else ", ".join(map(str, vals))


def describe(df: pd.DataFrame) -> dict[str, Any]:
    """What the rows were computed with, for the title and the caption."""
    def mean(col: str, sel=None) -> float | None:
        s = df[col] if sel is None else df.loc[sel, col]
        s = s.dropna()
        return float(s.mean()) if len(s) else None
    per_ckpt = df.drop_duplicates(["method", "seed", "step"])
    return {"cpu": _one(df, "cpu"), "threads": _one(df, "threads"),
            "workers": _one(df, "workers"),
            "seeds": sorted(int(s) for s in df["seed"].unique()),
            "methods": sorted(df["method"].unique(), key=lambda m: (m != "icon", m)),
            "steps": sorted(int(s) for s in df["step"].unique()),
            "probe_images": _one(df, "probe_images"), "test_images": _one(df, "test_images"),
            "features": _one(df, "features"), "cv_folds": _one(df, "cv_folds"),
            "batch_size": _one(df, "batch_size"),
            "steps_per_epoch": _one(df, "steps_per_epoch"),
            "cs": sorted(df.loc[df.metric == "linear_C", "C"].dropna().unique().tolist()),
            "s_per_step": mean("train_s_per_step", per_ckpt.index),
            "eval_seconds": mean("eval_seconds", per_ckpt.index)}


def title(info: dict[str, Any]) -> str:
    return (f"Fashion-MNIST learning curve on {info['cpu']} ({info['threads']} torch "
            f"thread(s) per run, {info['workers']} run(s) at once); seeds "
            f"{', '.join(map(str, info['seeds']))}; probe-train {info['probe_images']} / test "
            f"{info['test_images']} images; x: real optimizer steps (batch "
            f"{info['batch_size']})")


def _means(df: pd.DataFrame, metric: str, C: float | None = None) -> pd.DataFrame:
    sel = df.metric == metric
    if C is not None:
        sel &= df.C == C
    return df[sel].groupby(["method", "step"])["value"].mean().unstack("method")


def caption(df: pd.DataFrame) -> str:
    info = describe(df)
    methods = info["methods"]
    lin = _means(df, "linear_cv")
    knn = _means(df, "knn20")
    pace = ("" if info["s_per_step"] is None else
            f" Measured here: {info['s_per_step']:.3f} s per optimizer step (mean over the "
            f"runs' checkpoint intervals) and {info['eval_seconds']:.1f} s per checkpoint "
            "evaluation (embedding both subsets once, every probe fit and the k-NN).")
    lines = [
        f"**Figure: {title(info)}.**",
        "",
        f"Accuracy on a fixed class-stratified subset of {info['test_images']} Fashion-MNIST "
        f"test images against the number of real optimizer steps (batches of "
        f"{info['batch_size']} images, two augmented views each) for "
        f"{' and '.join(_label(m) for m in methods)}, trained with the full protocol and "
        "the paper's loss settings (params/fashion_curve.yaml) — one run per method and seed, "
        "evaluated at each step budget. Thin lines: each seed; thick lines: the mean over "
        f"seeds {', '.join(map(str, info['seeds']))}. Dotted line: the untrained encoder "
        "(step 0; the same encoder for both methods of a seed). Features: the "
        f"{info['features']} of the encoder. Top left: the standardised logistic probe "
        f"with C chosen by {info['cv_folds']}-fold stratified CV on the probe-train "
        f"features (a fixed class-stratified subset of {info['probe_images']} train "
        "images); bottom row: the same probe fitted at each C of its grid "
        f"({', '.join(f'{c:g}' for c in info['cs'])}) on all probe-train features. "
        "k-NN: DINO's weighted cosine classifier (T = 0.07) with the probe-train features "
        "as memory bank, k = 20 and 5; 5-NN agreement: the paper's leave-one-out label "
        "agreement among the test features. Batches are drawn without replacement within "
        f"blocks of {info['steps_per_epoch']} steps." + pace,
        "",
        "| step | " + " | ".join(f"{_label(m)} linear probe (CV)" for m in methods)
        + " | " + " | ".join(f"{_label(m)} 20-NN" for m in methods) + " |",
        "|---:|" + "---:|" * (2 * len(methods)),
    ]
    for step in info["steps"]:
        cells = [f"{lin.at[step, m]:.4f}" if m in lin and step in lin.index
                 and pd.notna(lin.at[step, m]) else "" for m in methods]
        cells += [f"{knn.at[step, m]:.4f}" if m in knn and step in knn.index
                  and pd.notna(knn.at[step, m]) else "" for m in methods]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "(means over seeds; the CSV beside this file holds every seed, metric and "
              "C.)", ""]
    return "\n".join(lines)


def _panel(ax, df: pd.DataFrame, metric: str, name: str, C: float | None = None) -> None:
    sel = df.metric == metric
    if C is not None:
        sel &= df.C == C
    d = df[sel]
    base = d.loc[d.step == 0, "value"]
    if len(base):
        ax.axhline(float(base.mean()), color="0.4", ls=":", lw=1.2,
                   label="untrained (step 0)")
    for method in sorted(d.method.unique(), key=lambda m: (m != "icon", m)):
        dm = d[d.method == method]
        color = METHOD_COLORS.get(method)
        for _seed, ds in dm.groupby("seed"):
            ds = ds.sort_values("step")
            ax.plot(ds.step, ds.value, color=color, lw=0.8, alpha=0.35)
        mean = dm.groupby("step")["value"].mean().sort_index()
        ax.plot(mean.index, mean.values, color=color, lw=2, marker="o", ms=3.5,
                label=f"{_label(method)} (mean)")
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("optimizer steps", fontsize=8)
    ax.set_ylabel("test accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def draw(df: pd.DataFrame) -> Figure:
    info = describe(df)
    cs = info["cs"]
    ncols = max(len(PANELS), len(cs), 1)
    nrows = 2 if cs else 1
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (metric, name) in zip(axes[0], PANELS):
        _panel(ax, df, metric, name)
    for ax in axes[0][len(PANELS):]:
        ax.set_visible(False)
    if cs:
        for ax, c in zip(axes[1], cs):
            _panel(ax, df, "linear_C", f"linear probe at C = {c:g}", C=c)
        for ax in axes[1][len(cs):]:
            ax.set_visible(False)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle(title(info), fontsize=9)
    return fig


def write_figure(csv_path: str | Path) -> list[Path]:
    """Draw the figure and caption beside ``csv_path`` (same name: .png, .pdf, .md), and
    the budgets the curve gives (`rkdo_core.reporting.budgets`: ``<stem>_budgets.json``,
    its table appended to the caption) when it has the gate method's step 0."""
    p = Path(csv_path)
    df = load_curve(p)
    fig = draw(df)
    out = [p.with_suffix(".png"), p.with_suffix(".pdf"), p.with_suffix(".md")]
    fig.savefig(out[0], dpi=150)
    fig.savefig(out[1], metadata={"CreationDate": None})
    text = caption(df)
    try:
        dest, result = budgets.write_budgets(df, p)
    except ValueError as e:  # no I-Con rows or no step 0: no budgets to choose
        text += f"\nNo budgets chosen from this curve: {e}.\n"
    else:
        text += "\n" + budgets.markdown(result)
        out.append(dest)
    out[2].write_text(text, encoding="utf-8")
    return out
