"""FLOPs of one optimizer step, counted (not timed): what evaluation records per run.

Conventions (stated in `rkdo flops`, tools/flops.py): ``count_step_flops`` uses
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, forward and
backward); ``profiler_flops`` sums ``torch.profiler``'s ``with_flops=True`` counts (the
paper's forward-only convention); ``loss_elementwise_ops`` counts the loss's elementwise
work that neither counter includes (softmax, exp, log).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..config import RunConfig
from ..losses import loss_for
from ..model import build_model
from .train import encode_views


def count_step_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call (convolutions and matmuls, forward and backward) by FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())


def profiler_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call as ``torch.profiler`` counts them (``with_flops=True``), summed over
    every recorded operator (see :data:`CONVENTIONS`)."""
    from torch.profiler import ProfilerActivity, profile  # deferred: only `rkdo flops` uses it

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        fn()
    return int(sum(e.flops for e in prof.key_averages()))


class _ElementCounter(TorchDispatchMode):
    """Elements written by aten ops other than views and the matmul-type ops that
    FlopCounterMode counts (see ``loss_elementwise_ops`` in :data:`CONVENTIONS`)."""

    def __init__(self) -> None:
        super().__init__()
        registry = FlopCounterMode(display=False).flop_registry
        self.skip = {getattr(op, "overloadpacket", op) for op in registry}
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not func.is_view and func.overloadpacket not in self.skip:
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor) and t.is_floating_point():
                    self.total += t.numel()
        return out


def loss_elementwise_ops(config: RunConfig, *, seed: int = 0) -> int:
    """Elements written by the loss of ``config`` alone, forward + backward, on (B, 64)
    random L2-normalised embeddings (see :data:`CONVENTIONS`)."""
    g = torch.Generator().manual_seed(seed)
    z = [torch.nn.functional.normalize(torch.randn(config.batch_size, 64, generator=g), dim=1)
         .requires_grad_() for _ in range(2)]
    fn = loss_for(config)
    counter = _ElementCounter()
    with counter:
        fn(*z).backward()
    return counter.total


def _counting_config(config: RunConfig) -> RunConfig:
    """The config whose step is counted: the same computation, eager float32 (autocast and
    torch.compile change how a step runs, not its multiply-adds; the seed only its values)."""
    return config.replace(device="cpu", compile=False, amp_bf16=False, threads=None,
                          data_root=None, seed=0, epochs=(1,))


def step_flops(config: RunConfig, image_size: int) -> int:
    """Forward + backward FLOPs (FlopCounterMode) of one optimizer step of ``config`` on a
    batch of ``image_size``² images, counted once per distinct computation (cached).

    The step — both views through the encoder (train mode, as `train.encode_views` runs
    them), the configured loss, backward — runs on a fresh model on PyTorch's ``meta``
    device: shapes only, no arithmetic, no effect on the global RNG or on any run. Adam's
    update is left out (FlopCounterMode counts none of it); `rkdo flops` checks that this
    equals the count of a real `train.train_step`."""
    return _step_flops_cached(_counting_config(config), int(image_size))


@functools.lru_cache(maxsize=32)
def _step_flops_cached(config: RunConfig, image_size: int) -> int:
    meta = torch.device("meta")
    model = build_model(config, meta).train()
    v1, v2 = (torch.empty(config.batch_size, 3, image_size, image_size, device=meta)
              for _ in range(2))
    loss_fn = loss_for(config)

    def step() -> None:
        loss_fn(*encode_views(model, v1, v2, fused_views=config.fused_views)).backward()

    return count_step_flops(step)
