"""Logging for every Darkroom process: plain text for people, JSON lines for log pipelines.

Each record carries ``job_id`` when it was written while a job ran (a context variable set by
the worker), so one job's lines can be pulled out of a busy worker's log. Secrets never reach
a record: settings hold them as ``SecretStr``, keys are hashed before any query, and URLs are
logged by host only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from shared.config import Settings

_job_id: ContextVar[str | None] = ContextVar("darkroom_job_id", default=None)


@contextmanager
def job_context(job_id: object) -> Iterator[None]:
    token = _job_id.set(str(job_id))
    try:
        yield
    finally:
        _job_id.reset(token)


class _JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.job_id = _job_id.get()
        return True


def make_handler(log_format: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_JobIdFilter())
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(job_id)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
    return handler


def configure(settings: Settings, level: str | int | None = None) -> None:
    """Replace the root logger's handlers with Darkroom's; uvicorn and Celery log through it."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(settings.log_format))
    root.setLevel(level or settings.log_level.upper())
