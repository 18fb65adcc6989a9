"""The review rules: each trips on its own signal past its threshold, and only then."""

from __future__ import annotations

import pytest

from shared.config import ReviewThresholds
from shared.review import RULES, check, resolve_thresholds, validate_overrides

ORDINARY = {
    "mean_luma": 0.25,
    "black_share": 0.05,
    "clipped_share": 0.001,
    "noise": 2.0,
    "relative_noise": 0.02,
    "sharpness": 0.45,
    "colour_cast": 1.3,
    "cast_a": 1.0,
    "cast_b": 3.0,
}
DEFAULTS = resolve_thresholds(ReviewThresholds())


def quality(input_: dict[str, float] | None = None, **result: float) -> dict:
    return {"input": {**ORDINARY, **(input_ or {})}, "result": {**ORDINARY, **result}}


def tripped(q: dict, thresholds: dict | None = None) -> list[str]:
    return [reason["rule"] for reason in check(q, thresholds or DEFAULTS)]


def test_an_ordinary_job_trips_nothing() -> None:
    assert tripped(quality()) == []


@pytest.mark.parametrize(
    ("q", "rule"),
    [
        (quality(mean_luma=0.05), "still_dark"),
        (quality(clipped_share=0.04), "lights_blown"),
        (quality(relative_noise=0.2), "noise_amplified"),
        (quality(colour_cast=6.0), "colour_shifted"),
        (quality(sharpness=0.05), "input_blurred"),
        (quality({"mean_luma": 0.001}), "input_too_dark"),
        (quality({"mean_luma": 0.6}), "input_well_exposed"),
    ],
)
def test_each_rule_trips_on_its_own_signal(q: dict, rule: str) -> None:
    assert tripped(q) == [rule]
    (reason,) = check(q, DEFAULTS)
    assert reason["message"].startswith(RULES[rule].title + ": ")
    assert reason["threshold"] == DEFAULTS[rule]


def test_the_sentence_states_the_figures() -> None:
    (reason,) = check(quality(mean_luma=0.05), DEFAULTS)
    assert reason["message"] == (
        f"still dark: mean luma of the result is 0.05, below {DEFAULTS['still_dark']:.2f}"
    )
    assert reason["value"] == pytest.approx(0.05)


def test_clipping_counts_only_what_the_restoration_added() -> None:
    lit = {"clipped_share": 0.3}
    assert tripped(quality(lit, clipped_share=0.3)) == []  # light sources already white
    assert tripped(quality(lit, clipped_share=0.35)) == ["lights_blown"]


def test_noise_ratio_is_relative_to_the_input_and_floored() -> None:
    noisy = {"relative_noise": 0.1}
    assert tripped(quality(noisy, relative_noise=0.12)) == []
    assert tripped(quality(noisy, relative_noise=0.2)) == ["noise_amplified"]
    # A spotless input does not make every result "infinitely" noisier.
    assert tripped(quality({"relative_noise": 0.0}, relative_noise=0.01)) == []


def test_overrides_layer_on_the_server_thresholds_and_can_turn_a_rule_off() -> None:
    dark = quality(mean_luma=0.12)
    tenant = {"still_dark": 0.1}
    assert tripped(dark, resolve_thresholds(ReviewThresholds(), tenant)) == []
    batch = {"still_dark": 0.2}
    assert tripped(dark, resolve_thresholds(ReviewThresholds(), tenant, batch)) == ["still_dark"]
    off = resolve_thresholds(ReviewThresholds(), {"still_dark": False})
    assert off["still_dark"] is None and tripped(quality(mean_luma=0.0), off) == []
    server_off = ReviewThresholds(still_dark=None)
    assert tripped(quality(mean_luma=0.0), resolve_thresholds(server_off)) == []


def test_reasons_come_in_rule_order() -> None:
    q = quality({"mean_luma": 0.6}, mean_luma=0.05, sharpness=0.05)
    assert tripped(q) == ["still_dark", "input_blurred", "input_well_exposed"]


@pytest.mark.parametrize(
    "overrides", [{"nope": 1.0}, {"still_dark": True}, {"still_dark": "low"}, {"still_dark": None}]
)
def test_overrides_are_validated(overrides: dict) -> None:
    with pytest.raises(ValueError, match="review rule"):
        validate_overrides(overrides)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), float("-inf"), 10**400])
def test_overrides_must_be_finite(threshold: float) -> None:
    """NaN never compares true, so its rule would never trip; PostgreSQL's json stores neither
    it nor an infinity."""
    with pytest.raises(ValueError, match="still_dark"):
        validate_overrides({"still_dark": threshold})


def test_valid_overrides_become_floats_or_false() -> None:
    assert validate_overrides({"still_dark": 1, "lights_blown": False}) == {
        "still_dark": 1.0,
        "lights_blown": False,
    }


def test_every_rule_has_a_server_threshold() -> None:
    assert set(RULES) == set(ReviewThresholds.model_fields)


def test_no_rule_trips_on_figures_that_were_not_measured() -> None:
    # Thresholds every measured job trips ("above" rules at -1e9, "below" ones at 1e9)...
    everything = {name: -1e9 if RULES[name].trips(1.0, 0.5) else 1e9 for name in RULES}
    assert len(check(quality(), everything)) == len(RULES)
    # ...and none of them trips on figures that are not there.
    assert check(None, everything) == []  # measuring failed: nothing to judge
    assert check({}, everything) == []
    assert check({"input": {}, "result": {}}, everything) == []
    partial = quality(mean_luma=float("nan"))
    assert "still_dark" not in tripped(partial, {"still_dark": 0.25})
