"""What Darkroom adds around a job, next to raw Celery on the same broker, in one run.

* Raw Celery: a no-op task through a solo worker process with Darkroom's own Celery settings
  (acks_late, prefetch 1, task events), plus a Redis result backend so the sender can wait:
  ``apply_async(...).get()`` one at a time (round trips/s), then many sent at once and drained.
* Darkroom with a trivial model (a random-weight MIRNet of 8 features on 32x32 JPEGs, a few
  milliseconds of CPU): jobs through the API (FastAPI in-process), PostgreSQL, Redis, a
  ``darkroom worker`` process and the S3 endpoint (moto). One at a time (submit, then poll the
  database until it succeeded), then batches through workers holding 1 and 3 jobs at once.
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
from celery import Celery
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import select, update

from benchmarks.stack import (
    Finished,
    Stack,
    jpeg,
    local_stack,
    submit_batch,
    tiny_mirnet,
    wait_batch,
)
from shared.models import FINISHED, Job, JobStatus
from shared.queue import make_celery
from shared.service import Dispatcher
from shared.settings import Settings
from tests.conftest import settings_from_env

NOOP_TASK = "darkroom.benchmark.noop"
MODEL = "mirnet-lol"
"""Served by the tiny random-weight MIRNet written into the benchmark's model folder."""


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

    def dispatch(self, items: Any) -> None:
        start = time.perf_counter()
        self.inner.dispatch(items)
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
    queue = isolated.settings.queue_for("mirnet")
    keys = [f"batch/{i:06d}.jpg" for i in range(count)]
    broker = redis.Redis.from_url(isolated.settings.broker_url)
    with TestClient(create_app(isolated.settings)) as client:
        timed = _TimedDispatcher(client.app.state.dispatcher)
        client.app.state.dispatcher = timed
        start = time.perf_counter()
        batch_id = submit_batch(client, keys, MODEL)
        request_s = time.perf_counter() - start
    queued = int(broker.llen(queue))
    broker.delete(queue)
    with isolated.sessions.begin() as session:
        session.execute(
            update(Job)
            .where(Job.batch_id == batch_id)
            .values(status=JobStatus.cancelled)
            .execution_options(synchronize_session=False)
        )
    return BatchCreation(count, request_s, timed.seconds, queued)


@dataclass(frozen=True)
class Report:
    raw: RawCelery
    serial: Serial
    batches: dict[int, Finished]
    """Per worker concurrency."""
    local: Finished
    """Concurrency 1 with a local object folder instead of the S3 endpoint."""
    creation: BatchCreation


def run(stack: Stack, *, roundtrips: int, drain: int, jobs: int, batch: int) -> Report:
    from api.app import create_app

    raw = raw_celery(stack, roundtrips, drain)
    batches: dict[int, Finished] = {}
    preload = {"DARKROOM_PRELOAD_MODELS": f'["{MODEL}"]'}
    with TestClient(create_app(stack.settings)) as client:
        with stack.worker(1, "mirnet", **preload):
            darkroom_batch(stack, client, _inputs(stack, 10))  # warm-up
            serial = darkroom_roundtrips(stack, client, _inputs(stack, max(jobs // 3, 1)))
            batches[1] = darkroom_batch(stack, client, _inputs(stack, jobs))
        with stack.worker(3, "mirnet", **preload):
            darkroom_batch(stack, client, _inputs(stack, 10))
            batches[3] = darkroom_batch(stack, client, _inputs(stack, jobs))
    # The same without moto, which shares the two cores and costs more than the rest: what
    # Darkroom itself adds (API, database, broker, worker) shows better.
    local = stack.with_env(
        DARKROOM_STORAGE_BACKEND="local", DARKROOM_STORAGE_DIR=str(stack.workdir / "objects")
    )
    with TestClient(create_app(local.settings)) as client, local.worker(1, "mirnet", **preload):
        darkroom_batch(local, client, _inputs(local, 10))
        local_batch = darkroom_batch(local, client, _inputs(local, jobs))
    creation = batch_creation(stack, batch)
    return Report(raw, serial, batches, local_batch, creation)


def print_report(report: Report, console: Console) -> None:
    raw, serial, creation = report.raw, report.serial, report.creation
    table = Table("path", "rate", "ratio to raw Celery round trips", title="Queue overhead")
    table.add_row(
        "raw Celery apply_async().get(), one at a time",
        f"{raw.roundtrips_per_s:,.0f}/s (p50 {raw.roundtrip_p50_ms:.2f} ms)",
        "1",
    )
    table.add_row("raw Celery, sent at once then drained", f"{raw.drained_per_s:,.0f}/s", "-")
    table.add_row(
        "Darkroom job, one at a time (API -> worker -> S3 -> DB)",
        f"{serial.jobs_per_s:,.1f}/s (p50 {serial.p50_ms:.1f} ms)",
        f"{serial.jobs_per_s / raw.roundtrips_per_s:.3f}",
    )
    for concurrency, finished in report.batches.items():
        total = sum(finished.counts.values())
        table.add_row(
            f"Darkroom batch of {total}, worker concurrency {concurrency}",
            f"{total / finished.seconds:,.1f}/s",
            f"{total / finished.seconds / raw.roundtrips_per_s:.3f}",
        )
    total = sum(report.local.counts.values())
    table.add_row(
        f"Darkroom batch of {total}, worker concurrency 1, local object folder (no S3)",
        f"{total / report.local.seconds:,.1f}/s",
        f"{total / report.local.seconds / raw.roundtrips_per_s:.3f}",
    )
    console.print(table)
    stages = Table("worker concurrency", "statuses", *report.batches[1].stages, title="mean s/job")
    for concurrency, finished in [*report.batches.items(), ("1, local", report.local)]:
        stages.add_row(
            str(concurrency),
            ", ".join(f"{k} {v}" for k, v in finished.counts.items()),
            *(f"{seconds * 1000:.1f} ms" for seconds in finished.stages.values()),
        )
    console.print(stages)
    if 1 in report.batches and 3 in report.batches:
        one, three = report.batches[1], report.batches[3]
        console.print(f"pipelined (3) / serial (1) worker: {one.seconds / three.seconds:.2f}x")
    console.print(
        f"batch creation: {creation.jobs:,} jobs in {creation.request_s:.2f} s "
        f"(enqueue {creation.enqueue_s:.2f} s, validation and insert "
        f"{creation.request_s - creation.enqueue_s:.2f} s); "
        f"{creation.queued_messages:,} messages queued"
    )


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
        tiny_mirnet(stack.workdir / "models")
        stack = stack.with_env(DARKROOM_MODEL_DIR=str(stack.workdir / "models"))
        console.print(
            f"broker {args.broker_url}, PostgreSQL 127.0.0.1:5432, moto_server, "
            f"model: {MODEL} as a random-weight MIRNet of 8 features, 32x32 JPEGs, CPU"
        )
        report = run(
            stack, roundtrips=args.roundtrips, drain=args.drain, jobs=args.jobs, batch=args.batch
        )
    print_report(report, console)


if __name__ == "__main__":
    main()
