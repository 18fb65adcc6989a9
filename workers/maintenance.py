"""Recovering jobs whose worker died: a background thread in every worker.

A worker killed mid-job (SIGKILL, out of memory, a lost node) leaves its job ``running`` and
its message unacknowledged until Redis's visibility timeout, hours later. So each worker
process sends heartbeats for the jobs it runs, and the worker elected to look after the others
puts a job gone quiet back to ``queued`` and sends it again: it finishes minutes later on a live
worker, once (the conditional updates in ``shared.jobs`` let only one delivery finish it). The
same worker re-sends queued jobs whose message the broker lost.

Only one worker per deployment (queue prefix) reaps and reconciles at a time: it holds an
advisory lock (``shared.db.locks``), and when it dies the next worker to ask takes over at its
next pass. A hundred workers each scanning the jobs table every half minute would load the
database for nothing, and race each other to send the same jobs.

Workers scaled to zero (KEDA) run no thread at all, and a job whose message was lost is then
the one job nothing would ever start a worker for. So ``darkroom maintenance`` (:func:`serve`)
runs the same passes, with webhooks and retention (``workers.housekeeping``), in a process of
its own that stays up whatever the queues hold. It is in the same election as the workers.
Nothing here imports the model code (``workers.pipeline``, torch): that process runs in a small
pod on the API's image.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.locks import AdvisoryLock
from shared.errors import DarkroomError
from shared.queue import Dispatcher, job_ids_in_broker, make_dispatcher
from shared.storage import Storage, make_storage
from workers import housekeeping

log = logging.getLogger(__name__)


class Services(Protocol):
    """What looking after jobs uses of a process: the database and the catalogue (which queue a
    model's jobs go to), never a model. A worker's context has these, and so does
    :class:`Upkeep`."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def catalogue(self) -> ModelStore: ...


class Running(Services, Protocol):
    """A process that runs jobs, whose heartbeats say it is alive."""

    @property
    def running(self) -> Iterable[uuid.UUID]: ...


@dataclass(frozen=True)
class Upkeep:
    """What ``darkroom maintenance`` builds once: a worker's context with no loaded model and
    no device."""

    settings: Settings
    sessions: sessionmaker[Session]
    storage: Storage
    catalogue: ModelStore

    @classmethod
    def build(cls, settings: Settings) -> Upkeep:
        storage = make_storage(settings)
        return cls(
            settings=settings,
            sessions=session_factory(settings.database_url),
            storage=storage,
            catalogue=ModelStore(settings, storage),
        )


def _families(
    ctx: Services, jobs_and_models: list[tuple[uuid.UUID, str]]
) -> list[tuple[uuid.UUID, str]]:
    """(job id, queue family) to send; a job whose model was removed meanwhile fails."""
    items = []
    for job_id, model in jobs_and_models:
        try:
            items.append((job_id, ctx.catalogue.chain(model)[0][0].family))
        except DarkroomError as exc:
            with ctx.sessions.begin() as session:
                jobs.fail(session, job_id, code=exc.code, message=exc.message)
    return items


def reap_once(ctx: Services, dispatcher: Dispatcher) -> int:
    """Requeue (and re-send) jobs whose worker stopped; returns how many were requeued."""
    settings = ctx.settings
    with ctx.sessions.begin() as session:
        requeued = jobs.reap(
            session, stale_after_s=settings.stale_after_s, max_attempts=settings.max_attempts
        )
    items = _families(ctx, requeued)
    if items:
        dispatcher.dispatch(items, front=True)  # it waited its turn once already
        log.warning("requeued %d jobs whose worker stopped: %s", len(items), items)
    return len(items)


def reconcile_once(ctx: Services, dispatcher: Dispatcher) -> int:
    """Re-send queued jobs whose message the broker lost (a restarted or flushed Redis).

    Only jobs queued for ``reconcile_after_s`` count, so a job committed a moment ago whose
    message is still being sent is left alone; a job whose message is present is never sent
    twice. Returns how many were re-sent.
    """
    settings = ctx.settings
    if settings.execution != "celery":
        return 0
    with ctx.sessions() as session:
        candidates = jobs.queued_before(session, settings.reconcile_after_s)
    if not candidates:
        return 0
    items = _families(ctx, candidates)
    queues = {settings.queue_for(family) for _, family in items}
    try:
        present = job_ids_in_broker(
            settings.broker_url, queues, delivered_within_s=settings.reconcile_after_s
        )
    except RedisError as exc:  # down or restarting: nothing can be sent now either
        log.warning("broker unreachable, reconciling on a later pass: %s", exc)
        return 0
    if present is None:
        return 0
    missing = [(job_id, family) for job_id, family in items if str(job_id) not in present]
    if missing:
        dispatcher.dispatch(missing, front=True)
        log.warning("re-sent %d queued jobs the broker no longer held", len(missing))
    return len(missing)


def beat_once(ctx: Running) -> None:
    """Mark this process's running jobs alive."""
    with ctx.sessions.begin() as session:
        jobs.heartbeat(session, set(ctx.running))


def election(settings: Settings) -> AdvisoryLock:
    """The lock whose holder reaps and reconciles for this deployment (its queue prefix)."""
    return AdvisoryLock(settings.database_url, f"darkroom-maintenance:{settings.queue_prefix}")


def look_after_others(ctx: Services, dispatcher: Dispatcher, lock: AdvisoryLock) -> bool:
    """Reap and reconcile if this worker holds ``lock``; returns whether it did."""
    if not lock.held():
        return False
    reap_once(ctx, dispatcher)
    reconcile_once(ctx, dispatcher)
    return True


def start(ctx: Running, dispatcher: Dispatcher) -> threading.Event:
    """Send heartbeats every ``heartbeat_interval_s`` and, if elected, reap every
    ``maintenance_interval_s``, in a thread of its own: a forward pass that takes minutes must
    not look like a dead worker. Set the returned event to stop (it gives up the election)."""
    stop = threading.Event()
    settings = ctx.settings
    lock = election(settings)

    def loop() -> None:
        next_reap = time.monotonic() + settings.maintenance_interval_s
        while not stop.wait(min(settings.heartbeat_interval_s, settings.maintenance_interval_s)):
            try:
                beat_once(ctx)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + settings.maintenance_interval_s
                    look_after_others(ctx, dispatcher, lock)
            except Exception:  # a database hiccup must not kill the thread
                log.exception("maintenance pass failed")
        lock.release()

    threading.Thread(target=loop, name="darkroom-maintenance", daemon=True).start()
    return stop


def serve(settings: Settings, stop: threading.Event) -> None:
    """``darkroom maintenance``: until ``stop`` is set, reap and reconcile every
    ``maintenance_interval_s`` while elected (asking again at each pass while another process
    holds the lock), and deliver webhooks, finish batches and expire results in
    ``workers.housekeeping``'s thread. The first pass runs at once: a process that has just
    started (a pod rescheduled) may be the only one left."""
    ctx = Upkeep.build(settings)
    dispatcher = make_dispatcher(settings)
    lock = election(settings)
    chores = housekeeping.start(ctx)
    try:
        while True:
            try:
                look_after_others(ctx, dispatcher, lock)
            except Exception:  # an outage must not end the process; the next pass retries
                log.exception("maintenance pass failed")
            if stop.wait(settings.maintenance_interval_s):
                break
    finally:
        chores.set()
        lock.release()
