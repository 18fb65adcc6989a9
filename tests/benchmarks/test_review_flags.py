"""The flag benchmark's counting: per rule, flagged, true flags, missed and false flags."""

from __future__ import annotations

from benchmarks.review_flags import flags_of, rule_counts, summary
from shared.config import ReviewThresholds
from shared.review import resolve_thresholds

SIGNALS = {
    "mean_luma": 0.3,
    "black_share": 0.0,
    "clipped_share": 0.0,
    "noise": 2.0,
    "relative_noise": 0.02,
    "sharpness": 0.4,
    "colour_cast": 1.3,
    "cast_a": 0.0,
    "cast_b": 0.0,
}


def row(kind: str, input_luma: float = 0.2, result_luma: float = 0.4) -> dict[str, object]:
    quality = {
        "input": {**SIGNALS, "mean_luma": input_luma},
        "result": {**SIGNALS, "mean_luma": result_luma},
    }
    return {"name": kind, "kind": kind, "quality": quality}


def test_flags_are_counted_per_rule_and_kind() -> None:
    rows = [
        row("ordinary"),
        row("ordinary", result_luma=0.1),  # a false flag: still dark
        row("too dark", input_luma=0.005, result_luma=0.1),  # both of its rules
        row("too dark", input_luma=0.04, result_luma=0.3),  # missed by both
        row("well exposed", input_luma=0.5),
        {"name": "failed", "kind": "ordinary", "quality": None},  # a failed job flags nothing
    ]
    flags = flags_of(rows, resolve_thresholds(ReviewThresholds()))
    assert flags == [
        set(),
        {"still_dark"},
        {"still_dark", "input_too_dark"},
        set(),
        {"input_well_exposed"},
        set(),
    ]
    counted = rule_counts(rows, flags)
    assert counted["still_dark"] == (2, 1, 1, 1)
    assert counted["input_too_dark"] == (1, 1, 1, 0)
    assert counted["input_well_exposed"] == (1, 1, 0, 0)
    assert counted["lights_blown"] == (0, 0, None, 0)
    shares = summary(rows, flags)
    assert shares["made_to_fail_flagged"] == 2 / 3
    assert shares["ordinary_flagged"] == 1 / 3
