"""All SQL about jobs and batches, and every status transition.

Transitions are conditional updates (``UPDATE jobs SET status='running' WHERE id=:id AND
status='queued'``) so a redelivered message, a retry or a cancel racing a worker can never move a
job backwards or finish it twice. Functions flush but do not commit: the caller's unit of work
commits, and only then are messages sent.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from shared import webhooks
from shared.errors import BatchNotFound, Conflict, InvalidRequest, JobNotFound
from shared.models import DEFAULT_TENANT, FINISHED, TIMINGS, Batch, Job, JobStatus, utcnow


def create_job(
    session: Session,
    *,
    model: str,
    input_bucket: str,
    input_key: str,
    options: dict[str, Any],
    idempotency_key: str | None = None,
    tenant_id: str = DEFAULT_TENANT,
    webhook_url: str | None = None,
) -> Job:
    job = Job(
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


def create_batch(
    session: Session,
    *,
    model: str,
    options: dict[str, Any],
    inputs: Sequence[tuple[str, str]],
    input_prefix: str | None,
    tenant_id: str = DEFAULT_TENANT,
    webhook_url: str | None = None,
) -> tuple[Batch, list[uuid.UUID]]:
    """Insert a batch and its jobs with one multi-row INSERT, not a round trip per job."""
    batch = Batch(
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
    rows = [
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
    return batch, [row["id"] for row in rows]


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


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
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
        created, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    jobs = list(session.scalars(query))
    next_cursor = _encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


# --- transitions ------------------------------------------------------------------------------


def _conditional(job_id: uuid.UUID, allowed: Sequence[JobStatus], **values: Any) -> Update:
    """``UPDATE jobs SET ... WHERE id = :id AND status IN (:allowed)``: every change of a job
    goes through this, some with a ``RETURNING`` to save a round trip."""
    return (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(list(allowed)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def _transition(
    session: Session, job_id: uuid.UUID, allowed: Sequence[JobStatus], **values: Any
) -> bool:
    result = session.execute(_conditional(job_id, allowed, **values))
    return result.rowcount == 1  # type: ignore[attr-defined]


def claim(session: Session, job_id: uuid.UUID, worker_host: str) -> Job | None:
    """queued -> running, returning the claimed job in the same round trip; None when another
    delivery already took it or it was cancelled."""
    now = utcnow()
    return session.scalars(
        _conditional(
            job_id,
            [JobStatus.queued],
            status=JobStatus.running,
            attempts=Job.attempts + 1,
            worker_host=worker_host,
            started_at=now,
            heartbeat_at=now,
            progress=0.0,
            error_code=None,
            error_message=None,
        ).returning(Job)
    ).one_or_none()


def heartbeat(session: Session, job_ids: Collection[uuid.UUID]) -> None:
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.status == JobStatus.running)
            .values(heartbeat_at=utcnow())
            .execution_options(synchronize_session=False)
        )


def reap(
    session: Session, *, stale_after_s: float, max_attempts: int
) -> list[tuple[uuid.UUID, str]]:
    """Jobs whose worker stopped sending heartbeats (killed, out of memory, node lost): put
    them back to ``queued`` and return (id, model) to re-send, or fail those out of attempts.

    Each change is the same conditional update as everywhere else, so a worker that was only
    slow and finishes after all cannot be overwritten, and several reapers can run at once.
    """
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    stale = session.execute(
        select(Job.id, Job.model, Job.attempts).where(
            Job.status == JobStatus.running, Job.heartbeat_at < cutoff
        )
    ).all()
    requeued = []
    for job_id, model, attempts in stale:
        lost = "the worker running this job stopped responding"
        if attempts >= max_attempts:
            fail(session, job_id, code="worker_lost", message=f"{lost} ({attempts} attempts)")
        elif _transition(
            session,
            job_id,
            [JobStatus.running],
            status=JobStatus.queued,
            error_code="worker_lost",
            error_message=lost,
            heartbeat_at=None,
        ):
            requeued.append((job_id, model))
    return requeued


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


def record_progress(
    session: Session, job_id: uuid.UUID, progress: float, timings: dict[str, float]
) -> bool:
    """Record progress; returns whether a cancel was asked for, in the same round trip."""
    statement = _conditional(
        job_id, [JobStatus.running], progress=progress, **_timing_values(timings)
    )
    return bool(session.scalar(statement.returning(Job.cancel_requested)))


def succeed(
    session: Session,
    job_id: uuid.UUID,
    *,
    output_bucket: str,
    output_key: str,
    timings: dict[str, float],
) -> bool:
    """running -> succeeded; called only after the result object is fully written."""
    return _finish(
        session,
        job_id,
        [JobStatus.running],
        status=JobStatus.succeeded,
        output_bucket=output_bucket,
        output_key=output_key,
        progress=1.0,
        finished_at=utcnow(),
        **_timing_values(timings),
    )


def _finish(
    session: Session, job_id: uuid.UUID, allowed: Sequence[JobStatus], **values: Any
) -> bool:
    """A transition into a final state, plus the events it owes, in the same transaction:
    the job's webhook and, for the last job of a batch, the batch's."""
    statement = _conditional(job_id, allowed, **values)
    row = session.execute(statement.returning(Job.webhook_url, Job.batch_id)).first()
    if row is None:
        return False
    if row.webhook_url or row.batch_id:  # most single jobs owe nothing: no extra query
        webhooks.job_finished(
            session, job_id, has_webhook=bool(row.webhook_url), batch_id=row.batch_id
        )
    return True


def fail(
    session: Session,
    job_id: uuid.UUID,
    *,
    code: str,
    message: str,
    timings: dict[str, float] | None = None,
) -> bool:
    return _finish(
        session,
        job_id,
        [JobStatus.queued, JobStatus.running],
        status=JobStatus.failed,
        error_code=code,
        error_message=message[:4000],
        finished_at=utcnow(),
        **_timing_values(timings or {}),
    )


def requeue(session: Session, job_id: uuid.UUID, *, code: str, message: str) -> bool:
    """running -> queued before a retry, keeping the last error for operators to see."""
    return _transition(
        session,
        job_id,
        [JobStatus.running],
        status=JobStatus.queued,
        error_code=code,
        error_message=message[:4000],
    )


def mark_cancelled(session: Session, job_id: uuid.UUID) -> bool:
    return _finish(
        session,
        job_id,
        [JobStatus.queued, JobStatus.running],
        status=JobStatus.cancelled,
        finished_at=utcnow(),
        error_code="cancelled",
        error_message="cancelled by request",
    )


def cancel(session: Session, job_id: uuid.UUID, tenant_id: str | None = None) -> Job:
    """Cancel a queued job at once; ask a running one's worker to stop at its next check."""
    job = get_job(session, job_id, tenant_id)
    if job.status == JobStatus.queued and mark_cancelled(session, job_id):
        pass
    elif job.status == JobStatus.running:
        _transition(session, job_id, [JobStatus.running], cancel_requested=True)
    elif job.status in FINISHED and job.status != JobStatus.cancelled:
        raise Conflict(f"job {job_id} already {job.status.value}; nothing to cancel")
    session.refresh(job)
    return job


def cancel_requested(session: Session, job_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def _timing_values(timings: dict[str, float]) -> dict[str, float]:
    return {f"{name}_s": timings[name] for name in TIMINGS if name in timings}


# --- batches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSummary:
    batch: Batch
    counts: dict[str, int]
    total: int
    done: int
    throughput_per_s: float | None
    eta_s: float | None
    started_at: datetime | None
    finished_at: datetime | None


def summarize_batch(
    session: Session, batch_id: uuid.UUID, tenant_id: str | None = None
) -> BatchSummary:
    batch = get_batch(session, batch_id, tenant_id)
    counts = {status.value: 0 for status in JobStatus}
    for status, count in session.execute(
        select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
    ):
        counts[JobStatus(status).value] = count
    first_start, last_finish = session.execute(
        select(func.min(Job.started_at), func.max(Job.finished_at)).where(Job.batch_id == batch_id)
    ).one()
    total = sum(counts.values())
    done = sum(counts[s.value] for s in FINISHED)
    throughput = eta = None
    if first_start is not None and done:
        end = last_finish if done == total and last_finish else utcnow()
        elapsed = (_aware(end) - _aware(first_start)).total_seconds()
        if elapsed > 0:
            throughput = done / elapsed
            eta = (total - done) / throughput
    return BatchSummary(
        batch=batch,
        counts=counts,
        total=total,
        done=done,
        throughput_per_s=throughput,
        eta_s=eta,
        started_at=first_start,
        finished_at=last_finish if done == total else None,
    )


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


# --- retention --------------------------------------------------------------------------------


def expired_results(
    session: Session, older_than: datetime, limit: int = 500
) -> list[tuple[uuid.UUID, str | None, str | None, str, str]]:
    """(id, output bucket, output key, input bucket, input key) of finished jobs whose
    retention ran out and whose objects are still there, oldest first."""
    rows = session.execute(
        select(Job.id, Job.output_bucket, Job.output_key, Job.input_bucket, Job.input_key)
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
