"""What submitting and cancelling work means, for the API and the CLI alike: checks of the
input, the model, the webhook and the tenant's ceiling of unfinished jobs, then the rows.

Each function runs in the caller's session, commits, and only then dispatches messages: a job
is never on the queue before its row is visible to the worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared import webhooks
from shared.catalogue.store import ModelStore
from shared.config import Settings
from shared.db.tables import Batch, Job
from shared.errors import InputNotAllowed, InvalidRequest, InvalidWebhook, QuotaExceeded
from shared.jobs import idempotency, repository
from shared.jobs.options import JobOptions
from shared.jobs.transitions import cancel
from shared.queue.dispatch import Dispatcher
from shared.storage.base import Storage
from shared.storage.keys import object_prefix, validate_key
from shared.tenants.accounts import OPERATOR, Caller

log = logging.getLogger(__name__)


def check_active(session: Session, caller: Caller, adding: int) -> None:
    """Refuse work that would take the tenant past its ceiling of unfinished jobs (queued and
    running, counted in the database), so one tenant's archive cannot fill every worker for
    days; a batch is refused whole rather than cut short."""
    if caller.max_active_jobs <= 0:
        return
    active = repository.count_active(session, caller.tenant_id)
    if active + adding > caller.max_active_jobs:
        raise QuotaExceeded(
            f"{active} jobs are still queued or running and at most {caller.max_active_jobs} "
            f"may be; this request adds {adding}",
            retry_after_s=60,
        )


def _check_bucket(settings: Settings, bucket: str) -> None:
    if bucket not in settings.readable_buckets:
        raise InputNotAllowed(
            f"bucket {bucket!r} is not an allowed input bucket "
            f"(allowed: {', '.join(sorted(settings.readable_buckets))})"
        )


def _check_input(settings: Settings, bucket: str, key: str, tenant_id: str) -> None:
    _check_bucket(settings, bucket)
    validate_key(key)
    _check_owned(key, tenant_id)


def _check_owned(key: str, tenant_id: str) -> None:
    prefix = object_prefix(tenant_id)
    if not key.startswith(prefix):
        raise InputNotAllowed(f"object key {key!r} is outside this tenant's prefix {prefix!r}")


def _check_webhook(
    session: Session, settings: Settings, tenant_id: str, url: str | None
) -> str | None:
    if url is None:
        return None
    webhooks.validate_target(url, settings)
    if webhooks.secret_for(session, settings, tenant_id) is None:
        raise InvalidWebhook("webhooks need a signing secret: set DARKROOM_WEBHOOK_SECRET")
    return url


def plan(
    models: ModelStore, model: str, options: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """Validate the model (or chain) and options; returns the queue family and the options.

    A chain runs on the queue of its first step, so workers serving chains hold every model
    of the chain.
    """
    normalised = JobOptions.model_validate(options or {}).model_dump(exclude_none=True)
    steps = models.chain(model, normalised.get("task"))
    return steps[0][0].family, normalised


def submit_job(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    models: ModelStore,
    *,
    model: str,
    input_key: str,
    input_bucket: str | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    webhook_url: str | None = None,
    caller: Caller = OPERATOR,
    input_digest: str | None = None,
) -> tuple[Job, bool]:
    """Create and enqueue one job. Returns (job, created): a repeated idempotency key with the
    same request returns the first job and sends nothing; with another request it is refused.
    ``input_digest`` identifies the input when its key is new on every try (a multipart
    upload's SHA-256), so a retried upload counts as the same request."""
    family, normalised = plan(models, model, options)
    bucket = input_bucket or settings.input_bucket
    tenant_id = caller.tenant_id
    _check_input(settings, bucket, input_key, tenant_id)
    webhook_url = _check_webhook(session, settings, tenant_id, webhook_url)
    input_id = {"sha256": input_digest} if input_digest else {"bucket": bucket, "key": input_key}
    request = {"model": model, "input": input_id, "options": normalised, "webhook": webhook_url}
    digest = idempotency.request_digest(request)
    scoped_key = idempotency.scoped(tenant_id, idempotency_key)
    if scoped_key and (existing := _first_job(session, scoped_key, idempotency_key, digest)):
        return existing, False
    check_active(session, caller, 1)
    try:
        job = repository.create_job(
            session,
            model=model,
            input_bucket=bucket,
            input_key=input_key,
            options=normalised,
            idempotency_key=scoped_key,
            request_digest=digest if scoped_key else None,
            tenant_id=tenant_id,
            webhook_url=webhook_url,
        )
        session.commit()
    except IntegrityError:
        # Two requests with the same key raced; the other one won.
        session.rollback()
        existing = _first_job(session, scoped_key or "", idempotency_key, digest)
        if existing is None:
            raise
        return existing, False
    dispatcher.dispatch([(job.id, family)])
    return job, True


def _first_job(session: Session, scoped_key: str, key: str | None, digest: str) -> Job | None:
    found = repository.find_by_idempotency_key(session, scoped_key)
    return idempotency.first_use(found, key or "", digest, "job")


def _first_batch(session: Session, scoped_key: str, key: str | None, digest: str) -> Batch | None:
    found = repository.find_batch_by_idempotency_key(session, scoped_key)
    return idempotency.first_use(found, key or "", digest, "batch")


def submit_batch(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    storage: Storage,
    models: ModelStore,
    *,
    model: str,
    keys: Sequence[str] | None = None,
    prefix: str | None = None,
    input_bucket: str | None = None,
    options: dict[str, Any] | None = None,
    webhook_url: str | None = None,
    caller: Caller = OPERATOR,
    idempotency_key: str | None = None,
) -> tuple[Batch, bool]:
    """One job per image, from an explicit key list or every object under a prefix. Returns
    (batch, created); idempotency keys work as for :func:`submit_job`."""
    family, normalised = plan(models, model, options)
    bucket = input_bucket or settings.input_bucket
    tenant_id = caller.tenant_id
    if bool(keys) == bool(prefix is not None):
        raise InvalidRequest("give either 'keys' or 'prefix', not both and not neither")
    webhook_url = _check_webhook(session, settings, tenant_id, webhook_url)
    request = {
        "model": model,
        "bucket": bucket,
        "keys": list(keys or []),
        "prefix": prefix,
        "options": normalised,
        "webhook": webhook_url,
    }
    digest = idempotency.request_digest(request)
    scoped_key = idempotency.scoped(tenant_id, idempotency_key)
    if scoped_key and (existing := _first_batch(session, scoped_key, idempotency_key, digest)):
        return existing, False
    keys = _batch_keys(settings, storage, bucket, keys, prefix, tenant_id)
    check_active(session, caller, len(keys))
    try:
        batch, job_ids = repository.create_batch(
            session,
            model=model,
            options=normalised,
            inputs=[(bucket, key) for key in keys],
            input_prefix=prefix,
            tenant_id=tenant_id,
            webhook_url=webhook_url,
            idempotency_key=scoped_key,
            request_digest=digest if scoped_key else None,
        )
        session.commit()
    except IntegrityError:
        session.rollback()  # the same key raced in from another request, which won
        existing = _first_batch(session, scoped_key or "", idempotency_key, digest)
        if existing is None:
            raise
        return existing, False
    dispatcher.dispatch([(job_id, family) for job_id in job_ids])
    return batch, True


def _batch_keys(
    settings: Settings,
    storage: Storage,
    bucket: str,
    keys: Sequence[str] | None,
    prefix: str | None,
    tenant_id: str,
) -> list[str]:
    """The batch's input keys, checked: the list given, or every object under the prefix."""
    if prefix is not None:
        _check_bucket(settings, bucket)
        if prefix:
            validate_key(prefix)
        _check_owned(prefix, tenant_id)
        keys = [obj.key for obj in storage.list(bucket, prefix) if not obj.key.endswith("/")]
        if not keys:
            raise InvalidRequest(f"no objects under prefix {prefix!r} in bucket {bucket!r}")
    assert keys is not None
    if len(keys) > settings.max_batch_size:
        raise InvalidRequest(f"a batch holds at most {settings.max_batch_size} images")
    for key in keys:
        _check_input(settings, bucket, key, tenant_id)
    return list(keys)


def cancel_job(session: Session, job_id: uuid.UUID, tenant_id: str | None = None) -> Job:
    job = cancel(session, job_id, tenant_id)
    session.commit()
    return job


@dataclass(frozen=True)
class ResultLink:
    url: str
    expires_in_s: int


def result_link(settings: Settings, storage: Storage, job: Job) -> ResultLink | None:
    if job.output_bucket is None or job.output_key is None or job.result_expired_at is not None:
        return None
    url = storage.presign_get(job.output_bucket, job.output_key, settings.presign_expiry_s)
    return ResultLink(url=url, expires_in_s=settings.presign_expiry_s)


def preview_links(settings: Settings, storage: Storage, job: Job) -> tuple[str, str] | None:
    """Presigned URLs of a job's before and after previews, while its result is kept."""
    before, after = job.preview_key("before"), job.preview_key("after")
    if before is None or after is None or job.output_bucket is None:
        return None
    return (
        storage.presign_get(job.output_bucket, before, settings.presign_expiry_s),
        storage.presign_get(job.output_bucket, after, settings.presign_expiry_s),
    )
