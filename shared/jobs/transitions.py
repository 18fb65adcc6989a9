"""Every status transition of a job.

Transitions are conditional updates (``UPDATE jobs SET status='running' WHERE id=:id AND
status='queued'``) so a redelivered message, a retry or a cancel racing a worker can never move a
job backwards or finish it twice. A transition into a final state writes the events it owes in
the same transaction (``shared.jobs.events``). Functions flush but do not commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from shared.db.tables import FINISHED, TIMINGS, Job, JobStatus, utcnow
from shared.errors import Conflict, ErrorCode
from shared.jobs import events
from shared.jobs.repository import get_job
from shared.review import Reason


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
    delivery already took it or it was cancelled. The previous attempt's error stays (the API
    shows it as ``last_error``) until the job finishes."""
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
            fail(
                session, job_id, code=ErrorCode.worker_lost, message=f"{lost} ({attempts} attempts)"
            )
        elif _transition(
            session,
            job_id,
            [JobStatus.running],
            status=JobStatus.queued,
            error_code=ErrorCode.worker_lost.value,
            error_message=lost,
            heartbeat_at=None,
        ):
            requeued.append((job_id, model))
    return requeued


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
    quality: dict[str, Any] | None = None,
    reasons: Sequence[Reason] = (),
    previews: tuple[str, str] | None = None,
    measure_error: str | None = None,
) -> bool:
    """running -> succeeded; called only after the result object (and its previews) is fully
    written. ``reasons``: the review rules its ``quality`` tripped, which flag it;
    ``measure_error``: why the quality signals or previews are missing, if they are."""
    before, after = previews or (None, None)
    return _finish(
        session,
        job_id,
        [JobStatus.running],
        status=JobStatus.succeeded,
        error_code=None,  # an earlier attempt's error is history once the job succeeds
        error_message=None,
        output_bucket=output_bucket,
        output_key=output_key,
        progress=1.0,
        finished_at=utcnow(),
        quality=quality,
        measure_error=measure_error,
        flagged=bool(reasons),
        flags=",".join(["", *(reason["rule"] for reason in reasons), ""]) if reasons else None,
        review_reasons=list(reasons) or None,
        before_preview_key=before,
        after_preview_key=after,
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
        events.job_finished(
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
        error_code=str(code),
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
        error_code=str(code),
        error_message=message[:4000],
    )


def mark_cancelled(session: Session, job_id: uuid.UUID) -> bool:
    return _finish(
        session,
        job_id,
        [JobStatus.queued, JobStatus.running],
        status=JobStatus.cancelled,
        finished_at=utcnow(),
        error_code=ErrorCode.cancelled.value,
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
