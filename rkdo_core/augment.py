"""Two-view contrastive augmentation on batched uint8 tensors (docs/method.md §3, "Data").

The authors' notebook augments each image separately with PIL::

    RandomResizedCrop(out, scale=(0.2, 1.0), ratio=(3/4, 4/3)) -> RandomHorizontalFlip(0.5)
    -> RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8) -> RandomGrayscale(0.2)
    -> ToTensor -> Normalize(0.5, 0.5)

(`reference_transform` builds exactly that). Here the same recipe runs on a whole batch at
once, with every random parameter drawn *per image* from an explicit ``torch.Generator``:

1. `sample_params` draws all parameters on the CPU, vectorised over the batch, following
   torchvision's definitions: ``RandomResizedCrop.get_params`` (area ~ U(scale)·H·W, log aspect
   ratio uniform, 10 attempts, else the central crop clamped to the ratio range), flip/apply/gray
   coin flips, ``ColorJitter.get_params`` (factors ~ U(0.6, 1.4), hue ~ U(-0.1, 0.1) and a fresh
   random order of the four colour ops for every image).
2. `apply_params` applies them on the images' device, matching torchvision's per-image tensor
   kernels given the same parameters (tested to 1e-3, crop+resize to 1e-6):
   crop + resize for the whole batch in one ``torch.nn.functional.grid_sample`` call (bilinear,
   half-pixel centres, samples clamped to the crop as torchvision crops *before* resizing);
   flip with ``torch.where``; the colour ops with kornia's per-sample kernels
   (``kornia.enhance.adjust_*``, one factor per image, torchvision's definitions: brightness
   multiplies, contrast blends with the mean of the grayscale image, saturation blends with the
   grayscale image, hue rotates H in HSV); grayscale with ITU-R 601-2 luma weights
   (0.299, 0.587, 0.114), as PIL's ``convert("L")``.

`augment` = `apply_params` ∘ `sample_params`, so its output is a deterministic function of the
images and the generator state.

Options compared when this module was written (one view, batches of 64 images at 32×32 and
32 at 64×64, one torch thread): (0) PIL per image (``reference_transform``), (a)
torchvision.transforms.v2 per image on uint8 tensors, (b) kornia.augmentation batched, (c)
this module, (c') this module with torchvision's per-image ``resized_crop``. ``rkdo bench``
times the training step with (c) against the reference pipeline with (0) on the machine at
hand; the comparison of the other options is not kept as a command.

(c) was the fastest and is the only option that is faithful per image and seeded by a
``torch.Generator``: kornia's ``ColorJitter`` draws one op order per *batch* (torchvision draws
one per image), and its random modules draw from the global RNG (a ``fork_rng`` + reseed
wrapper, as used for (b) in the benchmark, would be needed for determinism). 40-70 % of (c)'s time
is kornia's RGB<->HSV round trip for hue; a hand-written hue kernel could be faster, but the
library kernel was kept as augmentation is a small part of a training step.

Known differences from the PIL pipeline, small and covered by the tests' statistical checks:

* After the uint8 input everything stays float32; PIL rounds to uint8 after every step (and
  ``ImageEnhance.Contrast`` rounds the grey mean to an integer).
* Enlarging a crop (always the case when ``out_size == H``, as crops never exceed the image) is
  bilinear like PIL's. Shrinking (``out_size`` < a crop side) needs PIL-style antialiasing,
  which grid_sample lacks; those images go one by one through torchvision's
  ``resized_crop(antialias=True)``, which approximates PIL's filter closely but not bit-exactly.
* torchvision's tensor grayscale uses 0.2989 for red; PIL and this module use 0.299.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import kornia.color
import kornia.enhance
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from torch import Tensor

__all__ = [
    "SCALE",
    "RATIO",
    "FLIP_P",
    "JITTER",
    "JITTER_P",
    "GRAY_P",
    "MEAN",
    "STD",
    "AugmentParams",
    "sample_params",
    "apply_params",
    "augment",
    "two_views",
    "normalize",
    "reference_transform",
]

SCALE: tuple[float, float] = (0.2, 1.0)
RATIO: tuple[float, float] = (3 / 4, 4 / 3)
FLIP_P = 0.5
JITTER: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, sat., hue
JITTER_P = 0.8
GRAY_P = 0.2
MEAN = 0.5
STD = 0.5

# Index of each colour op in AugmentParams.factors / .order.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3
_N_ATTEMPTS = 10  # torchvision's RandomResizedCrop.get_params tries 10 times before falling back


@dataclass(frozen=True)
class AugmentParams:
    """Per-image random parameters of one augmented view of a batch of B images (CPU tensors).

    Attributes:
        boxes: (B, 4) int64 crop boxes ``(top, left, height, width)`` in input pixels, as
            returned by torchvision's ``RandomResizedCrop.get_params``.
        flip: (B,) bool, horizontal flip.
        jitter: (B,) bool, whether ColorJitter is applied at all (``RandomApply``).
        factors: (B, 4) float32 ``(brightness, contrast, saturation, hue)``; multiplicative
            factors for the first three, hue shift in turns (fraction of a full circle).
        order: (B, 4) int64, per image a permutation of 0..3: the order in which the colour
            ops (indices into ``factors``) are applied, as torchvision's ``fn_idx``.
        gray: (B,) bool, convert to grayscale (kept as 3 equal channels).
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    gray: Tensor

    @property
    def batch_size(self) -> int:
        return self.boxes.shape[0]

    @classmethod
    def identity(cls, batch_size: int, height: int, width: int) -> AugmentParams:
        """Parameters that leave each image unchanged: whole-image crop, no flip/jitter/gray."""
        b = batch_size
        return cls(
            boxes=torch.tensor([[0, 0, height, width]], dtype=torch.int64).repeat(b, 1),
            flip=torch.zeros(b, dtype=torch.bool),
            jitter=torch.zeros(b, dtype=torch.bool),
            factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(b, 1),
            order=torch.arange(4).repeat(b, 1),
            gray=torch.zeros(b, dtype=torch.bool),
        )

    def with_(self, **changes: Tensor) -> AugmentParams:
        """A copy with some fields replaced (convenience for tests and experiments)."""
        return replace(self, **changes)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator,
             dtype: torch.dtype = torch.float32) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=dtype, device=generator.device)
    return (low + (high - low) * u).cpu()


def _sample_crops(batch_size: int, height: int, width: int, generator: torch.Generator,
                  scale: tuple[float, float], ratio: tuple[float, float]) -> Tensor:
    """RandomResizedCrop.get_params for B images at once -> (B, 4) int64 (top, left, h, w).

    All 10 attempts are drawn for every image and the first valid one is kept, which gives the
    same distribution as torchvision's early-exit loop (later draws are just unused).
    """
    b = batch_size
    # float64 so that rounding to whole pixels behaves as torchvision's Python-float maths.
    target_area = height * width * _uniform((b, _N_ATTEMPTS), *scale, generator, torch.float64)
    log_ratio = _uniform((b, _N_ATTEMPTS), math.log(ratio[0]), math.log(ratio[1]), generator,
                         torch.float64)
    aspect = torch.exp(log_ratio)
    # torch.round is round-half-to-even, as Python's round() used by torchvision.
    w = torch.round(torch.sqrt(target_area * aspect)).long()
    h = torch.round(torch.sqrt(target_area / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1)  # argmax returns the first maximum: the first valid attempt
    rows = torch.arange(b)
    h, w, found = h[rows, first], w[rows, first], ok.any(dim=1)

    # Fallback, as torchvision: the central crop, clamped to the allowed aspect-ratio range.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    h = torch.where(found, h, torch.full_like(h, fh))
    w = torch.where(found, w, torch.full_like(w, fw))

    # Uniform integer offsets in [0, H - h] (torch.randint per image in torchvision).
    u_top = _uniform((b,), 0.0, 1.0, generator, torch.float64)
    u_left = _uniform((b,), 0.0, 1.0, generator, torch.float64)
    top = torch.minimum((u_top * (height - h + 1)).long(), height - h)
    left = torch.minimum((u_left * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1)


def sample_params(batch_size: int, height: int, width: int, generator: torch.Generator, *,
                  scale: tuple[float, float] = SCALE,
                  ratio: tuple[float, float] = RATIO) -> AugmentParams:
    """Draw one view's random parameters for B images of size H×W (see `AugmentParams`).

    Every draw comes from ``generator`` (a CPU generator is expected; another device's
    generator works but gives a different stream), so equal generator states give equal params.
    """
    if batch_size < 0 or height < 1 or width < 1:
        raise ValueError(f"need batch_size >= 0 and a positive image size, got "
                         f"{batch_size=}, {height=}, {width=}")
    b = batch_size
    boxes = _sample_crops(b, height, width, generator, scale, ratio)
    flip = _uniform((b,), 0.0, 1.0, generator) < FLIP_P
    # RandomApply skips when p < rand, i.e. applies when rand <= p.
    jitter = _uniform((b,), 0.0, 1.0, generator) <= JITTER_P
    bri, con, sat, hue = JITTER
    factors = torch.stack([
        _uniform((b,), max(0.0, 1 - bri), 1 + bri, generator),
        _uniform((b,), max(0.0, 1 - con), 1 + con, generator),
        _uniform((b,), max(0.0, 1 - sat), 1 + sat, generator),
        _uniform((b,), -hue, hue, generator),
    ], dim=1)
    # argsort of i.i.d. uniforms = a uniformly random permutation per row (torch.randperm(4)).
    order = torch.argsort(_uniform((b, 4), 0.0, 1.0, generator), dim=1)
    gray = _uniform((b,), 0.0, 1.0, generator) < GRAY_P
    return AugmentParams(boxes=boxes, flip=flip, jitter=jitter, factors=factors, order=order,
                         gray=gray)


def _adjust_hue_turns(x: Tensor, turns: Tensor) -> Tensor:
    # torchvision's hue factor is a fraction of the colour circle; kornia's is in radians.
    return kornia.enhance.adjust_hue(x, turns * (2 * math.pi))


# Per-sample colour kernels, indexed as AugmentParams.factors. Each maps (N,3,h,w) floats in
# [0,1] and an (N,) factor to (N,3,h,w) in [0,1] and follows torchvision's definition.
_COLOUR_OPS = (
    kornia.enhance.adjust_brightness_accumulative,
    kornia.enhance.adjust_contrast_with_mean_subtraction,
    kornia.enhance.adjust_saturation_with_gray_subtraction,
    _adjust_hue_turns,
)


def _check_images(images: Tensor) -> None:
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (B,3,H,W), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B,3,H,W), got {tuple(images.shape)}")


def _sample_coords(start: Tensor, length: Tensor, size: int, out: int) -> Tensor:
    """Normalised grid_sample coordinates (B, out) along one axis of a crop.

    Output pixel k samples the crop at ``(k + 0.5) * length / out - 0.5`` (half-pixel centres, as
    PIL and ``F.interpolate(align_corners=False)``), clamped to the crop's first/last pixel: the
    crop is cut out *before* resizing, as torchvision does, so no pixel outside it contributes.
    """
    k = torch.arange(out, dtype=start.dtype, device=start.device) + 0.5
    pos = start[:, None] + k * (length / out)[:, None] - 0.5
    pos = torch.minimum(torch.maximum(pos, start[:, None]), (start + length - 1)[:, None])
    return (2 * pos + 1) / size - 1  # pixel index -> [-1, 1] for align_corners=False


def _crop_resize(x: Tensor, boxes: Tensor, out: int) -> Tensor:
    """Crop each image to its box and resize to out×out: (B,3,H,W) float -> (B,3,out,out).

    Matches ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)`` per image.
    Enlarging (every crop when out == H) is plain bilinear, done for the whole batch by one
    ``grid_sample``. Shrinking needs PIL-style antialiasing, which grid_sample lacks, so those
    images (only possible when out < crop side) go through torchvision's kernel one by one.
    """
    b, _, height, width = x.shape
    boxes_f = boxes.to(device=x.device, dtype=x.dtype)
    top, left, h, w = boxes_f.unbind(dim=1)
    gy = _sample_coords(top, h, height, out)
    gx = _sample_coords(left, w, width, out)
    grid = torch.stack([gx[:, None, :].expand(b, out, out), gy[:, :, None].expand(b, out, out)],
                       dim=-1)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    shrink = (boxes[:, 2] > out) | (boxes[:, 3] > out)  # CPU: no device sync
    for i in shrink.nonzero().flatten().tolist():
        t, l_, hh, ww = boxes[i].tolist()
        y[i] = TF.resized_crop(x[i], t, l_, hh, ww, [out, out], antialias=True)
    return y


def apply_params(images: Tensor, params: AugmentParams, out_size: int | None = None) -> Tensor:
    """Apply one view's parameters: (B,3,H,W) uint8 -> (B,3,out,out) float32 in [-1, 1].

    Runs on ``images.device``; ``params`` stay on the CPU (index selection is done there, so
    there is no device-to-host synchronisation).
    """
    _check_images(images)
    if params.batch_size != images.shape[0]:
        raise ValueError(f"params are for {params.batch_size} images, got {images.shape[0]}")
    out = images.shape[-2] if out_size is None else int(out_size)
    if out < 1:
        raise ValueError(f"out_size must be >= 1, got {out}")
    device = images.device
    if images.shape[0] == 0:
        return torch.empty((0, 3, out, out), dtype=torch.float32, device=device)

    x = _crop_resize(images.float().div_(255.0), params.boxes, out)
    flip = params.flip.to(device).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)

    # Each image runs its own permutation of the four ops: at step s, the images whose s-th op
    # is k are gathered and adjusted together. 16 small gathers instead of 16 full-batch passes.
    for step in range(4):
        for op, fn in enumerate(_COLOUR_OPS):
            sel = params.jitter & (params.order[:, step] == op)
            if not bool(sel.any()):
                continue
            idx = sel.nonzero().squeeze(1)
            factor = params.factors[idx, op].to(device=device, dtype=x.dtype)
            idx = idx.to(device)
            x[idx] = fn(x[idx], factor)

    gray = kornia.color.rgb_to_grayscale(x).expand_as(x)
    x = torch.where(params.gray.to(device).view(-1, 1, 1, 1), gray, x)
    # Rounding in hsv<->rgb can leave values a few ulp outside [0, 1].
    return x.clamp_(0.0, 1.0).sub_(MEAN).div_(STD).contiguous()


def augment(images: Tensor, generator: torch.Generator, *, out_size: int | None = None) -> Tensor:
    """One augmented view: (B,3,H,W) uint8 on any device -> (B,3,out,out) float32, same device.

    ``out_size`` defaults to H. Parameters are drawn per image from ``generator`` (CPU), so the
    result is a deterministic function of (images, generator state); the generator advances.
    """
    _check_images(images)
    b, _, h, w = images.shape
    return apply_params(images, sample_params(b, h, w, generator), out_size)


def two_views(images: Tensor, generator: torch.Generator, *,
              out_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Two independent views (two `augment` calls on the same generator), each (B,3,out,out)."""
    return (augment(images, generator, out_size=out_size),
            augment(images, generator, out_size=out_size))


def normalize(images_uint8: Tensor) -> Tensor:
    """No augmentation, for evaluation: (B,3,H,W) uint8 -> float32 (x/255 - MEAN)/STD in [-1,1]."""
    _check_images(images_uint8)
    return images_uint8.float().div_(255.0).sub_(MEAN).div_(STD)


def reference_transform(out_size: int) -> T.Compose:
    """The authors' per-image PIL pipeline (PIL RGB image -> (3,out,out) float32 in [-1, 1]).

    Draws from torch's global RNG, as torchvision transforms do; used for comparisons only.
    """
    return T.Compose([
        T.RandomResizedCrop(out_size, scale=SCALE, ratio=RATIO),
        T.RandomHorizontalFlip(p=FLIP_P),
        T.RandomApply([T.ColorJitter(*JITTER)], p=JITTER_P),
        T.RandomGrayscale(p=GRAY_P),
        T.ToTensor(),
        T.Normalize((MEAN,) * 3, (STD,) * 3),
    ])
