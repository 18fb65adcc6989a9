"""Entry point for ``celery -A workers.celery_app worker``: the shared app with tasks attached."""

from __future__ import annotations

from celery.signals import setup_logging

from shared import logs
from shared.config import get_settings
from shared.queue import get_celery

app = get_celery()


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: object) -> None:
    """Darkroom's handlers (text or JSON) instead of Celery's own."""
    logs.configure(get_settings(), loglevel)
