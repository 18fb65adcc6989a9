"""Turning a model entry and its weights file into a :class:`~restoration.restorers.TiledRestorer`.

Loading includes the warm-up that compiles and autotunes the model for its tile shape where that
was chosen (``restoration.device.acceleration``), so no job pays for it. A model never runs on
random weights: missing or unusable weights are ``ModelUnavailable``, whose message a tenant
reads (the model's name, no server path); the file's path and what the loader said go to the
log for the operator.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import torch

from restoration.architectures import ARCHITECTURES, OwnArchitecture, tile_requirements
from restoration.device import allocator
from restoration.device.acceleration import (
    accelerate,
    choose,
)
from restoration.device.precision import autocast, finite_or_float32
from restoration.photo_passes import (
    ExposureNetwork,
    LocalExposureNetwork,
    PhotoInputsNetwork,
    global_gain,
    local_exposure,
    photo_inputs,
)
from restoration.restorers import Restorer, TiledRestorer, half_dtype
from restoration.tile_plan import TileConfig
from shared.catalogue import OWN_ARCHITECTURES, ModelEntry
from shared.config import Settings
from shared.errors import ModelUnavailable

log = logging.getLogger(__name__)


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
