"""A worker holding several jobs at once: one restore at a time, the other jobs' downloads and
decodes going on meanwhile, every job finished exactly once, and no more messages reserved
than jobs it may hold."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from celery import Celery
from celery.concurrency import get_implementation
from sqlalchemy import select

from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import FINISHED, Job, JobStatus
from shared.queue import NoDispatch, make_celery, make_dispatcher
from shared.storage import make_storage
from tests import services
from tests.conftest import jpeg_bytes, settings_from_env
from workers.context import RunningJobs, WorkerContext
from workers.pipeline import run_job

WAIT_S = 60.0
"""How long the probe waits for the other jobs; only a broken pipeline ever waits this long."""


def test_iterating_running_jobs_is_a_snapshot() -> None:
    running = RunningJobs()
    first, second = uuid.uuid4(), uuid.uuid4()
    running.add(first)
    snapshot = iter(running)
    running.add(second)  # a pool thread starting a job while the heartbeat thread reads
    running.discard(first)
    assert list(snapshot) == [first]
    assert set(running) == {second} and second in running and len(running) == 1


class _Progress:
    """What the other jobs did meanwhile: downloads finished, attempts to take the device."""

    def __init__(self) -> None:
        self.downloads = 0
        self.device_requests = 0
        self.changed = threading.Condition()

    def count(self, what: str) -> None:
        with self.changed:
            setattr(self, what, getattr(self, what) + 1)
            self.changed.notify_all()


class _CountingStorage:
    def __init__(self, inner: Any, progress: _Progress) -> None:
        self._inner = inner
        self._progress = progress

    def get(self, bucket: str, key: str) -> bytes:
        data = self._inner.get(bucket, key)
        self._progress.count("downloads")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CountingLock:
    """The worker's device lock, counting the jobs that ask for it."""

    def __init__(self, progress: _Progress) -> None:
        self._lock = threading.Lock()
        self._progress = progress

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self._progress.count("device_requests")
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()


class _ProbeRestorer:
    """Records how many restores run at once. The first one stays on the device until every
    other job the worker holds has been downloaded and one of them asks for the device: a
    worker running whole jobs one after another never gets there, and one without the lock
    lets that job restore at the same time."""

    name = "probe"
    nbytes = 0

    def __init__(self, progress: _Progress, others_held: int) -> None:
        self._progress = progress
        self._others_held = others_held
        self._lock = threading.Lock()
        self.active = 0
        self.most_at_once = 0
        self.overlapped: bool | None = None

    def restore(
        self,
        pixels: np.ndarray,
        check_stop: Callable[[], None] | None = None,
        task: Any = None,
        runner: Any = None,
    ) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
            first = self.overlapped is None
            if first:
                self.overlapped = False
        try:
            if first:
                progress = self._progress
                with progress.changed:
                    self.overlapped = progress.changed.wait_for(
                        lambda: (
                            progress.downloads >= 1 + self._others_held
                            and progress.device_requests >= 2
                        ),
                        timeout=WAIT_S,
                    )
            return pixels
        finally:
            with self._lock:
                self.active -= 1


class _Cache:
    def __init__(self, restorer: _ProbeRestorer) -> None:
        self.restorer = restorer

    def get(self, entry: Any) -> _ProbeRestorer:
        return self.restorer

    def peek(self, entry: Any) -> _ProbeRestorer:
        return self.restorer


def _submit(settings: Settings, s3: Any, count: int, dispatcher: Any, size=(48, 32)) -> list:  # type: ignore[no-untyped-def]
    prefix = f"conc-{uuid.uuid4().hex[:6]}/"
    keys = [f"{prefix}{i:02d}.jpg" for i in range(count)]
    for index, key in enumerate(keys):
        body = jpeg_bytes(size if index else (1024, 768), seed=index)  # the first one is slower
        s3.put_object(Bucket=settings.input_bucket, Key=key, Body=body)
    storage = make_storage(settings)
    with session_factory(settings.database_url)() as session:
        batch, _ = jobs.submit_batch(
            session, settings, dispatcher, storage, ModelStore(settings, storage),
            model="mirnet-lol", keys=keys,
        )  # fmt: skip
        return list(session.scalars(select(Job.id).where(Job.batch_id == batch.id)))


def _jobs(settings: Settings, ids: list) -> list[Job]:  # type: ignore[type-arg]
    with session_factory(settings.database_url)() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(ids))))


def test_one_restore_at_a_time_while_the_other_jobs_download(settings: Settings, s3) -> None:
    threads = 3
    ids = _submit(settings, s3, 7, NoDispatch())
    ctx = WorkerContext.build(settings)
    progress = _Progress()
    probe = _ProbeRestorer(progress, others_held=threads - 1)
    ctx = dataclasses.replace(
        ctx,
        storage=_CountingStorage(ctx.storage, progress),  # type: ignore[arg-type]
        restorers=_Cache(probe),  # type: ignore[arg-type]
        device_lock=_CountingLock(progress),  # type: ignore[arg-type]
    )

    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(lambda job_id: run_job(job_id, ctx), ids))

    assert statuses == [JobStatus.succeeded] * len(ids)
    assert probe.most_at_once == 1, "two restores ran at once on one device"
    assert probe.overlapped, "no other job was downloaded while a restore held the device"
    assert len(ctx.running) == 0


@pytest.mark.e2e
def test_a_pipelined_worker_runs_every_job_once_and_reserves_at_most_its_concurrency(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-conc-{uuid.uuid4().hex[:6]}",
        "DARKROOM_WORKER_CONCURRENCY": "3",
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.2",
    }
    settings = settings_from_env(env)  # DARKROOM_WORKER_CONCURRENCY alone: a threads pool of 3
    log = tmp_path / "worker.log"
    node = f"conc-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    proc = _start_worker_without_pool_options(env, log, node)
    broker = redis.Redis.from_url(settings.broker_url)
    reserved = []
    app = make_celery(settings)
    try:
        pool = _pool_info(app, node)
        ids = _submit(settings, s3, 13, make_dispatcher(settings))

        def finished() -> list[Job]:
            # A message the worker has acknowledged can stay in kombu's ``unacked`` hash for a
            # moment after the job's outcome is recorded (the hash is cleaned after the ack),
            # so only entries whose job is not finished yet count as held. Entries are read
            # before the jobs, so a job that finishes in between is not counted either.
            entries = broker.hvals("unacked")
            jobs = _jobs(settings, ids)
            open_ids = [str(j.id).encode() for j in jobs if j.status not in FINISHED]
            reserved.append(sum(1 for raw in entries if any(i in raw for i in open_ids)))
            return [j for j in jobs if j.status in FINISHED]

        services.wait_until(
            finished,
            180,
            interval=0.02,
            message=lambda done: (
                f"all {len(ids)} jobs to finish ({len(done)} did):\n{log.read_text()[-3000:]}"
            ),
            until=lambda done: len(done) == len(ids),
        )
    finally:
        services.stop(proc)
        app.close()
    text = log.read_text()
    done = _jobs(settings, ids)
    assert [j.status for j in done] == [JobStatus.succeeded] * len(ids), text[-3000:]
    assert [j.attempts for j in done] == [1] * len(ids)
    threads = get_implementation("threads")
    assert pool["implementation"] == f"{threads.__module__}:{threads.__name__}", pool
    assert pool["max-concurrency"] == 3, pool
    for job_id in ids:
        assert text.count(f"job {job_id} succeeded") == 1
    assert "not queued any more" not in text
    assert max(reserved) <= 3, f"reserved {max(reserved)} messages with concurrency 3"
    # Heartbeats run in the threads pool too (it sends no worker_process_init).
    slow = next(j for j in done if j.input_key.endswith("00.jpg"))
    assert slow.heartbeat_at is not None and slow.started_at is not None
    assert (slow.heartbeat_at - slow.started_at).total_seconds() > 0.1, text[-3000:]


def _start_worker_without_pool_options(
    env: dict[str, str], log: Path, node: str
) -> subprocess.Popen[bytes]:
    """``darkroom worker`` named ``node``, with no --pool or --concurrency: the settings alone
    choose its pool."""
    proc = subprocess.Popen(
        [str(services.BIN / "darkroom"), "worker", "--queues", "mirnet", "--name", node],
        env={**os.environ, **env},
        cwd=services.REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    services.wait_until(
        lambda: b"ready." in log.read_bytes() or proc.poll() is not None,
        90,
        message=lambda _: f"the worker to be ready:\n{log.read_text()[-3000:]}",
    )
    return proc


def _pool_info(app: Celery, node: str) -> dict[str, Any]:
    """The pool of the running worker ``node``, from its answer to Celery's ``stats`` remote
    control command."""
    stats = services.wait_until(
        lambda: app.control.inspect(destination=[node], timeout=1.0).stats() or {},
        30,
        message=f"worker {node} to answer",
    )
    return stats[node]["pool"]


def test_the_solo_pool_refuses_to_hold_several_jobs(service_env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(services.BIN / "darkroom"), "worker", "--pool", "solo", "--concurrency", "3"],
        env={**os.environ, **service_env},
        cwd=services.REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "solo pool runs one job at a time" in result.stderr
