"""NightNAFNet: Darkroom's own compact restorer for dim, noisy, shaken, JPEG-compressed photos.

The body is a small NAFNet (Chen et al., "Simple Baselines for Image Restoration", 2022): a
U-Net of blocks built from LayerNorm2d, depthwise convolutions, SimpleGate (split channels and
multiply, a nonlinearity with no activation function) and simplified channel attention. NAFNet
is the best PSNR per FLOP among the common restoration backbones, which is what a model that has
to run on a CPU in the embedded mode needs, and it was trained for denoising and deblurring,
two of the four degradations here.

The fourth degradation, dim light, is different in kind: the output is 3-20x brighter than the
input everywhere. A residual U-Net can learn that, but it then spends capacity (and training
time, which is short here) building a large, image-wide offset from local features. So the model
splits the job:

* **Input-conditional global gain.** The pooled bottleneck features (which have seen the whole
  image's statistics) go through a tiny MLP that predicts a per-channel log-gain, initialised to
  about x3; the "base" image is ``input * gain``. This is the exposure and white-balance
  correction, done where global context exists, and it adapts to each photo, so a very dark
  frame and a mildly dark one are both handled without retraining.
* **Global residual.** The decoder predicts ``output - base``: local tone mapping, denoising,
  deblurring and deblocking, the part NAFNet is good at.

Input: RGB in [0, 1], N x 3 x H x W with H and W multiples of :attr:`NightNAFNet.size_multiple`
(``2 ** len(enc_blocks)``; :meth:`NightNAFNet.forward` pads other sizes with
``restoration.padding.pad_to``, by reflection where the side allows, and crops back, so callers may
pass any size, down to 1 x 1). Output: same shape, not clamped (clamp for display).

Weights are stored as ``.safetensors`` with the constructor hyper-parameters in the metadata, so
a file is self-describing; :func:`load_night` rebuilds the network from it and loads strictly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restoration.architectures import night_files
from restoration.padding import SizeRequirements, pad_to

__all__ = [
    "MODEL_NAME",
    "NightNAFNet",
    "load_night",
    "save_night",
]

MODEL_NAME = "darkroom-night"
_GAIN_WINDOW = 8
_CONFIG_KEYS = ("width", "enc_blocks", "middle_blocks", "dec_blocks", "in_channels")


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor (per pixel), as in NAFNet.

    Normalising per pixel rather than per batch keeps training and inference identical, with no
    running statistics that small CPU batches would make noisy.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: NAFNet's activation-free gate."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """NAFNet's block: a gated depthwise-conv branch with channel attention, then a gated FFN.

    ``beta``/``gamma`` start at zero, so each block starts as the identity and a deep stack
    trains stably from scratch.
    """

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2) -> None:
        super().__init__()
        dw = c * dw_expand
        self.conv1 = nn.Conv2d(c, dw, 1)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1)
        # Simplified channel attention: global average pool then one 1x1 conv, no nonlinearity.
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1))
        self.sg = SimpleGate()
        ffn = c * ffn_expand
        self.conv4 = nn.Conv2d(c, ffn, 1)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.conv2(self.conv1(self.norm1(inp)))
        x = self.sg(x)
        x = x * self.sca(x)
        y = inp + self.conv3(x) * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + x * self.gamma


class NAFUNet(nn.Module):
    """The NAFNet U-Net both night models share, with the layer names their weight files use
    (``intro``, ``encoders``, ``downs``, ``middle``, ``ups``, ``decoders``, ``ending``), so v1's
    weights can start v2. Subclasses set ``width`` and the ``*_blocks_cfg`` lists, then call
    :meth:`build_u_net`."""

    width: int
    enc_blocks_cfg: list[int]
    dec_blocks_cfg: list[int]
    middle_blocks_cfg: int

    def build_u_net(self, in_channels: int, out_channels: int) -> None:
        width = self.width
        self.intro = nn.Conv2d(in_channels, width, 3, padding=1)
        self.ending = nn.Conv2d(width, out_channels, 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.ups = nn.ModuleList()
        chan = width
        for n in self.enc_blocks_cfg:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))
            self.downs.append(nn.Conv2d(chan, chan * 2, 2, stride=2))
            chan *= 2
        self.middle = nn.Sequential(*[NAFBlock(chan) for _ in range(self.middle_blocks_cfg)])
        for n in self.dec_blocks_cfg:
            self.ups.append(
                nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2))
            )
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(n)]))

    def encode(self, x_in: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Intro, encoders and middle on a padded input: the bottleneck and the skips."""
        x = self.intro(x_in)
        skips = []
        for enc, down in zip(self.encoders, self.downs, strict=True):
            x = enc(x)
            skips.append(x)
            x = down(x)
        return self.middle(x), skips

    def decode(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        """Decoders and ending: the residual the model adds to its base image."""
        for dec, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = dec(up(x) + skip)
        return self.ending(x)


class NightNAFNet(NAFUNet):
    """Compact NAFNet U-Net with a predicted global gain; see the module docstring for why.

    ``width`` is the channel count at full resolution (doubled at each of the
    ``len(enc_blocks)`` downsamplings); ``enc_blocks``/``dec_blocks`` give the NAFBlocks per
    level and ``middle_blocks`` those at the bottleneck.
    """

    def __init__(
        self,
        width: int = 16,
        enc_blocks: Sequence[int] = (1, 1, 2),
        middle_blocks: int = 2,
        dec_blocks: Sequence[int] = (1, 1, 1),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(enc_blocks) != len(dec_blocks):
            raise ValueError("enc_blocks and dec_blocks must have the same length")
        self.width = int(width)
        self.enc_blocks_cfg = [int(n) for n in enc_blocks]
        self.dec_blocks_cfg = [int(n) for n in dec_blocks]
        self.middle_blocks_cfg = int(middle_blocks)
        self.in_channels = int(in_channels)

        self.build_u_net(in_channels, in_channels)
        bottleneck = width * 2 ** len(self.enc_blocks_cfg)
        # Global gain head: pooled bottleneck features -> per-channel log-gain (mean and max
        # pooling, because exposure is about both the typical level and the highlights).
        pooled_to_hidden = nn.Linear(bottleneck * 2, 64)
        hidden_to_gain = nn.Linear(64, in_channels)
        nn.init.zeros_(hidden_to_gain.weight)
        nn.init.constant_(hidden_to_gain.bias, math.log(3.0))
        self.gain = nn.Sequential(pooled_to_hidden, nn.GELU(), hidden_to_gain)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this for the U-Net skips to line up."""
        return 2 ** len(self.enc_blocks_cfg)

    @property
    def size_requirements(self) -> SizeRequirements:
        """What the network needs of its input, as spandrel describes its models: sides that
        are multiples of :attr:`size_multiple` (:meth:`forward` pads other sizes itself)."""
        return SizeRequirements(multiple_of=self.size_multiple)

    def config(self) -> dict[str, Any]:
        """Constructor hyper-parameters, as stored in a weight file's metadata."""
        return {
            "width": self.width,
            "enc_blocks": list(self.enc_blocks_cfg),
            "middle_blocks": self.middle_blocks_cfg,
            "dec_blocks": list(self.dec_blocks_cfg),
            "in_channels": self.in_channels,
        }

    def _encode(self, inp: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Pad, run intro, encoders and middle; return the padded input, bottleneck and skips."""
        x_in = pad_to(inp, self.size_requirements)
        bottleneck, skips = self.encode(x_in)
        return x_in, bottleneck, skips

    def _gain_stats(self, bottleneck: Tensor) -> tuple[Tensor, Tensor]:
        """Sums the gain head pools, so that pieces of a photo can be added up: the feature sum
        over positions, and the sum of maxima over windows of a training patch's bottleneck
        size (128 px / 16 = 8); plus their counts. A global max would grow with the number of
        positions, and photos larger than the training patches would drift (Kodak 500x500:
        -1.4 dB); on a training-sized input the two are identical, so the weights still fit."""
        win = min(_GAIN_WINDOW, bottleneck.shape[2], bottleneck.shape[3])
        local_max = F.max_pool2d(bottleneck, win, stride=win, ceil_mode=True)
        # Always float32, also under bf16/fp16 autocast: the sums of a large photo run into the
        # hundreds of thousands, where bf16 has steps of 2048 (280000 positions summed to 262144).
        sums = torch.cat(
            [bottleneck.float().sum(dim=(2, 3)), local_max.float().sum(dim=(2, 3))], dim=1
        )
        counts = torch.tensor(
            [bottleneck.shape[2] * bottleneck.shape[3], local_max.shape[2] * local_max.shape[3]],
            dtype=torch.float32,
            device=sums.device,
        )
        return sums, counts

    def log_gain_from_stats(self, sums: Tensor, counts: Tensor) -> Tensor:
        """The per-channel log-gain (N x C) from :meth:`gain_stats` summed over a photo."""
        half = sums.shape[1] // 2
        pooled = torch.cat([sums[:, :half] / counts[0], sums[:, half:] / counts[1]], dim=1)
        return self.gain(pooled).clamp(-1.0, 4.0)

    def gain_stats(self, inp: Tensor) -> tuple[Tensor, Tensor]:
        """The gain head's pooled sums and counts for ``inp`` (a photo or one piece of it).

        Restoring a large photo tile by tile, each tile would pick its own exposure and the
        result would be a patchwork; the restorer adds these up over the whole photo, turns them
        into one gain with :meth:`log_gain_from_stats`, and hands it to every tile through
        ``forward(..., log_gain=...)``.
        """
        _, bottleneck, _ = self._encode(inp)
        return self._gain_stats(bottleneck)

    def forward(self, inp: Tensor, log_gain: Tensor | None = None) -> Tensor:
        _, _, h, w = inp.shape
        x_in, x, skips = self._encode(inp)
        if log_gain is None:
            log_gain = self.log_gain_from_stats(*self._gain_stats(x))
        base = x_in * torch.exp(log_gain)[:, :, None, None]
        out = base + self.decode(x, skips)
        return out[:, :, :h, :w]


def save_night(
    model: NightNAFNet,
    path: str | Path,
    extra_metadata: Mapping[str, Any] | None = None,
    version: str = "1",
) -> Path:
    """Write ``model`` as safetensors with ``config``/``name``/``version`` (and extras) metadata."""
    return night_files.save(
        model, path, name=MODEL_NAME, version=version, extra_metadata=extra_metadata
    )


def load_night(path: str | Path, map_location: str | torch.device = "cpu") -> NightNAFNet:
    """Rebuild a :class:`NightNAFNet` from a ``.safetensors`` file and load it strictly.

    Raises ``ValueError`` with the file name and the reason when the file is not a safetensors
    file, lacks or has an unreadable ``config`` metadata entry, or its tensors do not match the
    architecture the config describes. The model is returned in eval mode.
    """
    path = Path(path)
    meta, state = night_files.read(path, map_location)
    if "config" not in meta:
        raise ValueError(f"{path}: no 'config' entry in the safetensors metadata")
    try:
        cfg = night_files.config_of(meta, _CONFIG_KEYS)
        model = NightNAFNet(**cfg)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: bad 'config' metadata {meta['config']!r} ({exc})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match config {cfg}: {exc}") from exc
    return model.to(map_location).eval()
