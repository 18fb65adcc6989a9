"""Tenants and their API keys: who a request is, with the limits that apply to it.

A key is shown once, when created; the database keeps its SHA-256 only. Keys carry 256 random
bits, so a plain hash cannot be brute-forced and lookups stay one indexed query per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.config import DEFAULT_TENANT, Settings
from shared.db.tables import ApiKey, Tenant, utcnow
from shared.errors import Conflict, InvalidRequest, TenantNotFound, Unauthenticated

KEY_PREFIX = "drk_"
_TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,46}[a-z0-9]$")


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_tenant(
    session: Session,
    tenant_id: str,
    name: str | None = None,
    *,
    rate_limit_per_minute: int | None = None,
    max_active_jobs: int | None = None,
) -> Tenant:
    if not _TENANT_ID.match(tenant_id) or tenant_id == DEFAULT_TENANT:
        raise InvalidRequest(
            f"tenant id {tenant_id!r}: use 3-48 lowercase letters, digits and '-' "
            f"(and not {DEFAULT_TENANT!r}, which means 'API keys off')"
        )
    tenant = Tenant(
        id=tenant_id,
        name=name or tenant_id,
        webhook_secret=secrets.token_urlsafe(32),
        link_secret=new_link_secret(),
        rate_limit_per_minute=rate_limit_per_minute,
        max_active_jobs=max_active_jobs,
    )
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"tenant {tenant_id!r} already exists") from None
    return tenant


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound(f"tenant {tenant_id!r} not found")
    return tenant


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str
    """The key itself: shown once, never stored."""


def create_key(session: Session, tenant_id: str, name: str = "default") -> NewKey:
    get_tenant(session, tenant_id)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=tenant_id, name=name, key_hash=hash_key(raw), key_prefix=raw[:12])
    session.add(key)
    session.flush()
    return NewKey(key=key, secret=raw)


def revoke_key(session: Session, key_prefix: str) -> int:
    """Revoke every live key starting with ``key_prefix`` (as ``keys list`` shows them)."""
    if len(key_prefix) < 8:
        raise InvalidRequest("give at least 8 characters of the key")
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.key_prefix.startswith(key_prefix[:12]), ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return result.rowcount  # type: ignore[attr-defined,no-any-return]


def new_link_secret() -> str:
    return secrets.token_urlsafe(32)


def rotate_link_secret(session: Session, tenant_id: str) -> Tenant:
    """Give the tenant a new secret for its report links: every link it handed out stops
    working at once (one may have leaked, or a reviewer left), and its webhooks, signed with
    another secret, are untouched."""
    tenant = get_tenant(session, tenant_id)
    tenant.link_secret = new_link_secret()
    session.flush()
    return tenant


def set_review_rules(session: Session, tenant_id: str, rules: dict[str, float | bool]) -> Tenant:
    """Replace a tenant's review thresholds (validated by the caller: ``shared.review``);
    empty: the server's for every rule."""
    tenant = get_tenant(session, tenant_id)
    tenant.review_rules = dict(rules) or None
    session.flush()
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.id)))


def list_keys(session: Session, tenant_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.tenant_id, ApiKey.created_at)
    if tenant_id:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Caller:
    """Who a request acts for, with the limits that apply to it."""

    tenant_id: str
    rate_limit_per_minute: int
    max_active_jobs: int
    key_id: uuid.UUID | None = None
    """The API key the request came with (none for :data:`OPERATOR`): what a report link it
    makes is tied to, so revoking the key ends the link too."""


OPERATOR = Caller(DEFAULT_TENANT, rate_limit_per_minute=0, max_active_jobs=0)
"""The default tenant: API keys off (one trusted tenant, nothing to share fairly), or the CLI
on a server. No limits."""


def caller_for(settings: Settings, tenant: Tenant, key_id: uuid.UUID | None = None) -> Caller:
    """A tenant's own limits, or the server's where it has none."""
    return Caller(
        tenant.id,
        _first(tenant.rate_limit_per_minute, settings.rate_limit_per_minute),
        _first(tenant.max_active_jobs, settings.max_active_jobs),
        key_id,
    )


def _first(value: int | None, default: int) -> int:
    return default if value is None else value


def authenticate(session: Session, settings: Settings, authorization: str | None) -> Caller:
    """The owner of the presented key (API keys on; with them off every caller is
    :data:`OPERATOR`). Unknown and revoked keys get the same answer, so probing tells nothing."""
    scheme, _, raw = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise Unauthenticated("send 'Authorization: Bearer <API key>'")
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(raw.strip()), ApiKey.revoked_at.is_(None))
    )
    if key is None:
        raise Unauthenticated("invalid or revoked API key")
    return caller_for(settings, get_tenant(session, key.tenant_id), key.id)
