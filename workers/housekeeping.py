"""Work a worker does besides restoring, in a thread of its own so it never waits on a job
(and a job never waits on it): webhook deliveries, finishing batches, retention cleanup."""

from __future__ import annotations

import logging
import threading
import time

from shared import jobs, webhooks
from shared.jobs import retention
from workers.pipeline import WorkerContext

log = logging.getLogger(__name__)


def run_once(ctx: WorkerContext, *, sweep: bool, cleanup: bool) -> None:
    webhooks.deliver_due(ctx.sessions, ctx.settings)
    if sweep:
        with ctx.sessions.begin() as session:
            jobs.sweep_batches(session)
    if cleanup:  # page by page until nothing is due: a 10,000-photo batch expires at once
        while retention.cleanup_once(ctx.sessions, ctx.storage, ctx.settings):
            pass


def start(ctx: WorkerContext) -> threading.Event:
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
