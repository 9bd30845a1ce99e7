"""Figures 1–5 of the paper and the audit's Figure 6 (Figure 7 is :mod:`.compute`'s),
re-drawn from the metrics files beside the numbers the paper reports.

One function per figure, each returning ``(fig, caption)``. Figures are plain
:class:`matplotlib.figure.Figure` objects (no pyplot state, safe under the Agg backend and
in worker processes); the caption states what was run: seeds, protocol, real optimizer
steps per budget, device, what the error bars are and the test used. Budgets a figure needs
but the results lack are left out of the drawing and named in the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..datasets import dataset_label, dataset_order, n_classes
from .fmt import format_p
from .reported import Reported
from .stats import (
    METHOD_LABELS,
    METRIC_LABELS,
    METRICS,
    YARDSTICK,
    has_yardstick,
    paired_comparison,
    paired_stats,
    paired_values,
    yardstick_comparison,
)

FIGURE_NAMES = {"fig1": "fig1_loss_improvement_by_dataset",
                "fig2": "fig2_loss_improvement_by_budget",
                "fig3": "fig3_rkdo{rkdo}_vs_icon{icon}", "fig4": "fig4_early_learning",
                "fig5": "fig5_loss_vs_training_length",
                "fig6": "fig6_common_yardstick", "fig7": "fig7_compute_matched"}
EVAL_METRICS = [m for m in METRICS if not METRICS[m]]
METHOD_STYLE = {"rkdo": "-", "icon": "--"}
REPORTED_MARKER = dict(marker="D", markersize=7, markerfacecolor="none", markeredgecolor="k",
                       markeredgewidth=1.3, linestyle="none", zorder=5)
_SD_BARS = "± 1 std (ddof 1) over seeds"
CHANCE_METRICS = ("linear_eval", "neighborhood_acc")


def fig3_name(rkdo_epoch: int, icon_epoch: int) -> str:
    """Figure 3's name for one of the grid's Table 3 pairs (RKDO@early vs I-Con@late)."""
    return FIGURE_NAMES["fig3"].format(rkdo=rkdo_epoch, icon=icon_epoch)


#: gid of the chance-level segments (the tests find them by it)
CHANCE_GID = "chance"


def _draw_chance(ax, datasets: Sequence[str], half_width: float = 0.45) -> bool:
    """Dotted segment at 1/classes over each dataset's group; True if any was drawn."""
    drawn = False
    for j, d in enumerate(datasets):
        if n_classes(d):
            ax.hlines(1 / n_classes(d), j - half_width, j + half_width, colors="grey",
                      linestyles=":", linewidth=1.2, zorder=3, gid=CHANCE_GID,
                      label=None if drawn else "chance (1 / classes)")
            drawn = True
    return drawn


def _palette(n: int) -> list:
    return sns.color_palette("colorblind", max(n, 1))


def method_colors() -> dict[str, tuple]:
    pal = _palette(2)
    return {"rkdo": pal[0], "icon": pal[1]}


def close(fig: Figure) -> None:
    """Release a figure (they hold no pyplot state; this drops its canvas and axes)."""
    fig.clear()


def _error_bars(ax, xs, hs, es) -> None:
    """Black error bars of half-width ``es`` on bars at ``xs`` of height ``hs``, where finite
    (one seed, or no paired test possible, gives NaN: no bar rather than a zero bar)."""
    es = np.asarray(es, dtype=float)
    ok = np.isfinite(es)
    if ok.any():
        ax.errorbar(np.asarray(xs)[ok], np.asarray(hs)[ok], yerr=es[ok], fmt="none",
                    ecolor="k", elinewidth=1, capsize=3, zorder=4)


def save_figure(fig: Figure, out_dir: str | Path, name: str, dpi: int = 150
                ) -> tuple[Path, Path]:
    """Write ``name.png`` (``dpi``) and ``name.pdf`` into ``out_dir``; returns both paths.
    The PDF carries no creation date, so a re-run writes the same bytes."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png, pdf = out_dir / f"{name}.png", out_dir / f"{name}.pdf"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return png, pdf


# ---------------------------------------------------------------------------- captions


def select_protocol(df: pd.DataFrame, protocol: str | None) -> tuple[pd.DataFrame, str]:
    protocols = sorted(df.protocol.unique())
    if protocol is None:
        if len(protocols) != 1:
            raise ValueError(f"the results hold several protocols {protocols}; pass protocol=")
        protocol = protocols[0]
    elif protocol not in protocols:
        raise ValueError(f"protocol {protocol!r} is not in the results (present: {protocols})")
    return df[df.protocol == protocol], protocol


def _list(xs) -> str:
    return ", ".join(str(x) for x in xs)


def run_facts(df: pd.DataFrame, protocol: str | None = None,
              datasets: Sequence[str] | None = None) -> str:
    """What was run, for a caption: seeds (which, and how many per dataset where they
    differ), protocol, real optimizer steps per budget, device."""
    sub, protocol = select_protocol(df, protocol)
    if datasets is not None:
        sub = sub[sub.dataset.isin(datasets)]
    parts = []
    per_ds = {}
    for d in dataset_order(sub.dataset):
        g = sub[sub.dataset == d]
        per_ds[d] = sorted(set(g[g.method == "rkdo"].seed) & set(g[g.method == "icon"].seed))
    all_seeds = sorted(set().union(*per_ds.values())) if per_ds else []
    seeds_txt = f"{len(all_seeds)} seed{'s' if len(all_seeds) != 1 else ''} " \
                f"({_list(all_seeds)}), paired across methods"
    fewer = [f"{dataset_label(d)} {len(s)}" for d, s in per_ds.items() if len(s) < len(all_seeds)]
    if fewer:
        seeds_txt += f" (fewer for: {', '.join(fewer)})"
    parts.append(seeds_txt)
    if protocol == "paper":
        n_eval = sorted({int(x) for x in sub.get("eval_images", pd.Series(dtype=float)).dropna()})
        ev = f"; evaluation on the first {_list(n_eval)} test images" if n_eval else ""
        parts.append("paper protocol (an \"epoch\" is the authors' notebook's fixed number of "
                     f"batches{ev})")
    elif protocol == "full":
        parts.append("full protocol (an epoch is a full pass over the training set; "
                     "evaluation on the whole test set)")
    else:
        parts.append(f"{protocol} protocol")
    maps = {}
    for d in dataset_order(sub.dataset):
        g = sub[sub.dataset == d]
        if "steps" in g and g.steps.notna().any():
            s = g.groupby("epoch").steps.agg(["min", "max"])
            maps[d] = ", ".join(f"{int(e)} → {int(r['min'])}" if r["min"] == r["max"]
                                else f"{int(e)} → {int(r['min'])}–{int(r['max'])}"
                                for e, r in s.iterrows())
    if maps and len(set(maps.values())) == 1:
        only = next(iter(maps.values()))
        parts.append(f"real optimizer steps per budget (epochs → steps): {only}")
    elif maps:
        parts.append("real optimizer steps per budget (epochs → steps): "
                     + "; ".join(f"{dataset_label(d)} {m}" for d, m in maps.items()))
    else:
        parts.append("real optimizer steps: not recorded in the metrics files")
    if "device" in sub and sub.device.notna().any():
        runs = sub.drop_duplicates(["dataset", "method", "seed"])
        counts = runs.device.astype(str).value_counts()
        parts.append("device: " + ", ".join(f"{dev} ({n} runs)" for dev, n in counts.items()))
    else:
        parts.append("device: not recorded")
    return "; ".join(parts) + "."


def _missing_grid(have: set[tuple[str, int]], datasets, epochs) -> list[str]:
    return [f"{dataset_label(d)} at {e} epochs" for d in datasets for e in epochs
            if (d, e) not in have]


# ---------------------------------------------------------------------------- Figs 1 and 2


def _loss_comp(df: pd.DataFrame, comp: pd.DataFrame | None, protocol: str) -> pd.DataFrame:
    comp = paired_comparison(df) if comp is None else comp
    return comp[(comp.metric == "train_loss") & (comp.protocol == protocol)]


def _grouped_improvement(df, comp, reported, protocol, by_dataset: bool):
    sub, protocol = select_protocol(df, protocol)
    c = _loss_comp(sub, comp, protocol)
    datasets = dataset_order(c.dataset)
    epochs = sorted(int(e) for e in c.epoch.unique())
    groups, hues = (datasets, epochs) if by_dataset else (epochs, datasets)
    pal = _palette(len(hues))
    fig = Figure(figsize=(max(8.5, 1.6 * len(groups) + 2), 4.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(hues), 1)
    rep = {}
    if reported is not None and protocol == reported.protocol:
        rep = {(r.dataset, int(r.epochs)): float(r.improvement_pct)
               for r in reported.table1.itertuples()}
    rep_drawn = False
    lookup = {(r.dataset, int(r.epoch)): r for r in c.itertuples()}
    for k, h in enumerate(hues):
        xs, hs, es, keys = [], [], [], []
        for j, gval in enumerate(groups):
            d, e = (gval, h) if by_dataset else (h, gval)
            r = lookup.get((d, e))
            if r is None:
                continue
            xs.append(j + (k - (len(hues) - 1) / 2) * width)
            hs.append(r.improvement_pct)
            es.append(r.improvement_ci)
            keys.append((d, e))
        if not xs:
            continue
        label = f"epoch {h}" + (" (untrained)" if h == 0 else "") if by_dataset \
            else dataset_label(h)
        bars = ax.bar(xs, hs, width * 0.95, color=pal[k], label=label,
                      hatch="//" if by_dataset and h == 0 else None,
                      edgecolor="k" if by_dataset and h == 0 else None, linewidth=0.5)
        for patch, key in zip(bars.patches, keys):
            patch.set_gid(f"{key[0]}/{key[1]}")
        _error_bars(ax, xs, hs, es)
        rx = [x for x, key in zip(xs, keys) if key in rep]
        ry = [rep[key] for key in keys if key in rep]
        if rx:
            ax.plot(rx, ry, label=None if rep_drawn else "paper (Table 1)", **REPORTED_MARKER)
            rep_drawn = True
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([dataset_label(g) for g in groups] if by_dataset
                       else [f"{g}" + ("\n(untrained)" if g == 0 else "") for g in groups])
    ax.set_xlabel("dataset" if by_dataset else "training length (epochs)")
    ax.set_ylabel("loss improvement of RKDO over I-Con (%)")
    ax.set_title("Training-loss \"improvement\", 100 (I-Con − RKDO) / I-Con")
    fig.legend(*ax.get_legend_handles_labels(), title="budget" if by_dataset else "dataset",
               fontsize=8, title_fontsize=8, loc="outside right upper")
    # caption
    have = set(lookup)
    missing = _missing_grid(have, datasets, epochs)
    gap0 = [f"{dataset_label(d)} {lookup[(d, 0)].improvement_pct:.1f} %" for d in datasets
            if (d, 0) in lookup]
    last_epoch = {d: max(e for dd, e in have if dd == d) for d in datasets}
    last = [f"{dataset_label(d)} {lookup[(d, e)].improvement_pct:.1f} % at {e} epochs"
            for d, e in last_epoch.items()]
    trained = c[c.epoch > 0]
    holm_rng = trained.p_holm.dropna()
    test = ("Test: paired t-test RKDO vs I-Con across seeds for each bar, Holm-adjusted over "
            f"the {len(holm_rng)} trained dataset × budget comparisons (Table 1); p (Holm) "
            f"from {format_p(holm_rng.min())} to {format_p(holm_rng.max())}."
            if len(holm_rng) else "Test: none possible (fewer than 2 seeds or identical "
            "values).")
    n = "Figure 1" if by_dataset else "Figure 2"
    grouping = ("x = dataset, colour = epoch budget" if by_dataset
                else "x = epoch budget, colour = dataset")
    caption = " ".join(filter(None, [
        f"{n}. Training-loss \"improvement\" of RKDO over I-Con, 100 (I-Con − RKDO)/I-Con of "
        f"the seed means (the paper's definition); {grouping}. Epoch 0 is the untrained "
        "encoder: its gap exists before any training (RKDO's target is partly made of its "
        "own prediction), so it is the baseline for every trained bar"
        + (f" (epoch 0: {', '.join(gap0)}; last budget: {', '.join(last)})." if gap0 else "."),
        "Error bars: 95 % t-interval of the per-seed paired improvement "
        "100 (I-Con_s − RKDO_s)/I-Con_s; none at epoch 0, where both methods hold the same "
        "untrained encoder and the gap is a difference between two functions, not a test.",
        "Hollow diamonds: the paper's Table 1, where dataset and budget match."
        if rep_drawn else "No reported value matches these datasets/budgets.",
        test,
        "Runs: " + run_facts(sub, protocol, datasets),
        ("Not in the results (not drawn): " + ", ".join(missing) + ".") if missing else "",
    ]))
    return fig, caption


def fig1_loss_improvement(df: pd.DataFrame, comp: pd.DataFrame | None = None,
                          reported: Reported | None = None, protocol: str | None = None
                          ) -> tuple[Figure, str]:
    """Figure 1: loss improvement % of RKDO over I-Con, x = dataset, colour = budget (epoch 0
    included). Bar heights are :func:`paired_comparison`'s ``improvement_pct``."""
    return _grouped_improvement(df, comp, reported, protocol, by_dataset=True)


def fig2_loss_improvement_by_budget(df: pd.DataFrame, comp: pd.DataFrame | None = None,
                                    reported: Reported | None = None,
                                    protocol: str | None = None) -> tuple[Figure, str]:
    """Figure 2: Figure 1's numbers grouped the other way (x = budget, colour = dataset)."""
    return _grouped_improvement(df, comp, reported, protocol, by_dataset=False)


# ---------------------------------------------------------------------------- Fig 3


def _mean_sd(sub: pd.DataFrame, dataset: str, method: str, epoch: int, metric: str):
    v = sub[(sub.dataset == dataset) & (sub.method == method) & (sub.epoch == epoch)][metric]
    v = v.astype(float).dropna()
    if v.empty:
        return None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else np.nan


UNTRAINED_COLOR = "0.6"


def _series_label(series: str, epoch: int) -> str:
    if series == "untrained":
        return "untrained encoder (epoch 0)"
    return f"{METHOD_LABELS[series]}, {epoch} epoch{'s' if epoch != 1 else ''}"


def fig3_rkdo_vs_icon(df: pd.DataFrame, reported: Reported | None = None,
                      protocol: str | None = None, rkdo_epoch: int = 2, icon_epoch: int = 5,
                      metric: str = "linear_eval") -> tuple[Figure, str]:
    """Figure 3: RKDO after ``rkdo_epoch`` vs I-Con after ``icon_epoch`` epochs, per dataset
    (linear eval); reported markers from the paper's Table 2 at the same budgets."""
    sub, protocol = select_protocol(df, protocol)
    datasets = dataset_order(sub.dataset)
    colors = method_colors()
    # 2.4 in. more on the right: the legend sits outside the axes, where it covers neither
    # a bar nor the chance line (inside, "best" put it over the chance line of one dataset)
    fig = Figure(figsize=(max(5.5, 1.5 * len(datasets) + 2) + 2.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    rep = {}
    if reported is not None and protocol == reported.protocol and metric == "linear_eval":
        for r in reported.table2.itertuples():
            rep[(r.dataset, "rkdo", int(r.epochs))] = float(r.rkdo_mean)
            rep[(r.dataset, "icon", int(r.epochs))] = float(r.icon_mean)
    missing, tests, rep_drawn = [], [], False
    # budget 0 first: the untrained encoder (the same weights for both methods at a seed;
    # read from the RKDO runs) is the baseline both trained bars should beat
    bars_spec = (("untrained", 0), ("rkdo", rkdo_epoch), ("icon", icon_epoch))
    w = 0.8 / len(bars_spec)
    for k, (series, epoch) in enumerate(bars_spec):
        method = "rkdo" if series == "untrained" else series
        xs, hs, es, drawn = [], [], [], []
        for j, d in enumerate(datasets):
            ms = _mean_sd(sub, d, method, epoch, metric)
            if ms is None:
                missing.append(f"{_series_label(series, epoch)} for {dataset_label(d)}")
                continue
            xs.append(j + (k - (len(bars_spec) - 1) / 2) * w)
            hs.append(ms[0])
            es.append(ms[1])
            drawn.append(d)
            if (d, method, epoch) in rep:
                ax.plot([xs[-1]], [rep[(d, method, epoch)]],
                        label=None if rep_drawn else "paper (Table 2)", **REPORTED_MARKER)
                rep_drawn = True
        if xs:
            bars = ax.bar(xs, hs, w * 0.95, color=colors.get(series, UNTRAINED_COLOR),
                          label=_series_label(series, epoch))
            for patch, d in zip(bars.patches, drawn):
                patch.set_gid(f"{series}/{d}")
            _error_bars(ax, xs, hs, es)
    for d in datasets:
        seeds, r, i = paired_values(sub, d, protocol, metric, rkdo_epoch, icon_epoch,
                                    finite_only=True)
        if len(seeds) >= 2:
            st = paired_stats(r, i)
            tests.append(f"{dataset_label(d)}: RKDO − I-Con = {st['diff_mean']:+.4f} "
                         f"[{st['ci_low']:+.4f}, {st['ci_high']:+.4f}], p = "
                         f"{format_p(st['p_value'])}")
    chance = metric in CHANCE_METRICS and _draw_chance(ax, datasets)
    ax.set_xticks(range(len(datasets)))
    ax.set_xticklabels([dataset_label(d) for d in datasets])
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(f"RKDO after {rkdo_epoch} vs I-Con after {icon_epoch} epochs")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    fewer = (f" ({100 * (1 - rkdo_epoch / icon_epoch):.0f} % fewer epochs for RKDO)"
             if icon_epoch > rkdo_epoch else "")
    caption = " ".join(filter(None, [
        f"Figure 3. {METRIC_LABELS[metric].capitalize()} of RKDO after {rkdo_epoch} epochs vs "
        f"I-Con after {icon_epoch} epochs{fewer} (a Table 3 pair of the grid), mean over "
        "seeds per dataset; grey: the untrained encoder "
        "(budget 0, identical for both methods at a seed), the baseline both should beat.",
        f"Error bars: {_SD_BARS}.",
        "Hollow diamonds: the paper's Table 2 at the same budgets." if rep_drawn else "",
        "Dotted: chance level, 1 / number of classes." if chance else "",
        ("Test: paired t-test across seeds (same seed, different budgets), mean difference "
         "with 95 % t-interval: " + "; ".join(tests) + ".") if tests else
        "Test: none (needs both budgets and at least 2 seeds).",
        "Runs: " + run_facts(sub, protocol, datasets),
        ("Not in the results (not drawn): " + ", ".join(missing) + ".") if missing else "",
    ]))
    return fig, caption


# ---------------------------------------------------------------------------- Fig 4


def fig4_early_learning(df: pd.DataFrame, reported: Reported | None = None,
                        protocol: str | None = None, epochs: Sequence[int] = (1, 2),
                        metrics: Sequence[str] = tuple(EVAL_METRICS)) -> tuple[Figure, str]:
    """Figure 4: both methods at the early budgets (default 1 and 2 epochs) per dataset, one
    panel per evaluation metric; reported markers from the paper's Tables 2 and 4."""
    sub, protocol = select_protocol(df, protocol)
    datasets = dataset_order(sub.dataset)
    colors = method_colors()
    ncol = 2 if len(metrics) > 1 else 1
    nrow = int(np.ceil(len(metrics) / ncol))
    fig = Figure(figsize=(5.2 * ncol + 0.8 * len(datasets), 3.6 * nrow), layout="constrained")
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    rep = {}
    if reported is not None and protocol == reported.protocol:
        for r in reported.table2.itertuples():
            for m in ("rkdo", "icon"):
                rep[(r.dataset, "linear_eval", m, int(r.epochs))] = getattr(r, f"{m}_mean")
        for r in reported.table4.itertuples():
            for m in ("rkdo", "icon"):
                rep[(r.dataset, r.metric, m, reported.table4_epoch)] = getattr(r, f"{m}_mean")
    # budget 0 first: the untrained encoder (identical for both methods at a seed; read from
    # the RKDO runs), the baseline every trained bar should beat
    combos = [("untrained", 0)] + [(m, e) for e in epochs if e != 0 for m in ("rkdo", "icon")]
    w = 0.8 / len(combos)
    missing, rep_drawn, chance = set(), False, False
    for ax, metric in zip(axes, metrics):
        for k, (series, epoch) in enumerate(combos):
            method = "rkdo" if series == "untrained" else series
            xs, hs, es = [], [], []
            for j, d in enumerate(datasets):
                ms = _mean_sd(sub, d, method, epoch, metric) if metric in sub else None
                if ms is None:
                    who = ("the untrained encoder (epoch 0)" if series == "untrained"
                           else f"{METHOD_LABELS[method]} at {epoch} epochs")
                    missing.add(f"{who} for {dataset_label(d)}")
                    continue
                x = j + (k - (len(combos) - 1) / 2) * w
                xs.append(x)
                hs.append(ms[0])
                es.append(ms[1])
                key = (d, metric, method, epoch)
                if key in rep:
                    ax.plot([x], [float(rep[key])], label=None if rep_drawn else "paper",
                            **REPORTED_MARKER)
                    rep_drawn = True
            if xs:
                early = epoch == min(epochs) and series != "untrained"
                ax.bar(xs, hs, w * 0.95, color=colors.get(series, UNTRAINED_COLOR),
                       alpha=0.55 if early and len(epochs) > 1 else 1.0,
                       hatch=".." if early and len(epochs) > 1 else None,
                       label=f"{series}/{epoch}")
                es = np.asarray(es, dtype=float)
                ok = np.isfinite(es)
                if ok.any():
                    ax.errorbar(np.asarray(xs)[ok], np.asarray(hs)[ok], yerr=es[ok],
                                fmt="none", ecolor="k", capsize=2, elinewidth=0.8, zorder=4)
        if metric in CHANCE_METRICS:
            chance = _draw_chance(ax, datasets) or chance
        ax.set_xticks(range(len(datasets)))
        ax.set_xticklabels([dataset_label(d) for d in datasets])
        ax.set_title(METRIC_LABELS[metric])
        ax.set_gid(metric)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    handles = [Patch(facecolor=colors.get(m, UNTRAINED_COLOR),
                     alpha=0.55 if e == min(epochs) and len(epochs) > 1 else 1.0,
                     hatch=".." if e == min(epochs) and len(epochs) > 1 else None,
                     label=_series_label(m, e))
               for m, e in combos]
    if rep_drawn:
        handles.append(Line2D([], [], label="paper (Tables 2, 4)", **REPORTED_MARKER))
    if chance:
        handles.append(Line2D([], [], color="grey", linestyle=":", label="chance"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5),
               fontsize=8)
    caption = " ".join(filter(None, [
        f"Figure 4. Early learning: RKDO and I-Con after {_list(epochs)} epochs, mean over "
        f"seeds per dataset; panels: {', '.join(METRIC_LABELS[m] for m in metrics)}. Grey: "
        "the untrained encoder (budget 0, identical for both methods at a seed), the "
        "baseline every trained bar should beat.",
        f"Error bars: {_SD_BARS}.",
        "Hollow diamonds: the paper (linear eval from Table 2; all metrics at "
        f"{reported.table4_epoch} epochs from Table 4)." if rep_drawn else "",
        "Dotted: chance level (1 / number of classes) for linear eval and neighborhood "
        "accuracy." if chance else "",
        "No test is drawn; the paired t-tests across seeds with Holm correction for every bar "
        "pair are in Tables 2 and 4 (comparison.csv).",
        "Runs: " + run_facts(sub, protocol, datasets),
        ("Not in the results (not drawn): " + ", ".join(sorted(missing)) + ".")
        if missing else "",
    ]))
    return fig, caption


# ---------------------------------------------------------------------------- Fig 5


def fig5_loss_curves(df: pd.DataFrame, reported: Reported | None = None,
                     protocol: str | None = None) -> tuple[Figure, str]:
    """Figure 5: training loss vs training length (epochs, 0 = untrained encoder), one line
    per method (solid RKDO, dashed I-Con) and dataset; the paper's Table 1 faint behind.

    The data line of each series carries the gid ``"<method>/<dataset>"`` (reported ones
    ``"paper/<method>/<dataset>"``)."""
    sub, protocol = select_protocol(df, protocol)
    datasets = dataset_order(sub.dataset)
    pal = dict(zip(datasets, _palette(len(datasets))))
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.add_subplot()
    rep_drawn, missing = False, []
    all_epochs = sorted(int(e) for e in sub.epoch.unique())
    for d in datasets:
        for method in ("rkdo", "icon"):
            g = sub[(sub.dataset == d) & (sub.method == method)]
            if g.empty:
                missing.append(f"{METHOD_LABELS[method]} for {dataset_label(d)}")
                continue
            s = g.groupby("epoch").train_loss.agg(["mean", "std", "count"]).sort_index()
            lacking = [e for e in all_epochs if e not in s.index]
            if lacking:
                missing.append(f"{METHOD_LABELS[method]} {dataset_label(d)} at epochs "
                               f"{_list(lacking)}")
            cont = ax.errorbar(s.index.to_numpy(), s["mean"].to_numpy(),
                               yerr=s["std"].fillna(0).to_numpy() if (s["count"] > 1).any()
                               else None,
                               color=pal[d], linestyle=METHOD_STYLE[method], marker="o",
                               markersize=4, capsize=3, linewidth=1.6,
                               label=f"{dataset_label(d)}, {METHOD_LABELS[method]}")
            cont.lines[0].set_gid(f"{method}/{d}")
            if reported is not None and protocol == reported.protocol:
                rp = reported.table1[reported.table1.dataset == d].sort_values("epochs")
                if not rp.empty:
                    (line,) = ax.plot(rp.epochs, rp[f"{method}_mean"], color=pal[d],
                                      linestyle=METHOD_STYLE[method], marker="s",
                                      markersize=3, alpha=0.3, linewidth=1)
                    line.set_gid(f"paper/{method}/{d}")
                    rep_drawn = True
    ax.set_xticks(sorted(set(all_epochs) | ({1, 2, 5, 10} if rep_drawn else set())))
    ax.set_xlabel("training length (epochs; 0 = untrained encoder)")
    ax.set_ylabel("training loss (mean batch loss of the last epoch)")
    ax.set_title("Training loss vs training length (solid RKDO, dashed I-Con)")
    handles = [Line2D([], [], color=pal[d], linewidth=2, label=dataset_label(d))
               for d in datasets]
    handles += [Line2D([], [], color="k", linestyle=METHOD_STYLE[m], label=METHOD_LABELS[m])
                for m in ("rkdo", "icon")]
    if rep_drawn:
        handles.append(Line2D([], [], color="grey", alpha=0.4, marker="s", markersize=3,
                              label="paper (Table 1), faint"))
    fig.legend(handles=handles, fontsize=8, loc="outside right upper")
    caption = " ".join(filter(None, [
        "Figure 5. Training loss (mean batch loss of the budget's last epoch; epoch 0: the "
        "untrained encoder's loss) against training length; colour = dataset, solid = RKDO, "
        "dashed = I-Con. The two methods optimise different objectives, so the vertical gap "
        "between a solid and a dashed line is not a difference in learning; compare it with "
        "the gap at epoch 0.",
        f"Error bars: {_SD_BARS}.",
        "Faint lines: the paper's Table 1." if rep_drawn else "",
        "No test is drawn; paired t-tests across seeds with Holm correction are in Table 1.",
        "Runs: " + run_facts(sub, protocol, datasets),
        ("Not in the results: " + "; ".join(missing) + ".") if missing else "",
    ]))
    return fig, caption


# ---------------------------------------------------------------------------- Fig 6


def fig6_common_yardstick(df: pd.DataFrame, protocol: str | None = None
                          ) -> tuple[Figure, str] | None:
    """Figure 6 (not in the paper): the common yardstick against training length — one
    panel per fixed objective (I-Con's, RKDO's), the RKDO-trained (solid) and I-Con-trained
    (dashed) encoders scored with it on the same held-out images and views; beside them,
    faint, each method's own training loss, the comparison the paper's Fig. 5 makes. None
    when the metrics carry no yardstick.

    Series gids: ``"<objective>/<method>/<dataset>"`` (e.g. ``"icon/rkdo/digits"``)."""
    if not has_yardstick(df):
        return None
    sub, protocol = select_protocol(df, protocol)
    datasets = dataset_order(sub.dataset)
    pal = dict(zip(datasets, _palette(len(datasets))))
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    axes = fig.subplots(1, len(YARDSTICK), sharey=False, squeeze=False).ravel()
    ys = yardstick_comparison(sub)
    tests = []
    for ax, (key, label) in zip(axes, YARDSTICK.items()):
        objective = key.removeprefix("yardstick_")
        for d in datasets:
            for method in ("rkdo", "icon"):
                g = sub[(sub.dataset == d) & (sub.method == method)]
                s = g.groupby("epoch")[key].agg(["mean", "std", "count"]).dropna(
                    subset=["mean"]).sort_index()
                if s.empty:
                    continue
                cont = ax.errorbar(s.index.to_numpy(), s["mean"].to_numpy(),
                                   yerr=s["std"].fillna(0).to_numpy()
                                   if (s["count"] > 1).any() else None,
                                   color=pal[d], linestyle=METHOD_STYLE[method], marker="o",
                                   markersize=4, capsize=3, linewidth=1.6)
                cont.lines[0].set_gid(f"{objective}/{method}/{d}")
        last = ys[(ys.scored_with == objective) & (ys.epoch == ys.epoch.max())]
        for r in last.itertuples():
            tests.append(f"{dataset_label(r.dataset)}, {label}, {int(r.epoch)} epochs: "
                         f"RKDO-trained − I-Con-trained = {r.diff_mean:+.4f} "
                         f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}], p = {format_p(r.p_value)}, "
                         f"Holm {format_p(r.p_holm)}")
        ax.set_title(f"scored with the {label}")
        ax.set_xlabel("training length (epochs; 0 = untrained encoder)")
        ax.set_ylabel(f"{label} on held-out views (lower is better)")
        ax.set_xticks(sorted(int(e) for e in sub.epoch.unique()))
        ax.set_gid(objective)
    handles = [Line2D([], [], color=pal[d], linewidth=2, label=dataset_label(d))
               for d in datasets] if len(datasets) > 1 else []
    handles += [Line2D([], [], color="k", linestyle=METHOD_STYLE[m],
                       label=f"trained with {METHOD_LABELS[m]}") for m in ("rkdo", "icon")]
    fig.legend(handles=handles, fontsize=8, loc="outside lower center", ncol=len(handles))
    caption = " ".join(filter(None, [
        "Figure 6 (not in the paper). The common yardstick: the encoders trained with RKDO "
        "(solid) and with I-Con (dashed), each scored with the same fixed objectives — "
        "I-Con's (left) and RKDO's (right), the run's loss settings — on the same held-out "
        "test images and seeded views, in eval mode; epoch 0 is the untrained encoder "
        "(identical for both methods at a seed). Where the solid line is not below the "
        "dashed one, RKDO's lower training loss (Fig. 5, Table 1) is a property of its "
        "objective, not a better encoder.",
        f"Error bars: {_SD_BARS}.",
        ("Test at the last budget (paired t-test across seeds, 95 % t-interval, Holm within "
         "each objective over the trained budgets): " + "; ".join(tests) + ".")
        if tests else "",
        "Runs: " + run_facts(sub, protocol, datasets),
    ]))
    return fig, caption


# ---------------------------------------------------------------------------- all


def write_figures(figures: Sequence[tuple[str, Figure, str]], out_dir: str | Path, *,
                  release: bool = True) -> list[dict]:
    """:func:`save_figure` for each of :func:`build_figures`' figures (released afterwards
    unless ``release`` is False); returns the manifest entries (``name``, ``caption``,
    ``files`` = [png, pdf])."""
    entries = []
    for name, fig, caption in figures:
        files = save_figure(fig, out_dir, name)
        if release:
            close(fig)
        entries.append({"name": name, "caption": caption, "files": list(files)})
    return entries
