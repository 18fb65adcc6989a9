"""Short-lived signed links: a batch's report page for a person without an API key.

A link names its tenant, its batch and when it expires, signed with a key derived from the
tenant's own secret (stored already, the same on every API replica), so no new secret has to
be shared and rotating the tenant's secret revokes every link. It opens that one batch's
report, its previews and its review buttons; nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared.db.tables import Tenant
from shared.errors import Unauthenticated

_PURPOSE = b"darkroom report link v1"


@dataclass(frozen=True)
class LinkGrant:
    tenant_id: str
    batch_id: uuid.UUID


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _signature(secret: str, payload: str) -> str:
    return hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()


def sign_report_link(tenant: Tenant, batch_id: uuid.UUID, expires_in_s: int) -> str:
    expires = int(time.time()) + expires_in_s
    payload = f"{tenant.id}:{batch_id}:{expires}"
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{encoded}.{_signature(tenant.webhook_secret, payload)}"


def verify_report_link(session: Session, token: str) -> LinkGrant:
    """The tenant and batch a token grants, or ``Unauthenticated``: malformed, forged, expired,
    or of a tenant that no longer exists."""
    invalid = Unauthenticated("the report link is invalid or has expired; ask for a new one")
    try:
        encoded, signature = token.split(".", 1)
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        tenant_id, batch, expires = payload.split(":")
        batch_id, expires_at = uuid.UUID(batch), int(expires)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or expires_at < time.time():
        raise invalid
    if not hmac.compare_digest(signature, _signature(tenant.webhook_secret, payload)):
        raise invalid
    return LinkGrant(tenant_id, batch_id)
