"""Short-lived signed links: a batch's report page for a person without an API key.

A link names its tenant, its batch, the API key that made it and when it expires, signed with
a key derived from the tenant's link secret (stored, the same on every API replica, and apart
from its webhook secret, so rotating one leaves the other alone). It opens that one batch's
report, its previews and its review buttons; nothing else. A link lives no longer than the key
that made it: revoking the key ends it, and ``darkroom tenants rotate-link-secret`` ends every
link of the tenant at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from shared.db.tables import ApiKey, Tenant
from shared.errors import Unauthenticated

_PURPOSE = b"darkroom report link v2"
"""v2 names the key that made the link; v1 links, which did not, no longer verify."""


@dataclass(frozen=True)
class LinkGrant:
    tenant_id: str
    batch_id: uuid.UUID
    key_id: uuid.UUID
    """The API key that made the link: the link works while the key does."""


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _signature(secret: str, payload: str) -> str:
    return hmac.new(_key(secret), payload.encode(), hashlib.sha256).hexdigest()


def sign_report_link(
    tenant: Tenant, batch_id: uuid.UUID, key_id: uuid.UUID, expires_in_s: int
) -> str:
    """A token for the batch's report, valid until ``expires_in_s`` from now while the key
    ``key_id`` stays live and the tenant keeps its link secret."""
    expires = int(time.time()) + expires_in_s
    payload = f"{tenant.id}:{batch_id}:{key_id}:{expires}"
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{encoded}.{_signature(tenant.link_secret, payload)}"


def verify_report_link(session: Session, token: str) -> LinkGrant:
    """The tenant and batch a token grants, or ``Unauthenticated``: malformed, forged, expired,
    signed before the tenant's link secret was rotated, made by a key since revoked, or of a
    tenant that no longer exists. One answer for all, so probing tells nothing."""
    invalid = Unauthenticated("the report link is invalid or has expired; ask for a new one")
    try:
        encoded, signature = token.split(".", 1)
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        tenant_id, batch, key, expires = payload.split(":")
        batch_id, key_id, expires_at = uuid.UUID(batch), uuid.UUID(key), int(expires)
    except (ValueError, UnicodeDecodeError):
        raise invalid from None
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or expires_at < time.time():
        raise invalid
    expected = _signature(tenant.link_secret, payload)
    # As bytes: compare_digest refuses a str with non-ASCII characters, which a caller can send.
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise invalid
    api_key = session.get(ApiKey, key_id)
    if api_key is None or api_key.tenant_id != tenant_id or api_key.revoked_at is not None:
        raise invalid
    return LinkGrant(tenant_id, batch_id, key_id)
