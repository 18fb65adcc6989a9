"""Turning a model entry into a loaded model that restores a whole photo of any size.

Models load once per process and stay warm (least recently used ones are dropped past a memory
budget): loading MIRNet's 32 M parameters costs far more than restoring one photo. Loading
includes the warm-up that compiles and autotunes the model for its tile shape where that was
chosen (``restoration.device.acceleration``), so no job pays for it. Every model runs through the
same tiled path, so any size fits in memory, and on CUDA out-of-memory the
tile is halved instead of failing the job. A model never runs on random weights: missing or
unusable weights are ``ModelUnavailable``, whose message a tenant reads (the model's name, no
server path); the file's path and what the loader said go to the log for the operator.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, cast

import numpy as np
import torch

from restoration.architectures import ARCHITECTURES, OwnArchitecture, tile_requirements
from restoration.device import allocator
from restoration.device.acceleration import (
    AcceleratedForward,
    accelerate,
    choose,
    to_device,
    to_numpy,
)
from restoration.device.batching import DIRECT, DeviceRunner
from restoration.device.precision import autocast, autocast_dtype, finite_or_float32
from restoration.padding import SizeRequirements
from restoration.photo_passes import (
    ExposureNetwork,
    LocalExposureNetwork,
    PhotoInputsNetwork,
    PhotoPass,
    global_gain,
    local_exposure,
    photo_inputs,
)
from restoration.tile_plan import TileConfig, full_batches_shape, tile_and_overlap
from restoration.tiling import restore_with_oom_fallback, tiled_forward
from shared.catalogue import OWN_ARCHITECTURES, ModelEntry, ModelStore
from shared.config import Settings
from shared.errors import ModelUnavailable

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


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


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


def _own_architecture(entry: ModelEntry) -> OwnArchitecture | None:
    """The registry's entry for one of Darkroom's own architectures (``restoration.architectures``);
    None for an architecture spandrel loads. A name the catalogue lists as Darkroom's own but the
    registry lacks is refused here: spandrel would only say it does not recognise the file."""
    own = ARCHITECTURES.get(entry.architecture)
    if own is None and entry.architecture in OWN_ARCHITECTURES:
        raise ModelUnavailable(
            f"model {entry.name!r}: architecture {entry.architecture!r} is not registered in "
            "restoration.architectures"
        )
    return own


def _module_bytes(module: torch.nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def load_restorer(
    entry: ModelEntry, path: Path, device: torch.device, settings: Settings
) -> Restorer:
    """The model ready for jobs: loaded, accelerated as chosen (``restoration.device.acceleration``)
    and warmed up, so compiling and autotuning happen here, not in a job's restore. The first load
    in a process also sets up malloc for restoring (``restoration.device.allocator``), before any
    tile."""
    allocator.configure(settings)
    restorer = _build_restorer(entry, path, device, settings)
    restorer.warm_up(merged_tiles=settings.device_batch_tiles if settings.merges_passes else 0)
    return restorer


def _build_restorer(
    entry: ModelEntry, path: Path, device: torch.device, settings: Settings
) -> TiledRestorer:
    tiles = TileConfig(tile=entry.tile, overlap=entry.overlap, batch_size=settings.tile_batch_size)
    own = _own_architecture(entry)
    if own is not None:
        return _own_restorer(own, entry, path, device, settings, tiles)
    return _spandrel_restorer(entry, path, device, settings, tiles)


def _own_restorer(
    own: OwnArchitecture,
    entry: ModelEntry,
    path: Path,
    device: torch.device,
    settings: Settings,
    tiles: TileConfig,
) -> TiledRestorer:
    choice = choose(entry, settings, device)
    try:
        model = own.load(path, **entry.arch_options).to(device).eval()
        accelerated = accelerate(model, device, choice, settings, name=entry.name)
        dtype = half_dtype(entry, device, settings.precision)

        def forward(
            batch: torch.Tensor, task: str | None, *per_sample: torch.Tensor
        ) -> torch.Tensor:
            def run(precision: torch.dtype | None) -> torch.Tensor:
                with autocast(precision, device):
                    return model(batch, *per_sample)  # per-photo inputs, if the model has any

            return finite_or_float32(run, dtype, entry.name)

        prepare = None
        # The registry says which whole-photo pass this network takes.
        if own.whole_photo == "global-gain":
            prepare = global_gain(cast(ExposureNetwork, model), entry, dtype)
        elif own.whole_photo == "local-exposure":
            prepare = local_exposure(cast(LocalExposureNetwork, model))
        elif own.whole_photo == "photo-inputs":
            prepare = photo_inputs(cast(PhotoInputsNetwork, model), dtype)
        return TiledRestorer(
            entry.name,
            forward,
            device,
            size=tile_requirements(model, own.tile_multiple),
            scale_for=lambda task: 1,
            tiles=tiles,
            nbytes=_module_bytes(model),
            prepare=prepare,
            accelerated=accelerated,
        )
    except ValueError as exc:
        raise _unusable(entry, path, exc) from exc


def _unusable(entry: ModelEntry, path: Path, exc: Exception) -> ModelUnavailable:
    """Weights that exist but do not load: the operator reads why in the log, the tenant that
    the model cannot run here."""
    log.error("weights for model %r at %s do not load: %s", entry.name, path, exc)
    return ModelUnavailable(
        f"model {entry.name!r} is not usable on this server: its weights do not load"
    )


def _spandrel_restorer(
    entry: ModelEntry, path: Path, device: torch.device, settings: Settings, tiles: TileConfig
) -> TiledRestorer:
    from restoration.spandrel_models import UnsupportedCheckpoint, load_spandrel

    choice = choose(entry, settings, device)
    try:
        loaded = load_spandrel(
            path, device, task_names=entry.tasks or None, precision=settings.precision
        )
    except (ValueError, UnsupportedCheckpoint) as exc:
        raise _unusable(entry, path, exc) from exc
    module = loaded.descriptor.model
    return TiledRestorer(
        entry.name,
        loaded.forward,
        device,
        size=loaded.size_requirements,
        scale_for=loaded.scale_for,
        tiles=tiles,
        nbytes=_module_bytes(module),
        accelerated=accelerate(
            module,
            device,
            choice,
            settings,
            name=entry.name,
            can_compile=not loaded.changes_per_task,
        ),
    )


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


class RestorerCache:
    """Loaded models of this process, most recently used last.

    Shared by the worker's pool threads. One lock covers lookups and eviction, so the budget is
    never counted while another thread changes it; loading happens outside it, under a lock of
    the model's own, so jobs arriving together for a model not yet loaded load it once (the
    others wait for it) while jobs for models already loaded never wait on someone's load (a
    warm-up compile takes minutes). A restorer evicted while a job still holds it finishes that
    job; only the next one loads it again.
    """

    def __init__(
        self,
        settings: Settings,
        store: ModelStore,
        on_load: Callable[[ModelEntry, float], None] | None = None,
    ) -> None:
        """``on_load(entry, seconds)`` is told of every load (the worker records it as a
        metric): the engine keeps no metrics of its own."""
        self._settings = settings
        self._store = store
        self._on_load = on_load
        self._device = pick_device(settings.device)
        self._budget = settings.model_cache_mb * 1024 * 1024
        self._loaded: OrderedDict[str, Restorer] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def peek(self, entry: ModelEntry) -> Restorer | None:
        """The entry's restorer if it is loaded now (marked as just used), else None."""
        with self._lock:
            restorer = self._loaded.get(entry.name)
            if restorer is not None:
                self._loaded.move_to_end(entry.name)
            return restorer

    def get(self, entry: ModelEntry) -> Restorer:
        restorer = self.peek(entry)
        if restorer is not None:
            return restorer
        with self._lock:
            loading = self._loading.setdefault(entry.name, threading.Lock())
        with loading:
            restorer = self.peek(entry)  # loaded by the thread this one waited for
            if restorer is not None:
                return restorer
            path = self._store.local_weights(entry)
            started = time.perf_counter()
            restorer = load_restorer(entry, path, self._device, self._settings)
            if self._on_load is not None:
                self._on_load(entry, time.perf_counter() - started)
            with self._lock:
                self._loaded[entry.name] = restorer
                self._loading.pop(entry.name, None)
                log.info("loaded model %s from %s on %s", entry.name, path, self._device)
                self._evict()
            return restorer

    def _evict(self) -> None:
        while len(self._loaded) > 1 and sum(r.nbytes for r in self._loaded.values()) > self._budget:
            name, _ = self._loaded.popitem(last=False)
            log.info(
                "unloaded model %s (model cache over %d MB)", name, self._settings.model_cache_mb
            )
            if self._device.type == "cuda":
                # An accelerated module and its forward refer to each other: only the cycle
                # collector frees its weights, and the cache can only give back freed memory.
                gc.collect()
                torch.cuda.empty_cache()

    @property
    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)
