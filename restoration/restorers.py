"""A loaded model that restores a whole photo of any size, and a model or a chain run on one.

Every model runs through the same tiled path (``TiledRestorer``), so any size fits in memory,
and on CUDA out-of-memory the tile is halved instead of failing the job. Loading one is
``restoration.loading``; keeping them loaded, ``restoration.cache``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from restoration.device.acceleration import (
    AcceleratedForward,
    to_device,
    to_numpy,
)
from restoration.device.batching import DIRECT, DeviceRunner
from restoration.device.precision import autocast_dtype
from restoration.padding import SizeRequirements
from restoration.photo_passes import (
    PhotoPass,
)
from restoration.tile_plan import TileConfig, full_batches_shape, tile_and_overlap
from restoration.tiling import restore_with_oom_fallback, tiled_forward
from shared.catalogue import ModelEntry

log = logging.getLogger(__name__)

StopCheck = Callable[[], None]
"""Called between batches of tiles; raises ``JobCancelled`` to stop a cancelled job."""

Forward = Callable[..., torch.Tensor]
"""``N x 3 x h x w`` in [0, 1], a task name and any per-sample inputs (``N x ...``, see
``TiledRestorer.per_photo``) in, ``N x 3 x h*s x w*s`` out."""


class Restorer(Protocol):
    name: str
    nbytes: int

    def restore(
        self,
        pixels: np.ndarray,
        check_stop: StopCheck | None = None,
        task: str | None = None,
        runner: DeviceRunner = DIRECT,
    ) -> np.ndarray:
        """H x W x 3 float32 RGB in [0, 1] in; H*s x W*s x 3 out (s: the task's scale). The
        work on the model goes through ``runner``: at once, or shared with other jobs."""
        ...


def half_dtype(
    entry: ModelEntry, device: torch.device, precision: str = "auto"
) -> torch.dtype | None:
    """The reduced precision to autocast Darkroom's own models to, from the precisions the
    catalogue entry lists (spandrel models use spandrel's flags, the same rule)."""
    return autocast_dtype(
        device,
        supports_half="fp16" in entry.precisions,
        supports_bfloat16="bf16" in entry.precisions,
        precision=precision,
    )


class TiledRestorer:
    """Full resolution, never downsized (the reference MIRNet project resizes to 400 px)."""

    def __init__(
        self,
        name: str,
        forward: Forward,
        device: torch.device,
        *,
        size: SizeRequirements,
        scale_for: Callable[[str | None], int],
        tiles: TileConfig,
        nbytes: int,
        prepare: Callable[[torch.Tensor], PhotoPass] | None = None,
        accelerated: AcceleratedForward | None = None,
    ) -> None:
        self.name = name
        self.device = device
        self.nbytes = nbytes
        self._forward = forward
        self._prepare = prepare
        self.size = size
        self._scale_for = scale_for
        self.tiles = tiles
        self.accelerated = accelerated
        """The model's fast path (``restoration.device.acceleration``); None: it runs as written."""

    def per_photo(self, image: torch.Tensor) -> PhotoPass:
        """The whole-photo pass the model needs before its tiles, on ``image`` (1 x 3 x H x W):
        what is cut into tiles (the photo itself, or the night model v2's exposed photo) and
        what every tile takes besides (the night model v1's exposure, ``1 x ...`` each)."""
        return self._prepare(image) if self._prepare else PhotoPass(image)

    def _warm_merged(self, pixels: np.ndarray, rows: int) -> None:
        """One pass of ``rows`` full tiles: the shape every merged pass of several jobs takes
        on CUDA (``DeviceBatcher(pad_merged=True)``), so it runs compiled and tuned too."""
        image = to_device(pixels, self.device)
        photo = self.per_photo(image)
        side = tile_and_overlap(self.tiles, self.size)[0]
        batch, per_sample = _tile_batch(photo, side, rows)
        with torch.inference_mode():
            self._forward(batch, None, *per_sample)

    def forward_for(self, image: torch.Tensor) -> tuple[torch.Tensor, Forward]:
        """What the tiles of ``image`` (1 x 3 x H x W, on the device) are cut from, and what
        runs on each batch of them: the model alone, after the whole-photo pass it needs. The
        benchmarks time it on tiles already on the device: the model's own limit."""
        photo = self.per_photo(image)
        return photo.tiles_from, lambda batch, task: self._forward(
            batch, task, *_per_sample(photo.extras, batch)
        )

    def restore(
        self,
        pixels: np.ndarray,
        check_stop: StopCheck | None = None,
        task: str | None = None,
        runner: DeviceRunner = DIRECT,
    ) -> np.ndarray:
        height, width = pixels.shape[:2]
        image = to_device(pixels, self.device)
        photo = runner.alone(lambda: self.per_photo(image)) if self._prepare else PhotoPass(image)
        extras = photo.extras

        def forward(batch: torch.Tensor, *per_sample: torch.Tensor) -> torch.Tensor:
            return self._forward(batch, task, *per_sample)

        def model(batch: torch.Tensor) -> torch.Tensor:
            # Equal keys share passes: the same loaded model, the same task.
            return runner.forward((self, task), forward, batch, _per_sample(extras, batch))

        scale = self._scale_for(task)
        output_device = output_device_for(self.device, 3 * height * scale * width * scale * 4)

        def run(config: TileConfig) -> torch.Tensor:
            return tiled_forward(
                model,
                photo.tiles_from,
                scale=scale,
                config=config,
                size=self.size,
                check_stop=check_stop,
                output_device=output_device,
            )

        restored = restore_with_oom_fallback(
            run, self.tiles, image_size=(height, width), size=self.size
        )
        finish = photo.finish
        if finish is not None:
            stitched = restored
            restored = runner.alone(lambda: finish(stitched))
        return to_numpy(restored.clamp_(0.0, 1.0))

    def warm_up(self, merged_tiles: int = 0) -> None:
        """Restore a photo of whole batches of full tiles once, through the path jobs take, so
        the shapes jobs meet are compiled and autotuned now rather than in a job (see
        ``restoration.device.acceleration``). Nothing to do for a model that runs as written, nor
        for channels-last alone on a CPU: nothing there is built per shape, and the warm-up would
        cost a whole batch of tiles (13 s on the 2-core CPU) before every one-photo
        ``darkroom submit``."""
        accelerated = self.accelerated
        if accelerated is None or not (accelerated.compiled or self.device.type == "cuda"):
            return
        shape = full_batches_shape(self.tiles, self.size)
        if shape is None:
            if accelerated.compiled:
                log.warning("model %s runs whole photos, of every shape: not compiled", self.name)
            return
        pixels = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
        start = time.perf_counter()
        with accelerated.warming_up():
            self.restore(pixels)
            if merged_tiles > self.tiles.batch_size:
                self._warm_merged(pixels, merged_tiles)
        log.info(
            "warmed up model %s on %s in %.1f s (%s%s) on a %dx%d photo: %d input shape(s)",
            self.name,
            self.device,
            time.perf_counter() - start,
            "compiled" if accelerated.compiled else "eager",
            ", channels-last" if accelerated.channels_last else "",
            shape[1],
            shape[0],
            len(accelerated.warm_shapes),
        )


OUTPUT_SHARE_OF_FREE = 0.25
"""An output (the float32 accumulator) larger than this share of the device's free memory is
accumulated on the host: tile halving shrinks the activations, never the output, and an x4
upscale of a 100-megapixel photo is a 19 GB accumulator."""


def output_device_for(
    device: torch.device, output_bytes: int, free_bytes: int | None = None
) -> torch.device:
    """Where the stitched output of ``output_bytes`` is accumulated: on the model's device,
    unless it would take more than :data:`OUTPUT_SHARE_OF_FREE` of the memory free there
    (``free_bytes``; asked of the device when not given)."""
    if device.type != "cuda":
        return device
    if free_bytes is None:
        free_bytes = torch.cuda.mem_get_info(device)[0]
    if output_bytes > OUTPUT_SHARE_OF_FREE * free_bytes:
        return torch.device("cpu")
    return device


def _tile_batch(
    photo: PhotoPass, side: int, rows: int
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """``rows`` copies of the photo's first full tile, with their per-tile inputs."""
    tile = photo.tiles_from[:, :, :side, :side]
    batch = tile.expand(rows, *tile.shape[1:]).contiguous()
    return batch, _per_sample(photo.extras, batch)


def _per_sample(extras: tuple[torch.Tensor, ...], batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-photo inputs repeated for every tile of ``batch``, so they can travel with the tiles
    when several photos' tiles share one pass."""
    return tuple(extra.expand(batch.shape[0], *extra.shape[1:]) for extra in extras)


def run_chain(
    steps: Sequence[tuple[Restorer, str | None]],
    pixels: np.ndarray,
    check_stop: StopCheck | None = None,
    runner: DeviceRunner = DIRECT,
) -> np.ndarray:
    """One photo through each loaded model in turn (with its task): one restorer for a plain
    model name, several for a preset or ``a+b:task``, on the decoded pixels (no re-encoding
    between steps). Jobs and evaluations run a model the same way."""
    for restorer, task in steps:
        pixels = restorer.restore(pixels, check_stop, task, runner)
    return pixels


def chain_restore(
    steps: Sequence[tuple[Restorer, str | None]],
) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`run_chain` as the pixels-to-pixels callable an evaluation scores."""
    return lambda pixels: run_chain(steps, pixels)
