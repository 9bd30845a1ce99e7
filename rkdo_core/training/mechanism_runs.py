"""The mechanism, shown: the function gap between I-Con and RKDO on synthetic embeddings and
on the real checkpoints of a results folder (06_mechanism.ipynb makes one call here:
:func:`run_mechanism_analysis`).

The *relative function gap* ``(L_icon − L_rkdo) / L_icon`` is the difference between the
two loss functions evaluated on the same embeddings (`rkdo_core.mechanism`). Rows of the
table (``source``):

* ``synthetic``: :func:`rkdo_core.mechanism.gap_sweep` on seeded synthetic views (unit
  vectors, positive cosine ≈ ``alignment``) as one of α, depth T, β (temperature schedule)
  or the views' alignment varies, the others at the loss defaults; one row per
  (value, seed), ``positive_cosine`` measured.
* ``closed_form``: exact values beside them — the two-level similarity
  (`mechanism.two_level_losses`): collapsed embeddings (margin 0; 24.85 % at the defaults
  with B = 64) for every α / T / β value, and margin = alignment for the alignment sweep
  (`mechanism.orthogonal_views` attains it exactly); and the α → 0 limit
  (`mechanism.rkdo_alpha_zero_limit`, on the synthetic views of the first seed).
* ``checkpoint``: every complete run of ``results_dir`` and each of its budgets: the two
  losses on the common yardstick's fixed seeded views of the evaluation images
  (`training.yardstick`; ``yardstick_icon``/``yardstick_rkdo`` of the metrics file when it
  holds the neutral yardsticks, else computed here from the checkpoint) and the measured
  mean positive cosine of the two views' embeddings (``1 − yard_alignment / 2``: on unit
  vectors ‖u − v‖² = 2 − 2 cos), with the run's own loss settings recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from ..config import RunConfig
from ..layout import (
    TRAIN_COMPLETE,
    checkpoint_path,
    is_complete,
    is_trained,
    metrics_path,
    run_folders,
    run_label,
)
from ..losses import icon_loss
from ..mechanism import (
    DEFAULT_SETTINGS,
    gap_sweep,
    rkdo_alpha_zero_limit,
    synthetic_views,
    two_level_losses,
)
from ..model import resolve_device
from ..runio import read_json
from .evaluate import eval_split
from .train import load_data, load_encoder
from .yardstick import YARDSTICK_SEED, yardstick

#: the swept parameters and their values (the loss defaults are among them)
SWEEPS: dict[str, tuple[Any, ...]] = {
    "alpha": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
    "depth": (1, 2, 3, 4, 6, 8),
    "beta": (0.0, 0.1, 0.2, 0.4, 0.6, 0.8),
    "alignment": (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 1.0),
}
#: x-axis labels of the figure's panels
LABELS = {"alpha": "α (RKDO coupling)", "depth": "recursion depth T",
          "beta": "β (temperature schedule τ_t = τ0(1 − βt/T))",
          "alignment": "mean positive cosine of the two views"}
CSV = "mechanism.csv"
FIGURE = "fig_mechanism"


def synthetic_rows(*, batch_size: int = 64, dim: int = 64, alignment: float = 0.5,
                   seeds: Sequence[int] = (0, 1, 2),
                   sweeps: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """:func:`gap_sweep` for each swept parameter, ``source = "synthetic"``."""
    sweeps = SWEEPS if sweeps is None else sweeps
    frames = [gap_sweep(p, list(v), alignment=alignment, batch_size=batch_size, dim=dim,
                        seeds=list(seeds)) for p, v in sweeps.items()]
    return pd.concat(frames, ignore_index=True).assign(source="synthetic")


def closed_form_rows(*, batch_size: int = 64, dim: int = 64, alignment: float = 0.5,
                     seeds: Sequence[int] = (0, 1, 2),
                     sweeps: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """Exact values: two-level (collapsed, margin 0) for every α / T / β value, two-level
    with margin = alignment for the alignment sweep, and the α → 0 limit."""
    sweeps = SWEEPS if sweeps is None else sweeps
    rows = []
    for parameter, values in sweeps.items():
        for value in values:
            s = dict(DEFAULT_SETTINGS)
            if parameter == "alignment":
                margin, case = float(value), "two-level, margin = alignment"
            else:
                s[parameter] = value
                margin, case = 0.0, "collapsed (two-level, margin 0)"
            exact = two_level_losses(batch_size, margin, **s)
            rows.append({"source": "closed_form", "case": case, "parameter": parameter,
                         "value": value, "alignment": margin if parameter == "alignment"
                         else 0.0, "positive_cosine": margin if parameter == "alignment"
                         else float("nan"), "batch_size": batch_size, **s,
                         **{k: exact[k] for k in ("L_icon", "L_rkdo", "gap", "relative_gap")}})
    if "alpha" in sweeps:
        s = dict(DEFAULT_SETTINGS)
        seed = int(list(seeds)[0])
        z1, z2 = synthetic_views(batch_size, dim, alignment, seed=seed)
        l_icon = float(icon_loss(z1, z2, temperature=s["temperature"],
                                 debias_alpha=s["debias_alpha"]))
        limit = float(rkdo_alpha_zero_limit(z1, z2, temperature=s["temperature"],
                                            depth=s["depth"], beta=s["beta"]))
        rows.append({"source": "closed_form", "case": f"α → 0 limit (synthetic views, "
                     f"seed {seed})", "parameter": "alpha", "value": 0.0, "seed": seed,
                     "alignment": alignment, "positive_cosine": float(
                         torch.nn.functional.cosine_similarity(z1, z2, dim=1).mean()),
                     "batch_size": batch_size, "dim": dim, **{**s, "alpha": 0.0},
                     "L_icon": l_icon, "L_rkdo": limit, "gap": l_icon - limit,
                     "relative_gap": (l_icon - limit) / l_icon})
    return pd.DataFrame(rows)


def _run_is_done(run: Path) -> bool:
    if is_complete(run):
        return True
    if not is_trained(run):
        return False
    budgets = read_json(run / TRAIN_COMPLETE).get("budgets", [])
    return bool(budgets) and all(metrics_path(run, b["epoch"]).exists() for b in budgets)


def checkpoint_rows(results_dir: str | Path | None) -> pd.DataFrame:
    """One row per (complete run, budget) of ``results_dir`` (none for None)."""
    if results_dir is None:
        return pd.DataFrame()
    rows = []
    for run in run_folders(results_dir):
        if not _run_is_done(run):
            continue
        done = read_json(run / TRAIN_COMPLETE)
        cfg = RunConfig.from_dict(done["config"])
        computed = None
        for rec in done["budgets"]:
            m = read_json(metrics_path(run, rec["epoch"]))
            if "yard_alignment" not in m or "yardstick_icon" not in m:
                computed = computed or _Scorer(run, cfg)
                m = computed.score(rec["epoch"])
            rows.append({"source": "checkpoint", "run": run_label(cfg), "dataset": cfg.dataset,
                         "protocol": cfg.protocol, "method": cfg.method, "seed": cfg.seed,
                         "epoch": rec["epoch"], "steps": rec["steps"],
                         "parameter": "alignment", "value": float("nan"),
                         "batch_size": cfg.batch_size, "temperature": cfg.temperature,
                         "debias_alpha": cfg.debias_alpha, "alpha": cfg.alpha,
                         "depth": cfg.depth, "beta": cfg.beta,
                         "positive_cosine": 1.0 - m["yard_alignment"] / 2.0,
                         "L_icon": m["yardstick_icon"], "L_rkdo": m["yardstick_rkdo"],
                         "gap": m["yardstick_icon"] - m["yardstick_rkdo"],
                         "relative_gap": (m["yardstick_icon"] - m["yardstick_rkdo"])
                         / m["yardstick_icon"],
                         "yardstick_images": m["yardstick_images"],
                         "yardstick_seed": m.get("yardstick_seed", YARDSTICK_SEED)})
    return pd.DataFrame(rows)


class _Scorer:
    """The yardstick of a run's checkpoints, for metrics files written before it held the
    neutral yardsticks: the same images, views and settings as evaluation."""

    def __init__(self, run: Path, cfg: RunConfig):
        self.run, self.cfg = run, cfg
        self.device = resolve_device(cfg.device)
        images, _, _ = eval_split(cfg, load_data(cfg).test)
        n = images.shape[0]
        if cfg.yardstick_images is not None:
            n = min(n, cfg.yardstick_images)
        self.images = images[:n]

    def score(self, epoch: int) -> dict[str, Any]:
        model = load_encoder(self.cfg, checkpoint_path(self.run, epoch), self.device)
        return yardstick(model, self.images, self.cfg)


def mechanism_table(results_dir: str | Path | None = None, *, batch_size: int = 64,
                    dim: int = 64, alignment: float = 0.5, seeds: Sequence[int] = (0, 1, 2),
                    sweeps: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
    """Every number of the figure: synthetic, closed-form and checkpoint rows."""
    kw = dict(batch_size=batch_size, dim=dim, alignment=alignment, seeds=seeds, sweeps=sweeps)
    frames = [synthetic_rows(**kw), closed_form_rows(**kw), checkpoint_rows(results_dir)]
    table = pd.concat([f for f in frames if not f.empty], ignore_index=True)
    first = ["source", "case", "parameter", "value", "seed", "run", "epoch", "positive_cosine",
             "L_icon", "L_rkdo", "gap", "relative_gap"]
    cols = [c for c in first if c in table] + [c for c in table if c not in first]
    return table[cols]


def caption(table: pd.DataFrame, *, batch_size: int, dim: int, alignment: float,
            seeds: Sequence[int]) -> str:
    s = DEFAULT_SETTINGS
    n_ckpt = int((table["source"] == "checkpoint").sum())
    collapsed = two_level_losses(batch_size, 0.0)["relative_gap"]
    text = (f"Relative function gap (L_icon − L_rkdo)/L_icon of the same embeddings. Lines: "
            f"synthetic views (B = {batch_size}, d = {dim}, unit vectors, mean over seeds "
            f"{list(seeds)}, band = min–max), one parameter varied, the others at τ0 = "
            f"{s['temperature']}, a = {s['debias_alpha']}, α = {s['alpha']}, T = "
            f"{s['depth']}, β = {s['beta']}, alignment {alignment}. Dashed: exact two-level "
            f"closed forms (collapsed embeddings: {100 * collapsed:.2f} % at the defaults; "
            f"alignment panel: margin = alignment); ×: the α → 0 limit.")
    if n_ckpt:
        text += (f" Points (alignment panel): {n_ckpt} checkpoints of real runs, both losses "
                 f"on the common yardstick's fixed views (view seed {YARDSTICK_SEED}) of the "
                 f"evaluation images, x = measured mean positive cosine, with each run's own "
                 f"loss settings.")
    return text


def mechanism_figure(table: pd.DataFrame, text: str = "") -> Figure:
    """Four panels (α, T, β, alignment): synthetic mean and band, closed forms, checkpoints."""
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    axes = fig.subplots(1, 4, sharey=True)
    syn = table[table["source"] == "synthetic"]
    exact = table[table["source"] == "closed_form"]
    ckpt = table[table["source"] == "checkpoint"]
    for ax, parameter in zip(axes, SWEEPS):
        rows = syn[syn["parameter"] == parameter]
        if not rows.empty:
            x = "positive_cosine" if parameter == "alignment" else "value"
            g = rows.groupby("value")
            xs = g[x].mean()
            ax.plot(xs, 100 * g["relative_gap"].mean(), "o-", color="C0", label="synthetic")
            ax.fill_between(xs, 100 * g["relative_gap"].min(), 100 * g["relative_gap"].max(),
                            color="C0", alpha=0.2)
        ex = exact[exact["parameter"] == parameter]
        two = ex[ex["case"].str.startswith(("collapsed", "two-level"))]
        if not two.empty:
            ax.plot(two["value"], 100 * two["relative_gap"], "--", color="C3",
                    label="closed form (two-level)")
        lim = ex[ex["case"].str.startswith("α → 0")]
        if not lim.empty:
            ax.plot(lim["value"], 100 * lim["relative_gap"], "x", color="k", ms=9,
                    label="α → 0 limit")
        if parameter == "alignment" and not ckpt.empty:
            for i, (method, rows_m) in enumerate(ckpt.groupby("method")):
                ax.scatter(rows_m["positive_cosine"], 100 * rows_m["relative_gap"], s=18,
                           marker="s^"[i % 2], color=f"C{i + 1}", zorder=3,
                           label=f"checkpoints ({method})")
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_xlabel(LABELS[parameter])
        ax.legend(fontsize=7)
    axes[0].set_ylabel("relative gap (L_icon − L_rkdo)/L_icon, %")
    if text:
        fig.suptitle(text, fontsize=7, wrap=True)
    return fig


def run_mechanism_analysis(out_dir: str | Path = ".", results_dir: str | Path | None = None,
                           *, batch_size: int = 64, dim: int = 64, alignment: float = 0.5,
                           seeds: Sequence[int] = (0, 1, 2),
                           sweeps: dict[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """Build the table, write ``out_dir/mechanism.csv`` and ``fig_mechanism.png``/``.pdf``.

    Returns ``{"table", "figure", "caption", "paths"}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = mechanism_table(results_dir, batch_size=batch_size, dim=dim, alignment=alignment,
                            seeds=seeds, sweeps=sweeps)
    text = caption(table, batch_size=batch_size, dim=dim, alignment=alignment, seeds=seeds)
    fig = mechanism_figure(table, text)
    paths = [out / CSV, out / f"{FIGURE}.png", out / f"{FIGURE}.pdf"]
    table.to_csv(paths[0], index=False)
    fig.savefig(paths[1], dpi=150)
    fig.savefig(paths[2], metadata={"CreationDate": None})  # a re-run: the same bytes
    return {"table": table, "figure": fig, "caption": text, "paths": paths}


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Synthetic mean relative gap per (parameter, value) beside its closed form."""
    syn = (table[table["source"] == "synthetic"].groupby(["parameter", "value"])
           .agg(positive_cosine=("positive_cosine", "mean"),
                relative_gap=("relative_gap", "mean")).reset_index())
    ex = table[table["source"] == "closed_form"][["parameter", "value", "case",
                                                  "relative_gap"]]
    ex = ex.rename(columns={"relative_gap": "closed_form_relative_gap"})
    merged = syn.merge(ex, on=["parameter", "value"], how="outer")
    return merged.sort_values(["parameter", "value"], key=lambda c: c if c.name != "parameter"
                              else c.map(list(SWEEPS).index)).reset_index(drop=True)


__all__ = ["SWEEPS", "mechanism_table", "mechanism_figure", "run_mechanism_analysis",
           "summary", "synthetic_rows", "closed_form_rows", "checkpoint_rows"]
