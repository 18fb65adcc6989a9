"""Tiled inference: restore an image of any size with a model that only fits smaller pieces.

A 24-megapixel photo through a restoration network needs tens of gigabytes of activations in one
forward pass, so the image is cut into overlapping tiles, the tiles are run in batches and the
outputs are blended back together.  Three things keep the result free of seams:

* **Full-size tiles, evenly spread.**  Tiles at the image border are shifted inward instead of
  shrunk, and the tile starts are spread evenly, so every tile has the same shape (batchable, and
  no sliver tile with almost no context) and every pair of neighbours shares at least
  ``overlap`` pixels.
* **A margin that is thrown away.**  Near a tile edge the model sees padding instead of the
  neighbouring pixels, so the ``margin`` pixels nearest each *interior* tile edge get weight 0.
  A model whose receptive radius is at most ``margin`` gives exactly the whole-image result.
* **A feathered cross-fade.**  Across the rest of the overlap the weight rises from ~0 to 1 with
  a raised-cosine ramp; a tile's ramp and its neighbour's ramp add up to 1 where they meet, so a
  model whose output differs slightly between tiles fades from one to the other instead of
  stepping.  Image borders get full weight: there is no neighbour to fade into.

Every tile (or the whole image, when it fits in one tile) is padded to the model's size
requirements (spandrel's ``SizeRequirements``: minimum side, multiple of, square) and cropped
back afterwards, so models with strict multiples (8, 16, 48 for IPT, ...) run at any size.

Memory: only one batch of tiles and its output live on the model's device at a time, plus the
output accumulator.  The accumulator (float32, ``1 x C' x H*s x W*s``) lives on
``output_device``, by default the image's device, because moving every tile's output to the
host costs a synchronising copy per batch; pass ``output_device="cpu"`` when the *output* alone
would not fit on the GPU (a 4x upscale of 24 MP is 4.6 GB).  No per-pixel weight-sum buffer is
kept: the weight window is separable and the tiles form a grid, so the sum of all windows is the
outer product of two 1-D sums, and the final division is done in place.

On CUDA out-of-memory, :func:`restore_with_oom_fallback` halves the tile and retries instead of
failing the job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

Model = Callable[[torch.Tensor], torch.Tensor]
"""``N x C x h x w`` in, ``N x C' x h*scale x w*scale`` out."""

WHOLE_IMAGE_FALLBACK_TILE = 1024
"""First tile tried when a whole-image run (``tile`` 0/None) runs out of memory and the image
size is unknown."""


@dataclass(frozen=True)
class SizeRequirements:
    """What a model needs of its input's height and width; mirrors ``spandrel.SizeRequirements``.

    ``minimum`` is rounded up to a multiple of ``multiple_of``, as spandrel does, so a padded size
    always satisfies both at once.
    """

    minimum: int = 0
    multiple_of: int = 1
    square: bool = False

    def __post_init__(self) -> None:
        if self.minimum < 0:
            raise ValueError(f"minimum must be >= 0, got {self.minimum}")
        if self.multiple_of < 1:
            raise ValueError(f"multiple_of must be >= 1, got {self.multiple_of}")
        rounded = -(-self.minimum // self.multiple_of) * self.multiple_of
        object.__setattr__(self, "minimum", rounded)

    @classmethod
    def of(cls, model: Any) -> SizeRequirements:
        """Requirements of a spandrel ``ModelDescriptor`` (``size_requirements``), a spandrel
        ``SizeRequirements`` itself, or a Darkroom architecture (``size_multiple``); none
        otherwise."""
        requirements = getattr(model, "size_requirements", model)
        if all(hasattr(requirements, name) for name in ("minimum", "multiple_of", "square")):
            return cls(
                minimum=int(requirements.minimum),
                multiple_of=int(requirements.multiple_of),
                square=bool(requirements.square),
            )
        multiple = getattr(model, "size_multiple", None)
        if isinstance(multiple, int):
            return cls(multiple_of=multiple)
        return cls()

    def padded(self, height: int, width: int) -> tuple[int, int]:
        """The smallest ``(height, width)`` at least as large as the input that satisfies these
        requirements."""
        m = self.multiple_of
        h = -(-max(height, self.minimum) // m) * m
        w = -(-max(width, self.minimum) // m) * m
        if self.square:
            h = w = max(h, w)
        return h, w


@dataclass(frozen=True)
class TileConfig:
    """How to cut an image into tiles.  Sizes are in *input* pixels.

    ``tile``: tile side; 0 or None runs the whole image in one pass.  It is rounded down to the
    model's ``multiple_of`` (and raised to its ``minimum``) so that inner tiles need no padding.
    ``overlap``: pixels shared by neighbouring tiles (at least; border tiles shifted inward share
    more).  Clamped to half the tile, so a tile's two ramps never meet.
    ``batch_size``: tiles per forward pass.
    ``min_tile``: :func:`restore_with_oom_fallback` stops halving here.
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
class _Plan:
    tile_h: int
    tile_w: int
    overlap: int
    margin: int
    ys: list[int]
    xs: list[int]


def _tile_and_overlap(config: TileConfig, size: SizeRequirements) -> tuple[int, int]:
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
    tile, overlap = _tile_and_overlap(config, size)
    tiles = max(config.batch_size, 2)
    return tile, tile + (tiles - 1) * (tile - overlap)


def _plan(height: int, width: int, config: TileConfig, size: SizeRequirements) -> _Plan:
    if config.whole_image:
        return _Plan(height, width, 0, 0, [0], [0])
    tile, overlap = _tile_and_overlap(config, size)
    margin = config.overlap // 4 if config.margin is None else config.margin
    margin = min(margin, max(overlap - 1, 0) // 2)
    tile_h, tile_w = min(tile, height), min(tile, width)
    return _Plan(
        tile_h,
        tile_w,
        overlap,
        margin,
        tile_starts(height, tile_h, overlap),
        tile_starts(width, tile_w, overlap),
    )


def _window(
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


def _axis_windows(
    starts: Sequence[int], tile: int, scale: int, overlap: int, margin: int, device: torch.device
) -> list[torch.Tensor]:
    last = len(starts) - 1
    return [
        _window(tile * scale, i > 0, i < last, overlap * scale, margin * scale, device)
        for i in range(len(starts))
    ]


def _axis_norm(
    starts: Sequence[int], windows: Sequence[torch.Tensor], length: int, scale: int
) -> torch.Tensor:
    """Sum of all tiles' windows along one axis; the 2-D sum is the outer product of two."""
    total = torch.zeros(length, dtype=torch.float32, device=windows[0].device)
    for start, window in zip(starts, windows, strict=True):
        total[start * scale : start * scale + window.numel()] += window
    if not bool((total > 0).all()):
        raise RuntimeError("tile plan leaves pixels with zero weight")  # a bug, not bad input
    return total


def _pad_axis(tensor: torch.Tensor, dim: int, amount: int) -> torch.Tensor:
    """Pad one spatial axis at its end: reflect keeps edge statistics natural but needs the pad
    smaller than the side; replicate otherwise."""
    if amount <= 0:
        return tensor
    pad = (0, amount, 0, 0) if dim == 3 else (0, 0, 0, amount)
    mode = "reflect" if amount < tensor.shape[dim] else "replicate"
    return F.pad(tensor, pad, mode=mode)


def pad_to(tensor: torch.Tensor, size: SizeRequirements) -> torch.Tensor:
    """``tensor`` (N x C x h x w) padded at the bottom and right to satisfy ``size``."""
    height, width = tensor.shape[-2:]
    target_h, target_w = size.padded(height, width)
    tensor = _pad_axis(tensor, 3, target_w - width)
    return _pad_axis(tensor, 2, target_h - height)


def tiled_forward(
    model: Model,
    image: torch.Tensor,
    *,
    scale: int = 1,
    config: TileConfig,
    size: SizeRequirements = SizeRequirements(),
    check_stop: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run ``model`` over ``image`` (1 x C x H x W) tile by tile and blend the results.

    Returns ``1 x C' x H*scale x W*scale`` float32 on ``output_device`` (default: the image's
    device; see the module docstring for why).  Tiles go to the model in the image's dtype and
    device, ``batch_size`` at a time, under ``torch.inference_mode``.  ``check_stop`` is called
    before each batch (it raises to cancel), ``progress`` after each with the fraction done.

    Models that pool over the whole image (global average pooling, attention over all pixels,
    a global gain) see one tile at a time, so their tiled output differs from the whole-image
    output; blending hides steps between tiles but cannot make the statistics global.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be 1 x C x H x W, got shape {tuple(image.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    height, width = image.shape[-2:]
    out_device = torch.device(output_device) if output_device is not None else image.device
    plan = _plan(height, width, config, size)
    th, tw = plan.tile_h, plan.tile_w
    wys = _axis_windows(plan.ys, th, scale, plan.overlap, plan.margin, image.device)
    wxs = _axis_windows(plan.xs, tw, scale, plan.overlap, plan.margin, image.device)
    tiles = [(iy, ix) for iy in range(len(plan.ys)) for ix in range(len(plan.xs))]
    batches = [tiles[i : i + config.batch_size] for i in range(0, len(tiles), config.batch_size)]
    log.debug(
        "tiling %dx%d into %d tiles of %dx%d (overlap %d, margin %d) in %d batches",
        width,
        height,
        len(tiles),
        tw,
        th,
        plan.overlap,
        plan.margin,
        len(batches),
    )

    output: torch.Tensor | None = None
    for done, batch in enumerate(batches, start=1):
        if check_stop is not None:
            check_stop()
        pieces = [
            image[:, :, plan.ys[iy] : plan.ys[iy] + th, plan.xs[ix] : plan.xs[ix] + tw]
            for iy, ix in batch
        ]
        # cat copies, so an in-place model can never write into the caller's image.
        inputs = pad_to(torch.cat(pieces, dim=0), size)
        with torch.inference_mode():
            result = model(inputs)
        expected = (len(batch), inputs.shape[2] * scale, inputs.shape[3] * scale)
        if result.dim() != 4 or (result.shape[0], *result.shape[2:]) != expected:
            raise ValueError(
                f"model turned input {tuple(inputs.shape)} into {tuple(result.shape)}; "
                f"expected N x C' x {expected[1]} x {expected[2]} for scale {scale}"
            )
        result = result[:, :, : th * scale, : tw * scale].float()
        if output is None:
            output = torch.zeros(
                1,
                result.shape[1],
                height * scale,
                width * scale,
                dtype=torch.float32,
                device=out_device,
            )
        for index, (iy, ix) in enumerate(batch):
            weighted = result[index] * wys[iy].view(1, -1, 1) * wxs[ix].view(1, 1, -1)
            y, x = plan.ys[iy] * scale, plan.xs[ix] * scale
            output[0, :, y : y + th * scale, x : x + tw * scale] += weighted.to(out_device)
        del result, inputs, pieces
        if progress is not None:
            progress(done / len(batches))

    assert output is not None
    norm_y = _axis_norm(plan.ys, wys, height * scale, scale).to(out_device)
    norm_x = _axis_norm(plan.xs, wxs, width * scale, scale).to(out_device)
    # Divide by the outer product without materialising it: two broadcast in-place divisions.
    output.div_(norm_y.view(1, 1, -1, 1)).div_(norm_x.view(1, 1, 1, -1))
    return output


def _smaller(config: TileConfig, image_size: tuple[int, int] | None) -> TileConfig | None:
    """The next configuration to try after running out of memory, or None when out of options.

    The tile halves (a quarter of the activation memory) down to ``min_tile``; at ``min_tile``
    a batch of more than one tile drops to one as a last resort.  A whole-image run goes to
    half the longer side (or ``WHOLE_IMAGE_FALLBACK_TILE`` when the size is unknown).
    """
    if config.whole_image:
        side = max(image_size) // 2 if image_size else WHOLE_IMAGE_FALLBACK_TILE
        return replace(config, tile=max(side, config.min_tile))
    assert config.tile is not None
    if config.tile > config.min_tile:
        return replace(config, tile=max(config.tile // 2, config.min_tile))
    if config.batch_size > 1:
        return replace(config, batch_size=1)
    return None


def _release_cuda_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def restore_with_oom_fallback(
    run: Callable[[TileConfig], torch.Tensor],
    config: TileConfig,
    *,
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """``run(config)``, retried with smaller tiles while it raises ``torch.OutOfMemoryError``.

    Out of memory on a big photo should cost time, not the job: after each failure the CUDA
    cache is emptied and the tile halved (see :func:`_smaller`), down to ``config.min_tile``;
    beyond that the last out-of-memory error is raised.  Any other error propagates at once.
    ``image_size`` (height, width) picks the first tile when a whole-image run fails.
    """
    current = config
    while True:
        try:
            return run(current)
        except torch.OutOfMemoryError:
            following = _smaller(current, image_size)
            if following is None:
                raise
        # Outside the except block the traceback, and the tensors its frames hold, are gone,
        # so emptying the cache can actually give memory back.
        _release_cuda_memory()
        log.warning(
            "CUDA out of memory with tile %s, batch %d; retrying with tile %s, batch %d",
            current.tile or "whole image",
            current.batch_size,
            following.tile,
            following.batch_size,
        )
        current = following
