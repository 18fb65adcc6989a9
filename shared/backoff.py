"""How long to wait before trying again: the one backoff rule for jobs and webhooks."""

from __future__ import annotations

import random


def backoff_delay(first_s: float, attempt: int, *, factor: float, ceiling_s: float) -> float:
    """Exponential backoff with jitter: the ``attempt``-th wait (1-based) grows by ``factor``
    from ``first_s`` up to ``ceiling_s``, then is drawn from its upper half, so retries of many
    jobs that failed together do not arrive together."""
    ceiling = min(ceiling_s, first_s * factor ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)
