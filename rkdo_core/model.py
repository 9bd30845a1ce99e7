"""ResNet-18 encoder + projection head of the authors' notebook (PAPER.md §3).

torchvision ResNet-18, random init, ImageNet stem (7×7 stride-2 conv + max-pool, as in the
reference even at 32×32), ``fc`` replaced by identity, then Linear(512, 512) → [BatchNorm]
→ ReLU → Linear(512, 64) and L2 normalisation. The paper's text puts batch-norm in the
head, the notebook does not: ``head_batchnorm`` chooses (default off = the notebook).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

FEATURE_DIM = 512
EMBED_DIM = 64


class Encoder(nn.Module):
    """x: (B, 3, H, W) float -> (B, 64) L2-normalised embedding."""

    def __init__(self, *, head_batchnorm: bool = False, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.backbone = torchvision.models.resnet18(weights=None)
        self.backbone.fc = nn.Identity()
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
    """A freshly initialised encoder; the weights depend only on ``config.seed``."""
    # Seed a local generator-scope so initialisation is a function of the seed alone,
    # whatever happened to the global RNG before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = Encoder(head_batchnorm=config.head_batchnorm)
    return model.to(device)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; explicit names must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={name!r} was requested but CUDA is not available here; "
                           "use device='auto' or 'cpu'")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device={name!r} was requested but MPS is not available here; "
                           "use device='auto' or 'cpu'")
    return dev
