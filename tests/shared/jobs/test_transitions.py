"""Status transitions on the real PostgreSQL: the reaper of jobs whose worker died."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from shared import jobs
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus, utcnow


def _running_job(settings: Settings, *, silent_for_s: float, attempts: int) -> uuid.UUID:
    with session_factory(settings.database_url).begin() as session:
        job = jobs.create_job(
            session, model="mirnet-lol", input_bucket="b", input_key="k.jpg", options={}
        )
        assert jobs.claim(session, job.id, "host-a")
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=silent_for_s), attempts=attempts)
        )
        return job.id


def test_reap_requeues_silent_jobs_fails_exhausted_ones_and_spares_live_ones(
    settings: Settings,
) -> None:
    silent = _running_job(settings, silent_for_s=600, attempts=1)
    exhausted = _running_job(settings, silent_for_s=600, attempts=3)
    alive = _running_job(settings, silent_for_s=1, attempts=1)
    with session_factory(settings.database_url).begin() as session:
        requeued = jobs.reap(session, stale_after_s=120, max_attempts=3)
    assert (silent, "mirnet-lol") in requeued
    assert all(job_id not in (exhausted, alive) for job_id, _ in requeued)
    with session_factory(settings.database_url)() as session:
        assert jobs.get_job(session, silent).status == JobStatus.queued
        assert jobs.get_job(session, silent).error_code == "worker_lost"
        assert jobs.get_job(session, exhausted).status == JobStatus.failed
        assert jobs.get_job(session, exhausted).error_code == "worker_lost"
        assert jobs.get_job(session, alive).status == JobStatus.running
        # The requeued job can be claimed again, counting a second attempt.
        assert jobs.claim(session, silent, "host-b")
        session.commit()
        assert jobs.get_job(session, silent).attempts == 2


def test_a_requeued_job_cannot_be_finished_by_its_old_worker(settings: Settings) -> None:
    job_id = _running_job(settings, silent_for_s=600, attempts=1)
    with session_factory(settings.database_url).begin() as session:
        jobs.reap(session, stale_after_s=120, max_attempts=3)
    with session_factory(settings.database_url).begin() as session:
        assert not jobs.succeed(session, job_id, output_bucket="o", output_key="k", timings={})
