"""Work a worker does besides restoring, in a thread of its own so it never waits on a job
(and a job never waits on it): webhook deliveries, finishing batches, retention cleanup.

``darkroom maintenance`` runs the same thread (``workers.maintenance.serve``), so this work goes
on while every worker is scaled to zero. Each step is safe to run in many processes at once, so
it needs no election; nothing here imports the model code.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from shared import jobs, webhooks
from shared.config import Settings
from shared.jobs import retention
from shared.storage import Storage

log = logging.getLogger(__name__)


class Chores(Protocol):
    """What housekeeping uses of a process: settings, the database and the object store."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def storage(self) -> Storage: ...


def run_once(ctx: Chores, *, sweep: bool, cleanup: bool) -> None:
    webhooks.deliver_due(ctx.sessions, ctx.settings)
    if sweep:
        with ctx.sessions.begin() as session:
            jobs.sweep_batches(session)
    if cleanup:  # page by page until nothing is due: a 10,000-photo batch expires at once
        while retention.cleanup_once(ctx.sessions, ctx.storage, ctx.settings):
            pass


def start(ctx: Chores) -> threading.Event:
    """Run until the returned event is set."""
    stop = threading.Event()
    settings = ctx.settings

    def loop() -> None:
        next_sweep = next_cleanup = time.monotonic()
        while not stop.wait(settings.webhook_poll_interval_s):
            now = time.monotonic()
            sweep, cleanup = now >= next_sweep, now >= next_cleanup
            if sweep:
                next_sweep = now + settings.maintenance_interval_s
            if cleanup:
                next_cleanup = now + settings.cleanup_interval_s
            try:
                run_once(ctx, sweep=sweep, cleanup=cleanup)
            except Exception:  # an outage must not end the thread; the next pass retries
                log.exception("housekeeping pass failed")

    threading.Thread(target=loop, name="darkroom-housekeeping", daemon=True).start()
    return stop
