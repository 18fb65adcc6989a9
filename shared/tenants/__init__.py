"""Who may use a server: tenants and their API keys (``accounts``), and how fast each may
submit work (``limits``)."""

from shared.tenants.accounts import (
    KEY_PREFIX,
    OPERATOR,
    Caller,
    NewKey,
    authenticate,
    caller_for,
    create_key,
    create_tenant,
    get_tenant,
    hash_key,
    list_keys,
    list_tenants,
    revoke_key,
    rotate_link_secret,
    set_review_rules,
)
from shared.tenants.limits import SubmissionLimiter

__all__ = [
    "KEY_PREFIX",
    "OPERATOR",
    "Caller",
    "NewKey",
    "SubmissionLimiter",
    "authenticate",
    "caller_for",
    "create_key",
    "create_tenant",
    "get_tenant",
    "hash_key",
    "list_keys",
    "list_tenants",
    "revoke_key",
    "rotate_link_secret",
    "set_review_rules",
]
