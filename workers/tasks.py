"""Celery tasks: thin wrappers that hand a job id to the pipeline."""

from __future__ import annotations

import logging
import threading
import uuid

from celery import Task
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.signals import worker_process_init, worker_ready

from shared.config import get_settings
from shared.errors import RetryLater
from shared.queue import RESTORE_TASK, get_celery, make_dispatcher
from workers import housekeeping, maintenance, metrics
from workers.pipeline import WorkerContext, run_job

log = logging.getLogger(__name__)
app = get_celery()
_context: WorkerContext | None = None
_context_lock = threading.Lock()
_warmed = threading.Event()
_warm_lock = threading.Lock()


def context() -> WorkerContext:
    """The process's one context, built once even when pool threads ask at the same moment."""
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext.build(get_settings())
        return _context


@worker_process_init.connect
def _warm_up(**_: object) -> None:
    """Build the context (and load preloaded models) in the worker process, never at import,
    so no CUDA state exists before a fork. Once per process, whichever signal comes."""
    with _warm_lock:
        if _warmed.is_set():
            return
        _warmed.set()
    ctx = context()
    metrics.serve(ctx.settings)
    maintenance.start(ctx, make_dispatcher(ctx.settings))
    housekeeping.start(ctx)
    for name in ctx.settings.preload_models:
        ctx.restorers.get(ctx.models.resolve(name))


@worker_ready.connect
def _warm_up_threads(sender: object = None, **_: object) -> None:
    """The solo and prefork pools send ``worker_process_init``; the threads pool (a pipelined
    worker, ``worker_concurrency`` above 1) does not, so its heartbeats start here."""
    if isinstance(getattr(sender, "pool", None), ThreadsPool):
        _warm_up()


@app.task(name=RESTORE_TASK, bind=True, max_retries=None)
def restore(self: Task, job_id: str) -> str | None:
    try:
        status = run_job(uuid.UUID(job_id), context(), retries=self.request.retries or 0)
    except RetryLater as retry:
        raise self.retry(countdown=retry.countdown) from retry
    return status.value if status else None
