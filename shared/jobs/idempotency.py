"""Idempotency keys: a client that retries a submission gets the first answer, not a second
job or batch, and a key reused for a different request is refused instead of silently
answered with the first one (as payment APIs do).

Keys are scoped per tenant (stored as ``<tenant>/<key>``), and each is stored with a SHA-256
of the request it was first used with.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, TypeVar

from shared.errors import IdempotencyKeyReused


def scoped(tenant_id: str, key: str | None) -> str | None:
    return f"{tenant_id}/{key}" if key else None


def request_digest(request: dict[str, Any]) -> str:
    """A digest of what was asked for (canonical JSON, so key order and spacing do not
    matter)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class FirstUse(Protocol):
    id: Any
    request_digest: str | None


_Row = TypeVar("_Row", bound=FirstUse)


def first_use(found: _Row | None, key: str, digest: str, what: str) -> _Row | None:
    """The job or batch ``key`` was first used for (None: a new key). Refused when that first
    request was a different one; a row stored before digests were recorded (no digest) cannot
    be compared and is answered as before."""
    if found is not None and found.request_digest not in (None, digest):
        raise IdempotencyKeyReused(
            f"Idempotency-Key {key!r} was already used for a different request ({what} "
            f"{found.id}); send the same request to get that {what} again, or use a new key "
            "for a new request"
        )
    return found
