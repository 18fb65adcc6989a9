"""The reaper hands a lost job back to the front of its queue, and the API tells its last
attempt's error apart from an outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import redis
from fastapi.testclient import TestClient
from sqlalchemy import update

from shared import jobs
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus, utcnow
from shared.queue import Dispatcher, NoDispatch, make_dispatcher, queue_lists
from tests import services
from tests.conftest import jpeg_bytes, settings_from_env
from tests.faults import submit_photos
from workers import maintenance
from workers.context import WorkerContext


class Recording:
    """The real dispatcher, remembering how it was asked to send."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self.calls: list[tuple[list[tuple[uuid.UUID, str]], bool]] = []

    def dispatch(self, items: Sequence[tuple[uuid.UUID, str]], *, front: bool = False) -> None:
        self.calls.append((list(items), front))
        self.inner.dispatch(items, front=front)

    def check(self) -> None:
        self.inner.check()


def test_a_job_handed_back_by_the_reaper_runs_before_the_jobs_still_waiting(
    service_env: dict[str, str], s3: object, client: TestClient, tmp_path: Path
) -> None:
    # Only this test's job is stale enough (a year) for this reaper: others' are left alone.
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-order-{uuid.uuid4().hex[:6]}",
        "DARKROOM_STALE_AFTER_S": str(30 * 24 * 3600),
    }
    settings = settings_from_env(env)
    ids = submit_photos(env, s3, [(f"order/{i}.jpg", jpeg_bytes(seed=i)) for i in range(4)])
    lost = ids[-1]  # sent last, so it would run last
    sessions = session_factory(settings.database_url)
    with sessions.begin() as session:  # a worker took it, then died without a trace
        assert jobs.claim(session, lost, "a-worker-that-died") is not None
        session.execute(
            update(Job).where(Job.id == lost).values(heartbeat_at=utcnow() - timedelta(days=365))
        )
    dispatcher = Recording(make_dispatcher(settings))
    assert maintenance.reap_once(WorkerContext.build(settings), dispatcher) == 1
    assert dispatcher.calls == [([(lost, "mirnet")], True)]

    handed_back = client.get(f"/v1/jobs/{lost}").json()
    assert handed_back["status"] == "queued"
    assert handed_back["error"] is None
    assert handed_back["last_error"]["code"] == "worker_lost"

    worker = services.start_worker(env, tmp_path / "worker.log")
    try:
        finished = [
            services.wait_until(
                lambda job_id=job_id: client.get(f"/v1/jobs/{job_id}").json(),
                120,
                message=f"job {job_id} to finish",
                until=lambda body: JobStatus(body["status"]).finished,
            )
            for job_id in ids
        ]
    finally:
        services.stop(worker)
    assert [body["status"] for body in finished] == ["succeeded"] * 4
    started = sorted(finished, key=lambda body: body["started_at"])
    assert started[0]["id"] == str(lost)
    assert all(body["error"] is None and body["last_error"] is None for body in finished)


def test_only_the_elected_worker_looks_after_the_others(settings: Settings) -> None:
    # Nothing is old enough for this worker to reap or re-send: only the election is at stake.
    mine = settings.model_copy(
        update={
            "queue_prefix": f"darkroom-elect-{uuid.uuid4().hex[:6]}",
            "stale_after_s": 10 * 365 * 24 * 3600.0,
            "reconcile_after_s": 10 * 365 * 24 * 3600.0,
        }
    )
    ctx = WorkerContext.build(mine)
    first, second = maintenance.election(mine), maintenance.election(mine)
    other_deployment = maintenance.election(mine.model_copy(update={"queue_prefix": "elsewhere"}))
    try:
        assert maintenance.look_after_others(ctx, NoDispatch(), first)
        assert not maintenance.look_after_others(ctx, NoDispatch(), second)
        assert other_deployment.held()  # another queue prefix elects its own
        first.release()  # the leader stops: the next pass of another worker takes over
        assert maintenance.look_after_others(ctx, NoDispatch(), second)
        assert not maintenance.look_after_others(ctx, NoDispatch(), first)
    finally:
        for lock in (first, second, other_deployment):
            lock.release()


def test_the_maintenance_process_imports_no_model_code() -> None:
    """``darkroom maintenance`` runs in a small pod on the image without torch: importing what
    it runs must not pull in torch (or the rest of the worker's model stack)."""
    check = (
        "import sys; import cli.app, workers.maintenance, workers.housekeeping; "
        "heavy = {'torch', 'torchvision', 'spandrel', 'kornia', 'numpy', 'PIL', "
        "'workers.pipeline'}; "
        "loaded = sorted(heavy & set(sys.modules)); "
        "assert not loaded, loaded"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, cwd=services.REPO
    )
    assert done.returncode == 0, done.stderr


def _in_broker(redis_url: str, queue: str, job_id: uuid.UUID) -> list[str]:
    """Which of ``queue``'s Redis lists hold a message for ``job_id`` (its argsrepr header
    carries the id in clear)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return [
            name
            for name in queue_lists(queue)
            if any(str(job_id) in m.decode() for m in client.lrange(name, 0, -1))
        ]
    finally:
        client.close()


def test_darkroom_maintenance_recovers_jobs_while_no_worker_runs(
    service_env: dict[str, str], s3: object, tmp_path: Path
) -> None:
    """Workers scaled to zero run no maintenance thread; ``darkroom maintenance`` still re-sends
    a queued job whose message the broker lost, and hands a dead worker's job back."""
    year = timedelta(days=365)
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-upkeep-{uuid.uuid4().hex[:6]}",
        "DARKROOM_MAINTENANCE_INTERVAL_S": "0.5",
        # Only this test's jobs (a year old) are old enough for this process: others' stay.
        "DARKROOM_STALE_AFTER_S": str(30 * 24 * 3600),
        "DARKROOM_RECONCILE_AFTER_S": str(30 * 24 * 3600),
    }
    settings = settings_from_env(env)
    queue = settings.queue_for("mirnet")
    lost, dead = submit_photos(
        env, s3, [(f"upkeep/{i}-{uuid.uuid4().hex[:6]}.jpg", jpeg_bytes(seed=i)) for i in (0, 1)]
    )
    sessions = session_factory(settings.database_url)
    with sessions.begin() as session:
        session.execute(update(Job).where(Job.id == lost).values(created_at=utcnow() - year))
        assert jobs.claim(session, dead, "a-worker-that-died") is not None
        session.execute(update(Job).where(Job.id == dead).values(heartbeat_at=utcnow() - year))
    broker = redis.Redis.from_url(settings.broker_url)
    broker.delete(*queue_lists(queue))  # a restarted Redis without persistence
    broker.close()
    assert _in_broker(settings.broker_url, queue, lost) == []

    log = tmp_path / "maintenance.log"
    proc = subprocess.Popen(
        [str(services.BIN / "darkroom"), "maintenance"],
        env={**os.environ, **env},
        cwd=services.REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        for job_id in (lost, dead):  # both sent again, ahead of the jobs waiting
            services.wait_until(
                lambda job_id=job_id: (
                    _in_broker(settings.broker_url, queue, job_id) or proc.poll() is not None
                ),
                60,
                message=lambda _, job_id=job_id: (
                    f"job {job_id} in Redis:\n{log.read_text()[-3000:]}"
                ),
            )
            assert _in_broker(settings.broker_url, queue, job_id) == [queue]
        with sessions() as session:
            reaped = jobs.get_job(session, dead)
            assert reaped.status == JobStatus.queued
            assert reaped.error_code == "worker_lost"
            assert jobs.get_job(session, lost).status == JobStatus.queued
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, log.read_text()[-3000:]
