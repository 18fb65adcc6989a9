"""The broker: the Celery app (``app``), publishing restore messages (``publish``), sending
committed jobs or not (``dispatch``), and reading what Redis still holds (``contents``).

Messages carry job ids only; the database says everything else about a job.
"""

from shared.queue.app import FRONT, NORMAL, RESTORE_TASK, get_celery, make_celery, queue_lists
from shared.queue.contents import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    job_ids_in_broker,
    queue_depths,
)
from shared.queue.dispatch import CeleryDispatcher, Dispatcher, NoDispatch, make_dispatcher
from shared.queue.publish import PUBLISH_BATCH, broker_reachable, enqueue_restore

__all__ = [
    "FRONT",
    "NORMAL",
    "queue_lists",
    "PUBLISH_BATCH",
    "RESTORE_TASK",
    "UNACKED_INDEX_KEY",
    "UNACKED_KEY",
    "CeleryDispatcher",
    "Dispatcher",
    "NoDispatch",
    "broker_reachable",
    "enqueue_restore",
    "get_celery",
    "job_ids_in_broker",
    "make_celery",
    "make_dispatcher",
    "queue_depths",
]
