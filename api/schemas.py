"""Request and response bodies: validation lives here, not in the routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.catalogue import DEFAULT_MODEL, ModelEntry
from shared.db.tables import Job, JobStatus, ReviewDecision
from shared.jobs import BatchSummary, ReviewCounts
from shared.jobs.options import JobOptions


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        default=DEFAULT_MODEL,
        max_length=255,
        description=(
            "A name from GET /v1/models, the preset 'handheld-night', or a chain of steps run "
            "in one worker: 'a+b+c', each step 'model' or 'model:task'."
        ),
    )
    input_key: str = Field(min_length=1, max_length=1024, description="Object key of the photo.")
    input_bucket: str | None = Field(
        default=None, description="An allowed input bucket; the configured input bucket if unset."
    )
    options: JobOptions = Field(default_factory=JobOptions)
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed (signed, see README) when the job finishes. https, public hosts.",
    )


class Timings(BaseModel):
    download: float | None = None
    decode: float | None = None
    restore: float | None = None
    measure: float | None = Field(
        default=None, description="Measuring the quality signals and making the previews."
    )
    encode: float | None = None
    upload: float | None = None
    device: float | None = Field(
        default=None,
        description="Seconds the model's device worked for this job: its share of each pass "
        "when a worker runs several jobs' tiles in one pass (restore then includes the wait).",
    )


class JobError(BaseModel):
    code: str
    message: str


class Result(BaseModel):
    bucket: str
    key: str
    url: str | None = Field(default=None, description="Presigned GET URL of the result.")
    expires_in_s: int | None = None
    deleted_at: datetime | None = Field(
        default=None, description="When retention deleted the result (no URL after that)."
    )


class Previews(BaseModel):
    before: str = Field(description="Presigned GET URL of a 512-px JPEG of the input.")
    after: str = Field(description="Presigned GET URL of a 512-px JPEG of the result.")
    expires_in_s: int


class ReviewReason(BaseModel):
    rule: str
    message: str = Field(description="The sentence a reviewer reads.")
    value: float
    threshold: float


class Review(BaseModel):
    flagged: bool = Field(description="Whether a review rule asks a person to look at it.")
    reasons: list[ReviewReason]
    decision: ReviewDecision | None
    note: str | None
    reviewed_at: datetime | None
    redo_of: uuid.UUID | None = Field(description="The job this one redoes.")

    @classmethod
    def from_job(cls, job: Job) -> Review:
        return cls(
            flagged=job.flagged,
            reasons=[ReviewReason.model_validate(r) for r in job.review_reasons or []],
            decision=job.review_decision,
            note=job.review_note,
            reviewed_at=job.reviewed_at,
            redo_of=job.redo_of,
        )


class JobOut(BaseModel):
    id: uuid.UUID
    batch_id: uuid.UUID | None
    status: JobStatus
    model: str
    options: dict[str, Any]
    input_bucket: str
    input_key: str
    progress: float
    attempts: int
    worker_host: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    timings: Timings
    error: JobError | None = Field(description="Why the job failed; only on a failed job.")
    last_error: JobError | None = Field(
        default=None,
        description="On a job still queued or running: why its last attempt did not finish "
        "(the job is being retried; it is not the job's outcome).",
    )
    result: Result | None
    quality: dict[str, Any] | None = Field(
        description="Signals measured on 512-px copies of the input and the result: mean_luma, "
        "black_share, clipped_share, noise, relative_noise, sharpness, cast (docs/review.md). "
        "Null on a succeeded job whose measuring failed (``measure_error`` says why)."
    )
    measure_error: str | None = Field(
        default=None,
        description="Why a succeeded job has no quality signals or previews: measuring is "
        "best-effort and never fails a restoration; no review rule reads missing figures.",
    )
    review: Review
    previews: Previews | None

    @classmethod
    def from_job(
        cls,
        job: Job,
        *,
        result_url: str | None = None,
        expires: int | None = None,
        previews: Previews | None = None,
    ) -> JobOut:
        recorded = (
            JobError(code=job.error_code, message=job.error_message or "")
            if job.error_code
            else None
        )
        error = recorded if job.status == JobStatus.failed else None
        last_error = recorded if job.status in (JobStatus.queued, JobStatus.running) else None
        result = (
            Result(
                bucket=job.output_bucket,
                key=job.output_key,
                url=result_url,
                expires_in_s=expires,
                deleted_at=job.result_expired_at,
            )
            if job.status == JobStatus.succeeded and job.output_bucket and job.output_key
            else None
        )
        return cls(
            id=job.id,
            batch_id=job.batch_id,
            status=job.status,
            model=job.model,
            options=job.options or {},
            input_bucket=job.input_bucket,
            input_key=job.input_key,
            progress=job.progress,
            attempts=job.attempts,
            worker_host=job.worker_host,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            timings=Timings(**job.timings),
            error=error,
            last_error=last_error,
            result=result,
            quality=job.quality,
            measure_error=job.measure_error,
            review=Review.from_job(job),
            previews=previews,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class BatchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, max_length=255)
    keys: list[str] | None = Field(default=None, max_length=100_000)
    prefix: str | None = Field(default=None, max_length=1024)
    input_bucket: str | None = None
    options: JobOptions = Field(default_factory=JobOptions)
    webhook_url: str | None = Field(
        default=None, max_length=2048, description="POSTed once, when the last job finishes."
    )

    @model_validator(mode="after")
    def _one_source(self) -> BatchCreate:
        if (self.keys is None) == (self.prefix is None):
            raise ValueError("give exactly one of 'keys' (a list of object keys) or 'prefix'")
        if self.keys is not None and not self.keys:
            raise ValueError("'keys' must not be empty")
        return self


class ReviewCountsOut(BaseModel):
    flagged: int = Field(
        description="Jobs a review rule flagged: pending + accepted + rejected + redo."
    )
    pending: int = Field(description="Flagged jobs nobody has decided on yet.")
    accepted: int = Field(description="Flagged jobs accepted.")
    rejected: int = Field(description="Flagged jobs rejected.")
    redo: int = Field(description="Flagged jobs sent to redo.")
    rules: dict[str, int] = Field(description="Flagged jobs per rule.")
    unflagged: dict[str, int] = Field(
        default_factory=dict,
        description="Decisions on jobs no rule flagged (a person who looked anyway, a failed "
        "job redone), by decision: not part of the queue (docs/review.md).",
    )

    @classmethod
    def from_counts(cls, counts: ReviewCounts) -> ReviewCountsOut:
        return cls(
            flagged=counts.flagged,
            pending=counts.pending,
            accepted=counts.decisions.get("accepted", 0),
            rejected=counts.decisions.get("rejected", 0),
            redo=counts.decisions.get("redo", 0),
            rules=counts.rules,
            unflagged=counts.unflagged,
        )


class BatchOut(BaseModel):
    id: uuid.UUID
    model: str
    options: dict[str, Any]
    input_prefix: str | None
    created_at: datetime
    total: int
    done: int
    counts: dict[str, int]
    throughput_per_s: float | None = Field(
        description="Finished jobs per second over the batch's original run (redos excluded, "
        "so a redo decided days later does not stretch it)."
    )
    eta_s: float | None = Field(description="Seconds until every job is finished, estimated.")
    started_at: datetime | None
    finished_at: datetime | None
    review: ReviewCountsOut

    @classmethod
    def from_summary(cls, summary: BatchSummary, review: ReviewCounts) -> BatchOut:
        batch = summary.batch
        return cls(
            id=batch.id,
            model=batch.model,
            options=batch.options or {},
            input_prefix=batch.input_prefix,
            created_at=batch.created_at,
            total=summary.total,
            done=summary.done,
            counts=summary.counts,
            throughput_per_s=summary.throughput_per_s,
            eta_s=summary.eta_s,
            started_at=summary.started_at,
            finished_at=summary.finished_at,
            review=ReviewCountsOut.from_counts(review),
        )


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        min_length=1,
        max_length=1024,
        description="The file's name, or its path relative to an archive's root "
        "('dim/a/2.png'): the folders are kept in the upload's key and in the result's key. "
        "Unsafe characters become '_'; '.' and '..' parts are dropped.",
    )
    content_type: str | None = Field(default=None, max_length=255)


class UploadOut(BaseModel):
    bucket: str
    key: str
    url: str = Field(description="PUT the file's bytes to this URL, then POST /v1/jobs.")
    method: str = "PUT"
    expires_in_s: int
    headers: dict[str, str] = Field(
        description="Headers the PUT must send exactly as given (the signature covers them): "
        "Content-Type when the request named one."
    )


class ModelOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    task: str
    tasks: list[str] = Field(description="Per-job tasks (option 'task') of a multi-task model.")
    architecture: str
    description: str
    queue: str
    ready: bool = Field(description="Whether the weights are installed, so jobs can run.")
    scale: int
    tile: int
    overlap: int
    precisions: list[str]
    licence: str
    noncommercial: bool = Field(
        description="The weights may not be used commercially (or carry no licence)."
    )
    allowed: bool = Field(
        description=(
            "Whether jobs may name it here: false for a non-commercial model unless the "
            "operator set DARKROOM_ALLOW_NONCOMMERCIAL_MODELS."
        )
    )
    parameters: int | None
    source_urls: list[str]
    urls: list[str]
    sha256: str | None
    default_options: dict[str, Any]

    @classmethod
    def from_entry(cls, entry: ModelEntry, queue: str, *, ready: bool, allowed: bool) -> ModelOut:
        return cls(
            name=entry.name,
            task=entry.task,
            tasks=list(entry.tasks),
            architecture=entry.architecture,
            description=entry.description,
            queue=queue,
            ready=ready,
            scale=entry.scale,
            tile=entry.tile,
            overlap=entry.overlap,
            precisions=list(entry.precisions),
            licence=entry.licence,
            noncommercial=entry.noncommercial,
            allowed=allowed,
            parameters=entry.parameters,
            source_urls=list(entry.source_urls),
            urls=list(entry.urls),
            sha256=entry.sha256,
            default_options=entry.default_options,
        )


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
