"""FLOPs of a training step, and ``rkdo flops``: what recursion depth 3 costs over depth 1.

The paper (docs/method.md §3, "FLOPs") reports 9.5537 vs 9.5545 × 10¹¹ FLOPs per step for depth 1
vs 3 — "< 0.03 % overhead" — from the torch profiler on a *forward* pass. ``rkdo flops``
measures, on the paper config (batch 64, 32×32 images, the suite's ResNet-18 encoder and its
training step, `train.setup_training` / `train_step`), for RKDO depth 1, RKDO depth 3 and
I-Con (reference):

(i)   forward-only FLOPs with ``torch.profiler.profile(with_flops=True)``, as the paper did:
      two views through the encoder in train mode plus the loss, under ``no_grad``;
(ii)  forward + backward FLOPs of one optimizer step with ``FlopCounterMode``;
(iii) wall time per optimizer step: median (and p10/p90) over ``--steps`` steps after
      ``--warmup``, the variants alternating step by step so machine load hits all alike;

plus the loss's own elementwise work, which neither FLOP counter sees, and the overhead of
depth 3 against depth 1 in each. The conventions (:data:`CONVENTIONS`) are written into the
output next to the numbers.

The counting itself is :mod:`rkdo_core.training.stepflops` (what the evaluation records as
``flops_per_step`` in every metrics file).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, RunConfig
from ..errors import DatasetUnavailableError
from ..losses import loss_for
from ..model import build_model, resolve_device
from ..reporting.reported import load_reported
from ..runio import write_json_atomic
from ..training.stepflops import (
    count_step_flops,
    loss_elementwise_ops,
    profiler_flops,
    step_flops,
)
from ..training.train import encode_views, load_data, thread_setting, train_step
from .args import flops_config
from .args import flops_parser as build_parser
from .bench import OurStep, interleaved, summarize, time_losses

#: (method, depth) of the measured variants; I-Con has no recursion (depth 0 in the rows).
VARIANTS: tuple[tuple[str, int], ...] = (("rkdo", 1), ("rkdo", 3), ("icon", 0))

CONVENTIONS: dict[str, str] = {
    "forward_profiler_flops": (
        "torch.profiler.profile(with_flops=True), summed over all recorded operators, of "
        "one forward pass (two views through the encoder in train mode, then the loss) "
        "under no_grad, as the paper measured. The profiler counts 2 FLOPs per multiply-add "
        "for aten::conv2d, aten::mm, aten::addmm, aten::bmm, aten::baddbmm, and 1 FLOP per "
        "output element for aten::mul and aten::add only; every other op (softmax, log, "
        "exp, logaddexp, sub, division, batch-norm, ReLU, pooling, sums) counts 0."),
    "fwd_bwd_flopcounter_flops": (
        "torch.utils.flop_counter.FlopCounterMode over one whole optimizer step (forward of "
        "both views, loss, backward; Adam's update is not counted): 2 FLOPs per multiply-add "
        "of matrix products and convolutions (mm, addmm, bmm, convolution and their "
        "backward); elementwise ops, normalisation, softmax/log/exp of the loss count 0. "
        "This is the convention of flops_per_step / train_flops in the metrics files."),
    "loss_elementwise_ops": (
        "not a FLOP count of either tool: the elements written by every non-matmul, "
        "non-view aten op of the loss alone (forward + backward, (B, 64) embeddings in), "
        "1 per element whatever the op (exp, log, softmax, add, where, sum...): the loss "
        "work both FLOP counters leave uncounted."),
    "seconds_per_step": (
        "wall time of one real training step (train.setup_training / train_step: "
        "augmentation of a batch, two forward passes, loss, backward, Adam), synchronised "
        "on the device; median and p10/p90 over the timed steps, variants interleaved "
        "step by step."),
    "loss_only_seconds_median": (
        "wall time of forward + backward of the loss alone on fixed (B, 64) embeddings, "
        "median over repetitions, variants alternating; loss_only_overhead_pct_of_step is "
        "100 * (depth 3 - depth 1) of it / the depth-1 step median."),
    "overhead_pct": "100 * (depth 3 - depth 1) / depth 1 of RKDO, for each measure.",
    "depth": "RKDO's recursion depth T; I-Con rows have depth 0 (no recursion).",
    "stock_convolutions_rkdo_depth1": (
        "the rows use the suite's encoder (matmul_1x1_maps=true: layer4's convolutions on "
        "1x1 maps computed as matmuls over the taps that touch the image, skipping products "
        "with zero padding); this entry counts the same RKDO depth-1 step with torchvision's "
        "stock convolutions, as the authors' notebook ran them, in both conventions. "
        "paper_forward_over_ours_stock = the paper's 9.5537e11 / that forward count."),
}


# ---- counting -----------------------------------------------------------------------------

# ---- rkdo flops --------------------------------------------------------------------------

def _variant_config(base: RunConfig, method: str, depth: int) -> RunConfig:
    return base.replace(method=method, depth=depth if method == "rkdo" else base.depth)


def _overhead(d1: float, d3: float) -> float:
    return 100.0 * (d3 - d1) / d1


def measure(config: RunConfig, *, steps: int, warmup: int,
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every figure of ``rkdo flops`` for the variants of :data:`VARIANTS` (see the module
    docstring); the result follows the ``--out`` JSON schema."""
    if steps < 1:
        raise ConfigError("steps", steps, "--steps must be an integer >= 1")
    if warmup < 0:
        raise ConfigError("warmup", warmup, "--warmup must be an integer >= 0")
    device = resolve_device(config.device)
    data = load_data(config)
    images = data.train.images.to(device)
    size = int(images.shape[-1])
    cfgs = {v: _variant_config(config, *v) for v in VARIANTS}
    log(f"building {len(cfgs)} training steps on {device} ...")
    step_fns = {v: OurStep(c, images, device) for v, c in cfgs.items()}

    # (i) and (ii) on one fixed batch per variant (the same images for all variants).
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(images.shape[0], generator=g)[:config.batch_size].to(device)
    v1, v2 = next(iter(step_fns.values())).setup.views(images[idx], g)
    rows = []
    for v, c in cfgs.items():
        log(f"counting FLOPs of {v[0]} depth {v[1]} ...")
        s = step_fns[v].setup

        def forward(s=s):
            with torch.no_grad():
                s.loss_fn(*encode_views(s.model, v1, v2, fused_views=s.config.fused_views))

        s.model.train()
        fwd = profiler_flops(forward)
        fwd_bwd = count_step_flops(lambda s=s: train_step(s, v1, v2))
        rows.append({"method": v[0], "depth": v[1], "forward_profiler_flops": fwd,
                     "fwd_bwd_flopcounter_flops": fwd_bwd,
                     "loss_elementwise_ops": loss_elementwise_ops(c)})

    # The authors' notebook runs torchvision's stock convolutions, which multiply the
    # zero padding of layer4's 1×1 maps that matmul_1x1_maps skips: count that model too.
    stock_cfg = cfgs[("rkdo", 1)].replace(matmul_1x1_maps=False, channels_last=False)
    stock = build_model(stock_cfg, device).train()

    def stock_forward():
        with torch.no_grad():
            loss_for(stock_cfg)(*encode_views(stock, v1.contiguous(), v2.contiguous()))

    stock_counts = {"forward_profiler_flops": profiler_flops(stock_forward),
                    "fwd_bwd_flopcounter_flops": step_flops(stock_cfg, size)}
    log("timing the losses alone ...")
    loss_s = _loss_only_seconds(cfgs, device, reps=max(30, 5 * steps))
    for row, v in zip(rows, cfgs):
        row["loss_only_seconds_median"] = loss_s[v]
    log(f"timing {steps} interleaved steps per variant after {warmup} warm-up ...")
    rec = interleaved({v: step_fns[v] for v in cfgs}, steps, warmup)
    for row, v in zip(rows, cfgs):
        s = summarize([r["total"] for r in rec[v]])
        row.update(seconds_per_step_median=s["median_s"], seconds_per_step_p10=s["p10_s"],
                   seconds_per_step_p90=s["p90_s"])
    by = {(r["method"], r["depth"]): r for r in rows}
    d1, d3 = by[("rkdo", 1)], by[("rkdo", 3)]
    t1 = np.array([r["total"] for r in rec[("rkdo", 1)]])
    t3 = np.array([r["total"] for r in rec[("rkdo", 3)]])
    paired = 100.0 * (t3 / t1 - 1.0)
    paper = load_reported()  # the paper's FLOPs and overhead bound (params/reported.yaml)
    fwd_paper = paper.forward_flops
    return {
        "device": str(device),
        "conventions": dict(CONVENTIONS),
        "config": {k: getattr(config, k) for k in (
            "dataset", "batch_size", "temperature", "debias_alpha", "alpha", "beta",
            "head_batchnorm", "matmul_1x1_maps", "fused_views", "channels_last", "amp_bf16")},
        "image_size": size,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "overhead_pct": {
            "forward_profiler": _overhead(d1["forward_profiler_flops"],
                                          d3["forward_profiler_flops"]),
            "fwd_bwd_flopcounter": _overhead(d1["fwd_bwd_flopcounter_flops"],
                                             d3["fwd_bwd_flopcounter_flops"]),
            "wall_time": _overhead(d1["seconds_per_step_median"],
                                   d3["seconds_per_step_median"]),
        },
        "wall_time_paired_overhead_pct": {"median": float(np.median(paired)),
                                          "p10": float(np.percentile(paired, 10)),
                                          "p90": float(np.percentile(paired, 90))},
        # the raw per-step paired overheads (percent, step k of depth 3 against step k of
        # depth 1, interleaved): the claims checklist's Hodges–Lehmann CI needs them
        "wall_time_paired_overhead_pct_steps": [float(x) for x in paired],
        "loss_elementwise_extra_ops": d3["loss_elementwise_ops"] - d1["loss_elementwise_ops"],
        # The only computation in which the two depths differ, timed alone, as a share of a
        # depth-1 step: far less noisy than the difference of two step-time medians.
        "loss_only_overhead_pct_of_step": 100.0 * (
            d3["loss_only_seconds_median"] - d1["loss_only_seconds_median"])
            / d1["seconds_per_step_median"],
        "stock_convolutions_rkdo_depth1": stock_counts,
        "paper_forward_over_ours_stock": fwd_paper[1]
        / stock_counts["forward_profiler_flops"],
        "paper_overhead_pct": paper.overhead_pct_max,
        "paper_forward_flops": {str(k): v for k, v in fwd_paper.items()},
        "paper_overhead_reported_pct": _overhead(fwd_paper[1], fwd_paper[3]),
        "steps": steps,
        "warmup": warmup,
    }


def _loss_only_seconds(cfgs: dict[tuple[str, int], RunConfig], device: torch.device,
                       reps: int) -> dict[tuple[str, int], float]:
    """Median seconds of forward + backward of each variant's loss alone on fixed (B, 64)
    embeddings, the variants alternating, after 3 untimed rounds."""
    return time_losses(cfgs, device, reps)


def format_table(r: dict[str, Any]) -> str:
    """Human-readable summary of `measure`'s result."""
    c = r["config"]
    lines = [
        f"rkdo flops — {c['dataset']}, batch {c['batch_size']}, {r['image_size']}×"
        f"{r['image_size']}, ResNet-18 (matmul_1x1_maps={c['matmul_1x1_maps']}), "
        f"{r['device']}, {r['torch_threads']} thread(s); {r['steps']} timed steps after "
        f"{r['warmup']} warm-up, interleaved",
        "",
        f"{'variant':14s}{'fwd (profiler)':>17s}{'fwd+bwd (FlopCounter)':>23s}"
        f"{'loss elem. ops':>16s}{'s/step median':>15s}{'p10–p90':>17s}",
    ]
    for row in r["rows"]:
        name = f"{row['method']} depth {row['depth']}" if row["method"] == "rkdo" else "icon"
        lines.append(
            f"{name:14s}{row['forward_profiler_flops']:17,d}"
            f"{row['fwd_bwd_flopcounter_flops']:23,d}{row['loss_elementwise_ops']:16,d}"
            f"{row['seconds_per_step_median']:15.4f}"
            f"{row['seconds_per_step_p10']:9.4f}–{row['seconds_per_step_p90']:.4f}")
    o = r["overhead_pct"]
    p = r["wall_time_paired_overhead_pct"]
    st = r["stock_convolutions_rkdo_depth1"]
    lines += [
        "",
        "depth 3 over depth 1 (RKDO):",
        f"  forward FLOPs, torch profiler (paper's method)  {o['forward_profiler']:+.5f} %",
        f"  fwd+bwd FLOPs, FlopCounterMode                   {o['fwd_bwd_flopcounter']:+.5f} %",
        f"  wall time per step (medians)                     {o['wall_time']:+.2f} %  "
        f"(paired per-step p10…p90 {p['p10']:+.1f}…{p['p90']:+.1f} %)",
        f"  the loss alone, fwd+bwd, as a share of a step    "
        f"{r['loss_only_overhead_pct_of_step']:+.3f} %",
        f"  loss elementwise work (uncounted by both)        "
        f"+{r['loss_elementwise_extra_ops']:,d} element-ops",
        f"  paper: < {r['paper_overhead_pct']} % (its forward counts 9.5537e11 vs 9.5545e11: "
        f"{r['paper_overhead_reported_pct']:+.4f} %)",
        "",
        f"stock torchvision convolutions (as the authors ran), RKDO depth 1: forward "
        f"{st['forward_profiler_flops']:,d} (profiler), fwd+bwd "
        f"{st['fwd_bwd_flopcounter_flops']:,d} (FlopCounterMode); the paper's forward count "
        f"is {r['paper_forward_over_ours_stock']:.3f}x this forward count",
        "",
        "conventions:",
    ]
    lines += [f"  {k}: {v}" for k, v in r["conventions"].items()]
    return "\n".join(lines)


def flops_main(argv: list[str] | None = None) -> int:
    """Entry point of ``rkdo flops``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = flops_config(args)
        resolve_device(config.device)  # an unavailable device fails here, before any work
        log = (lambda s: None) if args.json else (lambda s: print(s, file=sys.stderr))
        with thread_setting(args.threads):
            result = measure(config, steps=args.steps, warmup=args.warmup, log=log)
    except (ConfigError, DatasetUnavailableError, ValueError) as e:
        print(f"rkdo flops: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. device=cuda where CUDA is unavailable
        print(f"rkdo flops: error: {e}", file=sys.stderr)
        return 2
    if args.out:
        write_json_atomic(args.out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
    return 0
