"""The common yardstick: every checkpoint scored on the same two fixed objectives.

A run's training loss is the value of *its own* objective, and RKDO's objective is partly
made of the model's own output (docs/method.md §6), so "RKDO's loss is ~30 % lower" compares two
different functions. The yardstick scores an encoder — whatever trained it — on both:

- ``yardstick_icon``: the I-Con loss (`losses.icon_loss`, temperature, debias alpha), and
- ``yardstick_rkdo``: the RKDO loss (`losses.rkdo_loss`, temperature, alpha, depth, beta),

with the loss settings of the run's config (a grid gives both methods identical loss
fields, so both methods of a grid are scored on identical objectives; the settings are
recorded with the numbers), over the held-out evaluation images the other metrics use.

Protocol (`yardstick`):

* the evaluation images in order, cut into batches of ``batch_size`` (the config's: the
  B×B target of both losses depends on B). A last partial batch is **dropped** (it would
  score a different objective); if fewer than ``batch_size`` images exist at all, they form
  one batch of all of them (B = n). ``yardstick_images`` counts the images scored.
* two augmented views per image (`augment.two_views`, the training recipe), drawn from a
  CPU ``torch.Generator`` seeded with :data:`YARDSTICK_SEED` — a constant, not the training
  seed — and advanced batch by batch, so every run, method, seed and budget of a dataset is
  scored on the very same views;
* the model in eval mode (batch-norm running statistics), under inference mode, one forward
  pass per view, float32;
* the mean of the per-batch losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..augment import two_views
from ..config import RunConfig
from ..losses import icon_loss, rkdo_loss

#: Seed of the yardstick's views: fixed, independent of every run's training seed.
YARDSTICK_SEED = 20_251_128
#: How a last batch smaller than ``batch_size`` is handled (recorded in the settings).
PARTIAL_BATCH = "dropped"


def yardstick_settings(config: RunConfig) -> dict[str, Any]:
    """The objectives' settings taken from ``config`` and the protocol, as recorded."""
    return {"icon": {"temperature": config.temperature, "debias_alpha": config.debias_alpha},
            "rkdo": {"temperature": config.temperature, "alpha": config.alpha,
                     "depth": config.depth, "beta": config.beta},
            "batch_size": config.batch_size, "partial_batch": PARTIAL_BATCH,
            "views": "augment.two_views", "model_mode": "eval"}


def batch_bounds(n_images: int, batch_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the scored batches: full batches, a last partial batch
    dropped; fewer than ``batch_size`` images (and at least 2) form one batch."""
    if n_images < 2:
        raise ValueError(f"the yardstick needs at least 2 images (a contrastive batch); "
                         f"got {n_images}")
    if n_images < batch_size:
        return [(0, n_images)]
    return [(i * batch_size, (i + 1) * batch_size) for i in range(n_images // batch_size)]


def yardstick_views(images: torch.Tensor, batch_size: int, seed: int = YARDSTICK_SEED
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The (v1, v2) float32 views of each scored batch of uint8 ``images``, on the CPU.

    A function of (images, batch_size, seed) only — never of the global RNG."""
    g = torch.Generator().manual_seed(seed)
    for start, stop in batch_bounds(images.shape[0], batch_size):
        yield two_views(images[start:stop].cpu(), g)


@torch.inference_mode()
def yardstick(model: torch.nn.Module, images: torch.Tensor, config: RunConfig, *,
              seed: int = YARDSTICK_SEED) -> dict[str, Any]:
    """Score ``model`` on both fixed objectives over uint8 ``images`` (N, 3, H, W).

    Returns the metrics-file keys ``yardstick_icon``, ``yardstick_rkdo`` (floats),
    ``yardstick_images`` (int), ``yardstick_seed`` (int), ``yardstick_settings`` (dict).
    Leaves the model in eval mode."""
    settings = yardstick_settings(config)
    model.eval()
    device = next(model.parameters()).device
    w = next((m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    fmt = (torch.channels_last if w is not None and not w.is_contiguous()
           and w.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
    icon, rkdo, n = [], [], 0
    for v1, v2 in yardstick_views(images, config.batch_size, seed):
        z1, z2 = (model(v.to(device).contiguous(memory_format=fmt)).float() for v in (v1, v2))
        icon.append(icon_loss(z1, z2, **settings["icon"]))
        rkdo.append(rkdo_loss(z1, z2, **settings["rkdo"]))
        n += v1.shape[0]
    return {"yardstick_icon": float(torch.stack(icon).mean()),
            "yardstick_rkdo": float(torch.stack(rkdo).mean()),
            "yardstick_images": n, "yardstick_seed": int(seed),
            "yardstick_settings": settings}
