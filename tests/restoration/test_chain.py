"""A model or a chain, as jobs and evaluations run it: each step on the last one's pixels, with
its task."""

from __future__ import annotations

import numpy as np

from restoration.restorers import chain_restore


class FakeRestorer:
    name = "fake"
    nbytes = 0

    def __init__(self, add: float, calls: list[tuple[str, str | None]]) -> None:
        self.add, self.calls = add, calls

    def restore(self, pixels: np.ndarray, check_stop: object = None, task: str | None = None,
                runner: object = None) -> np.ndarray:  # fmt: skip
        self.calls.append((f"+{self.add}", task))
        return pixels + self.add


def test_a_chain_runs_each_model_in_turn_with_its_task() -> None:
    calls: list[tuple[str, str | None]] = []
    restore = chain_restore([(FakeRestorer(0.1, calls), None), (FakeRestorer(0.2, calls), "x")])
    out = restore(np.zeros((2, 2, 3), np.float32))
    assert calls == [("+0.1", None), ("+0.2", "x")]
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
