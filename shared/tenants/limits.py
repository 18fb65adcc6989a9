"""Per-tenant rate of submitting work: a moving window kept by the ``limits`` library, in
Redis when workers use it as their broker (so every API process shares one count) and in
memory in the embedded mode. (The other limit, a ceiling on unfinished jobs, is counted in the
database by ``shared.jobs.submit``.)
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute
from limits.errors import StorageError as LimitsStorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import RedisError

from shared.config import Settings
from shared.errors import RateLimited
from shared.tenants.accounts import Caller

log = logging.getLogger(__name__)


class SubmissionLimiter:
    def __init__(self, settings: Settings) -> None:
        shared_store = settings.execution == "celery" and settings.broker_url.startswith("redis")
        if shared_store:
            store = storage_from_string(
                settings.broker_url, socket_timeout=1, socket_connect_timeout=1
            )
        else:
            store = storage_from_string("memory://")
        self._limiter = MovingWindowRateLimiter(store)
        self._namespace = settings.queue_prefix

    def hit(self, caller: Caller) -> None:
        """Count one submission; raise ``RateLimited`` with the wait until the next allowed."""
        if caller.rate_limit_per_minute <= 0:
            return
        item = RateLimitItemPerMinute(caller.rate_limit_per_minute, namespace=self._namespace)
        try:
            if self._limiter.hit(item, caller.tenant_id):
                return
        except (LimitsStorageError, ConnectionError, OSError, RedisError) as exc:
            # Fail open: a Redis outage must not stop submissions the database can still take.
            log.warning("rate limit store unreachable, not limiting: %s", exc)
            return
        reset = self._limiter.get_window_stats(item, caller.tenant_id).reset_time
        raise RateLimited(
            f"more than {caller.rate_limit_per_minute} submissions per minute",
            retry_after_s=math.ceil(reset - time.time()),
        )
