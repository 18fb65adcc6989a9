"""Webhooks: tell a web app when its job (or batch) is done, without ever blocking a worker.

Events are rows written in the same transaction as the status change (``job_finished``), and
a background thread in each worker POSTs them (``deliver_due``), retrying with backoff. Each
POST is signed like Stripe's: ``Darkroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` with the tenant's webhook secret, so receivers can check origin and freshness.

Targets are checked when a job is submitted and again before every POST (DNS can change):
https only, and no loopback, private or link-local addresses unless an operator allows them,
so a tenant cannot make Darkroom call into its own network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import InvalidRequest
from shared.models import (
    DEFAULT_TENANT,
    Batch,
    Job,
    JobStatus,
    Tenant,
    WebhookDelivery,
    utcnow,
)
from shared.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Darkroom-Signature"
_ACTIVE = [JobStatus.queued, JobStatus.running]


class InvalidWebhook(InvalidRequest):
    code = "invalid_webhook"


def validate_target(url: str, settings: Settings) -> str:
    """Refuse targets a tenant must not reach through Darkroom; returns the URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidWebhook(f"webhook URL {url!r} is not a URL: {exc}") from None
    allowed = {"https", "http"} if settings.webhook_allow_private else {"https"}
    if parsed.scheme not in allowed:
        raise InvalidWebhook(f"webhook URL must use {' or '.join(sorted(allowed))}")
    if not parsed.host:
        raise InvalidWebhook("webhook URL has no host")
    if parsed.userinfo:
        raise InvalidWebhook("webhook URL must not carry credentials")
    if settings.webhook_allow_private:
        return url
    try:
        infos = socket.getaddrinfo(parsed.host, parsed.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidWebhook(f"webhook host {parsed.host!r} does not resolve: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidWebhook(
                f"webhook host {parsed.host!r} resolves to {address}, which is not a public address"
            )
    return url


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """What a receiver runs: right secret, unchanged body, and not a replay of an old POST."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


def secret_for(session: Session, settings: Settings, tenant_id: str) -> str | None:
    if tenant_id == DEFAULT_TENANT:
        secret = settings.webhook_secret
        return secret.get_secret_value() if secret else None
    tenant = session.get(Tenant, tenant_id)
    return tenant.webhook_secret if tenant else None


# --- events -----------------------------------------------------------------------------------


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "status": job.status.value,
        "model": job.model,
        "input_key": job.input_key,
        "output_bucket": job.output_bucket,
        "output_key": job.output_key,
        "error": {"code": job.error_code, "message": job.error_message}
        if job.status == JobStatus.failed
        else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def _queue(session: Session, tenant_id: str, url: str, event: str, data: dict[str, Any]) -> None:
    session.add(
        WebhookDelivery(
            tenant_id=tenant_id,
            url=url,
            event=event,
            payload={"event": event, "data": data},
            status="pending",
            attempts=0,
            next_attempt_at=utcnow(),
        )
    )
    session.flush()


def job_finished(
    session: Session, job_id: uuid.UUID, *, has_webhook: bool, batch_id: uuid.UUID | None
) -> None:
    """Called in the transaction that moved the job to a final state, with what that update
    returned, so a job owing nothing costs no query."""
    if has_webhook:
        job = session.get(Job, job_id, populate_existing=True)
        if job is not None and job.webhook_url:
            event = f"job.{job.status.value}"
            _queue(session, job.tenant_id, job.webhook_url, event, job_payload(job))
    if batch_id is not None:
        finish_batch_if_done(session, batch_id)


def finish_batch_if_done(session: Session, batch_id: uuid.UUID) -> bool:
    """Mark the batch finished once no job of it is left; only the caller whose update wins
    queues the batch's webhook, so it is sent once however many workers race here."""
    if session.scalar(select(exists().where(Job.batch_id == batch_id, Job.status.in_(_ACTIVE)))):
        return False
    won = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.finished_at.is_(None))
        .values(finished_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not won:
        return False
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is not None and batch.webhook_url:
        from shared.jobs import summarize_batch

        summary = summarize_batch(session, batch_id)
        data = {"id": str(batch_id), "total": summary.total, "counts": summary.counts}
        _queue(session, batch.tenant_id, batch.webhook_url, "batch.finished", data)
    return True


def sweep_batches(session: Session) -> int:
    """Finish batches whose last two jobs ended in concurrent transactions (each saw the other
    still running, so neither finished the batch)."""
    open_batches = session.scalars(
        select(Batch.id).where(
            Batch.finished_at.is_(None),
            ~exists().where(Job.batch_id == Batch.id, Job.status.in_(_ACTIVE)),
        )
    ).all()
    return sum(finish_batch_if_done(session, batch_id) for batch_id in open_batches)


# --- delivery ---------------------------------------------------------------------------------


def _backoff(settings: Settings, attempts: int) -> float:
    ceiling = min(3600.0, settings.retry_backoff_s * 4 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def _claim_due(sessions: sessionmaker[Session], settings: Settings, limit: int) -> list[uuid.UUID]:
    """Take due deliveries by pushing their next attempt out (a lease): another worker skips
    them, and a worker that dies mid-POST leaves them to be retried when the lease ends."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.webhook_timeout_s * 3)
    claimed = []
    with sessions.begin() as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        ).all()
        for delivery_id in due:
            taken = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease, attempts=WebhookDelivery.attempts + 1)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if taken:
                claimed.append(delivery_id)
    return claimed


def _post(client: httpx.Client, settings: Settings, delivery: WebhookDelivery, secret: str) -> None:
    validate_target(delivery.url, settings)
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    response = client.post(
        delivery.url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Darkroom-Webhooks/1",
            "Darkroom-Event": delivery.event,
            "Darkroom-Delivery": str(delivery.id),
            SIGNATURE_HEADER: sign(secret, int(time.time()), body),
        },
    )
    response.raise_for_status()


def deliver_due(sessions: sessionmaker[Session], settings: Settings, limit: int = 20) -> int:
    """POST due events; returns how many were delivered. Failures are rescheduled."""
    claimed = _claim_due(sessions, settings, limit)
    if not claimed:  # the usual case, every few seconds in every worker: no client to build
        return 0
    delivered = 0
    with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
        for delivery_id in claimed:
            with sessions() as session:
                delivery = session.get(WebhookDelivery, delivery_id)
                assert delivery is not None
                secret = secret_for(session, settings, delivery.tenant_id)
            try:
                if secret is None:
                    raise InvalidWebhook(f"tenant {delivery.tenant_id!r} has no webhook secret")
                _post(client, settings, delivery, secret)
            except (httpx.HTTPError, InvalidRequest) as exc:
                _record_failure(sessions, settings, delivery, f"{type(exc).__name__}: {exc}")
                continue
            with sessions.begin() as session:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id == delivery_id)
                    .values(status="delivered", delivered_at=utcnow(), last_error=None)
                )
            delivered += 1
    return delivered


def _record_failure(
    sessions: sessionmaker[Session], settings: Settings, delivery: WebhookDelivery, error: str
) -> None:
    attempts = delivery.attempts
    gave_up = attempts >= settings.webhook_max_attempts
    values: dict[str, Any] = {"last_error": error[:2000]}
    if gave_up:
        values["status"] = "failed"
    else:
        values["next_attempt_at"] = utcnow() + timedelta(seconds=_backoff(settings, attempts))
    with sessions.begin() as session:
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
        )
    log.warning(
        "webhook %s to %s failed (attempt %d%s): %s",
        delivery.event,
        httpx.URL(delivery.url).host,
        attempts,
        ", giving up" if gave_up else "",
        error,
    )
