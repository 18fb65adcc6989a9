"""Tiled inference: tiled output equals whole-image output, size requirements, seams, batching,
cancellation, progress and the out-of-memory fallback.  CPU only, small models, seeded."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workers.tiling import (
    Model,
    SizeRequirements,
    TileConfig,
    full_batches_shape,
    restore_with_oom_fallback,
    tile_starts,
    tiled_forward,
)

CONV_TOLERANCE = 1e-4
"""Tiled vs whole max abs difference for a conv net whose receptive radius is within the margin:
every pixel with non-zero weight then sees exactly the pixels it sees in the whole image, so
the only difference is float32 summation order (convolution kernels pick different algorithms
for different shapes; observed ~1e-6 on outputs of magnitude ~1).  1e-4 leaves headroom for
that, and is still 100x smaller than the ~1e-2 errors of tile edges that saw zero padding."""


def _image(height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, channels, height, width, generator=generator)


def _conv_net(seed: int = 0) -> nn.Module:
    """Four 3x3 convolutions with zero padding: receptive radius 4 pixels (9x9 field)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3, 3, padding=1),
    ).eval()


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest") * 0.5


SIZES = [(40, 60), (128, 128), (389, 517), (129, 700)]  # smaller, one tile, odd, strip
CONFIGS = [
    TileConfig(tile=128, overlap=32, batch_size=4),
    TileConfig(tile=100, overlap=16, batch_size=3),
    TileConfig(tile=64, overlap=8, batch_size=1),
    TileConfig(tile=128, overlap=0, batch_size=2),
    TileConfig(tile=None),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"tile{c.tile}-ov{c.overlap}")
@pytest.mark.parametrize("height,width", SIZES)
def test_pointwise_model_tiled_equals_whole(height: int, width: int, config: TileConfig) -> None:
    image = _image(height, width)
    out = tiled_forward(lambda x: torch.sin(3 * x) * 2, image, config=config)
    assert out.shape == image.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.sin(3 * image) * 2, atol=1e-6, rtol=0)


@pytest.mark.parametrize("height,width", [(40, 60), (389, 517), (129, 300)])
def test_upscaling_model_tiled_equals_whole(height: int, width: int) -> None:
    image = _image(height, width)
    out = tiled_forward(_upsample, image, scale=2, config=TileConfig(tile=96, overlap=24))
    assert out.shape == (1, 3, height * 2, width * 2)
    torch.testing.assert_close(out, _upsample(image), atol=1e-6, rtol=0)


def test_wrong_scale_is_reported() -> None:
    with pytest.raises(ValueError, match="scale 1"):
        tiled_forward(_upsample, _image(50, 50), config=TileConfig(tile=32, overlap=8))


@pytest.mark.parametrize(
    "height,width,config",
    [
        (389, 517, TileConfig(tile=128, overlap=32)),
        (200, 301, TileConfig(tile=96, overlap=16, batch_size=2)),
        (70, 90, TileConfig(tile=None)),
    ],
)
def test_conv_net_tiled_matches_whole(height: int, width: int, config: TileConfig) -> None:
    model = _conv_net()
    image = _image(height, width)
    with torch.inference_mode():
        whole = model(image)
    tiled = tiled_forward(model, image, config=config)
    assert (tiled - whole).abs().max().item() < CONV_TOLERANCE


def test_conv_net_without_margin_shows_tile_edges() -> None:
    """The margin is what makes the conv result exact: with none, pixels next to a tile edge that
    saw zero padding get (small) weight and the difference is far above the tolerance."""
    model = _conv_net()
    image = _image(200, 301)
    with torch.inference_mode():
        whole = model(image)
    tiled = tiled_forward(model, image, config=TileConfig(tile=96, overlap=16, margin=0))
    assert (tiled - whole).abs().max().item() > 10 * CONV_TOLERANCE


def _strict(check: str) -> tuple[Model, list[tuple[int, int]]]:
    seen: list[tuple[int, int]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        seen.append((h, w))
        if check == "multiple":
            assert h % 16 == 0 and w % 16 == 0, (h, w)
        elif check == "minimum":
            assert h >= 64 and w >= 64, (h, w)
        else:
            assert h == w, (h, w)
        return x * 2

    return model, seen


@pytest.mark.parametrize(
    "check,size",
    [
        ("multiple", SizeRequirements(multiple_of=16)),
        ("minimum", SizeRequirements(minimum=64)),
        ("square", SizeRequirements(square=True)),
    ],
)
@pytest.mark.parametrize("height,width", [(37, 53), (389, 517), (13, 200)])
@pytest.mark.parametrize("tile", [100, None])
def test_size_requirements_are_met_at_any_size(
    check: str, size: SizeRequirements, height: int, width: int, tile: int | None
) -> None:
    model, seen = _strict(check)
    image = _image(height, width)
    out = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=16), size=size)
    assert seen
    torch.testing.assert_close(out, image * 2, atol=1e-6, rtol=0)


def test_tile_is_rounded_to_the_multiple_so_inner_tiles_need_no_padding() -> None:
    model, seen = _strict("multiple")
    tiled_forward(
        model,
        _image(389, 517),
        config=TileConfig(tile=100, overlap=16, batch_size=1),
        size=SizeRequirements(multiple_of=16),
    )
    assert set(seen) == {(96, 96)}


def test_size_requirements_mirror_spandrel() -> None:
    assert SizeRequirements(minimum=50, multiple_of=16).minimum == 64
    assert SizeRequirements(multiple_of=8).padded(17, 9) == (24, 16)
    assert SizeRequirements(minimum=32, square=True).padded(10, 40) == (40, 40)
    spandrel = pytest.importorskip("spandrel")
    theirs = spandrel.SizeRequirements(minimum=50, multiple_of=16, square=True)
    ours = SizeRequirements.of(theirs)
    assert (ours.minimum, ours.multiple_of, ours.square) == (64, 16, True)
    for h, w in [(1, 1), (37, 53), (100, 7)]:
        pad_w, pad_h = theirs.get_padding(w, h)
        assert ours.padded(h, w) == (h + pad_h, w + pad_w)


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


def _smooth(height: int, width: int) -> torch.Tensor:
    """A smooth 3-channel image: a gradient plus sinusoids of a few hundred pixels' wavelength,
    so it curves everywhere, by far more than float32 rounding (a second difference of ~1e-4
    against ~1e-7)."""
    y = torch.arange(height, dtype=torch.float32).view(1, 1, height, 1)
    x = torch.arange(width, dtype=torch.float32).view(1, 1, 1, width)
    tau = 2 * math.pi
    return torch.cat(
        [
            0.5 + 0.4 * torch.sin(tau * (x / 240 + y / 340)),
            0.1 + 0.3 * x / width + 0.5 * y / height,
            0.5 + 0.3 * torch.cos(tau * (y / 180 - x / 500)),
        ],
        dim=1,
    )


def _cheap_conv(seed: int = 1) -> nn.Module:
    """Two 3x3 convolutions with zero padding (receptive radius 2): cheap on 24 MP, and wrong at
    every tile edge, so a missing margin or a bad blend shows up as a seam."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.Tanh(), nn.Conv2d(3, 3, 3, padding=1)
    ).eval()


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


def test_24_megapixel_photo_has_no_seams() -> None:
    """6000 x 4000 x 3 through a conv model on CPU, tile 1024, overlap 32.

    Numerically: around every tile boundary the tiled output equals the whole-image output (the
    reference is computed on bands with enough context, which is the whole-image output there),
    and the second difference across boundaries is no larger than elsewhere."""
    height, width, tile, overlap = 4000, 6000, 1024, 32
    model = _cheap_conv()
    image = _smooth(height, width)
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
    model = _cheap_conv()
    image = _smooth(height, width)
    xs = tile_starts(width, tile, 0)
    butt_joined = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=0))
    assert _curvature_ratio(butt_joined, xs, tile, dim=3) > 100
    xs = tile_starts(width, tile, 32)
    no_margin = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=32, margin=0))
    assert _curvature_ratio(no_margin, xs, tile, dim=3) > 2
    blended = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=32))
    assert _curvature_ratio(blended, xs, tile, dim=3) < 1.05


def test_tiles_are_batched() -> None:
    calls: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x + 1

    image = _image(389, 517)
    config = TileConfig(tile=128, overlap=32, batch_size=4)
    tiled_forward(model, image, config=config)
    tiles = len(tile_starts(389, 128, 32)) * len(tile_starts(517, 128, 32))
    assert tiles == 4 * 6
    assert len(calls) == math.ceil(tiles / 4)
    assert sum(calls) == tiles and max(calls) == 4


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
    tiled_forward(model, _image(*shape), config=config, size=size)
    tile = (config.tile or 0) // size.multiple_of * size.multiple_of
    assert shapes == [(config.batch_size, 3, tile, tile)] * batches
    assert full_batches_shape(TileConfig(tile=None), size) is None


def test_check_stop_cancels_between_batches_and_progress_reaches_one() -> None:
    image = _image(389, 517)
    config = TileConfig(tile=128, overlap=32, batch_size=5)  # 24 tiles -> 5 batches
    stops: list[int] = []
    fractions: list[float] = []
    tiled_forward(
        lambda x: x,
        image,
        config=config,
        check_stop=lambda: stops.append(1),
        progress=fractions.append,
    )
    assert len(stops) == 5
    assert fractions == [0.2, 0.4, 0.6, 0.8, 1.0]

    class Cancelled(Exception):
        pass

    calls: list[int] = []

    def stop() -> None:
        if len(calls) == 2:
            raise Cancelled

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x

    with pytest.raises(Cancelled):
        tiled_forward(model, image, config=config, check_stop=stop)
    assert len(calls) == 2


def test_output_accumulates_on_the_requested_device_and_casts_to_float32() -> None:
    image = _image(100, 150).double()
    out = tiled_forward(
        lambda x: x * 2, image, config=TileConfig(tile=64, overlap=16), output_device="cpu"
    )
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, (image * 2).float(), atol=1e-6, rtol=0)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 x C x H x W"):
        tiled_forward(lambda x: x, torch.zeros(2, 3, 10, 10), config=TileConfig())
    with pytest.raises(ValueError):
        TileConfig(batch_size=0)
    with pytest.raises(ValueError):
        TileConfig(overlap=16, margin=8)


def _oom_run(
    limit: int, tried: list[tuple[int | None, int]]
) -> Callable[[TileConfig], torch.Tensor]:
    def run(config: TileConfig) -> torch.Tensor:
        tried.append((config.tile, config.batch_size))
        if config.tile is None or config.tile > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.full((1,), float(config.tile))

    return run


def test_oom_halves_the_tile_until_it_fits(caplog: pytest.LogCaptureFixture) -> None:
    tried: list[tuple[int | None, int]] = []
    with caplog.at_level(logging.WARNING, logger="workers.tiling"):
        out = restore_with_oom_fallback(_oom_run(128, tried), TileConfig(tile=512, min_tile=64))
    assert [tile for tile, _ in tried] == [512, 256, 128]
    assert out.item() == 128
    assert len([r for r in caplog.records if "out of memory" in r.getMessage()]) == 2


def test_oom_at_min_tile_drops_the_batch_then_reraises() -> None:
    tried: list[tuple[int | None, int]] = []
    with pytest.raises(torch.OutOfMemoryError):
        restore_with_oom_fallback(
            _oom_run(0, tried), TileConfig(tile=512, batch_size=4, min_tile=128)
        )
    assert tried == [(512, 4), (256, 4), (128, 4), (128, 1)]


def test_oom_on_a_whole_image_run_falls_back_to_tiles() -> None:
    tried: list[tuple[int | None, int]] = []
    out = restore_with_oom_fallback(
        _oom_run(1000, tried), TileConfig(tile=None), image_size=(3000, 4000)
    )
    assert [tile for tile, _ in tried] == [None, 2000, 1000]
    assert out.item() == 1000


def test_other_errors_propagate_at_once() -> None:
    tried: list[TileConfig] = []

    def run(config: TileConfig) -> torch.Tensor:
        tried.append(config)
        raise RuntimeError("Input type (double) and bias type (float) should be the same")

    with pytest.raises(RuntimeError, match="Input type"):
        restore_with_oom_fallback(run, TileConfig(tile=512))
    assert len(tried) == 1


def test_oom_fallback_with_real_tiling() -> None:
    """End to end: a model that 'runs out of memory' on tiles above 64 pixels still restores."""

    def model(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return x * 2

    image = _image(150, 200)
    out = restore_with_oom_fallback(
        lambda config: tiled_forward(model, image, config=config),
        TileConfig(tile=256, overlap=16, min_tile=32),
    )
    torch.testing.assert_close(out, image * 2, atol=1e-6, rtol=0)
