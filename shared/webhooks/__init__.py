"""Webhooks: tell a web app when its job (or batch) is done, without ever blocking a worker.

``targets`` says where a tenant may be called and with which secret, ``signing`` signs and
verifies bodies, ``outbox`` records events in the transaction that caused them, and
``delivery`` POSTs them from a background thread with retries.
"""

from shared.webhooks.delivery import deliver_due, delivery_counts
from shared.webhooks.outbox import queue_event
from shared.webhooks.signing import SIGNATURE_HEADER, sign, verify
from shared.webhooks.targets import secret_for, validate_target

__all__ = [
    "SIGNATURE_HEADER",
    "deliver_due",
    "delivery_counts",
    "queue_event",
    "secret_for",
    "sign",
    "validate_target",
    "verify",
]
