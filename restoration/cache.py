"""The models a process keeps loaded: loading MIRNet's 32 M parameters costs far more than
restoring one photo, so models load once per process and stay warm, the least recently used
dropped past a memory budget."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import torch

from restoration.device.placement import pick_device
from restoration.loading import load_restorer
from restoration.restorers import Restorer
from shared.catalogue import ModelEntry, ModelStore
from shared.config import Settings

log = logging.getLogger(__name__)


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
