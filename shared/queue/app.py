"""The Celery app the API, the CLI and the workers share, configured once.

The API only *sends* tasks by name, so it never imports the worker code (or torch). Messages
carry job ids only: the worker reads everything else from the database, and Celery's result
backend stays off because job state lives in SQL.
"""

from __future__ import annotations

from functools import lru_cache

from celery import Celery

from shared.config import Settings, get_settings

RESTORE_TASK = "darkroom.restore"

FRONT, NORMAL = 0, 3
"""Message priorities. Every new job is sent at ``NORMAL``; a job handed back (its worker died)
or re-sent (the broker lost it) is sent at ``FRONT``, so it runs next instead of waiting behind
the rest of its batch. Redis has no priorities of its own: kombu keeps one list per priority,
``<queue>`` for ``FRONT`` and ``<queue>:3`` for ``NORMAL``, and workers pop them in that order."""
PRIORITY_SEP = ":"


def queue_lists(queue: str) -> list[str]:
    """The Redis lists that hold ``queue``'s messages, the ones served first first."""
    return [queue, f"{queue}{PRIORITY_SEP}{NORMAL}"]


def make_celery(settings: Settings) -> Celery:
    app = Celery("darkroom", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        # A GPU job must survive its worker dying: acknowledge only when done. Prefetch 1
        # reserves one message per pool slot: a pipelined worker (threads pool, concurrency N,
        # `darkroom worker`) holds at most N unacknowledged jobs.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "priority_steps": [FRONT, NORMAL],
            "sep": PRIORITY_SEP,
        },
        broker_connection_retry_on_startup=True,
        # A request must not hang on a dead broker: the reconciler sends what fails here.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        # Enforced by prefork only; the solo pool relies on the pipeline's own checks.
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_time_limit_s,
        task_default_queue=settings.queue_for("default"),
        worker_hijack_root_logger=False,
        # Workers report received/started/succeeded to Flower. No "sent" event per message:
        # it doubled broker traffic when a 10,000-job batch is enqueued (9.1 s -> 5.7 s).
        worker_send_task_events=True,
        task_send_sent_event=False,
    )
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())
