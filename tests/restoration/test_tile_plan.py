"""The tile plan: tile starts, tiles fitted to the model's multiple, the warm-up photo's shape,
and blend windows that leave no seams (checked numerically on a 24 MP photo).  CPU only."""

from __future__ import annotations

import math
import time

import pytest
import torch

from restoration.padding import SizeRequirements
from restoration.tile_plan import TileConfig, full_batches_shape, tile_starts
from restoration.tiling import tiled_forward
from tests.restoration.tile_cases import CONV_TOLERANCE, cheap_conv, random_image, smooth


def test_tile_starts_cover_with_full_tiles_and_at_least_the_overlap() -> None:
    for length, tile, overlap in [(517, 128, 32), (6000, 1024, 32), (129, 128, 32), (1000, 64, 0)]:
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + tile == length
        steps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(0 < step <= tile - overlap for step in steps)
        assert max(steps) - min(steps) <= 1
        # The fewest tiles: one fewer could not keep the overlap.
        assert len(starts) == 1 + math.ceil((length - tile) / (tile - overlap))
    assert tile_starts(100, 128, 32) == [0]


def _seam_bands(starts: list[int], tile: int, pad: int) -> list[tuple[int, int]]:
    """Index ranges around every blend region (the overlap of two neighbours), widened by pad."""
    return [(b - pad, a + tile + pad) for a, b in zip(starts, starts[1:], strict=False)]


def _curvature_ratio(out: torch.Tensor, starts: list[int], tile: int, dim: int) -> float:
    """Max |second difference| across the blend regions over the max elsewhere (away from the
    image border, where the model's own zero padding bends the output).  A seam (a step or a kink
    between tiles) is a spike in the second difference; a seamless blend keeps the ratio <= ~1."""
    inner = out[:, :, 8:-8] if dim == 3 else out[:, :, :, 8:-8]  # rows/columns off the border
    d2 = inner.diff(n=2, dim=dim).abs().amax(dim=(0, 1, 5 - dim))  # 1-D along `dim`
    near = torch.zeros_like(d2, dtype=torch.bool)
    for lo, hi in _seam_bands(starts, tile, 4):
        near[max(lo - 1, 0) : hi - 1] = True  # d2[i] is centred on pixel i + 1
    away = ~near
    away[:8] = away[-8:] = False
    return d2[near].max().item() / d2[away].max().item()


@pytest.mark.slow
def test_24_megapixel_photo_has_no_seams() -> None:
    """6000 x 4000 x 3 through a conv model on CPU, tile 1024, overlap 32.

    Numerically: around every tile boundary the tiled output equals the whole-image output (the
    reference is computed on bands with enough context, which is the whole-image output there),
    and the second difference across boundaries is no larger than elsewhere."""
    height, width, tile, overlap = 4000, 6000, 1024, 32
    model = cheap_conv()
    image = smooth(height, width)
    started = time.perf_counter()
    out = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=overlap, batch_size=2))
    elapsed = time.perf_counter() - started
    assert out.shape == (1, 3, height, width)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    assert len(ys) > 1 and len(xs) > 1

    context = 8  # >= the model's receptive radius, so the band output is the whole-image output
    worst = 0.0
    for lo, hi in _seam_bands(xs, tile, 16):
        with torch.inference_mode():
            ref = model(image[:, :, :, lo - context : hi + context])[:, :, :, context:-context]
        worst = max(worst, (out[:, :, :, lo:hi] - ref).abs().max().item())
    for lo, hi in _seam_bands(ys, tile, 16):
        with torch.inference_mode():
            ref = model(image[:, :, lo - context : hi + context])[:, :, context:-context]
        worst = max(worst, (out[:, :, lo:hi] - ref).abs().max().item())
    assert worst < CONV_TOLERANCE

    assert _curvature_ratio(out, xs, tile, dim=3) < 1.05
    assert _curvature_ratio(out, ys, tile, dim=2) < 1.05
    assert elapsed < 15


def test_seam_check_detects_seams() -> None:
    """The curvature check above can fail: butt-joined tiles (no overlap, nothing blended) leave
    seams ~1000x the image's own curvature, and even a feathered blend without the margin (tile
    edges that saw zero padding keep a little weight) leaves kinks a few times above it."""
    height, width, tile = 600, 900, 256
    model = cheap_conv()
    image = smooth(height, width)
    xs = tile_starts(width, tile, 0)
    butt_joined = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=0))
    assert _curvature_ratio(butt_joined, xs, tile, dim=3) > 100
    xs = tile_starts(width, tile, 32)
    no_margin = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=32, margin=0))
    assert _curvature_ratio(no_margin, xs, tile, dim=3) > 2
    blended = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=32))
    assert _curvature_ratio(blended, xs, tile, dim=3) < 1.05


@pytest.mark.parametrize(
    ("config", "size", "batches"),
    [
        (TileConfig(tile=128, overlap=32, batch_size=4), SizeRequirements(), 1),
        (TileConfig(tile=100, overlap=20, batch_size=3), SizeRequirements(multiple_of=16), 1),
        (TileConfig(tile=240, overlap=24, batch_size=1), SizeRequirements(minimum=48), 2),
    ],
)
def test_the_warm_up_photo_is_whole_batches_of_full_tiles(
    config: TileConfig, size: SizeRequirements, batches: int
) -> None:
    shapes: list[tuple[int, ...]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return x

    shape = full_batches_shape(config, size)
    assert shape is not None
    tiled_forward(model, random_image(*shape), config=config, size=size)
    tile = (config.tile or 0) // size.multiple_of * size.multiple_of
    assert shapes == [(config.batch_size, 3, tile, tile)] * batches
    assert full_batches_shape(TileConfig(tile=None), size) is None


def test_tile_is_rounded_to_the_multiple_so_inner_tiles_need_no_padding() -> None:
    seen: list[tuple[int, int]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append((x.shape[-2], x.shape[-1]))
        return x

    tiled_forward(
        model,
        random_image(389, 517),
        config=TileConfig(tile=100, overlap=16, batch_size=1),
        size=SizeRequirements(multiple_of=16),
    )
    assert set(seen) == {(96, 96)}


def test_bad_configs_are_rejected() -> None:
    with pytest.raises(ValueError):
        TileConfig(batch_size=0)
    with pytest.raises(ValueError):
        TileConfig(overlap=16, margin=8)
