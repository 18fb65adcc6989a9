"""When a restored photo needs a person: the review rules (``rules``), each a stated criterion
with a threshold, applied to the quality signals a worker measured before and after."""

from shared.review.rules import RULES, Reason, Rule, check, resolve_thresholds, validate_overrides

__all__ = ["RULES", "Reason", "Rule", "check", "resolve_thresholds", "validate_overrides"]
