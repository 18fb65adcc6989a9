"""Reading job ids out of a real Redis broker, queued and in flight."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import redis

from shared.config import Settings
from shared.queue import (
    UNACKED_INDEX_KEY,
    UNACKED_KEY,
    enqueue_restore,
    job_ids_in_broker,
    make_celery,
    queue_depths,
    queue_lists,
)


def test_job_ids_in_queues_and_in_flight_are_found(redis_url: str) -> None:
    settings = Settings(broker_url=redis_url, queue_prefix=f"broker-{uuid.uuid4().hex[:6]}")
    waiting, in_flight = uuid.uuid4(), uuid.uuid4()
    enqueue_restore(
        make_celery(settings), settings, [(waiting, "darkroom"), (in_flight, "darkroom")]
    )
    client = redis.Redis.from_url(redis_url)
    queue = settings.queue_for("darkroom")
    # What a worker holds: the message leaves the list and waits, unacknowledged, in a hash.
    message = client.rpop(queue_lists(queue)[-1])  # new jobs wait at normal priority
    tag = f"tag-{uuid.uuid4()}"
    client.hset(UNACKED_KEY, tag, json.dumps([json.loads(message), "", queue]))
    try:
        found = job_ids_in_broker(redis_url, [queue])
        assert found is not None and {str(waiting), str(in_flight)} <= found
    finally:
        client.hdel(UNACKED_KEY, tag)
        client.delete(*queue_lists(queue))


def test_other_brokers_are_not_read() -> None:
    assert job_ids_in_broker("amqp://guest@127.0.0.1//", ["q"]) is None


def test_a_message_delivered_long_ago_to_a_worker_that_never_claimed_it_does_not_count(
    redis_url: str,
) -> None:
    """A worker SIGKILLed with reserved, unclaimed jobs: their messages sit in the unacked
    hash for hours, so the reconciler must see those jobs as missing, not as held."""
    settings = Settings(broker_url=redis_url, queue_prefix=f"broker-{uuid.uuid4().hex[:6]}")
    stale, fresh = uuid.uuid4(), uuid.uuid4()
    enqueue_restore(make_celery(settings), settings, [(stale, "darkroom"), (fresh, "darkroom")])
    client = redis.Redis.from_url(redis_url)
    queue = settings.queue_for("darkroom")
    tags = {}
    for delivered_at in (time.time() - 600, time.time()):  # oldest message first
        message = client.rpop(queue_lists(queue)[-1])
        tag = f"tag-{uuid.uuid4()}"
        client.hset(UNACKED_KEY, tag, json.dumps([json.loads(message), "", queue]))
        client.zadd(UNACKED_INDEX_KEY, {tag: delivered_at})
        tags[tag] = delivered_at
    try:
        found = job_ids_in_broker(redis_url, [queue], delivered_within_s=60)
        assert found is not None and str(fresh) in found and str(stale) not in found
        everything = job_ids_in_broker(redis_url, [queue])
        assert everything is not None and {str(stale), str(fresh)} <= everything
    finally:
        client.hdel(UNACKED_KEY, *tags)
        client.zrem(UNACKED_INDEX_KEY, *tags)


def test_jobs_sent_to_the_front_wait_in_the_list_workers_pop_first(redis_url: str) -> None:
    settings = Settings(broker_url=redis_url, queue_prefix=f"broker-{uuid.uuid4().hex[:6]}")
    app = make_celery(settings)
    normal, handed_back = uuid.uuid4(), uuid.uuid4()
    enqueue_restore(app, settings, [(normal, "darkroom")])
    enqueue_restore(app, settings, [(handed_back, "darkroom")], front=True)
    queue = settings.queue_for("darkroom")
    client = redis.Redis.from_url(redis_url)
    try:
        first, waiting = queue_lists(queue)
        assert (client.llen(first), client.llen(waiting)) == (1, 1)
        assert str(handed_back) in client.lindex(first, 0).decode()
        assert queue_depths(redis_url, [queue]) == {queue: 2}
        assert {str(normal), str(handed_back)} <= (job_ids_in_broker(redis_url, [queue]) or set())
    finally:
        client.delete(*queue_lists(queue))


def test_a_retry_held_until_its_countdown_counts_until_it_is_due(redis_url: str) -> None:
    """A job retried with a countdown longer than the reconciler's window: its message was
    delivered long ago and waits in the worker for its ``eta``. It is held, not lost, until that
    moment is past too; re-sending it ran the job early and burnt its attempts."""
    settings = Settings(broker_url=redis_url, queue_prefix=f"broker-{uuid.uuid4().hex[:6]}")
    waiting, overdue = uuid.uuid4(), uuid.uuid4()
    enqueue_restore(make_celery(settings), settings, [(waiting, "darkroom"), (overdue, "darkroom")])
    client = redis.Redis.from_url(redis_url)
    queue = settings.queue_for("darkroom")
    tags = []
    for due in (time.time() + 30, time.time() - 600):  # oldest message first
        payload = json.loads(client.rpop(queue_lists(queue)[-1]))
        payload["headers"]["eta"] = datetime.fromtimestamp(due, UTC).isoformat()
        tag = f"tag-{uuid.uuid4()}"
        client.hset(UNACKED_KEY, tag, json.dumps([payload, "", queue]))
        client.zadd(UNACKED_INDEX_KEY, {tag: time.time() - 900})  # delivered long ago
        tags.append(tag)
    try:
        found = job_ids_in_broker(redis_url, [queue], delivered_within_s=60)
        assert found is not None and str(waiting) in found and str(overdue) not in found
    finally:
        client.hdel(UNACKED_KEY, *tags)
        client.zrem(UNACKED_INDEX_KEY, *tags)
