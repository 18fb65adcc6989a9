"""What the broker holds: the job ids in Redis queues and in flight, and queue depths.

Redis keeps no data across a restart here (and a flushed or failed-over Redis loses messages
anywhere), while the database still says those jobs are ``queued``. Reading the Redis lists
tells which queued jobs no longer have a message, so the reconciler re-sends exactly those.
Only the Redis transport is readable this way; for other brokers nothing is reconciled.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime

import redis

from shared.queue.app import queue_lists

log = logging.getLogger(__name__)

UNACKED_KEY = "unacked"
"""kombu's Redis transport keeps delivered, unacknowledged messages in this hash."""
UNACKED_INDEX_KEY = "unacked_index"
"""...and when each was delivered, in this sorted set (delivery tag -> unix time)."""


def _job_id(message: bytes | str) -> str | None:
    try:
        payload = json.loads(message)
        if isinstance(payload, list):  # unacked entries are [message, exchange, routing key]
            payload = payload[0]
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _eta(message: bytes | str) -> float | None:
    """When an unacknowledged message is due (a retry's countdown: Celery's ``eta`` header),
    as unix time; None for a message due at once."""
    try:
        payload = json.loads(message)
        if isinstance(payload, list):
            payload = payload[0]
        eta = payload.get("headers", {}).get("eta")
        return datetime.fromisoformat(eta).timestamp() if eta else None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def job_ids_in_broker(
    broker_url: str, queues: Iterable[str], delivered_within_s: float | None = None
) -> set[str] | None:
    """Job ids waiting in ``queues`` or delivered but unacknowledged; None if not Redis.

    With ``delivered_within_s``, a message delivered longer ago than that no longer counts:
    a worker killed before it claimed the jobs it had reserved leaves their messages in the
    unacknowledged hash until the visibility timeout, hours later, while the jobs stay
    ``queued``; a live worker claims what it receives within milliseconds.
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(broker_url)
    try:
        lists = [name for queue in queues for name in queue_lists(queue)]
        messages = [m for name in lists for m in client.lrange(name, 0, -1)]
        unacked = client.hgetall(UNACKED_KEY)
        if delivered_within_s is not None:
            cutoff = time.time() - delivered_within_s
            for tag in client.zrangebyscore(UNACKED_INDEX_KEY, 0, cutoff):
                # A retry the worker holds until its countdown ends is not lost until that
                # moment is past too: re-sending it would run the job early and burn its
                # attempts faster than the backoff means to (a backoff longer than the window
                # did exactly that).
                message = unacked.get(tag)  # type: ignore[arg-type]
                due = _eta(message) if message is not None else None
                if due is None or due < cutoff:
                    unacked.pop(tag, None)  # type: ignore[arg-type]  # redis-py types tags loosely
        messages += unacked.values()
    finally:
        client.close()
    return {job_id for m in messages if (job_id := _job_id(m)) is not None}


def queue_depths(broker_url: str, queues: Iterable[str]) -> dict[str, int] | None:
    """Messages waiting per queue (what autoscaling watches); None if the broker is not Redis."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        return {
            queue: sum(int(client.llen(name)) for name in queue_lists(queue)) for queue in queues
        }
    finally:
        client.close()
