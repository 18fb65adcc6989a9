"""Signing webhook bodies the way Stripe does, and checking a signature as a receiver would.

``Darkroom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the tenant's
webhook secret, so receivers can check both origin and freshness (a replayed old POST fails).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Darkroom-Signature"


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
