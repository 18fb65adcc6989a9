"""One job, start to finish: claim, download, decode, restore, encode (and measure), upload,
record.

The same function runs under Celery and in the embedded mode. Every outcome ends in the
database: a bad input or a missing model fails only its own job with a stable code; a transient
storage or database error puts the job back to ``queued`` and asks the caller to retry later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from sqlalchemy.orm import Session

from imaging import quality
from imaging.decoding import decode
from imaging.encoding import encode
from imaging.image_types import DecodedImage, EncodedImage
from restoration.device.batching import (
    DIRECT,
    BatchedRunner,
    DeviceRunner,
)
from restoration.restorers import Restorer, run_chain
from shared import jobs, logs
from shared.backoff import backoff_delay
from shared.catalogue import ModelEntry
from shared.config import Settings
from shared.db.tables import STAGES, Job, JobStatus
from shared.errors import (
    DarkroomError,
    DatabaseUnavailable,
    ErrorCode,
    JobCancelled,
    RetryLater,
    TimeLimitExceeded,
)
from shared.review import rules as review
from shared.storage.keys import preview_key, result_key
from workers import metrics
from workers.context import WorkerContext

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REPORT_EVERY_S = 0.5
"""Least time between a running job's progress writes and cancel checks."""

# Share of the job done when each stage ends; restoring dominates.
_PROGRESS = {"download": 0.1, "decode": 0.2, "restore": 0.85, "encode": 0.95}


DEVICE_WAIT_CHECK_S = 1.0
"""A job waiting for the device checks this often whether it was cancelled meanwhile."""


def output_key(job: Job, extension: str) -> str:
    """Deterministic, so a redelivered job overwrites its own result instead of adding one."""
    return result_key(job.tenant_id, job.id, job.input_key, extension)


def backoff(settings: Settings, attempt: int) -> float:
    """A job's wait before its ``attempt``-th retry (see ``shared.backoff``)."""
    return backoff_delay(
        settings.retry_backoff_s, attempt, factor=2, ceiling_s=settings.retry_backoff_max_s
    )


class _Run:
    def __init__(self, ctx: WorkerContext, job: Job) -> None:
        self.ctx = ctx
        self.job = job
        self.timings: dict[str, float] = {}
        self.measure_error: str | None = None
        """Why this job's quality signals or previews are missing (see ``_side_measure``)."""
        self.megapixels: float | None = None
        self.started = time.monotonic()
        self.last_report = self.started  # the claim just wrote the job

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        self.check_stop(progress=_PROGRESS.get(name))

    def _report_due(self) -> bool:
        """Progress and cancel checks go to the database at most every ``REPORT_EVERY_S``: a
        photo that takes milliseconds needs no progress bar, and each write is a round trip
        that would cost more than the work."""
        now = time.monotonic()
        if now - self.last_report < REPORT_EVERY_S:
            return False
        self.last_report = now
        return True

    def check_stop(self, progress: float | None = None) -> None:
        """Between units of work: stop a cancelled job, or one past the soft time limit (the
        solo pool GPU workers use does not enforce Celery's time limits). When the database
        is due a visit, ``progress`` is recorded in the same statement that reads the cancel
        flag."""
        limit = self.ctx.settings.job_soft_time_limit_s
        if time.monotonic() - self.started > limit:
            raise TimeLimitExceeded(f"job ran longer than the {limit}s soft time limit")
        if not self._report_due():
            return
        with self.ctx.sessions.begin() as session:
            if progress is None:
                cancelled = jobs.cancel_requested(session, self.job.id)
            else:
                cancelled = jobs.record_progress(session, self.job.id, progress, self.timings)
        if cancelled:
            raise JobCancelled(f"job {self.job.id} cancelled")

    @contextmanager
    def on_device(self) -> Iterator[DeviceRunner]:
        """Wait for the device (see ``WorkerContext.device_lock``); a job cancelled or past its time
        limit while it waits stops without taking it. With ``WorkerContext.batcher`` the job
        takes nothing here: each of its passes waits for the device, and stops the same way."""
        if self.ctx.batcher is not None:
            yield self.ctx.batcher.runner(self.check_stop, DEVICE_WAIT_CHECK_S)
            return
        while not self.ctx.device_lock.acquire(timeout=DEVICE_WAIT_CHECK_S):
            self.check_stop()
        try:
            thread = self.ctx.device_thread
            yield thread.runner() if thread is not None else DIRECT
        finally:
            self.ctx.device_lock.release()

    def _restorer(self, entry: ModelEntry, runner: DeviceRunner) -> Restorer:
        """The entry's loaded model; loading it, if it is not, on the device (``runner``)."""
        cache = self.ctx.restorers
        loaded = cache.peek(entry)
        if loaded is not None:
            return loaded
        return runner.alone(lambda: cache.get(entry), charged=False)

    def _side_measure(self, what: str, make: Callable[[], _T]) -> _T | None:
        """A quality signal or a preview is a side measure: when making or storing one fails
        (a missing optional library, a photo the measures choke on, a store that refuses the
        small files), the restoration already made is kept and the job succeeds without it.
        The reason is recorded with the job (``measure_error``), logged with the job's id and
        counted, so a broken measure is seen without costing anyone a photo."""
        try:
            return make()
        except (JobCancelled, TimeLimitExceeded):
            raise
        except Exception as exc:  # best-effort: whatever a side measure raised
            if isinstance(exc, DarkroomError):
                reason = exc.message
            else:
                reason = f"{type(exc).__name__}: {exc}"
            self.measure_error = f"{what}: {reason}"
            log.warning("job %s: %s", self.job.id, self.measure_error, exc_info=True)
            metrics.MEASURE_FAILURES.labels(self.job.model, type(exc).__name__).inc()
            return None

    def _store_previews(self, measured: quality.Measured) -> tuple[str, str]:
        job, ctx = self.job, self.ctx
        bucket = ctx.settings.output_bucket
        previews = (
            preview_key(job.tenant_id, job.id, "before"),
            preview_key(job.tenant_id, job.id, "after"),
        )
        ctx.storage.put(bucket, previews[0], measured.before_preview, "image/jpeg")
        ctx.storage.put(bucket, previews[1], measured.after_preview, "image/jpeg")
        return previews

    def execute(self) -> bool:
        """Run every stage; False when the job was taken from this worker meanwhile (the
        reaper requeued it and another delivery finished it first)."""
        ctx, job = self.ctx, self.job
        options = job.options or {}
        with self.stage("download"):
            data = ctx.storage.get(job.input_bucket, job.input_key)
        with self.stage("decode"):
            decoded = decode(
                data,
                max_pixels=ctx.settings.max_pixels,
                max_aspect_ratio=ctx.settings.max_aspect_ratio,
            )
        self.megapixels = decoded.width * decoded.height / 1e6
        pixels = self._restore(decoded.pixels, options.get("task"))
        encoded, measured = self._encode_and_measure(decoded, pixels, options)
        key = output_key(job, encoded.extension)
        bucket = ctx.settings.output_bucket
        with self.stage("upload"):
            ctx.storage.put(bucket, key, encoded.data, encoded.content_type)
            previews = None
            if measured is not None:
                made = measured  # for the closure: mypy keeps the narrowing
                previews = self._side_measure(
                    "previews not stored", lambda: self._store_previews(made)
                )
        signals = measured.quality if measured is not None else None

        def record(session: Session) -> bool:
            thresholds = jobs.review_thresholds(
                session, ctx.settings.review, job.tenant_id, options
            )
            return jobs.succeed(
                session,
                job.id,
                output_bucket=bucket,
                output_key=key,
                timings=self.timings,
                quality=signals,
                # No figures, no flags: a rule never trips on what was not measured.
                reasons=review.check(signals, thresholds),
                previews=previews,
                measure_error=self.measure_error,
            )

        # The result is fully stored now; a database blip must not throw that work away.
        return write_through_outage(ctx, record)

    def _restore(self, pixels: np.ndarray, task: str | None) -> np.ndarray:
        """The job's model (or chain) over the decoded pixels, on the device."""
        steps = self.ctx.catalogue.chain(self.job.model, task)
        # The device is taken outside the stage, so "restore" times the model, not the wait;
        # with a batcher, "restore" includes waiting for passes that other jobs' tiles share.
        with self.on_device() as runner:
            # A model not loaded yet is loaded (and warmed up) holding the device: on the
            # batcher's device thread, the one that runs its passes later (cuDNN keeps its
            # tuned plans per thread), and never while another job's tiles are on the device.
            restorers = [(self._restorer(entry, runner), task) for entry, task in steps]
            with self.stage("restore"):
                restored = run_chain(restorers, pixels, self.check_stop, runner)
        # How long the device worked for this job: all of its restore when it held the device,
        # else its share of the passes, so the sum over jobs is the device's busy time.
        busy = runner.busy_s if isinstance(runner, BatchedRunner) else self.timings["restore"]
        self.timings["device"] = busy
        return restored

    def _encode_and_measure(
        self, decoded: DecodedImage, pixels: np.ndarray, options: dict[str, Any]
    ) -> tuple[EncodedImage, quality.Measured | None]:
        """The result encoded, and its quality signals and previews (None when measuring
        failed: see :meth:`_side_measure`).

        Measuring runs beside encoding, on a thread of its own (both spend their time in
        numpy, scikit-image and Pillow, which let go of the GIL): a photo's signals and
        previews cost its job almost no time where the worker has a core to spare. "measure"
        records the measuring's own seconds, which overlap "encode"."""
        with (
            self.stage("encode"),
            ThreadPoolExecutor(1, thread_name_prefix="measure") as beside,
        ):
            measuring = beside.submit(_timed, quality.measure, decoded.pixels, pixels)
            encoded = encode(
                decoded,
                pixels,
                fmt=options.get("output_format"),
                jpeg_quality=options.get("jpeg_quality", self.ctx.settings.default_jpeg_quality),
            )
            timed = self._side_measure("quality signals and previews not made", measuring.result)
        if timed is None:
            return encoded, None
        measured, self.timings["measure"] = timed
        return encoded, measured


def _timed(function: Callable[..., _T], *args: object) -> tuple[_T, float]:
    start = time.perf_counter()
    return function(*args), time.perf_counter() - start


def run_job(job_id: uuid.UUID, ctx: WorkerContext, retries: int = 0) -> JobStatus | None:
    """Run one job if it is still queued. Returns its final status, or None if another delivery
    owns it (or it was cancelled before it started). Raises ``RetryLater`` on transient errors;
    ``retries`` (how often this delivery was retried already) makes its wait grow."""
    try:
        with ctx.sessions.begin() as session:
            job = jobs.claim(session, job_id, ctx.host)
            if job is None:
                log.info("job %s is not queued any more; skipping this delivery", job_id)
                return None
    except DatabaseUnavailable as exc:
        raise RetryLater(backoff(ctx.settings, retries + 1), exc) from exc

    run = _Run(ctx, job)
    ctx.running.add(job_id)
    try:
        with logs.job_context(job_id):
            return _execute(ctx, job, run)
    finally:
        ctx.running.discard(job_id)


def _execute(ctx: WorkerContext, job: Job, run: _Run) -> JobStatus | None:
    job_id = job.id
    try:
        if not run.execute():
            log.warning("job %s was taken from this worker before it finished", job_id)
            return None
        seconds = sum(run.timings.get(stage, 0.0) for stage in STAGES)
        log.info("job %s succeeded in %.2fs", job_id, seconds)
        metrics.job_finished(job.model, "succeeded", run.timings, megapixels=run.megapixels)
        return JobStatus.succeeded
    except JobCancelled:
        write_through_outage(ctx, lambda session: jobs.mark_cancelled(session, job_id))
        log.info("job %s cancelled while running", job_id)
        metrics.job_finished(job.model, "cancelled", run.timings)
        return JobStatus.cancelled
    except DarkroomError as exc:
        if exc.retryable:
            metrics.job_finished(job.model, "retried", run.timings, code=exc.code)
            return _transient(ctx, job, exc, run)
        _fail(ctx, job_id, exc.code, exc.message, run.timings)
        metrics.job_finished(job.model, "failed", run.timings, code=exc.code)
        return JobStatus.failed
    except Exception as exc:  # a bug or an unexpected library error fails only this job
        log.exception("job %s failed unexpectedly", job_id)
        message = f"{type(exc).__name__}: {exc}"
        _fail(ctx, job_id, ErrorCode.internal_error, message, run.timings)
        metrics.job_finished(job.model, "failed", run.timings, code=ErrorCode.internal_error)
        return JobStatus.failed


def _transient(ctx: WorkerContext, job: Job, exc: DarkroomError, run: _Run) -> JobStatus:
    attempts = job.attempts
    if attempts >= ctx.settings.max_attempts:
        message = f"{exc.message} (gave up after {attempts} attempts)"
        _fail(ctx, job.id, exc.code, message, run.timings)
        return JobStatus.failed
    write_through_outage(
        ctx, lambda session: jobs.requeue(session, job.id, code=exc.code, message=exc.message)
    )
    countdown = backoff(ctx.settings, attempts)
    log.warning("job %s: %s; retrying in %.1fs", job.id, exc.message, countdown)
    raise RetryLater(countdown, exc)


def _fail(
    ctx: WorkerContext, job_id: uuid.UUID, code: str, message: str, timings: dict[str, float]
) -> None:
    write_through_outage(
        ctx, lambda session: jobs.fail(session, job_id, code=code, message=message, timings=timings)
    )
    log.warning("job %s failed: %s: %s", job_id, code, message)


def write_through_outage(ctx: WorkerContext, write: Callable[[Session], _T]) -> _T:
    """Run one short transaction that records a job's outcome, retrying with backoff while the
    database is unreachable, for up to ``database_retry_s``.

    Without this a database blip at the wrong moment escaped the pipeline: Celery acknowledged
    the message as failed and the job sat ``running`` until the reaper noticed, minutes later
    (or the finished work was redone). The writes are conditional transitions, so repeating one
    whose commit did land is harmless. Past the deadline the error propagates and the reaper
    remains the backstop.
    """
    deadline = time.monotonic() + ctx.settings.database_retry_s
    attempt = 0
    while True:
        attempt += 1
        try:
            with ctx.sessions.begin() as session:
                return write(session)
        except DatabaseUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("database still unavailable after %d tries; giving up: %s", attempt, exc)
                raise
            delay = min(backoff(ctx.settings, attempt), left)
            log.warning("database unavailable (%s); retrying in %.1fs", exc.message, delay)
            time.sleep(delay)


def run_inline(job_id: uuid.UUID, ctx: WorkerContext) -> JobStatus | None:
    """Embedded mode: run a job in this process, sleeping through retries."""
    while True:
        try:
            return run_job(job_id, ctx)
        except RetryLater as retry:
            time.sleep(retry.countdown)
