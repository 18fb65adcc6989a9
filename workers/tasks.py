"""Celery tasks: thin wrappers that hand a job id to the pipeline."""

from __future__ import annotations

import logging
import uuid

from celery import Task
from celery.signals import worker_process_init

from shared.queue import RESTORE_TASK, get_celery
from shared.service import make_dispatcher
from shared.settings import get_settings
from workers import maintenance
from workers.pipeline import RetryLater, WorkerContext, run_job

log = logging.getLogger(__name__)
app = get_celery()
_context: WorkerContext | None = None


def context() -> WorkerContext:
    global _context
    if _context is None:
        _context = WorkerContext.build(get_settings())
    return _context


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Build the context (and load preloaded models) in the worker process, never at import,
    so no CUDA state exists before a fork."""
    ctx = context()
    maintenance.start(ctx, make_dispatcher(ctx.settings))
    for name in ctx.settings.preload_models:
        ctx.restorers.get(ctx.models.resolve(name))


@app.task(name=RESTORE_TASK, bind=True, max_retries=None)
def restore(self: Task, job_id: str) -> str | None:
    try:
        status = run_job(uuid.UUID(job_id), context())
    except RetryLater as retry:
        raise self.retry(countdown=retry.countdown) from retry
    return status.value if status else None
