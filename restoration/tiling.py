"""Tiled inference: restore an image of any size with a model that only fits smaller pieces.

A 24-megapixel photo through a restoration network needs tens of gigabytes of activations in one
forward pass, so the image is cut into overlapping tiles (the plan, and why it leaves no seams:
``restoration.tile_plan``), the tiles are run in batches and the outputs are blended back together.
Every tile (or the whole image, when it fits in one tile) is padded to the model's size
requirements (``restoration.padding``: spandrel's ``SizeRequirements``, minimum side, multiple of,
square) and cropped back afterwards, so models with strict multiples (8, 16, 48 for IPT, ...)
run at any size.

Memory: only one batch of tiles and its output live on the model's device at a time, plus the
output accumulator.  The accumulator (float32, ``1 x C' x H*s x W*s``) lives on
``output_device``, by default the image's device, because moving every tile's output to the
host costs a synchronising copy per batch; pass ``output_device="cpu"`` when the *output* alone
would not fit on the GPU (a 4x upscale of 24 MP is 4.6 GB).  The final division by the summed
weights is done in place.

On CUDA out-of-memory, :func:`restore_with_oom_fallback` halves the tile and retries instead of
failing the job.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from restoration.device.out_of_memory import is_out_of_memory
from restoration.padding import SizeRequirements, pad_to
from restoration.tile_plan import (
    TileConfig,
    TilePlan,
    axis_norm,
    axis_windows,
    full_batches_shape,
    plan_tiles,
    tile_and_overlap,
)

__all__ = [
    "WHOLE_IMAGE_FALLBACK_TILE",
    "Model",
    "SizeRequirements",
    "TileConfig",
    "full_batches_shape",
    "restore_with_oom_fallback",
    "tiled_forward",
]
# Re-exported for callers outside workers/ that import them from here: full_batches_shape
# (benchmarks.acceleration), SizeRequirements and TileConfig
# (tests/restoration/device/test_batching.py, test_night_weights.py). Their homes are
# restoration.padding and restoration.tile_plan.

log = logging.getLogger(__name__)

Model = Callable[[torch.Tensor], torch.Tensor]
"""``N x C x h x w`` in, ``N x C' x h*scale x w*scale`` out."""

WHOLE_IMAGE_FALLBACK_TILE = 1024
"""First tile tried when a whole-image run (``tile`` 0/None) runs out of memory and the image
size is unknown."""


def tiled_forward(
    model: Model,
    image: torch.Tensor,
    *,
    scale: int = 1,
    config: TileConfig,
    size: SizeRequirements | None = None,
    check_stop: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
    output_device: torch.device | str | None = None,
) -> torch.Tensor:
    """Run ``model`` over ``image`` (1 x C x H x W) tile by tile and blend the results.

    Returns ``1 x C' x H*scale x W*scale`` float32 on ``output_device`` (default: the image's
    device; see the module docstring for why).  Tiles go to the model in the image's dtype and
    device, ``batch_size`` at a time, padded to ``size`` (default: none), under
    ``torch.inference_mode``.  ``check_stop`` is called before each batch (it raises to cancel),
    ``progress`` after each with the fraction done.

    Models that pool over the whole image (global average pooling, attention over all pixels,
    a global gain) see one tile at a time, so their tiled output differs from the whole-image
    output; blending hides steps between tiles but cannot make the statistics global.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be 1 x C x H x W, got shape {tuple(image.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    size = size if size is not None else SizeRequirements()
    height, width = image.shape[-2:]
    out_device = torch.device(output_device) if output_device is not None else image.device
    plan = plan_tiles(height, width, config, size)
    wys = axis_windows(plan.ys, plan.tile_h, scale, plan.overlap, plan.margin, image.device)
    wxs = axis_windows(plan.xs, plan.tile_w, scale, plan.overlap, plan.margin, image.device)
    tiles = plan.tiles
    batches = [tiles[i : i + config.batch_size] for i in range(0, len(tiles), config.batch_size)]
    _log_plan(plan, height, width, len(batches))

    output: torch.Tensor | None = None
    for done, batch in enumerate(batches, start=1):
        if check_stop is not None:
            check_stop()
        result = _run_batch(model, image, plan, batch, size, scale)
        if output is None:
            channels = result.shape[1]
            output = torch.zeros(
                1, channels, height * scale, width * scale, dtype=torch.float32, device=out_device
            )
        _accumulate(output, result, plan, batch, (wys, wxs), scale)
        del result
        if progress is not None:
            progress(done / len(batches))

    assert output is not None
    norm_y = axis_norm(plan.ys, wys, height * scale, scale).to(out_device)
    norm_x = axis_norm(plan.xs, wxs, width * scale, scale).to(out_device)
    # Divide by the outer product without materialising it: two broadcast in-place divisions.
    output.div_(norm_y.view(1, 1, -1, 1)).div_(norm_x.view(1, 1, 1, -1))
    return output


def _log_plan(plan: TilePlan, height: int, width: int, batches: int) -> None:
    log.debug(
        "tiling %dx%d into %d tiles of %dx%d (overlap %d, margin %d) in %d batches",
        width,
        height,
        len(plan.ys) * len(plan.xs),
        plan.tile_w,
        plan.tile_h,
        plan.overlap,
        plan.margin,
        batches,
    )


def _run_batch(
    model: Model,
    image: torch.Tensor,
    plan: TilePlan,
    batch: Sequence[tuple[int, int]],
    size: SizeRequirements,
    scale: int,
) -> torch.Tensor:
    """The model's float32 output for one batch of tiles, with the padding cropped away."""
    th, tw = plan.tile_h, plan.tile_w
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
    return result[:, :, : th * scale, : tw * scale].float()


def _accumulate(
    output: torch.Tensor,
    result: torch.Tensor,
    plan: TilePlan,
    batch: Sequence[tuple[int, int]],
    windows: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]],
    scale: int,
) -> None:
    """Add each tile's output, weighted by its windows, into ``output`` where the tile lies."""
    wys, wxs = windows
    th, tw = plan.tile_h * scale, plan.tile_w * scale
    for index, (iy, ix) in enumerate(batch):
        weighted = result[index] * wys[iy].view(1, -1, 1) * wxs[ix].view(1, 1, -1)
        y, x = plan.ys[iy] * scale, plan.xs[ix] * scale
        output[0, :, y : y + th, x : x + tw] += weighted.to(output.device)


def _smaller(
    config: TileConfig,
    image_size: tuple[int, int] | None,
    size: SizeRequirements | None = None,
) -> TileConfig | None:
    """The next configuration to try after running out of memory, or None when out of options.

    The tile halves (a quarter of the activation memory) down to ``min_tile``; at ``min_tile``
    a batch of more than one tile drops to one as a last resort.  A whole-image run goes to
    half the longer side (or ``WHOLE_IMAGE_FALLBACK_TILE`` when the size is unknown).  Halvings
    that leave the tile the model gets unchanged (a model minimum above the halved tile, a
    multiple that rounds it back) are skipped: the same shape would only run out again.
    """
    if config.whole_image:
        side = max(image_size) // 2 if image_size else WHOLE_IMAGE_FALLBACK_TILE
        return replace(config, tile=max(side, config.min_tile))
    assert config.tile is not None
    fitted = size if size is not None else SizeRequirements()
    effective = tile_and_overlap(config, fitted)[0]
    tile = config.tile
    while tile > config.min_tile:
        tile = max(tile // 2, config.min_tile)
        if tile_and_overlap(replace(config, tile=tile), fitted)[0] < effective:
            return replace(config, tile=tile)
    if config.batch_size > 1:
        return replace(config, batch_size=1)
    return None


def _release_cuda_memory() -> None:
    """Give the failed attempt's memory back before the retry: collect first, as anything of
    it still caught in a reference cycle is not freed by the cache alone."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def restore_with_oom_fallback(
    run: Callable[[TileConfig], torch.Tensor],
    config: TileConfig,
    *,
    image_size: tuple[int, int] | None = None,
    size: SizeRequirements | None = None,
) -> torch.Tensor:
    """``run(config)``, retried with smaller tiles while it runs out of device memory.

    Out of memory on a big photo should cost time, not the job: after each failure the CUDA
    cache is emptied and the tile halved (see :func:`_smaller`), down to ``config.min_tile``;
    beyond that the last out-of-memory error is raised.  Any other error propagates at once.
    Out of memory is whatever :func:`restoration.device.out_of_memory.is_out_of_memory` says it is
    (cuBLAS and cuDNN allocation failures, and torch.compile's wrapped ones, too).
    ``image_size`` (height, width) picks the first tile when a whole-image run fails; ``size``
    (the model's requirements) tells which halvings change the tile the model really gets.
    """
    current = config
    while True:
        try:
            return run(current)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            following = _smaller(current, image_size, size)
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
