"""The reference-set evaluation: every model asked for, after the input and the baseline, each
run as a job runs it (a chain goes through each of its models in turn)."""

from __future__ import annotations

import numpy as np
import pytest

from workers.evaluation import Pair, chain_restore, evaluate


class FakeRestorer:
    name = "fake"
    nbytes = 0

    def __init__(self, add: float, calls: list[tuple[str, str | None]]) -> None:
        self.add, self.calls = add, calls

    def restore(self, pixels: np.ndarray, check_stop: object = None, task: str | None = None,
                runner: object = None) -> np.ndarray:  # fmt: skip
        self.calls.append((f"+{self.add}", task))
        return pixels + self.add


def test_every_model_is_scored_after_the_input_and_the_baseline() -> None:
    rng = np.random.default_rng(0)
    reference = rng.random((32, 32, 3)).astype(np.float32)
    pairs = [Pair("p", reference * 0.5, reference)]
    scores = list(evaluate(pairs, [("same", lambda x: x), ("closer", lambda x: x * 1.9)]))
    assert [s.method for s in scores] == ["input", "classical", "same", "closer"]
    assert scores[2].psnr == pytest.approx(scores[0].psnr)
    assert scores[3].psnr > scores[0].psnr + 15 and scores[3].images == 1


def test_a_chain_runs_each_model_in_turn_with_its_task() -> None:
    calls: list[tuple[str, str | None]] = []
    restore = chain_restore([(FakeRestorer(0.1, calls), None), (FakeRestorer(0.2, calls), "x")])
    out = restore(np.zeros((2, 2, 3), np.float32))
    assert calls == [("+0.1", None), ("+0.2", "x")]
    np.testing.assert_allclose(out, 0.3, atol=1e-6)
