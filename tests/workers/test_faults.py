"""Faults injected into real processes: a worker killed in the middle of a job, messages the
broker lost, a deploy's SIGTERM, and messages delivered more than once."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from shared import jobs
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import JobStatus
from shared.queue import make_celery, make_dispatcher, queue_lists
from tests import services
from tests.conftest import jpeg_bytes, settings_from_env
from tests.faults import submit_photos, tally


def _status(settings: Settings, job_id: uuid.UUID):  # type: ignore[no-untyped-def]
    with Session(session_factory(settings.database_url).kw["bind"]) as session:
        return jobs.get_job(session, job_id)


def _wait(settings: Settings, job_id: uuid.UUID, wanted: set[JobStatus], timeout: float):  # type: ignore[no-untyped-def]
    return services.wait_until(
        lambda: _status(settings, job_id),
        timeout,
        message=lambda job: f"job {job_id} to be in {wanted} (still {job.status})",
        until=lambda job: job.status in wanted,
    )


def test_a_worker_killed_mid_job_is_recovered_and_the_job_succeeds_once(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    # Its own queues, and a fast heartbeat and reaper, so the test takes seconds, not minutes.
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-kill-{uuid.uuid4().hex[:6]}",
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
        "DARKROOM_STALE_AFTER_S": "4",
        "DARKROOM_MAINTENANCE_INTERVAL_S": "1",
    }
    settings = settings_from_env(env)
    [job_id] = submit_photos(env, s3, [("kill/big.jpg", jpeg_bytes((1600, 1200)))])

    first = services.start_worker(env, tmp_path / "first.log")
    try:
        _wait(settings, job_id, {JobStatus.running}, 60)
        time.sleep(1.0)  # well inside the restore stage
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        services.stop(first)
    assert _status(settings, job_id).status == JobStatus.running  # orphaned, for now

    second = services.start_worker(env, tmp_path / "second.log")
    try:
        done = _wait(settings, job_id, {JobStatus.succeeded, JobStatus.failed}, 120)
    finally:
        services.stop(second)
    assert done.status == JobStatus.succeeded, (done.error_code, done.error_message)
    assert done.attempts == 2
    listed = s3.list_objects_v2(Bucket=settings.output_bucket, Prefix=f"results/{job_id}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"results/{job_id}/big.jpg"]
    assert "requeued 1 jobs whose worker stopped" in (tmp_path / "second.log").read_text()


def test_queued_jobs_whose_messages_redis_lost_are_sent_again_once(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    import redis

    prefix = f"darkroom-lost-{uuid.uuid4().hex[:6]}"
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": prefix,
        "DARKROOM_RECONCILE_AFTER_S": "0.5",
        "DARKROOM_MAINTENANCE_INTERVAL_S": "1",
    }
    settings = settings_from_env(env)
    ids = submit_photos(env, s3, [(f"lost/{i}.jpg", jpeg_bytes(seed=i)) for i in range(6)])

    # Redis loses the first four messages (a restart without persistence, a flush, a failover).
    broker = redis.Redis.from_url(settings.broker_url)
    queue = settings.queue_for("mirnet")
    waiting = queue_lists(queue)[-1]  # new jobs wait in the normal-priority list
    assert broker.llen(waiting) == 6
    for _ in range(4):
        broker.rpop(waiting)  # kombu pushes on the left and consumes from the right: oldest first

    worker = services.start_worker(env, tmp_path / "worker.log")
    try:
        finished = [
            _wait(settings, job_id, {JobStatus.succeeded, JobStatus.failed}, 120) for job_id in ids
        ]
    finally:
        services.stop(worker)
    assert [job.status for job in finished] == [JobStatus.succeeded] * 6
    assert all(job.attempts == 1 for job in finished)
    log = (tmp_path / "worker.log").read_text()
    assert "queued jobs the broker no longer held" in log
    # Each job ran exactly once: re-sending skipped the two whose messages were still there.
    # (The count in the log may include other tests' queued jobs: they share the database.)
    for job_id in ids:
        assert log.count(f"job {job_id} succeeded") == 1, job_id


def test_sigterm_lets_the_worker_finish_its_job_first(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    env = {**service_env, "DARKROOM_QUEUE_PREFIX": f"darkroom-term-{uuid.uuid4().hex[:6]}"}
    settings = settings_from_env(env)
    [job_id] = submit_photos(env, s3, [("term/big.jpg", jpeg_bytes((1200, 900)))])
    worker = services.start_worker(env, tmp_path / "worker.log")
    try:
        _wait(settings, job_id, {JobStatus.running}, 60)
        worker.send_signal(signal.SIGTERM)  # a deploy, a scale-down: warm shutdown
        assert worker.wait(120) == 0
    finally:
        services.stop(worker)
    done = _status(settings, job_id)
    assert done.status == JobStatus.succeeded and done.attempts == 1


def _results(s3, bucket: str, job_id: uuid.UUID) -> list[str]:  # type: ignore[no-untyped-def]
    """Every page: the suite's output bucket outgrows one listing (1,000 keys)."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [key for key in keys if f"results/{job_id}/" in key]


def test_duplicate_messages_and_redelivery_of_finished_jobs_run_each_job_once(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    env = {**service_env, "DARKROOM_QUEUE_PREFIX": f"darkroom-dup-{uuid.uuid4().hex[:6]}"}
    settings = settings_from_env(env)
    dispatcher = make_dispatcher(settings)
    sessions = session_factory(settings.database_url)
    ids = submit_photos(env, s3, [(f"dup/{i}.jpg", jpeg_bytes(seed=i)) for i in range(3)])
    # Each job's message twice more (a publisher retry, a reconciler racing the broker...).
    dispatcher.dispatch([(job_id, "mirnet") for job_id in ids] * 2)

    log = tmp_path / "worker.log"
    worker = services.start_worker(env, log)
    try:
        done = [
            _wait(settings, job_id, {JobStatus.succeeded, JobStatus.failed}, 120) for job_id in ids
        ]
        # A finished job delivered once more (a visibility timeout that fired late), then a
        # sentinel job behind it: when the sentinel is done, the redelivery was handled.
        dispatcher.dispatch([(job_id, "mirnet") for job_id in ids])
        [sentinel] = submit_photos(env, s3, [("dup/sentinel.jpg", jpeg_bytes())])
        _wait(settings, sentinel, {JobStatus.succeeded}, 120)
    finally:
        services.stop(worker)

    outcome = tally("duplicate messages (3 per job) + late redelivery of finished jobs",
                    sessions, s3, settings.output_bucket, [*ids, sentinel], [log])  # fmt: skip
    assert (outcome.succeeded, outcome.duplicates, outcome.lost) == (4, 0, 0), outcome
    text = log.read_text()
    for job_id, job in zip(ids, done, strict=True):
        final = _status(settings, job_id)
        assert final.status == JobStatus.succeeded and final.attempts == 1
        assert text.count(f"job {job_id} succeeded") == 1
        assert text.count(f"job {job_id} is not queued any more") == 3  # 2 copies + 1 late
        assert _results(s3, settings.output_bucket, job_id) == [final.output_key]
        assert final.output_key == job.output_key and final.finished_at == job.finished_at


def test_a_job_redone_after_its_result_was_written_overwrites_the_same_key(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    """The reaper may requeue a job whose worker wrote the result and died before recording it:
    the second run must land on the same key, not add a second result."""
    from sqlalchemy import update

    from shared.db.tables import Job

    env = {**service_env, "DARKROOM_QUEUE_PREFIX": f"darkroom-redo-{uuid.uuid4().hex[:6]}"}
    settings = settings_from_env(env)
    dispatcher = make_dispatcher(settings)
    sessions = session_factory(settings.database_url)
    [job_id] = submit_photos(env, s3, [("redo/ночь 夜.jpg", jpeg_bytes())])
    worker = services.start_worker(env, tmp_path / "worker.log")
    try:
        first = _wait(settings, job_id, {JobStatus.succeeded, JobStatus.failed}, 120)
        assert first.status == JobStatus.succeeded, (first.error_code, first.error_message)
        with sessions.begin() as session:  # what the reaper does to a job it thinks orphaned
            session.execute(
                update(Job).where(Job.id == job_id).values(status=JobStatus.queued, output_key=None)
            )
        dispatcher.dispatch([(job_id, "mirnet")])
        services.wait_until(
            lambda: _status(settings, job_id),
            120,
            message=lambda job: f"the second run (attempts {job.attempts}, {job.status})",
            until=lambda job: job.attempts == 2 and job.status == JobStatus.succeeded,
        )
    finally:
        services.stop(worker)
    second = _status(settings, job_id)
    assert second.output_key == first.output_key
    assert _results(s3, settings.output_bucket, job_id) == [first.output_key]


def test_a_message_redelivered_while_its_job_runs_elsewhere_is_skipped(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    """Redis's visibility timeout hands an unacknowledged message to a second worker while the
    first still works on it. kombu's own restore (what the timeout triggers) is called here at
    once instead of after hours."""
    import redis
    from kombu import Connection

    env = {**service_env, "DARKROOM_QUEUE_PREFIX": f"darkroom-vis-{uuid.uuid4().hex[:6]}"}
    settings = settings_from_env(env)
    [job_id] = submit_photos(env, s3, [("vis/big.jpg", jpeg_bytes((1600, 1200)))])
    first = services.start_worker(env, tmp_path / "first.log")
    second = None
    try:
        _wait(settings, job_id, {JobStatus.running}, 60)
        # The tag is read while the job surely runs: starting the second worker takes seconds on
        # a loaded machine, and the job must still be running when its message is restored.
        broker = redis.Redis.from_url(settings.broker_url)
        tags = [
            tag for tag, raw in broker.hgetall("unacked").items() if str(job_id).encode() in raw
        ]
        second = services.start_worker(env, tmp_path / "second.log")
        assert len(tags) == 1 and _status(settings, job_id).status == JobStatus.running
        # With the workers' own transport options: they say which list a priority lives in.
        options = make_celery(settings).conf.broker_transport_options
        with Connection(settings.broker_url, transport_options=options) as conn:
            conn.default_channel.qos.restore_by_tag(tags[0])  # type: ignore[attr-defined]
        services.wait_until(
            lambda: f"job {job_id} is not queued any more" in (tmp_path / "second.log").read_text(),
            60,
            message="the second worker to receive the redelivered message",
        )
        done = _wait(settings, job_id, {JobStatus.succeeded, JobStatus.failed}, 120)
    finally:
        services.stop(first)
        if second is not None:
            services.stop(second)
    outcome = tally("message redelivered to a 2nd worker while the job runs",
                    session_factory(settings.database_url), s3, settings.output_bucket,
                    [job_id], [tmp_path / "first.log", tmp_path / "second.log"])  # fmt: skip
    assert (outcome.succeeded, outcome.duplicates, outcome.lost) == (1, 0, 0), outcome
    assert done.status == JobStatus.succeeded and done.attempts == 1
    logs = (tmp_path / "first.log").read_text() + (tmp_path / "second.log").read_text()
    assert logs.count(f"job {job_id} succeeded") == 1
    assert _results(s3, settings.output_bucket, job_id) == [done.output_key]
