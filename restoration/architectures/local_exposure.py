"""Local exposure: how bright each region of a night photo should become, decided once per photo.

Light in a night photo is not uniform: lamps, lit windows and sky sit next to near-black
shadows, so one gain for the whole frame either leaves the shadows dark or blows the lights out
(darkroom-night v1 did the second on real photos). The idea behind Zero-DCE++ and Retinex-style
models is to estimate the light at low resolution and apply it at full resolution; here:

* :class:`ExposureNet` looks at the *whole* frame resized to :data:`EXPOSURE_SIDE` px on its
  long side (so it sees the same frame-relative scale on a 481 px training photo and on a 12 MP
  photo, and costs the same for both) and predicts, on a grid of 1/8 of that, two smooth maps,
  plus one white balance for the frame (a global decision: local white balance makes casts
  blotchy).
* :func:`apply_exposure` turns those maps into a tone curve per pixel at full resolution. Per
  pixel, with ``v`` its brightest channel: ``gain = min(e^G, v^-s)``, i.e. the shadows (``v``
  below ``e^(-G/s)``) get the full gain ``e^G`` and brighter pixels get ``v -> v^(1-s)``, a
  gamma that leaves 1 at 1. The curve is continuous and monotone, and (before the white
  balance) no channel passes 1, so lights keep their detail however far the region's shadows
  are lifted; and because it is decided per pixel from the pixel's own value,
  a small lamp needs no sharp edge in the smooth maps (smooth maps are what keep halos away).
  Hue is kept: all three channels get the same gain.

The maps are bilinearly interpolated from the grid (``align_corners=False``); a crop of a photo
gets exactly the values the whole photo would (:func:`maps_for_crop`), which is what lets
training use patches and inference use tiles.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EXPOSURE_SIDE",
    "ExposureMaps",
    "ExposureNet",
    "apply_exposure",
    "exposure_input",
    "maps_for_crop",
]

EXPOSURE_SIDE = 256
"""Long side, in pixels, of the copy of the frame the exposure is decided on."""

_LOG_FLOOR = 1.0 / 1024.0
_V_FLOOR = 1e-4
_INITIAL_GAIN = 6.0
_INITIAL_GAMMA_LIFT = 0.5
_WB_RANGE = 0.5
"""Largest white-balance correction, in log units per channel (about x1.65)."""


class ExposureMaps:
    """What :class:`ExposureNet` decided for one photo: ``log_gain`` and ``lift`` (N x 1 x h x
    w grids, the shadows' log-gain ``G`` and the gamma lift ``s`` in (0, 1)) and the white
    balance (N x 3 log-gains summing to zero, so it does not change brightness)."""

    def __init__(self, log_gain: Tensor, lift: Tensor, white_balance: Tensor) -> None:
        self.log_gain = log_gain
        self.lift = lift
        self.white_balance = white_balance

    def grid(self) -> Tensor:
        """Both maps as one N x 2 x h x w tensor, to interpolate them together."""
        return torch.cat([self.log_gain, self.lift], dim=1)


def exposure_input(image: Tensor) -> Tensor:
    """The whole frame (N x 3 x H x W in [0, 1]) as the exposure network sees it: resized to
    :data:`EXPOSURE_SIDE` on the long side (area averaging down, bilinear up) and in log units,
    because exposure is a ratio: a frame twice as dark is the same input shifted."""
    h, w = image.shape[-2:]
    scale = EXPOSURE_SIDE / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size != (h, w):
        mode = "area" if scale < 1 else "bilinear"
        corners = None if scale < 1 else False
        image = F.interpolate(image, size=size, mode=mode, align_corners=corners)
    return torch.log(image.clamp(_LOG_FLOOR, 1.0)) / math.log(1.0 / _LOG_FLOOR) + 0.5


class ExposureNet(nn.Module):
    """A small CNN from the log frame to :class:`ExposureMaps` (about 40 K parameters).

    Three stride-2 convolutions bring the frame to 1/8; pooled statistics of the whole frame
    (mean and max: typical level and highlights) are added back to every position, so each
    region is judged against the frame it is in; two more convolutions make the maps.
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w2 = width * 2
        self.width = int(width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(width, w2, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(w2, w2, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.context = nn.Sequential(nn.Linear(w2 * 2, w2), nn.GELU(), nn.Linear(w2, w2))
        self.local = nn.Sequential(
            nn.Conv2d(w2, w2, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(w2, w2, 3, padding=1),
            nn.GELU(),
        )
        self.to_maps = nn.Conv2d(w2, 2, 1)
        self.to_white_balance = nn.Linear(w2 * 2, 3)
        # Start from one moderate curve everywhere and no colour change, so training begins
        # from a sensible photo rather than from noise.
        nn.init.zeros_(self.to_maps.weight)
        nn.init.zeros_(self.to_white_balance.weight)
        nn.init.zeros_(self.to_white_balance.bias)
        initial = [
            math.log(math.expm1(math.log(_INITIAL_GAIN))),  # softplus^-1 of log(gain)
            math.log(_INITIAL_GAMMA_LIFT / (1 - _INITIAL_GAMMA_LIFT)),  # sigmoid^-1 of lift
        ]
        self.to_maps.bias = nn.Parameter(torch.tensor(initial))

    def forward(self, image: Tensor) -> ExposureMaps:
        """``image``: the whole frame, N x 3 x H x W in [0, 1], any size."""
        features = self.stem(exposure_input(image))
        pooled = torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
        local = self.local(features + self.context(pooled)[:, :, None, None])
        raw = self.to_maps(local)
        wb = torch.tanh(self.to_white_balance(pooled)) * _WB_RANGE
        return ExposureMaps(
            log_gain=F.softplus(raw[:, :1]),
            lift=torch.sigmoid(raw[:, 1:]),
            white_balance=wb - wb.mean(dim=1, keepdim=True),
        )


def maps_for_crop(grid: Tensor, full: tuple[int, int], box: tuple[int, int, int, int]) -> Tensor:
    """The maps (N x 2 x h x w grid) interpolated at the pixels of ``box`` = (top, left, height,
    width) of a photo of size ``full`` = (H, W): the values
    ``F.interpolate(grid, full, mode="bilinear", align_corners=False)`` has there, without
    making the full-size maps."""
    top, left, height, width = box
    dev, dt = grid.device, grid.dtype
    ys = (torch.arange(top, top + height, device=dev, dtype=dt) + 0.5) / full[0] * 2 - 1
    xs = (torch.arange(left, left + width, device=dev, dtype=dt) + 0.5) / full[1] * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    coords = torch.stack([gx, gy], dim=-1)[None].expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=False)


def apply_exposure(image: Tensor, maps: Tensor, white_balance: Tensor) -> tuple[Tensor, Tensor]:
    """The exposed image and the per-pixel log-gain it got (N x 1 x H x W; the restoration
    network reads it to know how much the noise there was amplified).

    ``image``: N x 3 x H x W in [0, 1]; ``maps``: N x 2 x H x W (log-gain, lift) already at the
    image's size (:func:`maps_for_crop` or a full-size interpolation); ``white_balance``: N x 3.
    """
    log_gain, lift = maps[:, :1], maps[:, 1:]
    brightest = image.amax(dim=1, keepdim=True).clamp(_V_FLOOR, 1.0)
    gain = torch.minimum(log_gain, -lift * torch.log(brightest))
    exposed = image * torch.exp(gain + white_balance[:, :, None, None])
    return exposed, gain
