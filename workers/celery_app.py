"""Entry point for ``celery -A workers.celery_app worker``: the shared app with tasks attached."""

from shared.queue import get_celery
from workers import tasks  # noqa: F401  (registers the tasks on the app)

app = get_celery()
