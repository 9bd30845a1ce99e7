"""ResNet-18 encoder + projection head of the authors' notebook (docs/method.md §3).

torchvision ResNet-18, random init, ImageNet stem (7×7 stride-2 conv + max-pool, as in the
reference even at 32×32), ``fc`` replaced by identity, then Linear(512, 512) → [BatchNorm]
→ ReLU → Linear(512, 64) and L2 normalisation. The paper's text puts batch-norm in the
head, the notebook does not: ``head_batchnorm`` chooses (default off = the notebook).

Speed (``matmul_1x1_maps``, on by default): with the ImageNet stem a 32×32 image reaches
layer4 as a 2×2 map and leaves it as 1×1. A 3×3, padding-1 convolution producing a 1×1 map
only ever multiplies padding zeros with the taps outside the image (8 of 9 at 1×1 input),
yet oneDNN runs the whole kernel, and its backward pass at 1×1 maps is far below the CPU's
matmul rate (a large share of a training step on a 2-core CPU; `rkdo bench` measures the
step with and without this field). `SmallMapConv2d`
computes those convolutions as one matrix product over the taps that touch the image:
identical in exact arithmetic (the omitted taps multiply zeros; their gradients are exactly
zero either way), different only in float32 rounding, with the same parameters and
``state_dict``. Every other convolution runs through ``nn.Conv2d`` unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from .config import ConfigError

FEATURE_DIM = 512
EMBED_DIM = 64


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes a convolution whose output map is 1×1 as a matmul.

    With a 1×1 output the single window covers input rows/cols ``[-p, k - p)``; only the part
    inside the image, ``x[:, :, :hi, :wi]`` with ``hi = min(H, k - p)``, meets the taps
    ``W[:, :, p:p + hi, p:p + wi]``, so ``y = flatten(x part) @ flatten(W part)ᵀ + b``.
    Gradients of the unused taps are exactly zero, as with the full convolution. Any other
    shape (or groups, dilation, non-zero padding modes) takes ``nn.Conv2d``'s path.
    """

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (x.ndim == 4 and self.groups == 1 and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
            (kh, kw), (ph, pw), (sh, sw) = self.kernel_size, self.padding, self.stride
            h, w = x.shape[-2:]
            if (h + 2 * ph - kh) // sh == 0 and (w + 2 * pw - kw) // sw == 0:  # 1×1 output
                hi, wi = min(h, kh - ph), min(w, kw - pw)
                xs = x[:, :, :hi, :wi].reshape(x.shape[0], -1)
                ws = weight[:, :, ph:ph + hi, pw:pw + wi].reshape(weight.shape[0], -1)
                return F.linear(xs, ws, bias).view(x.shape[0], -1, 1, 1)
        return super()._conv_forward(x, weight, bias)


def use_small_map_convs(module: nn.Module) -> nn.Module:
    """Replace every plain ``nn.Conv2d`` inside ``module`` by a `SmallMapConv2d` holding the
    *same* parameter objects (so initialisation, ``state_dict`` keys and values are
    unchanged); returns ``module``."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Conv2d:
                continue
            # skip_init: no initialisation (and no RNG draw); the parameters are replaced.
            new = torch.nn.utils.skip_init(
                SmallMapConv2d, child.in_channels, child.out_channels, child.kernel_size,
                stride=child.stride, padding=child.padding, dilation=child.dilation,
                groups=child.groups, bias=child.bias is not None,
                padding_mode=child.padding_mode, device=child.weight.device,
                dtype=child.weight.dtype)
            new.weight = child.weight
            if child.bias is not None:
                new.bias = child.bias
            setattr(parent, name, new)
    return module


class Encoder(nn.Module):
    """x: (B, 3, H, W) float -> (B, 64) L2-normalised embedding."""

    def __init__(self, *, head_batchnorm: bool = False, embed_dim: int = EMBED_DIM,
                 matmul_1x1_maps: bool = False):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=None)
        self.backbone.fc = nn.Identity()
        if matmul_1x1_maps:
            use_small_map_convs(self.backbone)
        layers: list[nn.Module] = [nn.Linear(FEATURE_DIM, FEATURE_DIM)]
        if head_batchnorm:
            layers.append(nn.BatchNorm1d(FEATURE_DIM))
        layers += [nn.ReLU(inplace=True), nn.Linear(FEATURE_DIM, embed_dim)]
        self.head = nn.Sequential(*layers)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 512) backbone features (before the head)."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.head(self.backbone(x)), dim=1)


def build_model(config, device: torch.device | str = "cpu") -> Encoder:
    """A freshly initialised encoder; the weights depend only on ``config.seed``.

    ``config.matmul_1x1_maps`` and ``config.channels_last`` choose how it computes, never its
    weights (configs without those fields get the plain torchvision computation)."""
    # Seed a local generator-scope so initialisation is a function of the seed alone,
    # whatever happened to the global RNG before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Encoder(head_batchnorm=config.head_batchnorm,
                        matmul_1x1_maps=getattr(config, "matmul_1x1_maps", False))
    model = model.to(device)
    if getattr(config, "channels_last", False):
        model = model.to(memory_format=torch.channels_last)
    return model


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; explicit names must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError("device", name, "must be auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", name, "not available: CUDA is not available here; use "
                          "device='auto' or 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError("device", name, f"this machine has {n} CUDA device(s), "
                          f"cuda:0..cuda:{n - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", name, "not available: MPS is not available here; use "
                          "device='auto' or 'cpu'")
    return dev
