"""What Darkroom adds around a job, next to raw Celery on the same broker, in one run.

* Raw Celery: a no-op task through a solo worker process with Darkroom's own Celery settings
  (acks_late, prefetch 1, task events), plus a Redis result backend so the sender can wait:
  ``apply_async(...).get()`` one at a time (round trips/s), then many sent at once and drained.
* Darkroom with a trivial model (``nafnet-gopro`` served by a random-weight NAFNet of width 8
  on 32x32 JPEGs, about a millisecond of CPU): jobs through the API (FastAPI in-process),
  PostgreSQL, Redis, a ``darkroom worker`` process and the S3 endpoint (moto). One at a time
  (submit, then poll the database until it succeeded), then batches through workers holding 1
  and 3 jobs at once; then with a local object folder instead of moto, through one worker and
  through two (one per core); then the same jobs run in this process by ``run_job`` with no
  API and no Celery: what Celery's delivery adds shows as the difference.
* Batch creation: ``POST /v1/batches`` with 10,000 keys, split into enqueueing (the dispatcher)
  and the rest (validation and the database insert).

Run (PostgreSQL on 127.0.0.1:5432 as user postgres, Redis at ``--broker-url``)::

    .venv/bin/python -m benchmarks.queue_overhead [--broker-url redis://127.0.0.1:6379/14]
        [--roundtrips 300] [--drain 2000] [--jobs 300] [--batch 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import torch
from celery import Celery
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import select, update

from benchmarks.reports import print_queue_overhead
from benchmarks.stack import (
    Finished,
    Stack,
    jpeg,
    local_stack,
    submit_batch,
    tiny_nafnet,
    wait_batch,
)
from shared.catalogue import CATALOGUE
from shared.config import Settings
from shared.db.tables import FINISHED, STAGES, Job, JobStatus
from shared.jobs import create_batch
from shared.queue import Dispatcher, make_celery, queue_lists
from tests.conftest import settings_from_env
from workers.context import WorkerContext
from workers.pipeline import run_job

NOOP_TASK = "darkroom.benchmark.noop"
MODEL = "nafnet-gopro"
"""Served by the tiny random-weight NAFNet written into the benchmark's model folder."""


def noop_app(settings: Settings) -> Celery:
    """Darkroom's Celery configuration, with results stored on the broker's Redis so a sender
    can wait for each task: raw Celery's round trip."""
    app = make_celery(settings)
    app.conf.update(result_backend=settings.broker_url, task_ignore_result=False)
    app.task(name=NOOP_TASK)(_noop)
    return app


def _noop() -> None:
    return None


def _run_noop_worker(env: dict[str, str], queue: str, log: Path) -> None:
    """A separate process (spawned, like the Darkroom worker) with the same worker flags; its
    banner and logs go to ``log``."""
    with log.open("ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    noop_app(settings_from_env(env)).worker_main(
        [
            "worker",
            "--pool=solo",
            f"--queues={queue}",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@dataclass(frozen=True)
class RawCelery:
    roundtrips_per_s: float
    roundtrip_p50_ms: float
    drained_per_s: float


def raw_celery(stack: Stack, roundtrips: int, drain: int) -> RawCelery:
    queue = f"{stack.settings.queue_prefix}.noop-{uuid.uuid4().hex[:6]}"
    app = noop_app(stack.settings)
    proc = multiprocessing.get_context("spawn").Process(
        target=_run_noop_worker,
        args=(stack.env, queue, stack.workdir / "noop-worker.log"),
        daemon=True,
    )
    proc.start()
    try:

        def send() -> Any:
            return app.send_task(NOOP_TASK, queue=queue)

        done = [send()]
        done[0].get(timeout=120)  # the worker is up
        for _ in range(20):
            done.append(send())
            done[-1].get(timeout=30)
        latencies = []
        start = time.perf_counter()
        for _ in range(roundtrips):
            sent = time.perf_counter()
            done.append(send())
            done[-1].get(timeout=30)
            latencies.append(time.perf_counter() - sent)
        serial = time.perf_counter() - start
        start = time.perf_counter()
        results = [send() for _ in range(drain)]
        for result in results:
            result.get(timeout=120)
        drained = time.perf_counter() - start
        for result in [*done, *results]:
            result.forget()  # the stored results, outside the timed part
    finally:
        proc.terminate()
        proc.join(30)
        redis.Redis.from_url(stack.settings.broker_url).delete(queue)
    return RawCelery(
        roundtrips_per_s=roundtrips / serial,
        roundtrip_p50_ms=statistics.median(latencies) * 1000,
        drained_per_s=drain / drained,
    )


def _inputs(stack: Stack, count: int) -> list[str]:
    """Upload ``count`` tiny JPEGs; returns their keys."""
    prefix = f"bench-{uuid.uuid4().hex[:6]}/"
    objects = {f"{prefix}{i:05d}.jpg": jpeg(32, 32, seed=i) for i in range(count)}
    stack.put_objects(objects)
    return list(objects)


@dataclass(frozen=True)
class Serial:
    jobs_per_s: float
    p50_ms: float


def darkroom_roundtrips(stack: Stack, client: TestClient, keys: list[str]) -> Serial:
    """One job at a time: ``POST /v1/jobs``, then poll the database until it finished."""
    finished = [status.value for status in FINISHED]
    latencies = []
    start = time.perf_counter()
    for key in keys:
        sent = time.perf_counter()
        response = client.post("/v1/jobs", json={"input_key": key, "model": MODEL})
        if response.status_code != 202:
            raise RuntimeError(f"job refused: {response.status_code} {response.text}")
        job_id = uuid.UUID(response.json()["id"])
        with stack.sessions() as session:
            while session.scalar(select(Job.status).where(Job.id == job_id)) not in finished:
                session.rollback()  # a fresh snapshot for the next read
                time.sleep(0.001)
        latencies.append(time.perf_counter() - sent)
    return Serial(len(keys) / (time.perf_counter() - start), statistics.median(latencies) * 1000)


def darkroom_batch(stack: Stack, client: TestClient, keys: list[str]) -> Finished:
    """A batch through the API, timed from the request until the last job finished."""
    started = time.perf_counter()
    batch_id = submit_batch(client, keys, MODEL)
    return wait_batch(stack.sessions, batch_id, started, timeout=max(120.0, len(keys)))


class _TimedDispatcher:
    """Wraps the API's dispatcher to time the enqueue part of a request."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self.seconds = 0.0

    def dispatch(self, items: Any, *, front: bool = False) -> None:
        start = time.perf_counter()
        self.inner.dispatch(items, front=front)
        self.seconds += time.perf_counter() - start

    def check(self) -> None:
        self.inner.check()


@dataclass(frozen=True)
class BatchCreation:
    jobs: int
    request_s: float
    enqueue_s: float
    queued_messages: int


def batch_creation(stack: Stack, count: int) -> BatchCreation:
    """``POST /v1/batches`` with ``count`` keys, on a queue prefix no worker serves; the jobs
    are cancelled and their messages deleted afterwards, so no reconciler sends them again."""
    from api.app import create_app

    isolated = stack.with_env(DARKROOM_QUEUE_PREFIX=f"bench-batch-{uuid.uuid4().hex[:6]}")
    queue = isolated.settings.queue_for(CATALOGUE[MODEL].family)
    keys = [f"batch/{i:06d}.jpg" for i in range(count)]
    broker = redis.Redis.from_url(isolated.settings.broker_url)
    app = create_app(isolated.settings)
    with TestClient(app) as client:
        timed = _TimedDispatcher(app.state.dispatcher)
        app.state.dispatcher = timed
        start = time.perf_counter()
        batch_id = submit_batch(client, keys, MODEL)
        request_s = time.perf_counter() - start
    queued = sum(int(broker.llen(name)) for name in queue_lists(queue))
    broker.delete(*queue_lists(queue))
    with isolated.sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.batch_id == batch_id)
            .values(status=JobStatus.cancelled)
            .execution_options(synchronize_session=False)
        )
    return BatchCreation(count, request_s, timed.seconds, queued)


@dataclass(frozen=True)
class InProcess:
    jobs_per_s: float
    stages_ms: float
    """Mean time of the five stages per job; the rest of a job's time is bookkeeping."""


def in_process(stack: Stack, keys: list[str]) -> InProcess:
    """The jobs created straight in the database and run one after another by ``run_job`` in
    this process: Darkroom's per-job work with no API, no broker and no Celery. One torch
    thread, as the worker processes run (``OMP_NUM_THREADS=1``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ctx = WorkerContext.build(stack.settings)
        with stack.sessions.begin() as session:
            _, ids = create_batch(
                session,
                model=MODEL,
                options={},
                inputs=[(stack.settings.input_bucket, key) for key in keys],
                input_prefix=None,
            )
        for job_id in ids[:10]:  # warm-up: the model loads, the connection pool fills
            run_job(job_id, ctx)
        start = time.perf_counter()
        for job_id in ids[10:]:
            if run_job(job_id, ctx) != JobStatus.succeeded:
                raise RuntimeError(f"job {job_id} did not succeed in process")
        seconds = time.perf_counter() - start
        with stack.sessions() as session:
            ran = session.scalars(select(Job).where(Job.id.in_(ids[10:]))).all()
        stages = statistics.mean(sum(job.timings[s] or 0.0 for s in STAGES) for job in ran) * 1000
        return InProcess(len(ids[10:]) / seconds, stages)
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Report:
    raw: RawCelery
    serial: Serial
    batches: dict[int, Finished]
    """Per worker concurrency."""
    local: dict[int, Finished]
    """A local object folder instead of the S3 endpoint, per number of worker processes."""
    in_process: InProcess
    """The same local jobs run by ``run_job`` in this process."""
    creation: BatchCreation


def run(stack: Stack, *, roundtrips: int, drain: int, jobs: int, batch: int) -> Report:
    from api.app import create_app

    family = CATALOGUE[MODEL].family
    raw = raw_celery(stack, roundtrips, drain)
    batches: dict[int, Finished] = {}
    # One torch thread per worker process: a 32x32 image gains nothing from two, and two
    # processes (or the threads pool) would fight over the two cores.
    preload = {"DARKROOM_PRELOAD_MODELS": f'["{MODEL}"]', "OMP_NUM_THREADS": "1"}
    with TestClient(create_app(stack.settings)) as client:
        with stack.worker(1, family, **preload):
            darkroom_batch(stack, client, _inputs(stack, 10))  # warm-up
            serial = darkroom_roundtrips(stack, client, _inputs(stack, max(jobs // 3, 1)))
            batches[1] = darkroom_batch(stack, client, _inputs(stack, jobs))
        with stack.worker(3, family, **preload):
            darkroom_batch(stack, client, _inputs(stack, 10))
            batches[3] = darkroom_batch(stack, client, _inputs(stack, jobs))
    # The same without moto, which shares the two cores and costs more than the rest: what
    # Darkroom itself adds (API, database, broker, worker) shows better.
    local = stack.with_env(
        DARKROOM_STORAGE_BACKEND="local", DARKROOM_STORAGE_DIR=str(stack.workdir / "objects")
    )
    local_batches: dict[int, Finished] = {}
    with TestClient(create_app(local.settings)) as client, local.worker(1, family, **preload):
        darkroom_batch(local, client, _inputs(local, 10))
        local_batches[1] = darkroom_batch(local, client, _inputs(local, jobs))
        with local.worker(1, family, **preload):  # a second process: one per core
            darkroom_batch(local, client, _inputs(local, 10))
            local_batches[2] = darkroom_batch(local, client, _inputs(local, jobs))
    inline = in_process(local, _inputs(local, jobs + 10))
    creation = batch_creation(stack, batch)
    return Report(raw, serial, batches, local_batches, inline, creation)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--roundtrips", type=int, default=300)
    parser.add_argument("--drain", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 150)
    with local_stack(args.broker_url, None, DARKROOM_DEVICE="cpu") as stack:
        stack = stack.with_env(DARKROOM_MODEL_DIR=str(tiny_nafnet(stack.workdir / "models")))
        console.print(
            f"broker {args.broker_url}, PostgreSQL 127.0.0.1:5432, moto_server, "
            f"model: {MODEL} as a random-weight NAFNet of width 8, 32x32 JPEGs, CPU"
        )
        report = run(
            stack, roundtrips=args.roundtrips, drain=args.drain, jobs=args.jobs, batch=args.batch
        )
    print_queue_overhead(report, console)


if __name__ == "__main__":
    main()
