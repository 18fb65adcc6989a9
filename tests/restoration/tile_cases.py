"""Images and small models the tiling tests share (``test_tiling``, ``test_tile_plan``)."""

from __future__ import annotations

import math

import torch
from torch import nn

CONV_TOLERANCE = 1e-4
"""Tiled vs whole max abs difference for a conv net whose receptive radius is within the margin:
every pixel with non-zero weight then sees exactly the pixels it sees in the whole image, so
the only difference is float32 summation order (convolution kernels pick different algorithms
for different shapes; observed ~1e-6 on outputs of magnitude ~1).  1e-4 leaves headroom for
that, and is still 100x smaller than the ~1e-2 errors of tile edges that saw zero padding."""


def random_image(height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator)


def conv_net(seed: int = 0) -> nn.Module:
    """Four 3x3 convolutions with zero padding: receptive radius 4 pixels (9x9 field)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1),
    ).eval()


def smooth(height: int, width: int) -> torch.Tensor:
    """A smooth 3-channel image: a gradient plus sinusoids of a few hundred pixels' wavelength,
    so it curves everywhere, by far more than float32 rounding (a second difference of ~1e-4
    against ~1e-7)."""
    y = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
    x = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
    tau = 2 * math.pi
    return torch.cat(
        [
            0.5 + 0.4 * torch.sin(tau * (x / 240 + y / 340)),
            0.1 + 0.3 * x / width + 0.5 * y / height,
            0.5 + 0.3 * torch.cos(tau * (y / 180 - x / 500)),
        ],
        dim=1,
    )


def cheap_conv(seed: int = 1) -> nn.Module:
    """Two 3x3 convolutions with zero padding (receptive radius 2): cheap on 24 MP, and wrong at
    every tile edge, so a missing margin or a bad blend shows up as a seam."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, 3, padding=1)
    ).eval()
