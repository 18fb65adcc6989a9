"""Database tables. The database, not the broker, is the source of truth for every job."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model: Mapped[str] = mapped_column(String(255))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_prefix: Mapped[str | None] = mapped_column(String(1024))
    job_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_batch_status", "batch_id", "status"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
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
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """Refreshed by the worker while it runs the job; a stale one means the worker died."""
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    download_s: Mapped[float | None] = mapped_column(Float)
    decode_s: Mapped[float | None] = mapped_column(Float)
    restore_s: Mapped[float | None] = mapped_column(Float)
    encode_s: Mapped[float | None] = mapped_column(Float)
    upload_s: Mapped[float | None] = mapped_column(Float)

    @property
    def timings(self) -> dict[str, float | None]:
        return {stage: getattr(self, f"{stage}_s") for stage in STAGES}
