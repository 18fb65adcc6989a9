"""A 1,000-photo batch, 5% of it broken, one of two workers SIGKILLed halfway through.

The issue's acceptance run: every good photo restored exactly once (one "succeeded" run in the
workers' logs, one result object), every bad one failed on its own with ``invalid_image``, the
batch's counts adding up, and nothing lost. Photos are 32x24 so the whole run stays within a
few minutes on a 2-core machine; the reaper is fast so the killed worker's job comes back in
seconds.
"""

from __future__ import annotations

import io
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, JobStatus
from shared.queue import make_dispatcher
from shared.storage import make_storage
from tests import services
from tests.conftest import jpeg_bytes, png_declaring, settings_from_env
from tests.faults import finished, tally

GOOD, BAD = 950, 50


def _bad_inputs(count: int) -> list[tuple[str, bytes]]:
    """Every kind of broken upload the issue lists, in turn."""
    jpeg = jpeg_bytes((32, 24), seed=7)
    png = io.BytesIO()
    Image.new("RGB", (32, 24), (40, 50, 60)).save(png, "PNG")
    kinds = [
        ("truncated.jpg", jpeg[: len(jpeg) // 2]),
        ("random.jpg", os.urandom(2048)),
        ("empty.jpg", b""),
        ("text.png", b"this is a shopping list, not a photo\n" * 20),
        ("page.jpg", b"<!doctype html><html><body>not an image</body></html>"),
        ("truncated.png", png.getvalue()[:-30]),
        ("bomb.png", png_declaring(100_000, 100_000)),
    ]
    return [(f"{i:03d}-{kinds[i % len(kinds)][0]}", kinds[i % len(kinds)][1]) for i in range(count)]


def test_a_thousand_photos_five_percent_corrupt_one_worker_killed_midway(
    service_env: dict[str, str], s3, tmp_path: Path
) -> None:
    started = time.monotonic()
    env = _fast_reaper_env(service_env)
    settings = settings_from_env(env)
    sessions = session_factory(settings.database_url)
    prefix = f"batch-{uuid.uuid4().hex[:6]}/"
    batch_id, ids = _upload_and_submit(settings, sessions, s3, prefix)
    assert len(ids) == GOOD + BAD

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    killed_at = _run_killing_one_worker_midway(env, sessions, ids, logs)

    fault = f"1,000-job batch, 5% corrupt, 1 of 2 workers SIGKILLed at {killed_at} done"
    outcome = tally(fault, sessions, s3, settings.output_bucket, ids, logs)
    assert outcome.lost == 0, outcome
    assert outcome.duplicates == 0, outcome
    assert outcome.without_object == 0, outcome
    assert (outcome.succeeded, outcome.failed) == (GOOD, BAD), outcome
    assert outcome.failures == {"invalid_image": BAD}, outcome
    _assert_each_photo_and_the_batch_add_up(sessions, batch_id, prefix)
    elapsed = time.monotonic() - started
    print(f"\nbatch of {len(ids)} finished in {elapsed:.0f}s; worker killed at {killed_at} done")


def _fast_reaper_env(service_env: dict[str, str]) -> dict[str, str]:
    """Its own queues, and a reaper fast enough to bring the killed worker's jobs back in
    seconds."""
    return {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-batch-{uuid.uuid4().hex[:6]}",
        "DARKROOM_HEARTBEAT_INTERVAL_S": "0.5",
        "DARKROOM_STALE_AFTER_S": "10",
        "DARKROOM_MAINTENANCE_INTERVAL_S": "1",
    }


def _upload_and_submit(
    settings: Settings, sessions: sessionmaker[Session], s3: Any, prefix: str
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Upload the good and the bad photos under ``prefix`` and submit them as one batch, as the
    API would; the batch's id and its jobs' ids."""
    good = [(f"good-{i:04d}.jpg", jpeg_bytes((32, 24), seed=i)) for i in range(GOOD)]
    bad = _bad_inputs(BAD)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: s3.put_object(Bucket=settings.input_bucket,
                                                 Key=prefix + item[0], Body=item[1]),
                      good + bad))  # fmt: skip

    storage = make_storage(settings)
    with sessions() as session:
        batch, _ = jobs.submit_batch(
            session, settings, make_dispatcher(settings), storage,
            ModelStore(settings, storage), model="mirnet-lol", prefix=prefix,
        )  # fmt: skip
        ids = list(session.scalars(select(Job.id).where(Job.batch_id == batch.id)))
    return batch.id, ids


def _run_killing_one_worker_midway(
    env: dict[str, str], sessions: sessionmaker[Session], ids: list[uuid.UUID], logs: list[Path]
) -> int:
    """Two workers (one log each) run the batch; the first is SIGKILLed holding a job once 300
    jobs are done. Returns when every job finished: how many had when the worker was killed."""
    # Each worker runs three jobs at once (the threads pool) so the database and object-store
    # round trips of tiny jobs overlap; a SIGKILL then orphans up to three jobs, not one.
    workers = [
        services.start_worker(env, log, timeout=180, pool="threads", concurrency=3) for log in logs
    ]
    try:
        services.wait_until(
            lambda: finished(sessions, ids),
            240,
            interval=0.5,
            message=lambda done: f"300 finished jobs ({done} so far)",
            until=lambda done: done >= 300,
        )
        victim = workers[0]
        # Kill it while it holds a job, so the reaper has something to recover.
        services.wait_until(
            lambda: _running_on(sessions, ids) > 0 or finished(sessions, ids) == len(ids),
            30,
            message="a running job",
        )
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        killed_at = finished(sessions, ids)
        services.wait_until(
            lambda: finished(sessions, ids),
            300,
            interval=0.5,
            message=lambda done: f"the whole batch ({done} of {len(ids)} finished)",
            until=lambda done: done == len(ids),
        )
    finally:
        for worker in workers:
            services.stop(worker)
    return killed_at


def _assert_each_photo_and_the_batch_add_up(
    sessions: sessionmaker[Session], batch_id: uuid.UUID, prefix: str
) -> None:
    """Every good photo succeeded, every bad one failed on its own with ``invalid_image`` and a
    reason, and the batch's summary counts them so."""
    with sessions() as session:
        rows = session.execute(
            select(Job.input_key, Job.status, Job.error_code, Job.error_message).where(
                Job.batch_id == batch_id
            )
        ).all()
        summary = jobs.summarize_batch(session, batch_id)
    for key, status, code, message in rows:
        name = key.removeprefix(prefix)
        if name.startswith("good-"):
            assert status == JobStatus.succeeded, (name, code, message)
        else:  # each bad file fails on its own, with its own reason
            assert (status, code) == (JobStatus.failed, "invalid_image"), (name, status, code)
            assert message, name
    assert summary.total == summary.done == GOOD + BAD
    assert summary.counts["succeeded"] == GOOD and summary.counts["failed"] == BAD
    assert sum(summary.counts.values()) == summary.total


def _running_on(sessions, ids: list[uuid.UUID]) -> int:  # type: ignore[no-untyped-def]
    with sessions() as session:
        return len(
            session.scalars(
                select(Job.id).where(Job.id.in_(ids), Job.status == JobStatus.running)
            ).all()
        )
