"""Deleting what Darkroom no longer owes anyone: results, and the uploads they came from,
once ``result_retention_days`` have passed since their job finished.

Photos a client put in the input bucket itself are its own and are never touched; only
objects Darkroom created (results, and uploads made through the API under ``uploads/``) are.
The job rows stay, with ``result_expired_at`` set, so history and batch counts remain; the
previews go with their result.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.db.tables import FINISHED, Job, utcnow
from shared.storage.base import Storage
from shared.storage.keys import is_upload_key

log = logging.getLogger(__name__)


def cleanup_once(sessions: sessionmaker[Session], storage: Storage, settings: Settings) -> int:
    """Expire one page of old results; returns how many jobs were expired (0: nothing due or
    retention is off). Deleting is idempotent, so workers running this together are safe."""
    if settings.result_retention_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=settings.result_retention_days)
    with sessions() as session:
        due = expired_results(session, cutoff)
    for job_id, out_bucket, out_key, in_bucket, in_key, *previews in due:
        if out_bucket and out_key:
            storage.delete(out_bucket, out_key)
        for preview in previews:
            if out_bucket and preview:
                storage.delete(out_bucket, preview)
        if is_upload_key(in_key):
            storage.delete(in_bucket, in_key)
        with sessions.begin() as session:
            mark_result_expired(session, job_id)
    if due:
        log.info("retention: expired the results of %d jobs finished before %s", len(due), cutoff)
    return len(due)


def expired_results(
    session: Session, older_than: datetime, limit: int = 500
) -> list[tuple[uuid.UUID, str | None, str | None, str, str, str | None, str | None]]:
    """(id, output bucket, output key, input bucket, input key, before and after preview
    keys) of finished jobs whose retention ran out and whose objects are still there, oldest
    first."""
    rows = session.execute(
        select(
            Job.id,
            Job.output_bucket,
            Job.output_key,
            Job.input_bucket,
            Job.input_key,
            Job.before_preview_key,
            Job.after_preview_key,
        )
        .where(
            Job.status.in_(list(FINISHED)),
            Job.finished_at < older_than,
            Job.result_expired_at.is_(None),
        )
        .order_by(Job.finished_at)
        .limit(limit)
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def mark_result_expired(session: Session, job_id: uuid.UUID) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(result_expired_at=utcnow())
        .execution_options(synchronize_session=False)
    )
