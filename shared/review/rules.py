"""The review rules: which finished jobs a person should look at, and the sentence that says why.

Looking at every photo of a 20,000-photo archive adds little; looking where a stated criterion
says the restoration probably failed adds a lot. Each rule reads one or two of the quality
signals a worker stores with a job (``imaging.quality``: the input and the result, each
measured on a 512-px copy) and compares them with a threshold. The defaults live in
``Settings.review``; a tenant and a batch may override any of them (a number) or turn one off
(``false``). Pure functions of dictionaries, so the API, the workers and the benchmark apply
exactly the same rules.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from shared.config import ReviewThresholds, review_threshold

Signals = Mapping[str, float]
Quality = Mapping[str, Any]
"""A job's stored quality: ``{"input": Signals, "result": Signals, ...}``."""

Override = float | bool
"""A threshold, or ``False`` to turn the rule off."""

_NOISE_FLOOR = 0.01
"""Relative noise below this counts as this much, so a clean input's ratio stays finite."""


class Reason(TypedDict):
    """Why a job was flagged: the rule, the sentence a reviewer reads, the figures behind it."""

    rule: str
    message: str
    value: float
    threshold: float


@dataclass(frozen=True)
class Rule:
    name: str
    title: str
    """What a reviewer sees first: "still dark"."""
    criterion: str
    """The rest of the sentence, with ``{value}`` and ``{threshold}`` to fill in."""
    value: Callable[[Quality], float]
    trips: Callable[[float, float], bool]
    """``trips(value, threshold)``: operator.lt for "below", operator.gt for "above"."""
    precision: int = 2

    def reason(self, quality: Quality, threshold: float) -> Reason | None:
        """Why ``quality`` trips this rule; None when it does not, or when a figure the rule
        reads was not measured (or is not a number): nobody is asked to look at a guess."""
        try:
            value = float(self.value(quality))
        except (KeyError, TypeError, ValueError):
            return None
        if not math.isfinite(value) or not self.trips(value, threshold):
            return None
        figures = {
            "value": f"{value:.{self.precision}f}",
            "threshold": f"{threshold:.{self.precision}f}",
        }
        message = f"{self.title}: {self.criterion.format(**figures)}"
        return Reason(rule=self.name, message=message, value=value, threshold=threshold)


def _result(name: str) -> Callable[[Quality], float]:
    return lambda quality: float(quality["result"][name])


def _input(name: str) -> Callable[[Quality], float]:
    return lambda quality: float(quality["input"][name])


def _clipped_growth(quality: Quality) -> float:
    return 100.0 * (quality["result"]["clipped_share"] - quality["input"]["clipped_share"])


def _noise_ratio(quality: Quality) -> float:
    before = max(quality["input"]["relative_noise"], _NOISE_FLOOR)
    return max(quality["result"]["relative_noise"], _NOISE_FLOOR) / before


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "still_dark",
            "still dark",
            "mean luma of the result is {value}, below {threshold}",
            _result("mean_luma"),
            operator.lt,
        ),
        Rule(
            "lights_blown",
            "lights blown",
            "the share of clipped pixels grew by {value} points, more than {threshold}",
            _clipped_growth,
            operator.gt,
            precision=1,
        ),
        Rule(
            "noise_amplified",
            "noise amplified",
            "noise relative to brightness is {value}x the input's, more than {threshold}x",
            _noise_ratio,
            operator.gt,
            precision=1,
        ),
        Rule(
            "colour_shifted",
            "colour shifted",
            "the result's strongest colour channel has {value}x the edge contrast of its "
            "weakest (about 1.3x in a neutral photo), more than {threshold}x",
            _result("colour_cast"),
            operator.gt,
            precision=1,
        ),
        Rule(
            "input_blurred",
            "input too blurred for the model",
            "the result's sharpness is {value}, below {threshold}: the blur was in the input",
            _result("sharpness"),
            operator.lt,
            precision=3,
        ),
        Rule(
            "input_too_dark",
            "input too dark to recover",
            "mean luma of the input is {value}, below {threshold}: little light is left",
            _input("mean_luma"),
            operator.lt,
            precision=3,
        ),
        Rule(
            "input_well_exposed",
            "input already well exposed",
            "mean luma of the input is {value}, above {threshold}: restoration may not help",
            _input("mean_luma"),
            operator.gt,
        ),
    )
}
"""Every rule, in the order a reviewer reads their reasons."""


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, Override]:
    """Overrides as a tenant or a batch gives them: known rule names, each a finite threshold
    (as the server's are, :func:`shared.config.review_threshold`) or ``false``. Raises
    ``ValueError`` with a sentence for a person otherwise."""
    checked: dict[str, Override] = {}
    for name, value in overrides.items():
        if name not in RULES:
            known = ", ".join(RULES)
            raise ValueError(f"unknown review rule {name!r} (rules: {known})")
        if value is True or not isinstance(value, int | float):
            raise ValueError(f"review rule {name!r} takes a threshold (a number) or false")
        checked[name] = value if value is False else review_threshold(name, value)
    return checked


def resolve_thresholds(
    defaults: ReviewThresholds, *overrides: Mapping[str, Override] | None
) -> dict[str, float | None]:
    """Each rule's threshold: the server's, then each override in turn (a tenant's, then a
    batch's); ``None`` where one turned the rule off."""
    thresholds: dict[str, float | None] = dict(defaults.model_dump())
    for layer in overrides:
        for name, value in (layer or {}).items():
            thresholds[name] = None if value is False else float(value)
    return thresholds


def check(quality: Quality | None, thresholds: Mapping[str, float | None]) -> list[Reason]:
    """The reasons ``quality`` trips, in :data:`RULES` order; empty: nobody needs to look, or
    nothing was measured (``quality`` None: measuring is best-effort)."""
    reasons: list[Reason] = []
    if quality is None:
        return reasons
    for name, rule in RULES.items():
        threshold = thresholds.get(name)
        if threshold is not None and (reason := rule.reason(quality, threshold)) is not None:
            reasons.append(reason)
    return reasons
