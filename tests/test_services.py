"""The suite's own wait (``tests.services.wait_until``): what every test that waits relies on."""

from __future__ import annotations

import itertools

import pytest

from tests.services import wait_until


def test_it_returns_the_first_value_that_satisfies_the_condition() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter) >= 3 and "ready", 5, interval=0.001) == "ready"
    values = iter([1, 2, 7, 8])
    assert wait_until(lambda: next(values), 5, interval=0.001, until=lambda v: v > 5) == 7


def test_a_timeout_names_what_it_waited_for_and_the_last_value() -> None:
    counter = itertools.count()
    with pytest.raises(TimeoutError, match=r"after 0\.05s waiting for the count; last value: \d+"):
        wait_until(lambda: next(counter), 0.05, 0.01, "the count", until=lambda n: n < 0)
    with pytest.raises(TimeoutError, match="waiting for a job to finish, still queued$"):
        wait_until(
            lambda: {"status": "queued"},
            0.02,
            interval=0.01,
            message=lambda body: f"a job to finish, still {body['status']}",
            until=lambda body: body["status"] == "succeeded",
        )


def test_a_zero_timeout_still_asks_once_and_errors_end_the_wait_at_once() -> None:
    calls = []
    with pytest.raises(TimeoutError):
        wait_until(lambda: calls.append(1), 0, interval=0.01)
    assert calls == [1]

    def broken() -> None:
        raise RuntimeError("the service went away")

    with pytest.raises(RuntimeError, match="went away"):
        wait_until(broken, 5)
