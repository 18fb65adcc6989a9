"""The reference-set evaluation: every model asked for, after the input and the baseline, each
run as a job runs it."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.reference_sets import Pair, evaluate


def test_every_model_is_scored_after_the_input_and_the_baseline() -> None:
    rng = np.random.default_rng(0)
    reference = rng.random((32, 32, 3)).astype(np.float32)
    pairs = [Pair("p", reference * 0.5, reference)]
    scores = list(evaluate(pairs, [("same", lambda x: x), ("closer", lambda x: x * 1.9)]))
    assert [s.method for s in scores] == ["input", "classical", "same", "closer"]
    assert scores[2].psnr == pytest.approx(scores[0].psnr)
    assert scores[3].psnr > scores[0].psnr + 15 and scores[3].images == 1
