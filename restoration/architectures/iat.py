"""IAT, the Illumination-Adaptive Transformer (Cui et al., BMVC 2022, arXiv 2205.14871), on the
authors' weights.

IAT splits enhancement into what changes from pixel to pixel and what holds for the whole
photo, the way a camera's image pipeline does:

* a *local* branch (a 3x3 stem and two stacks of three light blocks, 16 channels, each stack
  added back to the stem's features before a last 3x3 convolution) predicts a per-pixel
  multiplier (ReLU) and offset (tanh): ``y = x * mul + add``. Each block is a
  depthwise 3x3 position embedding, a learned per-channel affine with a channel-mixing matrix
  (in place of a normalisation), a 5x5 depthwise convolution between two 1x1 ones (the
  "attention"), and a 1x1 MLP, each added back with a learned layer scale;
* a *global* branch (two stride-2 convolutions, then ten learned query tokens attending to every
  position of the photo) predicts one gamma and one 3x3 colour matrix for the photo, as an ISP's
  colour correction and tone curve: the output is ``clamp(y @ colour^T, 1e-8, 1) ** gamma``.

The global branch needs the whole photo, so the restorer runs :meth:`IAT.photo_inputs` once per
photo and hands gamma and the colour matrix to every tile; the local branch reaches 11 pixels
and tiles like any network. Key names are the published files', so they load unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from restoration.architectures.checkpoints import load_strict, read_state_dict
from restoration.padding import SizeRequirements

__all__ = ["GLOBAL_MAX_PIXELS", "IAT", "load_iat"]

LOCAL_WIDTH = 16
GLOBAL_WIDTH = 64
HEADS = 4
QUERIES = 10
MLP_RATIO = 4

GLOBAL_MAX_PIXELS = 4_000_000
"""Photos larger than this are shrunk (antialiased) to about this many pixels for the global
branch alone: gamma and the colour matrix come from attention pooled over every position, which
a smaller copy estimates as well, while the full-size branch would need gigabytes."""


class _ChannelAffine(nn.Module):
    """``x @ color^T * alpha + beta`` over the channel axis of tokens (N x HW x C): IAT's
    replacement for a normalisation layer, without statistics."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))
        self.color = nn.Parameter(torch.eye(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens @ self.color.T) * self.alpha + self.beta


class _ConvMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _per_channel(norm: _ChannelAffine, x: torch.Tensor) -> torch.Tensor:
    """Apply a token-wise layer to an N x C x H x W map."""
    n, c, h, w = x.shape
    return norm(x.flatten(2).transpose(1, 2)).view(n, h, w, c).permute(0, 3, 1, 2)


class _LocalBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = _ChannelAffine(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.norm2 = _ChannelAffine(dim)
        self.mlp = _ConvMLP(dim, dim * MLP_RATIO)
        self.gamma_1 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-4))
        self.gamma_2 = nn.Parameter(torch.full((1, dim, 1, 1), 1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.gamma_1 * self.conv2(self.attn(self.conv1(_per_channel(self.norm1, x))))
        return x + self.gamma_2 * self.mlp(_per_channel(self.norm2, x))


class _Local(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, LOCAL_WIDTH, 3, padding=1)
        self.mul_blocks = nn.Sequential(*(_LocalBlock(LOCAL_WIDTH) for _ in range(3)))
        self.add_blocks = nn.Sequential(*(_LocalBlock(LOCAL_WIDTH) for _ in range(3)))
        self.mul_end = nn.Sequential(nn.Conv2d(LOCAL_WIDTH, 3, 3, 1, 1), nn.ReLU())
        self.add_end = nn.Sequential(nn.Conv2d(LOCAL_WIDTH, 3, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.leaky_relu(self.conv1(x), negative_slope=0.2)
        # Each stack is a residual around the stem's features, before its last convolution.
        mul = self.mul_end(self.mul_blocks(features) + features)
        return mul, self.add_end(self.add_blocks(features) + features)


class _Embedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        half = GLOBAL_WIDTH // 2
        self.proj = nn.Sequential(
            nn.Conv2d(3, half, 3, stride=2, padding=1),
            nn.BatchNorm2d(half),
            nn.GELU(),
            nn.Conv2d(half, GLOBAL_WIDTH, 3, stride=2, padding=1),
            nn.BatchNorm2d(GLOBAL_WIDTH),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class _QueryAttention(nn.Module):
    """Ten learned queries attend to every position: the photo pooled into ten tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.ones(1, QUERIES, dim))
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length, dim = tokens.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(n, -1, HEADS, dim // HEADS).transpose(1, 2)

        queries = heads(self.q.expand(n, -1, -1))
        pooled = F.scaled_dot_product_attention(
            queries, heads(self.k(tokens)), heads(self.v(tokens))
        )
        return self.proj(pooled.transpose(1, 2).reshape(n, QUERIES, dim))


class _Generator(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _QueryAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, dim * MLP_RATIO))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(dim * MLP_RATIO, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        # No residual around the attention: it turns every position into ten tokens.
        tokens = self.attn(self.norm1(x.flatten(2).transpose(1, 2)))
        return tokens + self.mlp(self.norm2(tokens))


class _Global(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gamma_base = nn.Parameter(torch.ones(1))
        self.color_base = nn.Parameter(torch.eye(3))
        self.conv_large = _Embedding()
        self.generator = _Generator(GLOBAL_WIDTH)
        self.gamma_linear = nn.Linear(GLOBAL_WIDTH, 1)
        self.color_linear = nn.Linear(GLOBAL_WIDTH, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N x 3 x H x W -> gamma (N x 1) and the colour matrix (N x 3 x 3)."""
        tokens = self.generator(self.conv_large(x))
        gamma = self.gamma_linear(tokens[:, :1]).squeeze(-1) + self.gamma_base
        color = self.color_linear(tokens[:, 1:]).squeeze(-1).view(-1, 3, 3) + self.color_base
        return gamma, color


class IAT(nn.Module):
    """Photo -> ``clamp((x * mul + add) @ colour^T, 1e-8, 1) ** gamma``."""

    def __init__(self) -> None:
        super().__init__()
        self.local_net = _Local()
        self.global_net = _Global()

    @property
    def size_requirements(self) -> SizeRequirements:
        return SizeRequirements()

    def photo_inputs(self, image: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The whole-photo pass: gamma (1 x 1) and the colour matrix (1 x 3 x 3) of ``image``
        (1 x 3 x H x W), which every tile then takes; the tiles are cut from the photo."""
        height, width = image.shape[-2:]
        seen = image
        if height * width > GLOBAL_MAX_PIXELS:
            shrink = (GLOBAL_MAX_PIXELS / (height * width)) ** 0.5
            size = (max(1, round(height * shrink)), max(1, round(width * shrink)))
            seen = F.interpolate(image, size=size, mode="bilinear", antialias=True)
        gamma, color = self.global_net(seen)
        return image, (gamma, color)

    def forward(
        self,
        x: torch.Tensor,
        gamma: torch.Tensor | None = None,
        color: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """N x 3 x H x W -> the enhanced photo (the reference's third output). Without
        ``gamma`` and ``color`` (N x 1, N x 3 x 3) the global branch runs on ``x`` itself."""
        if gamma is None or color is None:
            gamma, color = self.global_net(x)
        mul, add = self.local_net(x)
        y = (x * mul + add).permute(0, 2, 3, 1)  # N x H x W x 3
        y = torch.clamp(y @ color.transpose(1, 2)[:, None], 1e-8, 1.0)
        return (y ** gamma.view(-1, 1, 1, 1)).permute(0, 3, 1, 2)


def load_iat(path: str | Path) -> IAT:
    """A published IAT file (``best_Epoch_lol_v1.pth``, ``best_Epoch_exposure.pth``) as a
    network in eval mode on the CPU."""
    model = IAT()
    load_strict(model, read_state_dict(path, "IAT"), path, "IAT")
    return model.eval()
