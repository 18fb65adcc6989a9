"""Typed errors, and what each one means for an HTTP response and for a job.

    DarkroomError                 base: code (stable, machine-readable), HTTP status, retryable
    ├── InvalidRequest            400  a request the schemas could not catch (bad cursor, options)
    ├── Unauthenticated           401  no API key, or an unknown or revoked one
    ├── NotFound                  404
    │   ├── JobNotFound
    │   └── BatchNotFound
    ├── Conflict                  409  e.g. cancelling a job that already finished
    ├── InputNotFound             422  the job's input object does not exist
    ├── InputNotAllowed           403  an object key outside the allowed buckets
    ├── InvalidImage              422  corrupt, truncated, not an image, too many pixels
    ├── ModelNotFound             422  no such model in the catalogue
    ├── ModelUnavailable          503  the model exists but its weights are not installed
    ├── PayloadTooLarge           413
    ├── RateLimited               429  over the tenant's rate or quota; carries retry_after_s
    ├── StorageError              502  retryable: the object store failed or timed out
    ├── DatabaseUnavailable       503  retryable
    ├── TimeLimitExceeded         --   a job ran past the soft time limit
    └── JobCancelled              --   raised inside a worker to stop a cancelled job

The API maps these to responses in ``api.app``; the worker maps them to job states in
``workers.pipeline``: retryable ones are retried with backoff, the others fail only their own job
with ``code`` and ``message`` recorded.
"""

from __future__ import annotations


class DarkroomError(Exception):
    code: str = "internal_error"
    http_status: int = 500
    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(DarkroomError):
    code = "invalid_request"
    http_status = 400


class Unauthenticated(DarkroomError):
    code = "unauthenticated"
    http_status = 401


class NotFound(DarkroomError):
    code = "not_found"
    http_status = 404


class JobNotFound(NotFound):
    code = "job_not_found"


class BatchNotFound(NotFound):
    code = "batch_not_found"


class Conflict(DarkroomError):
    code = "conflict"
    http_status = 409


class InputNotFound(DarkroomError):
    code = "input_not_found"
    http_status = 422


class InputNotAllowed(DarkroomError):
    code = "input_not_allowed"
    http_status = 403


class InvalidImage(DarkroomError):
    code = "invalid_image"
    http_status = 422


class ModelNotFound(DarkroomError):
    code = "model_not_found"
    http_status = 422


class ModelUnavailable(DarkroomError):
    code = "model_unavailable"
    http_status = 503


class PayloadTooLarge(DarkroomError):
    code = "payload_too_large"
    http_status = 413


class RateLimited(DarkroomError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(1, retry_after_s)


class StorageError(DarkroomError):
    code = "storage_error"
    http_status = 502
    retryable = True


class DatabaseUnavailable(DarkroomError):
    code = "database_unavailable"
    http_status = 503
    retryable = True


class TimeLimitExceeded(DarkroomError):
    code = "time_limit_exceeded"
    http_status = 500


class JobCancelled(DarkroomError):
    code = "cancelled"
    http_status = 409
