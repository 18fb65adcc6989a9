"""The webhook outbox: events written as rows in the caller's transaction, for delivery later.

Whoever changes a job's state queues its event here in the same transaction, so an event
exists exactly when its change was committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.db.tables import WebhookDelivery, utcnow


def queue_event(
    session: Session, tenant_id: str, url: str, event: str, data: dict[str, Any]
) -> None:
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
