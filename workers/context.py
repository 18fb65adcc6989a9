"""A worker process's state, built once and shared by every job it runs, and what the process
starts beside its jobs. Three kinds of process run jobs (a Celery worker, the embedded poller,
``darkroom submit`` in the embedded mode): each builds one :class:`WorkerContext` and calls
:func:`start_process`, so none of them forgets the heartbeats."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from restoration.cache import RestorerCache
from restoration.device.batching import DeviceBatcher, DeviceThread
from restoration.device.placement import pick_device
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.queue import Dispatcher
from shared.storage import Storage, make_storage
from workers import housekeeping, maintenance, metrics


class RunningJobs:
    """The ids of the jobs this process runs now.

    Pool threads add and remove ids while the heartbeat thread reads them, so every access
    holds a lock and iterating yields a snapshot (``set(running)`` stays a safe copy).
    """

    def __init__(self) -> None:
        self._ids: set[uuid.UUID] = set()
        self._lock = threading.Lock()

    def add(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._ids.add(job_id)

    def discard(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self._ids.discard(job_id)

    def __iter__(self) -> Iterator[uuid.UUID]:
        with self._lock:
            return iter(list(self._ids))

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._ids


@dataclass
class WorkerContext:
    """What a worker process builds once and reuses for every job (from every pool thread)."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    catalogue: ModelStore
    restorers: RestorerCache
    host: str = field(default_factory=socket.gethostname)
    running: RunningJobs = field(default_factory=RunningJobs)
    """Jobs this process is running now; a background thread sends their heartbeats."""
    device_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held by the one job whose restore runs now. A process drives one device, and a model
    runs fastest with the whole device to itself: with ``worker_concurrency`` above 1 the other
    jobs download, decode, encode and upload meanwhile, which keeps the device busy."""
    device_thread: DeviceThread | None = None
    """On CUDA with several jobs at once and no merged passes: the one thread every pass runs
    on, so cuDNN's per-thread plans, tuned at the warm-up, serve every job."""
    batcher: DeviceBatcher | None = None
    """Instead of ``device_lock``, when set: jobs restore at the same time and each forward pass
    waits its turn on this one device thread, sharing it with the other jobs' tiles of the
    same shape (``device_batch_tiles``)."""

    @classmethod
    def build(cls, settings: Settings) -> WorkerContext:
        storage = make_storage(settings)
        models = ModelStore(settings, storage)
        device = pick_device(settings.device)
        return cls(
            settings=settings,
            sessions=session_factory(settings.database_url),
            storage=storage,
            catalogue=models,
            restorers=RestorerCache(settings, models, on_load=metrics.model_loaded),
            batcher=DeviceBatcher(
                device,
                settings.device_batch_tiles,
                # On CUDA every merged pass takes the one shape the warm-up compiled and tuned.
                pad_merged=device.type == "cuda",
            )
            if settings.merges_passes
            else None,
            device_thread=DeviceThread()
            if device.type == "cuda"
            and settings.worker_concurrency > 1
            and not settings.merges_passes
            else None,
        )


def start_process(ctx: WorkerContext, dispatcher: Dispatcher, *, serving: bool = True) -> None:
    """Start what runs beside a process's jobs: the heartbeats of its running jobs and, while
    elected, the reaper and the reconciler (``maintenance``); for a serving worker (not a
    one-off ``darkroom submit``) also its metrics endpoint and the webhook and retention
    threads (``housekeeping``)."""
    if serving:
        metrics.serve(ctx.settings)
    maintenance.start(ctx, dispatcher)
    if serving:
        housekeeping.start(ctx)
