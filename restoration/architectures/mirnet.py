"""MIRNet low-light enhancer that loads dblasko/low-light-event-img-enhancer checkpoints as is.

The published weights are the point of this module: every submodule is named and ordered so that
their state dicts load with ``strict=True`` and no key remapping, and the forward pass performs the
same operations in the same order, so the numbers match the reference's.

Two things differ from the reference on purpose, neither visible in a checkpoint:

* The reference builds the dual-attention units along a block's width as ``[unit] * width``, one
  module repeated, so its checkpoints hold identical copies under ``...dual_attention_units.S.0``
  and ``...S.1``. Here they are distinct modules: loading such a checkpoint fills them with the same
  tensors, so the function is the same, and a checkpoint whose copies differ loads as well.
* ``conv_start``/``conv_end`` pad by ``kernel_size // 2`` instead of a fixed 1, which changes
  nothing for the published ``kernel_size=3`` but keeps the residual connection shape-correct for
  other odd kernels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restoration.padding import SizeRequirements

__all__ = [
    "SIZE_MULTIPLE",
    "MIRNet",
    "load_mirnet",
    "mirnet_hyperparameters",
    "save_mirnet_checkpoint",
]

# Height and width of the input must be multiples of this (with the default ``height=3``). Each
# multi-scale block halves the image twice with blur-pooling (reflect pad 1, 3x3, stride 2, so a
# side of n becomes ceil(n/2)) and brings the small streams back with exact 2x bilinear upsampling;
# a side that is not divisible by 4 comes back one pixel off and the fusion of the streams fails.
# 4 is also the smallest valid side. The reference's inference script crops to multiples of 8,
# which is stricter than the network needs. For a model with another ``height`` the requirement is
# ``2 ** (height - 1)``; see ``MIRNet.size_multiple``.
SIZE_MULTIPLE = 4

_STATE_DICT_KEY = "model_state_dict"
_DATA_PARALLEL_PREFIX = "module."


class _ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate; bias-free because the reference never passes ``bias`` on."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.excitation = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.excitation(F.adaptive_avg_pool2d(x, 1))


class _SpatialAttention(nn.Module):
    """Per-pixel gate from channel max and mean; its conv keeps PyTorch's default bias."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=5, padding=2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class _DualAttentionUnit(nn.Module):
    """Residual unit whose two attention maps are concatenated spatial-first, as trained."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.initial_convs = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        )
        self.channel_attention = _ChannelAttention(channels)
        self.spatial_attention = _SpatialAttention()
        self.final_conv = nn.Conv2d(2 * channels, channels, kernel_size=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        features = self.initial_convs(x)
        attended = torch.cat(
            (self.spatial_attention(features), self.channel_attention(features)), dim=1
        )
        return x + self.final_conv(attended)


class _BlurPool2d(nn.Module):
    """Anti-aliased 2x downsampling with a fixed binomial kernel.

    The kernel is a persistent buffer named ``filt`` only because the reference saves it that way;
    its value never changes.
    """

    filt: Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = torch.outer(taps, taps)
        kernel = kernel / kernel.sum()
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: Tensor) -> Tensor:
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return F.conv2d(padded, self.filt, stride=2, groups=x.shape[1])


class _DownsamplingBlock(nn.Module):
    """Halves the size and doubles the channels, through a learned and a plain branch."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.PReLU(),
            _BlurPool2d(channels),
            nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False),
        )
        self.branch2 = nn.Sequential(
            _BlurPool2d(channels),
            nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.branch1(x) + self.branch2(x)


class _UpsamplingBlock(nn.Module):
    """Doubles the size and halves the channels; mirror of ``_DownsamplingBlock``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1, bias=False),
            nn.PReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.PReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels // 2, kernel_size=1, bias=False),
        )
        self.branch2 = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(channels, channels // 2, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.branch1(x) + self.branch2(x)


class _Resampler(nn.Module):
    """A chain of 2x blocks under the attribute ``blocks``, the name the checkpoints use."""

    def __init__(self, channels: int, steps: int, *, down: bool) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for _ in range(steps):
            if down:
                blocks.append(_DownsamplingBlock(channels))
                channels *= 2
            else:
                blocks.append(_UpsamplingBlock(channels))
                channels //= 2
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(x)


class _SelectiveKernelFusion(nn.Module):
    """Softmax-weighted sum of same-shaped streams, weights computed from their pooled sum.

    The reference hard-codes three streams; here there is one per stream (``height``), which is
    the same for every published model and keeps smaller heights usable.
    """

    def __init__(self, channels: int, branches: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.convolution = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.PReLU(),
        )
        self.attention_convs = nn.ModuleList(
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False) for _ in range(branches)
        )

    def forward(self, streams: Sequence[Tensor]) -> Tensor:
        stacked = torch.stack(list(streams), dim=1)
        descriptor = self.convolution(F.adaptive_avg_pool2d(stacked.sum(dim=1), 1))
        logits = torch.stack([conv(descriptor) for conv in self.attention_convs], dim=1)
        return (stacked * logits.softmax(dim=1)).sum(dim=1)


class _MultiScaleResidualBlock(nn.Module):
    """Parallel streams at full, 1/2, 1/4... resolution that exchange information by fusion.

    The resampling modules are keyed ``"{channels}_{factor}"`` in ModuleDicts and registered in
    the reference's order, because those strings and that order are what the checkpoints hold.
    """

    def __init__(self, num_features: int, height: int, width: int, stride: int, bias: bool) -> None:
        super().__init__()
        self.height = height
        self.width = width
        self.channels = [num_features * stride**level for level in range(height)]

        self.dual_attention_units = nn.ModuleList(
            nn.ModuleList(_DualAttentionUnit(channels) for _ in range(width))
            for channels in self.channels
        )
        self.last_up = nn.ModuleDict(
            {
                str(level): _Resampler(self.channels[level], level, down=False)
                for level in range(1, height)
            }
        )
        self.down = nn.ModuleDict()
        for level in range(height):
            for steps in range(height - 1 - level, 0, -1):
                self.down[self._key(level, steps)] = _Resampler(
                    self.channels[level], steps, down=True
                )
        self.up = nn.ModuleDict()
        for level in range(height - 1, -1, -1):
            for steps in range(level, 0, -1):
                self.up[self._key(level, steps)] = _Resampler(
                    self.channels[level], steps, down=False
                )
        self.out_conv = nn.Conv2d(num_features, num_features, kernel_size=3, padding=1, bias=bias)
        self.skff_blocks = nn.ModuleList(
            _SelectiveKernelFusion(channels, branches=height, reduction=height)
            for channels in self.channels
        )

    def _key(self, level: int, steps: int) -> str:
        return f"{self.channels[level]}_{2**steps}"

    def _move(self, x: Tensor, source: int, target: int) -> Tensor:
        """Bring a stream from one resolution level to another."""
        if source == target:
            return x
        if source > target:
            return self.up[self._key(source, source - target)](x)
        return self.down[self._key(source, target - source)](x)

    def _attend(self, level: int, column: int, x: Tensor) -> Tensor:
        units = cast(nn.ModuleList, self.dual_attention_units[level])
        return cast(Tensor, units[column](x))

    def forward(self, x: Tensor) -> Tensor:
        # Each coarser stream starts from the previous stream's attended output, not from x.
        streams: list[Tensor] = []
        features = x
        for level in range(self.height):
            if level > 0:
                features = self.down[self._key(level - 1, 1)](features)
            features = self._attend(level, 0, features)
            streams.append(features)

        for column in range(1, self.width):
            fused = [
                self.skff_blocks[target](
                    [self._move(stream, source, target) for source, stream in enumerate(streams)]
                )
                for target in range(self.height)
            ]
            streams = [self._attend(level, column, fused[level]) for level in range(self.height)]

        # The final merge uses the dedicated ``last_up`` chains, not ``up``, and reuses the
        # full-resolution fusion block, as the reference does.
        full_resolution = [streams[0]] + [
            self.last_up[str(level)](streams[level]) for level in range(1, self.height)
        ]
        return x + self.out_conv(self.skff_blocks[0](full_resolution))


class _ResidualRecurrentGroup(nn.Module):
    """Multi-scale blocks followed by a conv, wrapped in a residual connection."""

    def __init__(
        self, num_features: int, number_msrb: int, height: int, width: int, stride: int, bias: bool
    ) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                _MultiScaleResidualBlock(num_features, height, width, stride, bias)
                for _ in range(number_msrb)
            ),
            nn.Conv2d(num_features, num_features, kernel_size=3, padding=1, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.blocks(x)


class MIRNet(nn.Module):
    """The reference network: input RGB in [0, 1] (NCHW), output ``input + residual``, unclamped.

    The output is left unclamped, as in the reference, so losses and metrics see the raw values;
    clamp when writing an image. ``stride`` is the channel multiplier between resolution levels
    (the name is the reference's); its blocks always halve the size and double the channels, so
    only 2 is consistent and anything else is refused here rather than failing mid-forward.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_features: int = 64,
        kernel_size: int = 3,
        stride: int = 2,
        number_msrb: int = 2,
        number_rrg: int = 3,
        height: int = 3,
        width: int = 2,
        bias: bool = False,
    ) -> None:
        super().__init__()
        if stride != 2:
            raise ValueError(f"MIRNet needs stride=2 (the blocks double channels), got {stride}")
        if kernel_size % 2 == 0:
            raise ValueError(f"MIRNet needs an odd kernel_size, got {kernel_size}")
        if min(height, width, number_rrg) < 1 or number_msrb < 0:
            raise ValueError("MIRNet needs height, width and number_rrg >= 1, number_msrb >= 0")
        if num_features < 8:
            raise ValueError(
                f"num_features must be at least 8 (attention reduces by 8), got {num_features}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.height = height
        padding = kernel_size // 2
        self.conv_start = nn.Conv2d(
            in_channels, num_features, kernel_size, padding=padding, bias=bias
        )
        self.msrb_blocks = nn.Sequential(
            *(
                _ResidualRecurrentGroup(num_features, number_msrb, height, width, stride, bias)
                for _ in range(number_rrg)
            )
        )
        self.conv_end = nn.Conv2d(
            num_features, out_channels, kernel_size, padding=padding, bias=bias
        )

    @property
    def size_multiple(self) -> int:
        """What input height and width must divide by for this instance (``SIZE_MULTIPLE``)."""
        return 2 ** (self.height - 1)

    @property
    def size_requirements(self) -> SizeRequirements:
        """What the network needs of its input, as spandrel describes its models: sides that
        are multiples of :attr:`size_multiple`. :meth:`forward` does not pad; callers do
        (``restoration.padding.pad_to``)."""
        return SizeRequirements(multiple_of=self.size_multiple)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv_end(self.msrb_blocks(self.conv_start(x)))


def _max_index(keys: Sequence[str], pattern: str) -> int:
    """Largest integer captured by ``pattern`` over the keys, or -1 when none matches."""
    regex = re.compile(pattern)
    found = [int(match.group(1)) for key in keys if (match := regex.match(key))]
    return max(found, default=-1)


def mirnet_hyperparameters(state_dict: Mapping[str, Tensor]) -> dict[str, Any]:
    """Constructor arguments of the MIRNet that produced ``state_dict``.

    Derived from shapes and key names rather than stored next to the weights, because the
    published files carry no configuration; this also lets small test models go through the
    same loading path. Raises ``ValueError`` when the keys are not a MIRNet's.
    """
    keys = list(state_dict)
    try:
        start = state_dict["conv_start.weight"]
        end = state_dict["conv_end.weight"]
    except KeyError as exc:
        raise ValueError(f"not a MIRNet state dict: no {exc.args[0]!r} tensor") from None
    if start.ndim != 4 or end.ndim != 4:
        raise ValueError("not a MIRNet state dict: conv_start/conv_end are not 2-D convolutions")
    num_features, in_channels, kernel_size = (int(n) for n in start.shape[:3])

    number_rrg = _max_index(keys, r"msrb_blocks\.(\d+)\.") + 1
    # The conv closing each group sits right after its blocks, so its index is the block count.
    number_msrb = _max_index(keys, r"msrb_blocks\.0\.blocks\.(\d+)\.weight$")
    if number_rrg < 1 or number_msrb < 0:
        raise ValueError("not a MIRNet state dict: no residual recurrent groups found")

    units = "msrb_blocks.0.blocks.0.dual_attention_units."
    height = _max_index(keys, re.escape(units) + r"(\d+)\.") + 1
    width = _max_index(keys, re.escape(units) + r"0\.(\d+)\.") + 1
    if number_msrb == 0:
        height, width = 3, 2  # nothing in the file depends on them
    elif height < 1 or width < 1:
        raise ValueError("not a MIRNet state dict: no dual-attention units found")

    stride = 2
    second_level = f"{units}1.0.initial_convs.0.weight"
    if height > 1 and second_level in state_dict:
        stride = int(state_dict[second_level].shape[0]) // num_features

    return {
        "in_channels": in_channels,
        "out_channels": int(end.shape[0]),
        "num_features": num_features,
        "kernel_size": kernel_size,
        "stride": stride,
        "number_msrb": number_msrb,
        "number_rrg": number_rrg,
        "height": height,
        "width": width,
        "bias": "conv_start.bias" in state_dict,
    }


def _extract_state_dict(checkpoint: object) -> dict[str, Tensor]:
    """The weights of a reference-layout file or of a bare state dict, without DataParallel's
    ``module.`` prefix."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"not a MIRNet checkpoint: the file holds a {type(checkpoint).__name__}, not a dict"
        )
    weights = checkpoint.get(_STATE_DICT_KEY, checkpoint)
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"not a MIRNet checkpoint: {_STATE_DICT_KEY!r} is not a state dict")
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in weights.items()):
        raise ValueError("not a MIRNet checkpoint: expected a mapping of names to tensors")
    if all(key.startswith(_DATA_PARALLEL_PREFIX) for key in weights):
        return {key[len(_DATA_PARALLEL_PREFIX) :]: value for key, value in weights.items()}
    return dict(weights)


def load_mirnet(path: str | Path, map_location: str | torch.device = "cpu") -> MIRNet:
    """Build a MIRNet from a checkpoint file and return it in eval mode.

    Accepts the reference's layout (weights under ``model_state_dict``, optimizer and scheduler
    state possibly beside them, ignored) or a bare state dict. The file is read with
    ``weights_only=True`` because checkpoints come from outside. Anything that is not a loadable
    MIRNet raises ``ValueError``; a missing or unreadable file raises ``OSError`` as usual.
    """
    try:
        checkpoint = torch.load(Path(path), map_location=map_location, weights_only=True)
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # the unpickler fails with many types (KeyError on a text file)
        reason = f"{type(exc).__name__}: {exc}"
        raise ValueError(f"not a MIRNet checkpoint: {path} could not be read ({reason})") from exc

    state_dict = _extract_state_dict(checkpoint)
    hyperparameters = mirnet_hyperparameters(state_dict)
    try:
        model = MIRNet(**hyperparameters)
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"not a MIRNet checkpoint: {path} does not match the layout ({exc})"
        ) from exc
    return model.to(map_location).eval()


def save_mirnet_checkpoint(
    model: MIRNet, path: str | Path, *, extra: Mapping[str, Any] | None = None
) -> None:
    """Write ``model`` in the reference's file layout, so the reference project can read it too.

    Tensors are moved to the CPU first so the file loads on machines without the training GPU.
    ``extra`` entries (an optimizer state, an epoch number) are stored beside the weights, as the
    reference's training script does.
    """
    checkpoint: dict[str, Any] = dict(extra or {})
    checkpoint[_STATE_DICT_KEY] = {
        key: value.detach().cpu() for key, value in model.state_dict().items()
    }
    torch.save(checkpoint, Path(path))
