"""Idempotency keys: a client that retries a submission gets the first answer, not a second
job or batch, and a key reused for a different request is refused instead of silently
answered with the first one (as payment APIs do).

Keys are scoped per tenant (stored as ``<tenant>/<key>``), and each is stored with a SHA-256
of the request it was first used with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.errors import IdempotencyKeyReused


def scoped(tenant_id: str, key: str | None) -> str | None:
    return f"{tenant_id}/{key}" if key else None


def request_digest(request: dict[str, Any]) -> str:
    """A digest of what was asked for (canonical JSON, so key order and spacing do not
    matter)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_same_request(
    scoped_key: str, first_digest: str | None, digest: str, what: str, first_id: object
) -> None:
    """Refuse a key whose first request was a different one. A row stored before digests
    were recorded (``first_digest`` None) cannot be compared and is answered as before."""
    if first_digest is not None and first_digest != digest:
        key = scoped_key.split("/", 1)[1]
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used for a different request ({what} "
            f"{first_id}); send the same request to get that {what} again, or use a new key "
            "for a new request"
        )
