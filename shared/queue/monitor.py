"""The Celery app Flower watches with: ``celery --app shared.queue.monitor:app flower``.

Flower needs the broker and the configuration, not the tasks: ``workers.celery_app`` registers
them by importing the model code, torch and all (over 600 MiB resident before Flower serves a
page), which Flower's small pod cannot hold. Workers' events carry the task names Flower shows.
"""

from __future__ import annotations

from shared.queue.app import get_celery

app = get_celery()
