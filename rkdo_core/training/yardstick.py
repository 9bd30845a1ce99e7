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

The same pass also scores the views on the **neutral yardsticks** of
:mod:`rkdo_core.neutral` (measures neither method optimises), each the mean over the same
batches: ``yard_alignment`` and ``yard_uniformity`` (Wang & Isola 2020; uniformity over the
rows of both views of a batch), ``yard_infonce_t01`` / ``yard_infonce_t05`` (InfoNCE
without the positive in the denominator, τ 0.1 / 0.5, both views' negatives) and, when a
``teacher`` is given, ``yard_rkdo_fixed``: the RKDO objective (the run's settings) whose
targets come from a frozen reference encoder's embeddings of the same views
(`neutral.rkdo_fixed_teacher`). Evaluation passes the run's epoch-0 checkpoint (the
untrained encoder: the same seed gives both methods the same one), so it is one fixed
function for every checkpoint of both methods. ``yard_rankme`` (RankMe of the evaluation
images' projection embeddings) is computed by `evaluate` from its single embedding pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..augment import two_views
from ..config import RunConfig
from ..losses import icon_loss, rkdo_loss
from ..neutral import alignment, infonce_excluding_positive, rkdo_fixed_teacher, uniformity

#: Seed of the yardstick's views: fixed, independent of every run's training seed.
YARDSTICK_SEED = 20_251_128
#: How a last batch smaller than ``batch_size`` is handled (recorded in the settings).
PARTIAL_BATCH = "dropped"
#: temperatures of the neutral InfoNCE yardstick, by metrics key
INFONCE_TEMPERATURES = {"yard_infonce_t01": 0.1, "yard_infonce_t05": 0.5}
#: the frozen reference encoder of ``yard_rkdo_fixed`` (as recorded)
RKDO_FIXED_TEACHER = "the run's epoch-0 checkpoint (untrained encoder of its seed)"

ViewEmbeddings = list[tuple[torch.Tensor, torch.Tensor]]


def yardstick_settings(config: RunConfig) -> dict[str, Any]:
    """The objectives' settings taken from ``config`` and the protocol, as recorded."""
    return {"icon": {"temperature": config.temperature, "debias_alpha": config.debias_alpha},
            "rkdo": {"temperature": config.temperature, "alpha": config.alpha,
                     "depth": config.depth, "beta": config.beta},
            "batch_size": config.batch_size, "partial_batch": PARTIAL_BATCH,
            "views": "augment.two_views", "model_mode": "eval",
            "neutral": {"alignment_alpha": 2, "uniformity_t": 2,
                        "uniformity_rows": "both views of a batch",
                        "infonce_temperatures": list(INFONCE_TEMPERATURES.values()),
                        "infonce_negatives": "both", "rkdo_fixed_teacher": RKDO_FIXED_TEACHER,
                        "rankme": "projection embeddings of the scored evaluation images, "
                                  "un-augmented"}}


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


def _memory_format(model: torch.nn.Module) -> torch.memory_format:
    w = next((m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return (torch.channels_last if w is not None and not w.is_contiguous()
            and w.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


@torch.inference_mode()
def view_embeddings(model: torch.nn.Module, images: torch.Tensor, batch_size: int, *,
                    seed: int = YARDSTICK_SEED) -> ViewEmbeddings:
    """``[(z1, z2), ...]``: ``model``'s float32 CPU projections of each scored batch's two
    views (:func:`yardstick_views`), the model in eval mode — e.g. a teacher's, computed once
    per run and passed to :func:`yardstick` for every checkpoint."""
    model.eval()
    device = next(model.parameters()).device
    fmt = _memory_format(model)
    return [tuple(model(v.to(device).contiguous(memory_format=fmt)).float().cpu()
                  for v in (v1, v2))
            for v1, v2 in yardstick_views(images, batch_size, seed)]


@torch.inference_mode()
def yardstick(model: torch.nn.Module, images: torch.Tensor, config: RunConfig, *,
              seed: int = YARDSTICK_SEED, teacher: ViewEmbeddings | None = None,
              own: ViewEmbeddings | None = None) -> dict[str, Any]:
    """Score ``model`` on both fixed objectives over uint8 ``images`` (N, 3, H, W).

    Returns the metrics-file keys ``yardstick_icon``, ``yardstick_rkdo`` (floats),
    ``yardstick_images`` (int), ``yardstick_seed`` (int), ``yardstick_settings`` (dict), and
    the neutral yardsticks of the same views ``yard_alignment``, ``yard_uniformity``,
    ``yard_infonce_t01``, ``yard_infonce_t05`` and, with ``teacher`` (the frozen reference
    encoder's :func:`view_embeddings` of the same images, batch size and seed),
    ``yard_rkdo_fixed``. ``own``: ``model``'s own :func:`view_embeddings` of the same
    images, batch size and seed, already computed (the epoch-0 checkpoint is the teacher of
    every checkpoint of its run): used instead of the forward passes, which would give the
    very same tensors. Leaves the model in eval mode."""
    settings = yardstick_settings(config)
    model.eval()
    device = next(model.parameters()).device
    fmt = _memory_format(model)
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in (
        "icon", "rkdo", "yard_alignment", "yard_uniformity", *INFONCE_TEMPERATURES,
        "yard_rkdo_fixed")}
    n = 0
    if own is not None:
        bounds = batch_bounds(images.shape[0], config.batch_size)
        if len(own) != len(bounds) or any(z.shape[0] != stop - start for (z, _), (start, stop)
                                          in zip(own, bounds)):
            raise ValueError("own must be the model's view_embeddings of the same images, "
                             "batch size and seed")
        batches = (tuple(z.to(device) for z in pair) for pair in own)
    else:
        batches = (tuple(model(v.to(device).contiguous(memory_format=fmt)).float()
                         for v in views)
                   for views in yardstick_views(images, config.batch_size, seed))
    for b, (z1, z2) in enumerate(batches):
        scores["icon"].append(icon_loss(z1, z2, **settings["icon"]))
        scores["rkdo"].append(rkdo_loss(z1, z2, **settings["rkdo"]))
        scores["yard_alignment"].append(alignment(z1, z2))
        scores["yard_uniformity"].append(uniformity(torch.cat([z1, z2])))
        for key, tau in INFONCE_TEMPERATURES.items():
            scores[key].append(infonce_excluding_positive(z1, z2, tau))
        if teacher is not None:
            t1, t2 = teacher[b]
            if t1.shape[0] != z1.shape[0]:
                raise ValueError(f"teacher batch {b} has {t1.shape[0]} rows, the scored batch "
                                 f"{z1.shape[0]}: give the teacher's view_embeddings of the "
                                 "same images, batch size and seed")
            scores["yard_rkdo_fixed"].append(rkdo_fixed_teacher(
                z1, z2, t1.to(z1.device), t2.to(z1.device), **settings["rkdo"]))
        n += z1.shape[0]
    if teacher is not None and len(teacher) != len(scores["icon"]):
        raise ValueError(f"teacher has {len(teacher)} batches, the yardstick "
                         f"{len(scores['icon'])}")

    def mean(key: str) -> float:
        return float(torch.stack(scores[key]).mean())

    out = {"yardstick_icon": mean("icon"), "yardstick_rkdo": mean("rkdo"),
           "yardstick_images": n, "yardstick_seed": int(seed),
           "yardstick_settings": settings}
    for key in ("yard_alignment", "yard_uniformity", *INFONCE_TEMPERATURES):
        out[key] = mean(key)
    if teacher is not None:
        out["yard_rkdo_fixed"] = mean("yard_rkdo_fixed")
    return out
