"""Every stable error code Darkroom reports, and the one exception tree that carries them.

    DarkroomError                 base: code (an ErrorCode), HTTP status, retryable
    ├── InvalidRequest            422  a request the schemas could not catch (bad cursor, options);
    │   │                              the API answers its own schema errors with the same status
    │   └── InvalidWebhook             a webhook target Darkroom must not call, or no secret
    ├── Unauthenticated           401  no API key, or an unknown or revoked one
    ├── NotFound                  404
    │   ├── JobNotFound
    │   ├── BatchNotFound
    │   └── TenantNotFound
    ├── MethodNotAllowed          405
    ├── Conflict                  409  e.g. cancelling a job that already finished
    ├── IdempotencyKeyReused      422  an Idempotency-Key sent again with a different request
    ├── InputNotFound             422  the job's input object does not exist
    ├── InputNotAllowed           403  an object key outside the allowed buckets
    ├── InvalidImage              422  corrupt, truncated, not an image, too many pixels
    ├── ModelNotFound             422  no such model in the catalogue
    ├── UnsupportedCheckpoint     422  a weights file no known architecture can run
    ├── ModelNotAllowed           403  a non-commercial model the operator has not allowed
    ├── ModelUnavailable          503  the model exists but its weights are not installed
    ├── PayloadTooLarge           413
    ├── RateLimited               429  over the tenant's rate; carries retry_after_s
    │   └── QuotaExceeded              over the tenant's ceiling of unfinished jobs
    ├── StorageError              503  retryable: the object store failed or timed out (the
    │                                  API says storage_unavailable, a job records storage_error)
    ├── DatabaseUnavailable       503  retryable: the database is unreachable
    ├── TimeLimitExceeded         --   a job ran past the soft time limit
    ├── WorkerLost                --   a job's worker stopped sending heartbeats
    ├── JobCancelled              --   raised inside a worker to stop a cancelled job
    └── RetryLater                --   a worker put its job back to queued; run it again later

Third-party errors become these once, where Darkroom meets the library: boto3's in
``shared.storage.s3``, the database's in ``shared.db.engine``. The API maps the tree to
responses in ``api.errors`` (one handler, plus a catch-all for anything else), each code with
one status (the README's table); the worker maps it to job states in ``workers.pipeline``:
retryable errors are retried with backoff, the others fail only their own job with ``code``
and ``message`` recorded.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """The machine-readable ``code`` of every error body and failed job. Stable: clients
    branch on these, so a value is never renamed."""

    invalid_request = "invalid_request"
    invalid_webhook = "invalid_webhook"
    unauthenticated = "unauthenticated"
    not_found = "not_found"
    job_not_found = "job_not_found"
    batch_not_found = "batch_not_found"
    tenant_not_found = "tenant_not_found"
    method_not_allowed = "method_not_allowed"
    http_error = "http_error"
    conflict = "conflict"
    idempotency_key_reused = "idempotency_key_reused"
    input_not_found = "input_not_found"
    input_not_allowed = "input_not_allowed"
    invalid_image = "invalid_image"
    model_not_found = "model_not_found"
    unsupported_checkpoint = "unsupported_checkpoint"
    model_not_allowed = "model_not_allowed"
    model_unavailable = "model_unavailable"
    payload_too_large = "payload_too_large"
    rate_limited = "rate_limited"
    quota_exceeded = "quota_exceeded"
    storage_error = "storage_error"
    storage_unavailable = "storage_unavailable"
    database_unavailable = "database_unavailable"
    time_limit_exceeded = "time_limit_exceeded"
    worker_lost = "worker_lost"
    cancelled = "cancelled"
    internal_error = "internal_error"


class DarkroomError(Exception):
    code: ErrorCode = ErrorCode.internal_error
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(DarkroomError):
    """422 like a schema error, which has the same code: a client branching on the status
    must not care whether a schema or a check after it found the mistake."""

    code = ErrorCode.invalid_request
    http_status = 422


class InvalidWebhook(InvalidRequest):
    code = ErrorCode.invalid_webhook


class Unauthenticated(DarkroomError):
    code = ErrorCode.unauthenticated
    http_status = 401


class NotFound(DarkroomError):
    code = ErrorCode.not_found
    http_status = 404


class JobNotFound(NotFound):
    code = ErrorCode.job_not_found


class BatchNotFound(NotFound):
    code = ErrorCode.batch_not_found


class TenantNotFound(NotFound):
    code = ErrorCode.tenant_not_found


class MethodNotAllowed(DarkroomError):
    code = ErrorCode.method_not_allowed
    http_status = 405


class Conflict(DarkroomError):
    code = ErrorCode.conflict
    http_status = 409


class IdempotencyKeyReused(DarkroomError):
    code = ErrorCode.idempotency_key_reused
    http_status = 422


class InputNotFound(DarkroomError):
    code = ErrorCode.input_not_found
    http_status = 422


class InputNotAllowed(DarkroomError):
    code = ErrorCode.input_not_allowed
    http_status = 403


class InvalidImage(DarkroomError):
    code = ErrorCode.invalid_image
    http_status = 422


class ModelNotFound(DarkroomError):
    code = ErrorCode.model_not_found
    http_status = 422


class UnsupportedCheckpoint(DarkroomError):
    code = ErrorCode.unsupported_checkpoint
    http_status = 422


class ModelNotAllowed(DarkroomError):
    code = ErrorCode.model_not_allowed
    http_status = 403


class ModelUnavailable(DarkroomError):
    code = ErrorCode.model_unavailable
    http_status = 503


class PayloadTooLarge(DarkroomError):
    code = ErrorCode.payload_too_large
    http_status = 413


class RateLimited(DarkroomError):
    code = ErrorCode.rate_limited
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int, code: ErrorCode | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class QuotaExceeded(RateLimited):
    code = ErrorCode.quota_exceeded


class StorageError(DarkroomError):
    code = ErrorCode.storage_error
    http_status = 503
    retryable = True


class DatabaseUnavailable(DarkroomError):
    code = ErrorCode.database_unavailable
    http_status = 503
    retryable = True


class TimeLimitExceeded(DarkroomError):
    code = ErrorCode.time_limit_exceeded
    http_status = 500


class WorkerLost(DarkroomError):
    code = ErrorCode.worker_lost
    http_status = 500


class JobCancelled(DarkroomError):
    code = ErrorCode.cancelled
    http_status = 409


class RetryLater(DarkroomError):
    """The job was put back to ``queued`` after ``cause``; run it again after ``countdown``
    seconds. Control flow between the pipeline and whoever delivered the job (Celery's retry,
    the embedded poller), never an outcome: the job's own state is already recorded."""

    def __init__(self, countdown: float, cause: DarkroomError) -> None:
        super().__init__(f"retry in {countdown:.1f}s: {cause.message}", code=cause.code)
        self.countdown = countdown
        self.cause = cause
        self.retryable = True
