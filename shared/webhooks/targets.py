"""Where a tenant's webhooks may go, and the secret they are signed with.

Targets are checked when a job is submitted and again before every POST (DNS can change):
https only, and no loopback, private or link-local addresses unless an operator allows them,
so a tenant cannot make Darkroom call into its own network.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx
from sqlalchemy.orm import Session

from shared.config import DEFAULT_TENANT, Settings
from shared.db.tables import Tenant
from shared.errors import InvalidWebhook


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


def secret_for(session: Session, settings: Settings, tenant_id: str) -> str | None:
    if tenant_id == DEFAULT_TENANT:
        secret = settings.webhook_secret
        return secret.get_secret_value() if secret else None
    tenant = session.get(Tenant, tenant_id)
    return tenant.webhook_secret if tenant else None
