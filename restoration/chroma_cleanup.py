"""Chroma clean-up after the night model v2: flatten colour blotches where shadows were lifted.

Lifting a shadow by a gain multiplies its sensor noise by the same gain. The U-Net removes the
fine grain, but chroma noise in real night photos is coarse (demosaicing and JPEG's half-size
colour planes make it blotches several pixels wide, beyond what a 16-wide U-Net sees), and on
real-dim it survives as green and pink mottling in flat dark areas. Camera pipelines clean
chroma separately from luma for the same reason: the eye forgives soft colour far more than
soft detail.

So after the tiles are stitched, the colour-difference planes (R - Y, B - Y) go through a
guided filter (He et al.; ``kornia.filters.guided_blur``) with the luma as its guide: where the
luma is flat the colour is averaged over the window, and colour edges that follow luma edges
stay sharp; the luma itself is untouched. Borders replicate, so a photo of any size, a
1-pixel strip included, takes the same window. How much of the filtered colour a pixel takes follows
the gain it got, ``1 - 1/gain``: nothing where the exposure left it alone (lamps, sky), most of
it in shadows lifted many times. The whole photo is filtered at once, so there are no tile
seams; the fast guided filter's subsampling keeps a 12-MP photo cheap.

The window and regulariser were chosen on the training data's held-out photos
(``training/select_chroma.py``, logged in ``training/runs/chroma-cleanup-*.json``), never on an
evaluation set: 17 px and 1e-3 there raised PSNR by 0.08 dB and cut the coarse chroma error by 7 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from kornia.filters import guided_blur
from torch import Tensor

from imaging.colour import LUMA_WEIGHTS

__all__ = ["SHIPPED", "ChromaCleanup", "colour_difference", "from_colour_difference"]


def colour_difference(image: Tensor) -> tuple[Tensor, Tensor]:
    """(luma, colour) of an N x 3 x H x W RGB image: the luma by the weights every real-dim
    measure uses (``imaging.colour.LUMA_WEIGHTS``, N x 1 x H x W) and the
    colour-difference planes R - Y, B - Y (N x 2 x H x W)."""
    weights = torch.from_numpy(LUMA_WEIGHTS).to(image.device, image.dtype).view(1, 3, 1, 1)
    luma = (image * weights).sum(dim=1, keepdim=True)
    return luma, torch.cat([image[:, 0:1] - luma, image[:, 2:3] - luma], dim=1)


def from_colour_difference(luma: Tensor, colour: Tensor) -> Tensor:
    """The RGB image back from :func:`colour_difference`'s planes."""
    red, blue = luma + colour[:, 0:1], luma + colour[:, 1:2]
    weight_r, weight_g, weight_b = (float(w) for w in LUMA_WEIGHTS)
    green = (luma - weight_r * red - weight_b * blue) / weight_g
    return torch.cat([red, green, blue], dim=1)


@dataclass(frozen=True)
class ChromaCleanup:
    """The filter's settings; :data:`SHIPPED` is what the night model v2 runs with."""

    kernel: int = 17
    """Window side in pixels (2r + 1) at full resolution."""
    eps: float = 1e-3
    """Guided filter regulariser, in squared luma units: windows whose luma varies less than
    about sqrt(eps) count as flat and get their colour averaged."""
    subsample: int = 2
    """Fast guided filter factor: the statistics are gathered at 1/subsample size."""

    def __call__(self, restored: Tensor, log_gain: Tensor) -> Tensor:
        """``restored``: N x 3 x H x W in [0, 1]; ``log_gain``: N x 1 x H x W, the log of the
        gain each pixel got (``NightNAFNetV2.expose``'s gain channel, unscaled)."""
        with torch.autocast(restored.device.type, enabled=False):
            image = restored.float()
            luma, colour = colour_difference(image)
            smooth = guided_blur(
                luma, colour, self.kernel, self.eps, "replicate", subsample=self.subsample
            )
            strength = (1.0 - torch.exp(-log_gain.float().clamp(min=0.0))).to(image.dtype)
            colour = torch.lerp(colour, smooth, strength)
            return from_colour_difference(luma, colour).to(restored.dtype)


SHIPPED = ChromaCleanup()
