"""A batch's progress, and finishing it once its last job is done."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from shared.db.tables import FINISHED, Batch, Job, JobStatus, utcnow
from shared.jobs.repository import get_batch
from shared.webhooks.outbox import queue_event

_ACTIVE = [JobStatus.queued, JobStatus.running]


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
    throughput = _original_throughput(session, batch_id)
    eta = (total - done) / throughput if throughput else None
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


def _original_throughput(session: Session, batch_id: uuid.UUID) -> float | None:
    """Finished jobs per second over the batch's original run: from its first start to its
    last finish (or now, while it runs). Redos, which a person asks for hours or days later,
    are left out: counted in, each would stretch the window to its own end and make the same
    run look slower after every review."""
    original = (Job.batch_id == batch_id, Job.redo_of.is_(None))
    first_start, last_finish, total, done = session.execute(
        select(
            func.min(Job.started_at),
            func.max(Job.finished_at),
            func.count(),
            func.count().filter(Job.status.in_(list(FINISHED))),
        ).where(*original)
    ).one()
    if first_start is None or not done:
        return None
    end = last_finish if done == total and last_finish else utcnow()
    elapsed = (_aware(end) - _aware(first_start)).total_seconds()
    return done / elapsed if elapsed > 0 else None


def _aware(value: datetime) -> datetime:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def finish_batch_if_done(session: Session, batch_id: uuid.UUID) -> bool:
    """Mark the batch finished once no job of it is left; only the caller whose update wins
    queues the batch's webhook, so it is sent once however many workers race here."""
    if session.scalar(select(exists().where(Job.batch_id == batch_id, Job.status.in_(_ACTIVE)))):
        return False
    won = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.finished_at.is_(None))
        .values(finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        return False
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is not None and batch.webhook_url:
        summary = summarize_batch(session, batch_id)
        data = {"id": str(batch_id), "total": summary.total, "counts": summary.counts}
        queue_event(session, batch.tenant_id, batch.webhook_url, "batch.finished", data)
    return True


def sweep_batches(session: Session) -> int:
    """Finish batches whose last two jobs ended in concurrent transactions (each saw the other
    still running, so neither finished the batch)."""
    open_batches = session.scalars(
        select(Batch.id).where(
            Batch.finished_at.is_(None),
            ~exists().where(Job.batch_id == Batch.id, Job.status.in_(_ACTIVE)),
        )
    ).all()
    return sum(finish_batch_if_done(session, batch_id) for batch_id in open_batches)
