"""Deleting what Darkroom no longer owes anyone: results, and the uploads they came from,
once ``result_retention_days`` have passed since their job finished.

Photos a client put in the input bucket itself are its own and are never touched; only
objects Darkroom created (results, and uploads made through the API under ``uploads/``) are.
The job rows stay, with ``result_expired_at`` set, so history and batch counts remain.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.models import utcnow
from shared.service import is_upload_key
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger(__name__)


def cleanup_once(sessions: sessionmaker[Session], storage: Storage, settings: Settings) -> int:
    """Expire one page of old results; returns how many jobs were expired (0: nothing due or
    retention is off). Deleting is idempotent, so workers running this together are safe."""
    if settings.result_retention_days <= 0:
        return 0
    cutoff = utcnow() - timedelta(days=settings.result_retention_days)
    with sessions() as session:
        due = jobs.expired_results(session, cutoff)
    for job_id, out_bucket, out_key, in_bucket, in_key in due:
        if out_bucket and out_key:
            storage.delete(out_bucket, out_key)
        if is_upload_key(in_key):
            storage.delete(in_bucket, in_key)
        with sessions.begin() as session:
            jobs.mark_result_expired(session, job_id)
    if due:
        log.info("retention: expired the results of %d jobs finished before %s", len(due), cutoff)
    return len(due)
