"""Database tables. The database, not the broker, is the source of truth for every job."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from shared.config import DEFAULT_TENANT


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp on every database: SQLite stores no zone and hands back
    naive values, which the API would otherwise emit without an offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})

# Stored as plain strings (no native enum type) so adding a state needs no PostgreSQL ALTER TYPE.
_status_type = Enum(
    JobStatus, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
)

STAGES = ("download", "decode", "restore", "encode", "upload")
"""A job's stages, one after the other: their seconds add up to the job's time."""
TIMINGS = (*STAGES, "measure", "device")
"""What a job's timings record: each stage's seconds, the seconds its quality signals and
previews took (beside ``encode``, so not added to the stages), and the device seconds charged
to it."""


class Tenant(Base):
    """A customer: every job, batch, upload and result belongs to exactly one."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    webhook_secret: Mapped[str] = mapped_column(String(128))
    """Signs this tenant's webhooks; kept readable because HMAC needs it, shown once."""
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    """Jobs this tenant may submit per minute; empty: the server's default."""
    max_active_jobs: Mapped[int | None] = mapped_column(Integer)
    """Jobs this tenant may have queued or running at once; empty: the server's default."""
    review_rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """This tenant's review thresholds, by rule (``shared.review``): a number, or false for a
    rule turned off; the server's where a rule is missing. A batch's options override them."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    link_secret: Mapped[str] = mapped_column(String(128))
    """Signs this tenant's report links (``shared.tenants.links``), apart from the webhook
    secret; replaced to end them all (``darkroom tenants rotate-link-secret``)."""


class ReviewDecision(enum.StrEnum):
    """What a person decided about a finished job (``POST /v1/jobs/{id}/review``)."""

    accepted = "accepted"
    rejected = "rejected"
    redo = "redo"
    """Run again with another model or options: a new job, linked by ``Job.redo_of``."""


class ApiKey(Base):
    """Only a SHA-256 of the key is stored: keys are long random strings, so a fast hash is
    enough, and a leaked table grants nothing."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(
        String(48), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    """The first characters, so operators can tell keys apart without the secret."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """An event waiting to be POSTed, written in the same transaction as the status change
    it reports, so a crash can delay a webhook but never lose it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(48))
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending, delivered or failed (gave up after the last attempt)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(
        String(48), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )
    model: Mapped[str] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_prefix: Mapped[str | None] = mapped_column(String(1024))
    job_count: Mapped[int] = mapped_column(Integer, default=0)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    """Told once, when the last job of the batch finishes."""
    idempotency_key: Mapped[str | None] = mapped_column(
        String(255), unique=True
    )  # ``<tenant>/<key>``, as for jobs
    request_digest: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the request the key was first used with: the same key with another request
    is refused, not silently answered with this batch."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_batch_status", "batch_id", "status"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_jobs_tenant_status", "tenant_id", "status"),
        Index("ix_jobs_finished", "status", "finished_at"),
        Index("ix_jobs_batch_flagged", "batch_id", "flagged", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(
        String(48), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT
    )
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("batches.id", ondelete="CASCADE")
    )
    status: Mapped[JobStatus] = mapped_column(_status_type, default=JobStatus.queued, index=True)
    model: Mapped[str] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_bucket: Mapped[str] = mapped_column(String(255))
    input_key: Mapped[str] = mapped_column(String(1024))
    output_bucket: Mapped[str | None] = mapped_column(String(255))
    output_key: Mapped[str | None] = mapped_column(String(1024))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    """Stored as ``<tenant>/<key>``: two tenants may use the same key."""
    request_digest: Mapped[str | None] = mapped_column(String(64))
    """SHA-256 of the request ``idempotency_key`` was first used with."""
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Refreshed by the worker while it runs the job; a stale one means the worker died."""
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """Set when retention removed the result object; the job row stays for the record."""
    download_s: Mapped[float | None] = mapped_column(Float)
    decode_s: Mapped[float | None] = mapped_column(Float)
    restore_s: Mapped[float | None] = mapped_column(Float)
    measure_s: Mapped[float | None] = mapped_column(Float)
    """Measuring the quality signals and making the previews (``imaging.quality``)."""
    encode_s: Mapped[float | None] = mapped_column(Float)
    upload_s: Mapped[float | None] = mapped_column(Float)
    device_s: Mapped[float | None] = mapped_column(Float)
    """Seconds the device worked for this job: its whole restore stage when it held the device
    alone, its tiles' share of each forward pass when jobs share passes
    (``restoration.device.batching``). Summed over jobs, the device's busy time; ``restore_s`` then
    includes waiting for it."""

    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The quality signals of the input and the result (``imaging.quality``), once succeeded."""
    measure_error: Mapped[str | None] = mapped_column(Text)
    """Why a succeeded job has no ``quality`` (nor previews): measuring is best-effort, and a
    restoration that worked is never thrown away for a side figure."""
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """Whether a review rule tripped: a person should look at this job (``review_reasons``)."""
    flags: Mapped[str | None] = mapped_column(String(255))
    """The names of the rules it tripped, as ``,still_dark,noise_amplified,``: what the review
    queue filters on with a plain LIKE on every database."""
    review_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """The rules this job tripped: ``[{rule, message, value, threshold}]``."""
    review_decision: Mapped[ReviewDecision | None] = mapped_column(
        Enum(
            ReviewDecision,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redo_of: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    """The job a person sent back to be redone; this one is its new try (both results stay)."""
    before_preview_key: Mapped[str | None] = mapped_column(String(1024))
    after_preview_key: Mapped[str | None] = mapped_column(String(1024))
    """512-px JPEGs of the input and the result, in the output bucket beside the result."""

    def preview_key(self, side: str) -> str | None:
        """The key of the ``before`` or ``after`` preview, while the result is kept (retention
        deletes the previews with it)."""
        if self.result_expired_at is not None:
            return None
        return self.before_preview_key if side == "before" else self.after_preview_key

    @property
    def timings(self) -> dict[str, float | None]:
        return {name: getattr(self, f"{name}_s") for name in TIMINGS}
