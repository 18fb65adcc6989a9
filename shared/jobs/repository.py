"""Reading and creating jobs and batches: every query about them that changes no status.

Functions flush but do not commit: the caller's unit of work commits, and only then are
messages sent.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.orm import Session

from shared.config import DEFAULT_TENANT
from shared.db.tables import Batch, Job, JobStatus, utcnow
from shared.errors import BatchNotFound, InvalidRequest, JobNotFound


def create_job(
    session: Session,
    *,
    model: str,
    input_bucket: str,
    input_key: str,
    options: dict[str, Any],
    idempotency_key: str | None = None,
    request_digest: str | None = None,
    tenant_id: str = DEFAULT_TENANT,
    webhook_url: str | None = None,
    batch_id: uuid.UUID | None = None,
    redo_of: uuid.UUID | None = None,
) -> Job:
    job = Job(
        batch_id=batch_id,
        redo_of=redo_of,
        request_digest=request_digest,
        tenant_id=tenant_id,
        webhook_url=webhook_url,
        model=model,
        input_bucket=input_bucket,
        input_key=input_key,
        options=options,
        idempotency_key=idempotency_key,
        status=JobStatus.queued,
    )
    session.add(job)
    session.flush()
    return job


def find_by_idempotency_key(session: Session, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.idempotency_key == key))


def find_batch_by_idempotency_key(session: Session, key: str) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.idempotency_key == key))


def create_batch(
    session: Session,
    *,
    model: str,
    options: dict[str, Any],
    inputs: Sequence[tuple[str, str]],
    input_prefix: str | None,
    tenant_id: str = DEFAULT_TENANT,
    webhook_url: str | None = None,
    idempotency_key: str | None = None,
    request_digest: str | None = None,
) -> tuple[Batch, list[uuid.UUID]]:
    """Insert a batch and its jobs with one multi-row INSERT, not a round trip per job."""
    batch = Batch(
        idempotency_key=idempotency_key,
        request_digest=request_digest,
        tenant_id=tenant_id,
        model=model,
        options=options,
        input_prefix=input_prefix,
        job_count=len(inputs),
        webhook_url=webhook_url,
    )
    session.add(batch)
    session.flush()
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": uuid.uuid4(),
            "tenant_id": tenant_id,
            "batch_id": batch.id,
            "status": JobStatus.queued,
            "model": model,
            "options": options,
            "input_bucket": bucket,
            "input_key": key,
            "progress": 0.0,
            "attempts": 0,
            "cancel_requested": False,
            "created_at": now,
        }
        for bucket, key in inputs
    ]
    if rows:
        session.execute(insert(Job), rows)
    return batch, [uuid.UUID(str(row["id"])) for row in rows]


def get_job(session: Session, job_id: uuid.UUID, tenant_id: str | None = None) -> Job:
    """The job, if it exists and belongs to ``tenant_id`` (None: any tenant, for workers and
    operators). Another tenant's job is reported missing, not forbidden: ids leak nothing."""
    job = session.get(Job, job_id)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        raise JobNotFound(f"job {job_id} not found")
    return job


def get_batch(session: Session, batch_id: uuid.UUID, tenant_id: str | None = None) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None or (tenant_id is not None and batch.tenant_id != tenant_id):
        raise BatchNotFound(f"batch {batch_id} not found")
    return batch


def count_active(session: Session, tenant_id: str) -> int:
    """Jobs of a tenant still queued or running: what its quota counts."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Job)
            .where(
                Job.tenant_id == tenant_id, Job.status.in_([JobStatus.queued, JobStatus.running])
            )
        )
        or 0
    )


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|", 1)
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor") from None


def list_jobs(
    session: Session,
    *,
    tenant_id: str | None = None,
    status: JobStatus | None = None,
    batch_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated on (created_at, id) so pages stay stable under inserts."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if tenant_id is not None:
        query = query.where(Job.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Job.status == status)
    if batch_id is not None:
        query = query.where(Job.batch_id == batch_id)
    if cursor:
        created, job_id = decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    jobs = list(session.scalars(query))
    next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def queued_before(
    session: Session, seconds: float, limit: int = 5000
) -> list[tuple[uuid.UUID, str]]:
    """(id, model) of jobs queued for longer than ``seconds``, oldest first."""
    cutoff = utcnow() - timedelta(seconds=seconds)
    rows = session.execute(
        select(Job.id, Job.model)
        .where(Job.status == JobStatus.queued, Job.created_at < cutoff)
        .order_by(Job.created_at)
        .limit(limit)
    )
    return [(job_id, model) for job_id, model in rows]


def queued_ids(session: Session, limit: int) -> list[uuid.UUID]:
    """The oldest queued jobs: what the embedded worker runs next."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.status == JobStatus.queued)
            .order_by(Job.created_at)
            .limit(limit)
        )
    )


def status_counts(
    session: Session, job_ids: Collection[uuid.UUID] | None = None
) -> dict[JobStatus, int]:
    """Jobs per status, of ``job_ids`` or of every job (what metrics report)."""
    query = select(Job.status, func.count()).group_by(Job.status)
    if job_ids is not None:
        query = query.where(Job.id.in_(list(job_ids)))
    return {JobStatus(status): count for status, count in session.execute(query).all()}


def jobs_of_batches(session: Session, batch_ids: Collection[uuid.UUID]) -> list[Job]:
    """Every job of these batches, in the order they were created."""
    return list(
        session.scalars(
            select(Job).where(Job.batch_id.in_(list(batch_ids))).order_by(Job.created_at)
        )
    )
