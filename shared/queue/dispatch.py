"""Sending committed jobs to workers: through Celery, or not at all in the embedded mode.

Callers commit first and dispatch after, so a job is never on the queue before its row is
visible to the worker that takes it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Protocol

from kombu.exceptions import OperationalError as BrokerError

from shared.config import Settings
from shared.queue.app import make_celery
from shared.queue.publish import broker_reachable, enqueue_restore

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    def dispatch(self, items: Sequence[tuple[uuid.UUID, str]], *, front: bool = False) -> None:
        """Send committed jobs (id, model family); ``front``: ahead of the jobs waiting."""

    def check(self) -> None: ...


class CeleryDispatcher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.app = make_celery(settings)

    def dispatch(self, items: Sequence[tuple[uuid.UUID, str]], *, front: bool = False) -> None:
        """Send after commit. If the broker is down the jobs are already safe in the database
        as ``queued``: the workers' reconciler sends them once the broker is back, so the
        request that created them still succeeds."""
        if not items:
            return
        try:
            enqueue_restore(self.app, self._settings, items, front=front)
        except (BrokerError, ConnectionError, OSError) as exc:
            log.warning("broker unreachable, %d jobs left for the reconciler: %s", len(items), exc)

    def check(self) -> None:
        broker_reachable(self.app)


class NoDispatch:
    """Embedded mode: jobs stay queued in the database until an in-process worker runs them."""

    def dispatch(self, items: Sequence[tuple[uuid.UUID, str]], *, front: bool = False) -> None:
        return None

    def check(self) -> None:
        return None


def make_dispatcher(settings: Settings) -> Dispatcher:
    return CeleryDispatcher(settings) if settings.execution == "celery" else NoDispatch()
