"""Celery tasks: thin wrappers that hand a job id to the pipeline."""

from __future__ import annotations

import logging
import threading
import uuid

from celery import Task
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.signals import worker_process_init, worker_ready

from shared.config import Settings, get_settings
from shared.errors import RetryLater
from shared.queue import RESTORE_TASK, get_celery, make_dispatcher
from workers.context import WorkerContext, start_process
from workers.pipeline import run_job

log = logging.getLogger(__name__)
app = get_celery()
_context: WorkerContext | None = None
_context_lock = threading.Lock()
_settings: Settings | None = None
_warmed = threading.Event()
_warm_lock = threading.Lock()


def use_settings(settings: Settings) -> None:
    """The settings this process's context is built with, instead of the environment's: what
    ``darkroom worker`` decided (the pool's size from ``--concurrency``, say) reaches the pool's
    processes, which inherit it when they fork, without writing ``os.environ``."""
    global _settings
    _settings = settings


def context() -> WorkerContext:
    """The process's one context, built once even when pool threads ask at the same moment."""
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext.build(_settings or get_settings())
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
    start_process(ctx, make_dispatcher(ctx.settings))
    for name in ctx.settings.preload_models:
        ctx.restorers.get(ctx.catalogue.resolve(name))


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
