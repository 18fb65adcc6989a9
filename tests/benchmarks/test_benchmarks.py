"""The benchmarks' own code at a tiny size, on the suite's real services: every job they time
must really have run, once, and every figure they print must come from a finished run."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
import redis
import torch
from rich.console import Console
from sqlalchemy import func, select

from benchmarks import queue_overhead, throughput
from benchmarks.stack import Stack
from shared.models import Job, JobStatus

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(service_env: dict[str, str], s3, tmp_path: Path) -> Stack:  # type: ignore[no-untyped-def]
    """The suite's services under a queue prefix of its own (its workers serve only it)."""
    env = {
        **service_env,
        "DARKROOM_QUEUE_PREFIX": f"darkroom-bench-{uuid.uuid4().hex[:6]}",
    }
    return Stack(env, s3, tmp_path)


def test_queue_overhead_runs_every_job_once(stack: Stack) -> None:
    report = queue_overhead.run(stack, roundtrips=5, drain=10, jobs=6, batch=50)

    assert report.raw.roundtrips_per_s > 0 and report.raw.drained_per_s > 0
    assert report.serial.jobs_per_s > 0
    assert set(report.batches) == {1, 3}
    for finished in report.batches.values():
        assert finished.counts == {"succeeded": 6}
        assert finished.attempts == 6
        assert set(finished.stages) == {"download", "decode", "restore", "encode", "upload"}
    creation = report.creation
    assert (creation.jobs, creation.queued_messages) == (50, 50)
    assert 0 < creation.enqueue_s < creation.request_s
    # The batch's jobs are cancelled and their messages gone, so no reconciler sends them.
    with stack.sessions() as session:
        queued = session.scalar(
            select(func.count()).where(
                Job.input_key.like("batch/%"), Job.status == JobStatus.queued
            )
        )
    assert queued == 0
    out = io.StringIO()
    queue_overhead.print_report(report, Console(file=out, width=200))
    assert "raw Celery" in out.getvalue() and "batch creation: 50 jobs" in out.getvalue()


def test_throughput_compares_the_model_alone_with_the_whole_path(
    stack: Stack, model_dir: Path
) -> None:
    photos = throughput.make_photos(2, 0.01)
    report = throughput.run(
        stack,
        model="mirnet-lol",
        model_dir=model_dir,
        photos=photos,
        megapixels=0.01,
        concurrency=[1, 2],
        device=torch.device("cpu"),
        repeat=1,
        device_batch_tiles=8,
    )

    assert report.raw.photos_per_s > 0 and report.reference.photos_per_s > 0
    assert [(run.concurrency, run.device_batch_tiles) for run in report.runs] == [
        (1, 0),
        (2, 0),
        (2, 8),
    ]
    for run in report.runs:
        assert run.finished.counts == {"succeeded": 2}
        assert run.finished.attempts == 2
        assert run.rate.photos_per_s > 0 and 0 < run.model_busy <= 1
        assert run.gpu_utilisation is None  # CPU: not measurable, printed as n/a
        restoring = run.finished.stages["restore"] * 2
        if run.device_batch_tiles:  # the worker merged passes: charged its passes, not its wait
            assert run.finished.device_s < restoring
        else:  # each job held the device for its whole restore
            assert run.finished.device_s == pytest.approx(restoring)
    # The recipe's output is 400 px on its shortest side whatever the photo: 528 x 400 here.
    assert report.reference_out_megapixels == pytest.approx(528 * 400 / 1e6)
    out = io.StringIO()
    throughput.print_report(report, Console(file=out, width=200))
    assert "raw model limit" in out.getvalue() and "reference recipe" in out.getvalue()
    assert (
        redis.Redis.from_url(stack.settings.broker_url).llen(stack.settings.queue_for("mirnet"))
        == 0
    )
