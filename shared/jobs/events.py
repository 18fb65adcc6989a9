"""What a job owes when it finishes: its webhook event and, as the last job of a batch, the
batch's. Written in the transaction that finished the job."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from shared.db.tables import Job, JobStatus
from shared.jobs.batches import finish_batch_if_done
from shared.webhooks.outbox import queue_event


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "status": job.status.value,
        "model": job.model,
        "input_key": job.input_key,
        "output_bucket": job.output_bucket,
        "output_key": job.output_key,
        "error": {"code": job.error_code, "message": job.error_message}
        if job.status == JobStatus.failed
        else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        # Whether a person should look at the result, and why (docs/review.md).
        "review": {"flagged": job.flagged, "reasons": job.review_reasons or []},
    }


def job_finished(
    session: Session, job_id: uuid.UUID, *, has_webhook: bool, batch_id: uuid.UUID | None
) -> None:
    """Called in the transaction that moved the job to a final state, with what that update
    returned, so a job owing nothing costs no query."""
    if has_webhook:
        job = session.get(Job, job_id, populate_existing=True)
        if job is not None and job.webhook_url:
            event = f"job.{job.status.value}"
            queue_event(session, job.tenant_id, job.webhook_url, event, job_payload(job))
    if batch_id is not None:
        finish_batch_if_done(session, batch_id)
