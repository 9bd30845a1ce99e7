"""Tests for rkdo_core.augment: batched two-view augmentation vs torchvision's per-image recipe.

Three levels: (1) the sampled parameters have torchvision's distributions (KS/binomial tests
against ``RandomResizedCrop.get_params`` and the recipe's probabilities); (2) given the same
parameters, ``apply_params`` equals torchvision's per-image tensor kernels; (3) the whole
pipeline's outputs are distributed like the PIL pipeline's (``reference_transform``).
All randomness is seeded, so every test is deterministic.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torchvision.transforms as T
import torchvision.transforms.v2.functional as TF
from PIL import Image
from scipy import stats

from rkdo_core import augment as A
from rkdo_core.augment import AugmentParams

ONE_LEVEL = 2 / 255  # one uint8 step after Normalize(0.5, 0.5)


def _random_images(b: int, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)


def _smooth_image(h: int = 32, w: int = 32) -> torch.Tensor:
    """(3,h,w) uint8: red ramps left→right, green top→bottom, blue oscillates; no symmetry, so
    crops, flips and colour ops all change the pixel statistics."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    img = torch.stack([xx * 255 / (w - 1), yy * 255 / (h - 1),
                       128 + 100 * torch.sin(xx / 5.0 + yy / 7.0)])
    return img.round().to(torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _is_gray(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,) bool: all three channels identical."""
    return ((x[:, 0] == x[:, 1]) & (x[:, 1] == x[:, 2])).flatten(1).all(dim=1)


def _torchvision_crops(n: int, h: int, w: int, seed: int, **kw) -> torch.Tensor:
    """n draws of torchvision's RandomResizedCrop.get_params -> (n, 4) (top, left, h, w)."""
    img = torch.zeros(3, h, w)
    scale, ratio = kw.get("scale", A.SCALE), kw.get("ratio", A.RATIO)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return torch.tensor([T.RandomResizedCrop.get_params(img, scale, ratio) for _ in range(n)])


def _torchvision_apply(images: torch.Tensor, params: AugmentParams, out: int) -> torch.Tensor:
    """Slow per-image reference: the same parameters through torchvision's v2 tensor kernels."""
    ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    views = []
    for i in range(images.shape[0]):
        x = images[i].float() / 255
        x = TF.resized_crop(x, *params.boxes[i].tolist(), [out, out], antialias=True)
        if params.flip[i]:
            x = TF.horizontal_flip(x)
        if params.jitter[i]:
            for op in params.order[i].tolist():
                x = ops[op](x, float(params.factors[i, op]))
        if params.gray[i]:
            x = TF.rgb_to_grayscale(x, num_output_channels=3)
        views.append(TF.normalize(x, [A.MEAN] * 3, [A.STD] * 3))
    return torch.stack(views)


# --------------------------------------------------------------------------- interface


@pytest.mark.parametrize("b", [1, 2, 7])
@pytest.mark.parametrize(("h", "w", "out_size", "expected"), [
    (32, 32, None, 32),   # default out = H
    (64, 64, None, 64),
    (24, 40, 32, 32),     # non-square input
    (32, 32, 16, 16),     # shrinking (antialiased path)
])
def test_shape_dtype_range(b, h, w, out_size, expected):
    images = _random_images(b, h, w)
    y = A.augment(images, _gen(0), out_size=out_size)
    assert y.shape == (b, 3, expected, expected)
    assert y.dtype == torch.float32 and y.device == images.device
    assert torch.isfinite(y).all()
    assert y.min() >= -1.0 and y.max() <= 1.0
    assert images.dtype == torch.uint8  # input untouched


def test_empty_batch():
    assert A.augment(_random_images(0), _gen(0)).shape == (0, 3, 32, 32)


def test_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        A.augment(torch.zeros(2, 3, 8, 8), _gen(0))
    with pytest.raises(ValueError, match=r"\(B,3,H,W\)"):
        A.augment(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), _gen(0))
    with pytest.raises(ValueError, match="params are for"):
        A.apply_params(_random_images(3), AugmentParams.identity(2, 32, 32))


def test_determinism_and_independence():
    images = _random_images(16)
    a = A.augment(images, _gen(123))
    assert torch.equal(a, A.augment(images, _gen(123)))
    assert not torch.allclose(a, A.augment(images, _gen(124)))
    # The generator advances: the next call on it is a different view.
    g = _gen(123)
    first, second = A.augment(images, g), A.augment(images, g)
    assert torch.equal(first, a) and not torch.allclose(first, second)
    # two_views = two successive augment() calls on the same generator.
    v1, v2 = A.two_views(images, _gen(123))
    assert torch.equal(v1, first) and torch.equal(v2, second)
    per_image_diff = (v1 - v2).abs().flatten(1).amax(dim=1)
    assert (per_image_diff > 0).all()  # every image's two views differ


def test_augment_is_apply_of_sampled_params():
    images = _random_images(5, 24, 40)
    params = A.sample_params(5, 24, 40, _gen(7))
    assert torch.equal(A.augment(images, _gen(7), out_size=20),
                       A.apply_params(images, params, out_size=20))


def test_normalize_values():
    images = _random_images(3)
    y = A.normalize(images)
    assert y.dtype == torch.float32 and y.shape == images.shape
    torch.testing.assert_close(y, images.float() / 127.5 - 1, atol=1e-6, rtol=0)
    assert A.normalize(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(
        1, 3, 1, 2)).tolist() == [[[[-1.0, 1.0]]] * 3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    images = _random_images(8)
    y = A.augment(images.cuda(), _gen(3))
    assert y.device.type == "cuda"
    torch.testing.assert_close(y.cpu(), A.augment(images, _gen(3)), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(("h", "w"), [(32, 32), (24, 40)])
def test_crop_distribution_matches_torchvision(h, w):
    n = 3000
    ours = A.sample_params(n, h, w, _gen(0)).boxes
    ref = _torchvision_crops(n, h, w, seed=0)
    top, left, ch, cw = ours.T.double()
    rtop, rleft, rh, rw = ref.T.double()
    assert (ch >= 1).all() and (cw >= 1).all()
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + ch <= h).all() and (left + cw <= w).all()
    checks = {
        "area fraction": (ch * cw / (h * w), rh * rw / (h * w)),
        "log aspect ratio": (torch.log(cw / ch), torch.log(rw / rh)),
        "centre row": (top + ch / 2, rtop + rh / 2),
        "centre column": (left + cw / 2, rleft + rw / 2),
    }
    for name, (x, y) in checks.items():
        p = stats.ks_2samp(x.numpy(), y.numpy()).pvalue
        assert p > 0.01, f"{name}: KS p={p:.3g}"
    # Not U(0.2, 1): large areas are often rejected for not fitting, in both implementations.
    frac, ref_frac = checks["area fraction"]
    assert 0.15 < frac.min() and frac.max() <= 1.0
    assert abs(frac.mean() - ref_frac.mean()) < 0.02


@pytest.mark.parametrize(("h", "w"), [(4, 64), (64, 4), (10, 10)])
def test_crop_fallback_equals_torchvision(h, w):
    # scale (0.9, 1) with a long thin image (or an impossible ratio) makes all 10 attempts fail,
    # so both must return the same central crop clamped to the ratio range.
    kw = {"scale": (0.9, 1.0), "ratio": (3 / 4, 4 / 3)} if h != w else {
        "scale": (0.9, 1.0), "ratio": (4.0, 5.0)}
    ours = A.sample_params(50, h, w, _gen(0), **kw).boxes
    ref = _torchvision_crops(50, h, w, seed=0, **kw)
    assert torch.equal(ours, ref)


def _within_4se(hits: torch.Tensor, p: float) -> bool:
    n = hits.numel()
    return abs(hits.float().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_coin_flip_rates():
    params = A.sample_params(20000, 32, 32, _gen(1))
    assert _within_4se(params.flip, A.FLIP_P)
    assert _within_4se(params.jitter, A.JITTER_P)
    assert _within_4se(params.gray, A.GRAY_P)
    # Independent decisions: e.g. flip and gray are uncorrelated.
    assert _within_4se(params.flip & params.gray, A.FLIP_P * A.GRAY_P)


def test_jitter_factors_and_order():
    n = 12000
    params = A.sample_params(n, 32, 32, _gen(2))
    bri, con, sat, hue = A.JITTER
    bounds = [(1 - bri, 1 + bri), (1 - con, 1 + con), (1 - sat, 1 + sat), (-hue, hue)]
    for k, (lo, hi) in enumerate(bounds):
        f = params.factors[:, k].double()
        assert lo <= f.min() and f.max() <= hi
        p = stats.kstest(f.numpy(), stats.uniform(lo, hi - lo).cdf).pvalue
        assert p > 0.01, f"factor {k}: KS p={p:.3g}"
    # Each row is a permutation of the four ops, and all 24 orders are equally likely.
    assert torch.equal(params.order.sort(dim=1).values, torch.arange(4).expand(n, 4))
    perms = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = torch.bincount(torch.tensor([perms[tuple(r)] for r in params.order.tolist()]),
                            minlength=24)
    assert stats.chisquare(counts.numpy()).pvalue > 0.001


# --------------------------------------------------------------------------- apply, exact


def test_identity_params_give_normalize():
    images = _random_images(4)
    y = A.apply_params(images, AugmentParams.identity(4, 32, 32))
    torch.testing.assert_close(y, A.normalize(images), atol=ONE_LEVEL / 2, rtol=0)


def test_flip_only():
    images = _random_images(3)
    params = AugmentParams.identity(3, 32, 32).with_(flip=torch.tensor([True, False, True]))
    y = A.apply_params(images, params)
    expected = A.normalize(images)
    expected[[0, 2]] = expected[[0, 2]].flip(-1)
    torch.testing.assert_close(y, expected, atol=ONE_LEVEL / 2, rtol=0)


def test_grayscale_only_uses_itu_601_weights():
    images = _random_images(3)
    params = AugmentParams.identity(3, 32, 32).with_(gray=torch.tensor([True, True, False]))
    y = A.apply_params(images, params)
    assert _is_gray(y).tolist() == [True, True, False]
    r, g, b = (images[:2].double() / 255).unbind(dim=1)
    luma = (0.299 * r + 0.587 * g + 0.114 * b) * 2 - 1
    torch.testing.assert_close(y[:2, 0].double(), luma, atol=ONE_LEVEL / 2, rtol=0)
    torch.testing.assert_close(y[2], A.normalize(images[2:])[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("f", [0.6, 1.0, 1.4])
def test_brightness_only_multiplies_and_clamps(f):
    images = _random_images(2)
    params = AugmentParams.identity(2, 32, 32).with_(
        jitter=torch.ones(2, dtype=torch.bool), factors=torch.tensor([[f, 1.0, 1.0, 0.0]] * 2))
    y = A.apply_params(images, params)
    expected = (images.double() / 255 * f).clamp(0, 1) * 2 - 1
    torch.testing.assert_close(y.double(), expected, atol=1e-5, rtol=0)


def test_jitter_is_skipped_when_not_applied():
    images = _random_images(2)
    factors = torch.tensor([[1.4, 0.6, 1.3, 0.1]] * 2)
    params = AugmentParams.identity(2, 32, 32).with_(factors=factors)
    torch.testing.assert_close(A.apply_params(images, params), A.normalize(images),
                               atol=ONE_LEVEL / 2, rtol=0)


@pytest.mark.parametrize("op", range(4))
@pytest.mark.parametrize("factor_index", [0, 1])
def test_each_colour_op_matches_torchvision(op, factor_index):
    images = _random_images(3, seed=op)
    factor = [(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)][op][factor_index]
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 3)
    factors[:, op] = factor
    params = AugmentParams.identity(3, 32, 32).with_(
        jitter=torch.ones(3, dtype=torch.bool), factors=factors)
    # torchvision's tensor grayscale uses 0.2989 for red vs PIL's 0.299: within 2e-4 here.
    torch.testing.assert_close(A.apply_params(images, params),
                               _torchvision_apply(images, params, 32), atol=1e-3, rtol=0)


def test_per_image_jitter_order_is_respected():
    # Brightness 1.4 then contrast 0.6 differs from the reverse once brightness clamps.
    images = _random_images(1).expand(2, 3, 32, 32).contiguous()
    params = AugmentParams.identity(2, 32, 32).with_(
        jitter=torch.ones(2, dtype=torch.bool),
        factors=torch.tensor([[1.4, 0.6, 1.0, 0.0]] * 2),
        order=torch.tensor([[0, 1, 2, 3], [1, 0, 2, 3]]))
    y = A.apply_params(images, params)
    assert (y[0] - y[1]).abs().max() > 0.05
    torch.testing.assert_close(y, _torchvision_apply(images, params, 32), atol=1e-3, rtol=0)


@pytest.mark.parametrize(("h", "w", "out"), [(32, 32, 32), (24, 40, 48), (48, 48, 20)])
def test_random_params_match_torchvision_per_image(h, w, out):
    """Everything at once (crops incl. shrinking, flips, per-image jitter order, grayscale)
    equals torchvision's per-image tensor pipeline given the same parameters."""
    images = _random_images(24, h, w, seed=5)
    params = A.sample_params(24, h, w, _gen(5))
    torch.testing.assert_close(A.apply_params(images, params, out),
                               _torchvision_apply(images, params, out), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------- vs PIL pipeline


def test_outputs_distributed_like_pil_pipeline():
    """2,000 views of one image from each pipeline: same per-view statistics (KS tests), same
    share of grayscale views, same value range."""
    n, size = 2000, 32
    image = _smooth_image(size, size)
    ours = A.augment(image.expand(n, 3, size, size).contiguous(), _gen(0))
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    reference = A.reference_transform(size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = torch.stack([reference(pil) for _ in range(n)])
    assert ref.shape == ours.shape
    for x in (ours, ref):
        assert x.min() >= -1 and x.max() <= 1
        assert x.min() < -0.9 and x.max() > 0.9  # the range is actually used
    stats_of = {
        "view mean": lambda x: x.mean(dim=(1, 2, 3)),
        "view std": lambda x: x.std(dim=(1, 2, 3)),
        "red mean": lambda x: x[:, 0].mean(dim=(1, 2)),
        "green mean": lambda x: x[:, 1].mean(dim=(1, 2)),
        "blue mean": lambda x: x[:, 2].mean(dim=(1, 2)),
    }
    for name, fn in stats_of.items():
        a, b = fn(ours), fn(ref)
        p = stats.ks_2samp(a.numpy(), b.numpy()).pvalue
        assert p > 0.01, f"{name}: KS p={p:.3g}"
        assert abs(a.mean() - b.mean()) < 0.02, name
    # Only RandomGrayscale makes the three channels equal on this colourful image.
    assert _within_4se(_is_gray(ours), A.GRAY_P)
    assert _within_4se(_is_gray(ref), A.GRAY_P)
