"""The embedded worker: no broker, so it finds queued jobs in the database itself.

Claiming is the same conditional update the Celery path uses, so several pollers (or a poller
and ``darkroom submit``) never run one job twice.
"""

from __future__ import annotations

import logging
import time

from shared import jobs
from shared.config import Settings
from shared.errors import RetryLater
from shared.queue import NoDispatch
from workers.context import WorkerContext, start_process
from workers.pipeline import run_job

log = logging.getLogger(__name__)


def poll_once(ctx: WorkerContext, limit: int = 20) -> int:
    """Run up to ``limit`` queued jobs, oldest first; returns how many this call ran."""
    with ctx.sessions() as session:
        job_ids = jobs.queued_ids(session, limit)
    ran = 0
    for job_id in job_ids:
        try:
            if run_job(job_id, ctx) is not None:
                ran += 1
        except RetryLater as retry:
            log.warning("job %s will be retried: %s", job_id, retry)
    return ran


def poll_forever(settings: Settings, interval_s: float = 1.0) -> None:
    ctx = WorkerContext.build(settings)
    # Requeued jobs are found by the poll itself; nothing needs sending.
    start_process(ctx, NoDispatch())
    while True:
        if not poll_once(ctx):
            time.sleep(interval_s)
