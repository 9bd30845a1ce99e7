"""The figures of the convergence-theory notebook (03_convergence_theory.ipynb), one
function per figure, each drawing objects :mod:`rkdo_core.theory` computed and returning a
plain :class:`matplotlib.figure.Figure` (no pyplot state; the notebook displays it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from ..theory import AlphaSweep, Chain, Lemma1Draws, chi2, mask_roundoff


def _steps(chain: Chain) -> np.ndarray:
    return np.arange(len(chain.loss))


def lemma1_figure(draws: Lemma1Draws, n: int) -> Figure:
    """Lemma 1's ratio KL(p̂||q)/KL(p||q) of every random draw against α, with the bound."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    sc = ax.scatter(draws.alpha, draws.ratio, c=np.log10(draws.sharpness), s=8, cmap="viridis")
    grid = np.linspace(0, 1, 101)
    ax.plot(grid, 1 - grid, "k-", label="Lemma 1 bound 1 − α")
    ax.plot(grid, (1 - grid) ** 2, "k:", label="(1 − α)², for reference")
    ax.set(xlabel="α", ylabel="KL(p̂ || q) / KL(p || q)",
           title=f"Lemma 1 on {len(draws.ratio)} random field pairs (n = {n})")
    fig.colorbar(sc, ax=ax, label="log10 sharpness")
    ax.legend()
    return fig


def theorem3_figure(chains: Mapping[str, Chain]) -> Figure:
    """Every family's L(t) against Theorem 3's bound, and its distance below the bound."""
    fig = Figure(figsize=(11, 4), layout="tight")
    axes = fig.subplots(1, 2)
    unrestricted = chains["unrestricted"]
    t = _steps(unrestricted)
    for name, chain in chains.items():
        if name != "unrestricted":
            axes[0].plot(t, mask_roundoff(chain.loss, chain.loss[0]), "o-", ms=3,
                         label=f"L(t), {name}")
            axes[1].plot(t[1:], chain.bound_ratio()[1:], "o-", ms=3, label=name)
    axes[0].plot(t, unrestricted.bound(), "k--", label="bound (1 − α)^t L(0)")
    axes[0].set(yscale="log", xlabel="t", ylabel="L(t)",
                title="Theorem 3 (unrestricted: L(t) = 0 for t ≥ 1, not drawable on a log axis)")
    axes[1].axhline(1, color="k", ls="--", label="bound")
    axes[1].set(yscale="log", xlabel="t", ylabel="L(t) / ((1 − α)^t L(0))",
                title="Distance below the bound (must stay ≤ 1)")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def eq14_figure(cap: Chain, l_star: float, alpha: float, d: int) -> Figure:
    """The capacity chain against eq. 14's bound and the capacity floor L*."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    t = _steps(cap)
    ax.plot(t, mask_roundoff(cap.loss, cap.loss[0]), "o-", ms=3, label="L(t), capacity")
    ax.plot(t[1:], (1 - alpha) * cap.loss[:-1] + alpha * l_star, "s--", ms=3,
            label="eq. 14 bound (1 − α)L(t−1) + αL*")
    ax.plot(t, cap.yardstick(), "^-", ms=3, label="KL(p(0) || q(t)) (yardstick)")
    ax.axhline(l_star, color="k", ls=":", label="L* (capacity floor for p(0))")
    ax.set(yscale="log", xlabel="t", title=f"Eq. 14 with d = {d}")
    ax.legend(fontsize=8)
    return fig


def eq15_figure(chains: Mapping[str, Chain], k: int) -> Figure:
    """Inexact chains (label -> chain): the inner-step error ε_t and L(t) against Theorem 3."""
    fig = Figure(figsize=(11, 4), layout="tight")
    axes = fig.subplots(1, 2)
    first = next(iter(chains.values()))
    t = _steps(first)
    for i, (tag, chain) in enumerate(chains.items()):
        eps = chain.epsilon()[1:]
        axes[0].plot(t[1:], mask_roundoff(np.abs(eps), chain.loss[0]), "o-", ms=3,
                     color=f"C{i}", label=f"|ε_t|, {tag}")
        axes[0].plot(t[1:], np.nancumsum(eps), "--", color=f"C{i}", label=f"Σ_s≤t ε_s, {tag}")
        axes[1].plot(t, mask_roundoff(chain.loss, chain.loss[0]), "o-", ms=3, color=f"C{i}",
                     label=f"L(t), {tag}")
    axes[1].plot(t, first.bound(), "k--", label="Theorem 3 bound")
    axes[0].set(yscale="log", xlabel="t", title=f"Eq. 15: inner-step error, k = {k}")
    axes[1].set(yscale="log", xlabel="t", title="Inexact chains against Theorem 3")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def frozen_figure(frozen: Chain, closed: np.ndarray, p0: np.ndarray, q0: np.ndarray,
                  alpha: float) -> Figure:
    """The frozen model's chain, its closed form and the bound: the loss falls, nothing is
    learned (the yardstick stays)."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    t = _steps(frozen)
    ax.plot(t, mask_roundoff(frozen.loss, frozen.loss[0]), "o", ms=4, label="L(t), frozen chain")
    ax.plot(t, closed, "-", label="closed form")
    ax.plot(t, frozen.bound(), "k--", label="(1 − α)^t L(0)")
    ax.plot(t, 0.5 * (1 - alpha) ** (2 * t) * chi2(p0, q0), ":", label="½(1 − α)^{2t} χ²")
    ax.plot(t, frozen.yardstick(), "^-", ms=3, label="KL(p(0) || q(t)) (yardstick)")
    ax.set(yscale="log", xlabel="t", title="Frozen model: the loss falls, nothing is learned")
    ax.legend(fontsize=8)
    return fig


def tradeoff_figure(sweep: AlphaSweep, l_star: float) -> Figure:
    """Speed of decay by α, and what the speed costs (teacher drift, yardstick)."""
    fig = Figure(figsize=(11, 4), layout="tight")
    axes = fig.subplots(1, 2)
    steps = len(sweep.chains[0].loss) - 1
    t = np.arange(steps + 1)
    for a, chain in zip(sweep.alphas, sweep.chains):
        axes[0].plot(t, mask_roundoff(chain.loss / chain.loss[0], 1.0), "-", label=f"α = {a:g}")
    axes[0].set(yscale="log", xlabel="t", ylabel="L(t) / L(0)", title="Speed of decay")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].plot(sweep.alphas, sweep.final_drift(), "o-", label=f"drift KL(p(0) || p({steps}))")
    axes[1].plot(sweep.alphas, sweep.final_yardstick(), "s--",
                 label=f"yardstick KL(p(0) || q({steps}))")
    axes[1].axhline(l_star, color="k", ls=":", label="L*")
    axes[1].set(xlabel="α", title="What the speed costs")
    axes[1].legend(fontsize=8)
    return fig


def comparison_figure(comparisons: Mapping[str, tuple[Chain, Chain]], l_star: float,
                      alpha: float) -> Figure:
    """I-Con (α = 0) vs RKDO chains per family: each method's own loss, and the common
    yardstick KL(p(0) || q(t))."""
    fig = Figure(figsize=(11, 4), layout="tight")
    axes = fig.subplots(1, 2)
    for name, (icon, rkdo) in comparisons.items():
        t = _steps(icon)
        axes[0].plot(t, icon.loss, "--", label=f"I-Con loss, {name}")
        axes[0].plot(t, mask_roundoff(rkdo.loss, rkdo.loss[0]), "-",
                     label=f"RKDO loss (α = {alpha}), {name}")
        axes[1].plot(t, icon.yardstick(), "--", label=f"I-Con, {name}")
        axes[1].plot(t, rkdo.yardstick(), "-", label=f"RKDO, {name}")
    axes[0].set(yscale="log", xlabel="t", title="Each method's own loss")
    axes[1].axhline(l_star, color="k", ls=":", label="L*")
    axes[1].set(xlabel="t", ylabel="KL(p(0) || q(t))", title="Common yardstick")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig
