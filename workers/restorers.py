"""Turning a catalogue entry into a loaded model that restores a whole image.

Models load once per process and stay warm: loading MIRNet's 32 M parameters costs far more
than restoring one photo. Weights come from the model directory, or from the model store bucket
into that directory; a model never runs on random weights: missing weights are
``ModelUnavailable``, with the download address and the setting to fill in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from shared.catalogue import ModelEntry, get_entry
from shared.errors import InputNotFound, ModelUnavailable
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger(__name__)

StopCheck = Callable[[], None]
"""Called between units of work; raises ``JobCancelled`` to stop a cancelled job."""


class Restorer(Protocol):
    name: str

    def restore(self, pixels: np.ndarray, check_stop: StopCheck | None = None) -> np.ndarray:
        """H x W x 3 float32 RGB in [0, 1] in, the same shape out."""
        ...


def pick_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


class WholeImageRestorer:
    """Full resolution in one forward pass: pad to the architecture's multiple, run, crop back.

    The reference MIRNet project resizes to 400 px before inference; Darkroom never downsizes.
    """

    def __init__(self, name: str, model: torch.nn.Module, device: torch.device) -> None:
        self.name = name
        self.model = model.to(device).eval()
        self.device = device
        self.multiple: int = getattr(model, "size_multiple", 8)

    def restore(self, pixels: np.ndarray, check_stop: StopCheck | None = None) -> np.ndarray:
        height, width = pixels.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]
        tensor = tensor.to(self.device, dtype=torch.float32)
        pad_h = (-height) % self.multiple
        pad_w = (-width) % self.multiple
        if pad_h or pad_w:
            # Reflection keeps edge statistics natural; it needs the pad smaller than the side.
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            tensor = F.pad(tensor, (0, pad_w, 0, pad_h), mode=mode)
        with torch.inference_mode():
            restored = self.model(tensor)[:, :, :height, :width].clamp(0.0, 1.0)
            return restored[0].permute(1, 2, 0).float().cpu().numpy()


def _unavailable(entry: ModelEntry, path: Path, settings: Settings) -> ModelUnavailable:
    where = " or ".join(entry.source_urls) or "its publisher"
    store = (
        f", or upload it to s3://{settings.model_bucket}/{settings.model_prefix}"
        f"{entry.weights_file}"
        if settings.model_bucket
        else ""
    )
    return ModelUnavailable(
        f"weights for model {entry.name!r} are not installed: download the published checkpoint "
        f"from {where} and save it as {path.resolve()} "
        f"(the folder is set by DARKROOM_MODEL_DIR){store}"
    )


BUNDLED_WEIGHTS = Path(__file__).with_name("weights")
"""Weights shipped inside the package (Darkroom's own models), used when no override exists."""


def weights_path(entry: ModelEntry, settings: Settings, storage: Storage | None) -> Path:
    """Local path of the entry's checkpoint: the model directory first (an operator's file wins),
    then the weights bundled with Darkroom, then the model store, fetched once."""
    assert settings.model_dir is not None
    path = settings.model_dir / entry.weights_file
    if path.is_file():
        return path
    if entry.bundled and (BUNDLED_WEIGHTS / entry.weights_file).is_file():
        return BUNDLED_WEIGHTS / entry.weights_file
    if settings.model_bucket and storage is not None:
        key = f"{settings.model_prefix}{entry.weights_file}"
        try:
            data = storage.get(settings.model_bucket, key)
        except InputNotFound:
            raise _unavailable(entry, path, settings) from None
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(data)
        part.replace(path)
        log.info("fetched weights for %s from s3://%s/%s", entry.name, settings.model_bucket, key)
        return path
    raise _unavailable(entry, path, settings)


def _loader(architecture: str) -> Callable[[Path], torch.nn.Module]:
    if architecture == "mirnet":
        from workers.archs.mirnet import load_mirnet

        return load_mirnet
    if architecture == "nafnet-night":
        from workers.archs.nafnet_night import load_night

        return load_night
    raise ModelUnavailable(f"architecture {architecture!r} is not supported by this worker")


def load_restorer(entry: ModelEntry, path: Path, device: torch.device) -> Restorer:
    try:
        model = _loader(entry.architecture)(path)
    except ValueError as exc:
        raise ModelUnavailable(f"weights for model {entry.name!r} at {path}: {exc}") from exc
    return WholeImageRestorer(entry.name, model, device)


class RestorerCache:
    """Loaded models of this process, keyed by name; loading is serialised by a lock."""

    def __init__(self, settings: Settings, storage: Storage | None) -> None:
        self._settings = settings
        self._storage = storage
        self._device = pick_device(settings.device)
        self._loaded: dict[str, Restorer] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Restorer:
        with self._lock:
            restorer = self._loaded.get(name)
            if restorer is None:
                entry = get_entry(name)
                path = weights_path(entry, self._settings, self._storage)
                restorer = load_restorer(entry, path, self._device)
                self._loaded[name] = restorer
                log.info("loaded model %s from %s on %s", name, path, self._device)
            return restorer
