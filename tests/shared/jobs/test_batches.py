"""A batch's progress over a real database: throughput is the original run's."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from shared import jobs
from shared.config import Settings
from shared.db.engine import session_scope
from shared.db.tables import Job, utcnow


def _run(settings: Settings, job_id, start_s: float, end_s: float, base) -> None:  # type: ignore[no-untyped-def]
    """Claim and finish the job, then set when it ran: seconds after ``base``."""
    with session_scope(settings.database_url) as session:
        assert jobs.claim(session, job_id, "test")
        assert jobs.succeed(
            session, job_id, output_bucket=settings.output_bucket, output_key="r", timings={}
        )
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                started_at=base + timedelta(seconds=start_s),
                finished_at=base + timedelta(seconds=end_s),
            )
        )


def test_throughput_is_the_original_runs_and_redos_do_not_stretch_it(settings: Settings) -> None:
    base = utcnow() - timedelta(days=2)
    with session_scope(settings.database_url) as session:
        batch, ids = jobs.create_batch(
            session,
            model="mirnet-lol",
            options={},
            inputs=[(settings.input_bucket, f"tp/{n}.jpg") for n in range(4)],
            input_prefix="tp/",
        )
    for n, job_id in enumerate(ids):
        _run(settings, job_id, start_s=10 * n, end_s=10 * n + 30, base=base)  # 4 in 60 s
    with session_scope(settings.database_url) as session:
        before = jobs.summarize_batch(session, batch.id)
    assert before.throughput_per_s is not None
    assert abs(before.throughput_per_s * 60 - 4.0) < 1e-6  # 4 photos per minute

    # A person sends one back a day later; the redo runs for 20 s.
    with session_scope(settings.database_url) as session:
        redo = jobs.create_job(
            session,
            model="mirnet-lol",
            input_bucket=settings.input_bucket,
            input_key="tp/0.jpg",
            options={},
            batch_id=batch.id,
            redo_of=ids[0],
        )
    with session_scope(settings.database_url) as session:
        queued = jobs.summarize_batch(session, batch.id)
    assert queued.throughput_per_s == before.throughput_per_s
    assert queued.eta_s is not None and abs(queued.eta_s - 15.0) < 1e-6  # one more at 4/min
    _run(settings, redo.id, start_s=86_400, end_s=86_420, base=base)
    with session_scope(settings.database_url) as session:
        after = jobs.summarize_batch(session, batch.id)
    assert after.done == after.total == 5
    assert after.throughput_per_s == before.throughput_per_s
    assert after.eta_s == 0
