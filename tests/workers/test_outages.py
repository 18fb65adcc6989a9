"""Services going away under a working worker: Redis restarted, PostgreSQL unreachable, the
object store erroring, stalling or cutting uploads. Real processes and sockets throughout; the
faults come from a private ``redis-server`` and the TCP proxy in ``tests.faults``.

Each test ends with the same accounting (``tests.faults.tally``): every job finished, none
restored twice, none marked succeeded without its result object.
"""

from __future__ import annotations

import io
import os
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from PIL import Image
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus
from shared.queue import queue_lists
from tests import services
from tests.conftest import jpeg_bytes, settings_from_env
from tests.faults import FaultProxy, finished, submit_photos, tally


def _wait_finished(sessions: sessionmaker[Session], ids: list[uuid.UUID], timeout: float) -> None:
    services.wait_until(
        lambda: finished(sessions, ids),
        timeout,
        message=lambda done: f"{len(ids)} jobs to finish ({done} did)",
        until=lambda done: done == len(ids),
    )


def _job(sessions: sessionmaker[Session], job_id: uuid.UUID) -> Job:
    with sessions() as session:
        return jobs.get_job(session, job_id)


def _wait_status(
    sessions: sessionmaker[Session], job_id: uuid.UUID, wanted: set[JobStatus], timeout: float
) -> Job:
    return services.wait_until(
        lambda: _job(sessions, job_id),
        timeout,
        message=lambda job: f"job {job_id} to be in {wanted} (still {job.status})",
        until=lambda job: job.status in wanted,
    )


def _fast_env(service_env: dict[str, str], name: str) -> dict[str, str]:
    """Its own queues, and maintenance fast enough for a test to take seconds."""
    return {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-{name}-{uuid.uuid4().hex[:6]}",
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
        "DARKROOM_MAINTENANCE_INTERVAL_S": "1",
        "DARKROOM_RECONCILE_AFTER_S": "2",
    }


# ------------------------------------------------------------------------------------ Redis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[object]]]:
    """A ``redis-server`` of the test's own on a free port; the list holds the live process, so
    the test can replace it after a restart and teardown still stops it."""
    port = services.free_port()
    procs: list[object] = [services.start_redis(port, tmp_path / "redis.log")]
    yield port, procs
    for proc in procs:
        services.stop(proc)  # type: ignore[arg-type]


def test_redis_restarted_with_jobs_queued_and_running_loses_no_job(
    service_env: dict[str, str], s3, tmp_path: Path, private_redis: tuple[int, list[object]]
) -> None:
    port, procs = private_redis
    env = {**_fast_env(service_env, "redis"), "DARKROOM_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    settings = settings_from_env(env)
    sessions = session_factory(settings.database_url)
    # One job long enough to be running across the restart, and eight queued behind it.
    images = [("restart/big.jpg", jpeg_bytes((1600, 1200)))]
    images += [(f"restart/{i}.jpg", jpeg_bytes(seed=i)) for i in range(8)]
    ids = submit_photos(env, s3, images)
    queue = settings.queue_for("mirnet")
    log = tmp_path / "worker.log"
    worker = services.start_worker(env, log)
    try:
        _wait_status(sessions, ids[0], {JobStatus.running}, 60)
        broker = redis.Redis(port=port)
        assert sum(broker.llen(name) for name in queue_lists(queue)) == 8
        before = broker.info("server")["run_id"]

        old = procs.pop()
        os.kill(old.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        old.wait(10)  # type: ignore[attr-defined]
        time.sleep(3)  # down for a few seconds, as a real restart or failover is
        procs.append(services.start_redis(port, tmp_path / "redis.log"))
        # A new, empty server (no persistence): every queued message went with the old one.
        # (Its queue may already be refilled by the reconciler, so its length proves nothing.)
        assert broker.info("server")["run_id"] != before
        assert _job(sessions, ids[0]).status == JobStatus.running

        _wait_finished(sessions, ids, 120)

        # The worker reconnected and consumes again: a message sent now is delivered by the
        # broker itself (the reconciler never re-sends a job whose message Redis holds).
        after = submit_photos(env, s3, [("restart/after.jpg", jpeg_bytes(seed=99))])
        _wait_finished(sessions, after, 60)
        assert worker.poll() is None, "the worker died with the broker"
    finally:
        services.stop(worker)

    outcome = tally("Redis restarted (1 running, 8 queued)", sessions, s3,
                    settings.output_bucket, ids + after, [log])  # fmt: skip
    assert (outcome.succeeded, outcome.failed, outcome.lost) == (10, 0, 0), outcome
    assert outcome.duplicates == 0 and outcome.without_object == 0, outcome
    assert all(_job(sessions, job_id).attempts == 1 for job_id in ids + after)
    text = log.read_text()
    # The consumer saw the restart and reconnected: this worker ran the job sent afterwards.
    assert f"job {after[0]} succeeded" in text
    assert "queued jobs the broker no longer held" in text


# ------------------------------------------------------------------------------- PostgreSQL


def _through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def _complete(s3, bucket: str, sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> None:  # type: ignore[no-untyped-def]
    """Every job marked succeeded has a whole, decodable image at its recorded key."""
    for job_id in ids:
        job = _job(sessions, job_id)
        if job.status == JobStatus.succeeded:
            body = s3.get_object(Bucket=bucket, Key=job.output_key)["Body"].read()
            with Image.open(io.BytesIO(body)) as image:
                image.load()


def test_postgres_unreachable_mid_batch_jobs_wait_it_out_and_succeed_once(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    proxy = FaultProxy(make_url(services.PG_ADMIN_URL).port or 5432)
    # The reaper (stale_after_s) and reconciler stay at their slow defaults: a job the outage
    # left stuck would not be rescued within this test's deadline, so the worker itself must
    # ride the outage out.
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-pg-{uuid.uuid4().hex[:6]}",
        "DARKROOM_DATABASE_URL": _through(service_env["DARKROOM_DATABASE_URL"], proxy),
        "DARKROOM_MAX_ATTEMPTS": "5",
        "DARKROOM_RETRY_BACKOFF_S": "0.5",
    }
    direct = {**env, "DARKROOM_DATABASE_URL": service_env["DARKROOM_DATABASE_URL"]}
    settings = settings_from_env(direct)
    sessions = session_factory(settings.database_url)
    ids = submit_photos(
        direct, s3, [(f"pg/{i}.jpg", jpeg_bytes((160, 120), seed=i)) for i in range(16)]
    )
    log = tmp_path / "worker.log"
    worker = services.start_worker(env, log)
    try:
        _wait_count(sessions, ids, JobStatus.succeeded, 3, 90)
        _wait_count(sessions, ids, JobStatus.running, 1, 30)
        with proxy.fault("refuse"):
            time.sleep(5)  # PostgreSQL gone for five seconds, in the middle of a job
        _wait_finished(sessions, ids, 90)
    finally:
        services.stop(worker)
        proxy.close()
    outcome = tally("PostgreSQL unreachable 5 s mid-batch", sessions, s3,
                    settings.output_bucket, ids, [log])  # fmt: skip
    assert (outcome.succeeded, outcome.failed, outcome.lost) == (16, 0, 0), outcome
    assert outcome.duplicates == 0 and outcome.without_object == 0, outcome
    _complete(s3, settings.output_bucket, sessions, ids)
    assert proxy.faulted > 0
    assert "database unavailable" in log.read_text()


def _count(sessions: sessionmaker[Session], ids: list[uuid.UUID], status: JobStatus) -> int:
    with sessions() as session:
        return (
            session.scalar(select(func.count()).where(Job.id.in_(ids), Job.status == status)) or 0
        )


def _wait_count(
    sessions: sessionmaker[Session],
    ids: list[uuid.UUID],
    status: JobStatus,
    at_least: int,
    timeout: float,
) -> int:
    return services.wait_until(
        lambda: _count(sessions, ids, status),
        timeout,
        message=lambda count: f"{at_least} of the jobs to be {status} ({count} are)",
        until=lambda count: count >= at_least,
    )


# ----------------------------------------------------------------------------- object store


@pytest.fixture
def s3_proxy(service_env: dict[str, str]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(urlsplit(service_env["DARKROOM_S3_ENDPOINT_URL"]).port or 80)
    yield proxy
    proxy.close()


def test_s3_errors_for_a_while_are_retried_with_backoff_and_every_job_succeeds(
    service_env: dict[str, str], s3, tmp_path: Path, s3_proxy: FaultProxy
) -> None:
    env = {
        **_fast_env(service_env, "s3blip"),
        "DARKROOM_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_proxy.port}",
        "DARKROOM_S3_MAX_ATTEMPTS": "2",
        "DARKROOM_MAX_ATTEMPTS": "5",
        "DARKROOM_RETRY_BACKOFF_S": "0.5",
    }
    settings = settings_from_env(env)
    sessions = session_factory(settings.database_url)
    ids = submit_photos(
        env, s3, [(f"blip/{i}.jpg", jpeg_bytes((160, 120), seed=i)) for i in range(12)]
    )
    log = tmp_path / "worker.log"
    worker = services.start_worker(env, log)
    try:
        _wait_count(sessions, ids, JobStatus.succeeded, 2, 90)
        with s3_proxy.fault("http_503"):
            time.sleep(2.5)
        _wait_finished(sessions, ids, 90)
    finally:
        services.stop(worker)
    outcome = tally("S3 answering 503 for 2.5 s mid-batch", sessions, s3,
                    settings.output_bucket, ids, [log])  # fmt: skip
    assert (outcome.succeeded, outcome.failed, outcome.lost) == (12, 0, 0), outcome
    assert outcome.duplicates == 0 and outcome.without_object == 0, outcome
    _complete(s3, settings.output_bucket, sessions, ids)
    assert s3_proxy.faulted > 0
    retried = [job_id for job_id in ids if _job(sessions, job_id).attempts > 1]
    assert retried, "the outage hit no job: nothing was tested"
    # The retries were the storage layer's errors (Darkroom's words, naming the object), not
    # some other failure that happened to be retried.
    assert re.search(
        r"job [0-9a-f-]{36}: (object store error on|reading|writing) s3://[^\n]*; retrying in",
        log.read_text(),
    ), log.read_text()[-3000:]


# What Darkroom's storage layer (shared.storage) writes for each fault, naming the object it
# was working on: the store's error answer, or the transport failing while it read the input,
# or while it wrote the result. The library's own words after it (botocore's, which change
# between versions and with timing) are not part of the check.
_STORAGE_SAYS = {
    "http_503": "reading s3://{input_bucket}/{input_key} failed: ",
    "stall": "reading s3://{input_bucket}/{input_key} failed: ",
    "refuse": "reading s3://{input_bucket}/{input_key} failed: ",
    "truncate": "writing s3://{output_bucket}/results/{job_id}/",
}


@pytest.mark.parametrize("mode", list(_STORAGE_SAYS))
def test_s3_faults_that_outlast_the_retries_fail_the_job_with_storage_error(
    service_env: dict[str, str], s3, tmp_path: Path, s3_proxy: FaultProxy, mode: str
) -> None:
    env = {
        **_fast_env(service_env, f"s3{mode.replace('_', '')}"),
        "DARKROOM_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_proxy.port}",
        "DARKROOM_S3_MAX_ATTEMPTS": "1",
        "DARKROOM_S3_CONNECT_TIMEOUT_S": "1",
        "DARKROOM_S3_READ_TIMEOUT_S": "1",
        "DARKROOM_MAX_ATTEMPTS": "3",
    }
    settings = settings_from_env(env)
    sessions = session_factory(settings.database_url)
    # Big enough that the upload is well past the truncation point.
    images = [(f"{mode}/{i}.jpg", jpeg_bytes((128, 96), seed=i)) for i in range(2)]
    s3_proxy.truncate_after = 2048
    s3_proxy.mode = mode  # type: ignore[assignment]
    ids = submit_photos(env, s3, images)
    log = tmp_path / "worker.log"
    worker = services.start_worker(env, log)
    try:
        _wait_finished(sessions, ids, 120)
    finally:
        services.stop(worker)
    outcome = tally(f"S3 {mode} throughout (max_attempts 3)", sessions, s3,
                    settings.output_bucket, ids, [log])  # fmt: skip
    assert (outcome.succeeded, outcome.failed, outcome.lost) == (0, 2, 0), outcome
    for job_id in ids:
        job = _job(sessions, job_id)
        assert job.error_code == "storage_error", (job.error_code, job.error_message)
        assert job.attempts == 3 and "gave up after 3 attempts" in (job.error_message or "")
        says = _STORAGE_SAYS[mode].format(
            input_bucket=settings.input_bucket,
            input_key=job.input_key,
            output_bucket=settings.output_bucket,
            job_id=job_id,
        )
        assert (job.error_message or "").startswith(says), (says, job.error_message)
        assert job.output_key is None
        listed = s3.list_objects_v2(Bucket=settings.output_bucket, Prefix=f"results/{job_id}/")
        assert listed.get("KeyCount", 0) == 0, "a cut upload left an object behind"
