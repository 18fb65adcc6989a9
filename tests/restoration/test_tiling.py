"""Tiled inference: tiled output equals whole-image output, size requirements, batching,
cancellation, progress and the out-of-memory fallback.  CPU only, small models, seeded."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from restoration.padding import SizeRequirements
from restoration.tile_plan import TileConfig, tile_starts
from restoration.tiling import Model, restore_with_oom_fallback, tiled_forward
from shared.catalogue import ModelEntry
from tests.restoration.architectures.arch_cases import all_sizes, entries_by_tiling, requirements
from tests.restoration.tile_cases import CONV_TOLERANCE, conv_net, random_image


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
    image = random_image(height, width)
    out = tiled_forward(lambda x: torch.sin(3 * x) * 2, image, config=config)
    assert out.shape == image.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.sin(3 * image) * 2, atol=1e-6, rtol=0)


@pytest.mark.parametrize("height,width", [(40, 60), (389, 517), (129, 300)])
def test_upscaling_model_tiled_equals_whole(height: int, width: int) -> None:
    image = random_image(height, width)
    out = tiled_forward(_upsample, image, scale=2, config=TileConfig(tile=96, overlap=24))
    assert out.shape == (1, 3, height * 2, width * 2)
    torch.testing.assert_close(out, _upsample(image), atol=1e-6, rtol=0)


def test_wrong_scale_is_reported() -> None:
    with pytest.raises(ValueError, match="scale 1"):
        tiled_forward(_upsample, random_image(50, 50), config=TileConfig(tile=32, overlap=8))


@pytest.mark.parametrize(
    "height,width,config",
    [
        (389, 517, TileConfig(tile=128, overlap=32)),
        (200, 301, TileConfig(tile=96, overlap=16, batch_size=2)),
        (70, 90, TileConfig(tile=None)),
    ],
)
def test_conv_net_tiled_matches_whole(height: int, width: int, config: TileConfig) -> None:
    model = conv_net()
    image = random_image(height, width)
    with torch.inference_mode():
        whole = model(image)
    tiled = tiled_forward(model, image, config=config)
    assert (tiled - whole).abs().max().item() < CONV_TOLERANCE


def test_conv_net_without_margin_shows_tile_edges() -> None:
    """The margin is what makes the conv result exact: with none, pixels next to a tile edge that
    saw zero padding get (small) weight and the difference is far above the tolerance."""
    model = conv_net()
    image = random_image(200, 301)
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
    image = random_image(height, width)
    out = tiled_forward(model, image, config=TileConfig(tile=tile, overlap=16), size=size)
    assert seen
    torch.testing.assert_close(out, image * 2, atol=1e-6, rtol=0)


def test_tiles_are_batched() -> None:
    calls: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return x + 1

    image = random_image(389, 517)
    config = TileConfig(tile=128, overlap=32, batch_size=4)
    tiled_forward(model, image, config=config)
    tiles = len(tile_starts(389, 128, 32)) * len(tile_starts(517, 128, 32))
    assert tiles == 4 * 6
    assert len(calls) == math.ceil(tiles / 4)
    assert sum(calls) == tiles and max(calls) == 4


def test_check_stop_cancels_between_batches_and_progress_reaches_one() -> None:
    image = random_image(389, 517)
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
    image = random_image(100, 150).double()
    out = tiled_forward(
        lambda x: x * 2, image, config=TileConfig(tile=64, overlap=16), output_device="cpu"
    )
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, (image * 2).float(), atol=1e-6, rtol=0)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 x C x H x W"):
        tiled_forward(lambda x: x, torch.zeros(2, 3, 10, 10), config=TileConfig())
    with pytest.raises(ValueError, match="scale must be >= 1"):
        tiled_forward(lambda x: x, torch.zeros(1, 3, 10, 10), scale=0, config=TileConfig())


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
    with caplog.at_level(logging.WARNING, logger="restoration.tiling"):
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


def test_halving_skips_tiles_the_model_would_get_anyway() -> None:
    """A model whose minimum side (300) is above the halved tile gets 300 px tiles whatever is
    asked below it: trying 128 and 64 would run the same shape out of memory again."""
    tried: list[tuple[int | None, int]] = []
    with pytest.raises(torch.OutOfMemoryError):
        restore_with_oom_fallback(
            _oom_run(0, tried),
            TileConfig(tile=1024, batch_size=4, min_tile=64),
            size=SizeRequirements(minimum=300),
        )
    assert tried == [(1024, 4), (512, 4), (256, 4), (256, 1)]


def _fails_once(
    error: BaseException, tried: list[int | None]
) -> Callable[[TileConfig], torch.Tensor]:
    def run(config: TileConfig) -> torch.Tensor:
        tried.append(config.tile)
        if len(tried) == 1:
            raise error
        return torch.zeros(1)

    return run


def _wrapped_oom() -> BaseException:
    try:
        try:
            raise torch.OutOfMemoryError("out of memory while autotuning")
        except torch.OutOfMemoryError as inner:
            raise RuntimeError("backend compiler failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        _wrapped_oom(),
    ],
    ids=["cublas", "cudnn", "wrapped-by-the-compiler"],
)
def test_every_kind_of_out_of_memory_halves_the_tile(error: BaseException) -> None:
    tried: list[int | None] = []
    restore_with_oom_fallback(_fails_once(error, tried), TileConfig(tile=512))
    assert tried == [512, 256]


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

    image = random_image(150, 200)
    out = restore_with_oom_fallback(
        lambda config: tiled_forward(model, image, config=config),
        TileConfig(tile=256, overlap=16, min_tile=32),
    )
    torch.testing.assert_close(out, image * 2, atol=1e-6, rtol=0)


# --- every catalogue model's tiles at any size ---------------------------------------------------


def _meets(size: SizeRequirements, scale: int) -> Model:
    """Pointwise but shaped like the model: refuses inputs that break ``size``, upscales by
    ``scale`` (nearest), so tiled and whole-image outputs must agree exactly."""

    def model(x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        assert size.check(width, height), (height, width, size)
        return F.interpolate(x, scale_factor=scale, mode="nearest") * 0.5 + 0.25

    return model


@pytest.mark.parametrize("entry", entries_by_tiling(), ids=lambda entry: entry.name)
def test_every_catalogue_model_tiles_any_size(entry: ModelEntry) -> None:
    """Each model's size requirements with its catalogue tile and overlap, at tiny sizes,
    1 x N strips and sizes around every tile boundary: every tile reaches the model in a shape
    it takes, and the blend gives back the whole-image output, finite, at the right size."""
    size = requirements(entry.architecture)
    model = _meets(size, entry.scale)
    config = TileConfig(tile=entry.tile, overlap=entry.overlap, batch_size=4)
    for height, width in all_sizes(entry):
        image = random_image(height, width, seed=height * 7 + width)
        out = tiled_forward(model, image, scale=entry.scale, config=config, size=size)
        assert out.shape == (1, 3, height * entry.scale, width * entry.scale), (height, width)
        assert bool(torch.isfinite(out).all()), (height, width)
        expected = F.interpolate(image, scale_factor=entry.scale, mode="nearest") * 0.5 + 0.25
        torch.testing.assert_close(out, expected, atol=1e-6, rtol=0, msg=f"{height}x{width}")
