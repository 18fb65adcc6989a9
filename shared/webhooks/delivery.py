"""Delivering webhook events: a background thread in each worker POSTs the due ones
(``deliver_due``), retrying failures with backoff until ``webhook_max_attempts``.

Events reach the outbox (``shared.webhooks.outbox``) in the same transaction as the status
change they report, so none is lost if a worker dies; delivery leases each one, so two workers
never send the same event at once.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared.backoff import backoff_delay
from shared.config import Settings
from shared.db.tables import WebhookDelivery, utcnow
from shared.errors import InvalidRequest, InvalidWebhook
from shared.webhooks.signing import SIGNATURE_HEADER, sign
from shared.webhooks.targets import secret_for, validate_target

log = logging.getLogger(__name__)


def _backoff(settings: Settings, attempts: int) -> float:
    """Webhooks back off faster than jobs (a receiver that is down is often down for long)."""
    return backoff_delay(settings.retry_backoff_s, attempts, factor=4, ceiling_s=3600.0)


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


def delivery_counts(session: Session) -> dict[str, int]:
    """Webhook events per state (pending, delivered, failed): what metrics report."""
    query = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    return {status: count for status, count in session.execute(query).all()}
