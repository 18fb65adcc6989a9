"""Zero-DCE and Zero-DCE++: low-light enhancement by pixel-wise curves, on the authors' weights.

Both papers (Guo et al., CVPR 2020, arXiv 2001.06826; Li, Guo and Loy, TPAMI 2021, arXiv
2103.00860) brighten a photo with the quadratic light-enhancement curve
``LE(x) = x + a * (x^2 - x)``, applied eight times per pixel and colour channel. For ``a`` in
[-1, 1] the curve is monotone and keeps 0 at 0 and 1 at 1, so black stays black and nothing
clips; a negative ``a`` lifts. A small network predicts the ``a`` of every pixel from the photo
(trained without reference images, by losses on exposure, colour constancy and smoothness).

* Zero-DCE's network (7 plain 3x3 convolutions, 32 channels, three mirrored skip concatenations,
  79 K parameters) predicts eight maps, one per iteration, at full resolution.
* Zero-DCE++'s network has the same shape with depthwise-separable convolutions (10.5 K
  parameters) and predicts one map reused by all eight iterations. The maps are smooth, so it
  can estimate them on a copy of the photo shrunk by ``scale_factor`` and upsample them to full
  resolution: on a 12-megapixel photo the network sees a few hundred pixels a side and the
  curve, which costs a few operations per pixel, does the rest. SGZ (Zheng and Gupta, 2022)
  trained the same network with an extra semantic loss; its weights load into this class.

The layouts (``e_conv1``..``e_conv7``; ``depth_conv`` / ``point_conv`` for Zero-DCE++) are the
published files', so they load unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from restoration.architectures.checkpoints import load_strict, read_state_dict
from restoration.padding import SizeRequirements

__all__ = [
    "ESTIMATION_SIDE",
    "ZeroDCE",
    "ZeroDCEPlusPlus",
    "apply_curve",
    "auto_scale_factor",
    "load_zero_dce",
    "load_zero_dce_pp",
]

ITERATIONS = 8
WIDTH = 32

ESTIMATION_SIDE = 512
"""Zero-DCE++'s automatic scale: the curve map is estimated on a copy whose longer side is at
most this (the scale is ``ceil(longer side / 512)``). The published test script uses 12 for
its 600 x 400 and 1200 x 900 test photos; the network was trained at full resolution on 512 px
images, so 512 keeps it near the scale it learned while a 12-megapixel photo (4032 x 3024,
scale 8) costs the network 504 x 378 pixels."""


def apply_curve(x: torch.Tensor, maps: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """``LE(x) = x + a (x^2 - x)`` eight times: with one map per iteration (a list of eight) or
    the same map every time."""
    for i in range(ITERATIONS):
        a = maps[i] if isinstance(maps, list) else maps
        x = x + a * (torch.pow(x, 2) - x)
    return x


class _CurveNet(nn.Module):
    """The seven-layer estimator both papers share: ``conv`` builds one layer."""

    def __init__(self, conv: Callable[[int, int], nn.Module], out_channels: int) -> None:
        super().__init__()
        self.e_conv1 = conv(3, WIDTH)
        self.e_conv2 = conv(WIDTH, WIDTH)
        self.e_conv3 = conv(WIDTH, WIDTH)
        self.e_conv4 = conv(WIDTH, WIDTH)
        self.e_conv5 = conv(WIDTH * 2, WIDTH)
        self.e_conv6 = conv(WIDTH * 2, WIDTH)
        self.e_conv7 = conv(WIDTH * 2, out_channels)

    def curve_maps(self, x: torch.Tensor) -> torch.Tensor:
        """The curve parameters in [-1, 1] for every pixel of ``x``."""
        x1 = F.relu(self.e_conv1(x))
        x2 = F.relu(self.e_conv2(x1))
        x3 = F.relu(self.e_conv3(x2))
        x4 = F.relu(self.e_conv4(x3))
        x5 = F.relu(self.e_conv5(torch.cat([x3, x4], 1)))
        x6 = F.relu(self.e_conv6(torch.cat([x2, x5], 1)))
        return torch.tanh(self.e_conv7(torch.cat([x1, x6], 1)))


def _plain_conv(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class _SeparableConv(nn.Module):
    """A 3x3 depthwise convolution, then a 1x1 pointwise one, with nothing between them."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depth_conv = nn.Conv2d(in_channels, in_channels, 3, 1, 1, groups=in_channels)
        self.point_conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class ZeroDCE(_CurveNet):
    """Zero-DCE: eight full-resolution curve maps. Fully convolutional with a 7-pixel reach, so
    it tiles like any restoration network."""

    def __init__(self) -> None:
        super().__init__(_plain_conv, 3 * ITERATIONS)

    @property
    def size_requirements(self) -> SizeRequirements:
        return SizeRequirements()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W in [0, 1] -> the photo after all eight iterations (the reference's
        second output)."""
        return apply_curve(x, list(torch.split(self.curve_maps(x), 3, dim=1)))


def auto_scale_factor(height: int, width: int) -> int:
    """The scale Zero-DCE++ estimates its map at for a photo of this size (see
    :data:`ESTIMATION_SIDE`)."""
    return max(1, math.ceil(max(height, width) / ESTIMATION_SIDE))


class ZeroDCEPlusPlus(_CurveNet):
    """Zero-DCE++ (and SGZ): one curve map, estimated on the whole photo shrunk by
    ``scale_factor`` (None: :func:`auto_scale_factor` per photo) and applied at full size.

    The whole photo is needed to estimate the map, so the restorer runs :meth:`photo_inputs`
    once per photo and its tiles only apply the curve (:meth:`forward` on the photo stacked
    with its map), which is exact however the photo is tiled.
    """

    def __init__(self, scale_factor: int | None = None) -> None:
        super().__init__(_SeparableConv, 3)
        if scale_factor is not None and scale_factor < 1:
            raise ValueError(f"scale_factor must be >= 1, got {scale_factor}")
        self.scale_factor = scale_factor

    @property
    def size_requirements(self) -> SizeRequirements:
        return SizeRequirements()

    def curve_map(self, x: torch.Tensor) -> torch.Tensor:
        """The map for every pixel of ``x`` (N x 3 x H x W), estimated at reduced size.

        As the reference: bilinear downsampling without antialiasing (``align_corners=False``)
        and bilinear upsampling with ``align_corners=True``. Both are given output sizes, not
        factors, which is the reference's arithmetic exactly when the sides are multiples of the
        scale (its test script crops photos to that), and otherwise covers the whole photo
        instead of dropping its last rows and columns."""
        height, width = x.shape[-2:]
        scale = self.scale_factor or auto_scale_factor(height, width)
        if scale == 1:
            return self.curve_maps(x)
        small = (max(1, height // scale), max(1, width // scale))
        down = F.interpolate(x, size=small, mode="bilinear", align_corners=False)
        return F.interpolate(
            self.curve_maps(down), size=(height, width), mode="bilinear", align_corners=True
        )

    def photo_inputs(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The whole-photo pass: the photo stacked with its curve map (6 channels), which the
        tiles are cut from; nothing else per tile."""
        return torch.cat([image, self.curve_map(image)], dim=1), ()

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        """N x 6 x H x W (the photo and its map, :meth:`photo_inputs`) -> the enhanced photo."""
        return apply_curve(stacked[:, :3], stacked[:, 3:])


def load_zero_dce(path: str | Path) -> ZeroDCE:
    """The published Zero-DCE file (``Epoch99.pth``) as a network in eval mode on the CPU."""
    model = ZeroDCE()
    load_strict(model, read_state_dict(path, "Zero-DCE"), path, "Zero-DCE")
    return model.eval()


def load_zero_dce_pp(path: str | Path, scale_factor: int | None = None) -> ZeroDCEPlusPlus:
    """A published Zero-DCE++ or SGZ file as a network in eval mode on the CPU."""
    model = ZeroDCEPlusPlus(scale_factor)
    load_strict(model, read_state_dict(path, "Zero-DCE++"), path, "Zero-DCE++")
    return model.eval()
