"""NightNAFNet v2: local exposure first, then a NAFNet U-Net that cleans the exposed photo.

Version 1 (:mod:`restoration.architectures.nafnet_night`) raised the whole frame by one predicted
gain, so on real night photos lamps blew out while shadows stayed dark. Version 2 splits the work in
two:

1. **Exposure, once per photo** (:class:`~restoration.architectures.local_exposure.ExposureNet`):
smooth
   maps decided on a small copy of the whole frame give every pixel its own tone curve
   (:func:`~restoration.architectures.local_exposure.apply_exposure`); white balance stays global.
2. **Restoration, tile by tile** (:meth:`NightNAFNetV2.forward`): the U-Net sees the exposed
   photo plus the log-gain each pixel got (4 channels), because how much a pixel was lifted is
   how much its noise was amplified; it predicts a residual on top of the exposed photo
   (denoising, deblurring, deblocking, local contrast).

Cutting it there is what tiling needs: the exposure is a property of the frame, and the exposed
photo with its gain channel is an ordinary image the tiler can cut anywhere (the restorer calls
:meth:`NightNAFNetV2.expose` on the whole photo, then :meth:`forward` on the tiles). Training
does the same on patches (:meth:`NightNAFNetV2.expose_crop`).

The U-Net's parameter names are v1's, so v1's weights can start a v2 training (the intro
convolution gains a fourth, zero-initialised input channel: :func:`from_v1`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from restoration.architectures import night_files
from restoration.architectures.local_exposure import (
    ExposureMaps,
    ExposureNet,
    apply_exposure,
    maps_for_crop,
)
from restoration.architectures.nafnet_night import NAFUNet
from restoration.padding import SizeRequirements, pad_to

__all__ = ["NightNAFNetV2", "from_v1", "load_night_v2", "save_night_v2"]

MODEL_NAME = "darkroom-night"
_CONFIG_KEYS = ("width", "enc_blocks", "middle_blocks", "dec_blocks", "exposure_width")
_GAIN_CHANNEL_SCALE = 0.25
"""The log-gain channel is fed scaled to about [0, 1.5]: gains up to e^6."""


class NightNAFNetV2(NAFUNet):
    """Exposure network plus NAFNet U-Net; see the module docstring."""

    def __init__(
        self,
        width: int = 16,
        enc_blocks: Sequence[int] = (1, 1, 2, 2),
        middle_blocks: int = 2,
        dec_blocks: Sequence[int] = (1, 1, 1, 1),
        exposure_width: int = 24,
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        self.width = int(width)
        self.enc_blocks_cfg = [int(n) for n in enc_blocks]
        self.dec_blocks_cfg = [int(n) for n in dec_blocks]
        self.middle_blocks_cfg = int(middle_blocks)
        self.exposure = ExposureNet(int(exposure_width))
        self.build_u_net(in_channels=4, out_channels=3)

    @property
    def size_requirements(self) -> SizeRequirements:
        """Sides that are multiples of 2^levels, for the U-Net skips (:meth:`forward` pads
        other sizes itself, by reflection where the side allows)."""
        return SizeRequirements(multiple_of=2 ** len(self.enc_blocks_cfg))

    def config(self) -> dict[str, Any]:
        """Constructor hyper-parameters, as stored in a weight file's metadata."""
        return {
            "width": self.width,
            "enc_blocks": list(self.enc_blocks_cfg),
            "middle_blocks": self.middle_blocks_cfg,
            "dec_blocks": list(self.dec_blocks_cfg),
            "exposure_width": self.exposure.width,
        }

    def decide_exposure(self, image: Tensor) -> ExposureMaps:
        """The exposure for the whole frame (N x 3 x H x W), always in float32: it is a few
        sums over a small image, and reduced precision would shift every pixel's gain."""
        with torch.autocast(image.device.type, enabled=False):
            return self.exposure(image.float())

    def expose(self, image: Tensor) -> Tensor:
        """The whole photo, exposed, with its gain channel: what :meth:`forward` takes (N x 4
        x H x W), tile by tile or whole."""
        maps = self.decide_exposure(image)
        with torch.autocast(image.device.type, enabled=False):
            full = F.interpolate(
                maps.grid(), size=image.shape[-2:], mode="bilinear", align_corners=False
            )
            exposed, gain = apply_exposure(image.float(), full, maps.white_balance)
        return torch.cat([exposed, gain * _GAIN_CHANNEL_SCALE], dim=1)

    def log_gain_of(self, exposed: Tensor) -> Tensor:
        """The log-gain each pixel of an exposed photo (from :meth:`expose`) got: its fourth
        channel, unscaled (N x 1 x H x W)."""
        return exposed[:, 3:] / _GAIN_CHANNEL_SCALE

    def expose_crop(
        self,
        image: Tensor,
        maps: ExposureMaps,
        full: tuple[int, int],
        box: tuple[int, int, int, int],
    ) -> Tensor:
        """As :meth:`expose` for ``image``, a ``box`` (top, left, height, width) cut from a
        photo of size ``full`` whose exposure is ``maps``: the same values the whole photo's
        exposure has there (training patches)."""
        local = maps_for_crop(maps.grid(), full, box)
        exposed, gain = apply_exposure(image, local, maps.white_balance)
        return torch.cat([exposed, gain * _GAIN_CHANNEL_SCALE], dim=1)

    def forward(self, exposed: Tensor) -> Tensor:
        """Restore an exposed photo or tile (N x 4 x H x W from :meth:`expose`); returns N x 3
        x H x W, not clamped."""
        _, _, h, w = exposed.shape
        x_in = pad_to(exposed, self.size_requirements)
        bottleneck, skips = self.encode(x_in)
        out = x_in[:, :3] + self.decode(bottleneck, skips)
        return out[:, :, :h, :w]

    def enhance(self, image: Tensor) -> Tensor:
        """A whole photo (N x 3 x H x W in [0, 1]) in one pass, exposure included."""
        return self(self.expose(image))


def from_v1(v1_state: Mapping[str, Tensor], model: NightNAFNetV2) -> list[str]:
    """Start ``model``'s U-Net from a v1 state dict where the shapes allow; returns the names
    it could not take (the exposure network and v1's gain head are not shared)."""
    own = model.state_dict()
    taken = []
    for name, value in v1_state.items():
        if name == "intro.weight" and name in own:
            widened = torch.zeros_like(own[name])
            widened[:, :3] = value
            own[name] = widened
            taken.append(name)
        elif name in own and own[name].shape == value.shape:
            own[name] = value.clone()
            taken.append(name)
    model.load_state_dict(own)
    return sorted(set(own) - set(taken))


def save_night_v2(
    model: NightNAFNetV2, path: str | Path, extra_metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` as safetensors with its hyper-parameters in the metadata."""
    return night_files.save(
        model, path, name=MODEL_NAME, version="2", extra_metadata=extra_metadata
    )


def load_night_v2(path: str | Path, map_location: str | torch.device = "cpu") -> NightNAFNetV2:
    """Rebuild the network from a ``.safetensors`` file written by :func:`save_night_v2` and
    load it strictly; ``ValueError`` naming the file and the reason for anything else."""
    path = Path(path)
    meta, state = night_files.read(path, map_location)
    if meta.get("version") != "2" or "config" not in meta:
        raise ValueError(f"{path}: not a darkroom-night v2 file (metadata version/config)")
    try:
        model = NightNAFNetV2(**night_files.config_of(meta, _CONFIG_KEYS))
        model.load_state_dict(state, strict=True)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: weights do not match their config: {exc}") from exc
    return model.to(map_location).eval()
