"""The tile plan: where the tiles of an image go and what weight each tile's output pixels get.

Two things keep tiled output free of seams (``restoration.tiling`` runs the plan):

* **Full-size tiles, evenly spread.**  Tiles at the image border are shifted inward instead of
  shrunk, and the tile starts are spread evenly, so every tile has the same shape (batchable, and
  no sliver tile with almost no context) and every pair of neighbours shares at least
  ``overlap`` pixels.
* **A margin that is thrown away, then a feathered cross-fade.**  Near a tile edge the model
  sees padding instead of the neighbouring pixels, so the ``margin`` pixels nearest each
  *interior* tile edge get weight 0; a model whose receptive radius is at most ``margin`` gives
  exactly the whole-image result.  Across the rest of the overlap the weight rises from ~0 to 1
  with a raised-cosine ramp; a tile's ramp and its neighbour's add up to 1 where they meet, so a
  model whose output differs slightly between tiles fades from one to the other instead of
  stepping.  Image borders get full weight: there is no neighbour to fade into.

No per-pixel weight-sum buffer is needed: the weight window is separable and the tiles form a
grid, so the sum of all windows is the outer product of two 1-D sums (:func:`axis_norm`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from restoration.padding import SizeRequirements


@dataclass(frozen=True)
class TileConfig:
    """How to cut an image into tiles.  Sizes are in *input* pixels.

    ``tile``: tile side; 0 or None runs the whole image in one pass.  It is rounded down to the
    model's ``multiple_of`` (and raised to its ``minimum``) so that inner tiles need no padding.
    ``overlap``: pixels shared by neighbouring tiles (at least; border tiles shifted inward share
    more).  Clamped to half the tile, so a tile's two ramps never meet.
    ``batch_size``: tiles per forward pass.
    ``min_tile``: :func:`restoration.tiling.restore_with_oom_fallback` stops halving here.
    ``margin``: pixels at each interior tile edge given weight 0, because they saw padding instead
    of their neighbours; None means ``overlap // 4``.  Must leave room for the ramp
    (``2 * margin < overlap``).
    """

    tile: int | None = 512
    overlap: int = 32
    batch_size: int = 4
    min_tile: int = 64
    margin: int | None = None

    def __post_init__(self) -> None:
        if self.tile is not None and self.tile < 0:
            raise ValueError(f"tile must be >= 0 or None, got {self.tile}")
        if self.overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.min_tile < 1:
            raise ValueError(f"min_tile must be >= 1, got {self.min_tile}")
        if self.margin is not None and (
            self.margin < 0 or (self.overlap > 0 and 2 * self.margin >= self.overlap)
        ):
            raise ValueError(
                f"margin must be >= 0 and leave room for the ramp (2 * margin < overlap), "
                f"got margin {self.margin} with overlap {self.overlap}"
            )

    @property
    def whole_image(self) -> bool:
        return not self.tile


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``[0, length)``, neighbours sharing at
    least ``overlap`` pixels.

    The fewest tiles that satisfy the overlap, spread evenly: the first starts at 0, the last ends
    at ``length`` (shifted inward, not shrunk), and the overlaps differ by at most one pixel.
    """
    if tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be in [0, tile {tile})")
    step = tile - overlap
    count = -(-(length - tile) // step) + 1
    span = length - tile
    # Integer rounding of i * span / (count - 1); steps are <= ceil(span / (count - 1)) <= step.
    return [(i * span + (count - 1) // 2) // (count - 1) for i in range(count)]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image go: every tile is ``tile_h x tile_w`` and starts at one of
    ``ys`` times one of ``xs``."""

    tile_h: int
    tile_w: int
    overlap: int
    margin: int
    ys: list[int]
    xs: list[int]

    @property
    def tiles(self) -> list[tuple[int, int]]:
        """``(row, column)`` index of every tile, row by row."""
        return [(iy, ix) for iy in range(len(self.ys)) for ix in range(len(self.xs))]


def tile_and_overlap(config: TileConfig, size: SizeRequirements) -> tuple[int, int]:
    """The tile side the model gets (``config.tile`` fitted to ``size``) and the overlap."""
    assert config.tile is not None
    tile = config.tile - config.tile % size.multiple_of
    tile = max(tile, size.multiple_of, size.minimum)
    return tile, min(config.overlap, tile // 2)


def full_batches_shape(config: TileConfig, size: SizeRequirements) -> tuple[int, int] | None:
    """``(height, width)`` of the smallest photo cut into whole batches of full-size tiles: a run
    on it meets the shape of a large photo's batches, which is what a warm-up compiles and
    autotunes for and what a benchmark of the model times. Two tiles at least, as a photo of one
    tile may take another path (the night model skips its whole-photo pass). Not met: the last
    batch of a photo when it holds fewer tiles, and a photo smaller than a tile, which is one
    tile of its own size. None for whole-image runs, whose shape is each photo's.
    """
    if config.whole_image:
        return None
    tile, overlap = tile_and_overlap(config, size)
    tiles = max(config.batch_size, 2)
    return tile, tile + (tiles - 1) * (tile - overlap)


def plan_tiles(height: int, width: int, config: TileConfig, size: SizeRequirements) -> TilePlan:
    """The tiles of a ``height x width`` image for ``config``, fitted to the model's ``size``."""
    if config.whole_image:
        return TilePlan(height, width, 0, 0, [0], [0])
    tile, overlap = tile_and_overlap(config, size)
    margin = config.overlap // 4 if config.margin is None else config.margin
    margin = min(margin, max(overlap - 1, 0) // 2)
    tile_h, tile_w = min(tile, height), min(tile, width)
    return TilePlan(
        tile_h,
        tile_w,
        overlap,
        margin,
        tile_starts(height, tile_h, overlap),
        tile_starts(width, tile_w, overlap),
    )


def window(
    length: int, lead: bool, trail: bool, overlap: int, margin: int, device: torch.device
) -> torch.Tensor:
    """1-D weights of one tile along one axis, in output pixels: 0 over ``margin``, then a
    raised-cosine ramp up to 1 across the rest of the overlap, on interior edges only.

    At offset ``k`` from the edge the weight is ``sin^2(pi/2 * t)`` with
    ``t = (k + 0.5 - margin) / (overlap - 2 * margin)`` clamped to ``[0, 1]``; where two tiles
    overlap by exactly ``overlap`` their weights add up to 1 (``sin^2 + cos^2``), and the ramp is
    smooth, so a small difference between the tiles fades instead of stepping.
    """
    weights = torch.ones(length, dtype=torch.float32, device=device)
    if overlap <= 0 or not (lead or trail):
        return weights
    ramp_len = min(overlap, length)
    k = torch.arange(ramp_len, dtype=torch.float32, device=device)
    t = ((k + 0.5 - margin) / (overlap - 2 * margin)).clamp(0.0, 1.0)
    ramp = torch.sin(t * (math.pi / 2)) ** 2
    if lead:
        weights[:ramp_len] *= ramp
    if trail:
        weights[length - ramp_len :] *= ramp.flip(0)
    return weights


def axis_windows(
    starts: Sequence[int], tile: int, scale: int, overlap: int, margin: int, device: torch.device
) -> list[torch.Tensor]:
    """The :func:`window` of each tile along one axis, in output pixels (``scale`` per input
    pixel)."""
    last = len(starts) - 1
    return [
        window(tile * scale, i > 0, i < last, overlap * scale, margin * scale, device)
        for i in range(len(starts))
    ]


def axis_norm(
    starts: Sequence[int], windows: Sequence[torch.Tensor], length: int, scale: int
) -> torch.Tensor:
    """Sum of all tiles' windows along one axis; the 2-D sum is the outer product of two."""
    total = torch.zeros(length, dtype=torch.float32, device=windows[0].device)
    for start, weights in zip(starts, windows, strict=True):
        total[start * scale : start * scale + weights.numel()] += weights
    if not bool((total > 0).all()):
        raise RuntimeError("tile plan leaves pixels with zero weight")  # a bug, not bad input
    return total
