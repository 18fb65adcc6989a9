"""Per-job options: validated once at submission, read by the worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.review import RULES, validate_overrides


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output_format: Literal["jpeg", "png", "webp", "tiff"] | None = Field(
        default=None, description="Format of the result; the input's format by default."
    )
    task: str | None = Field(
        default=None,
        max_length=64,
        description="For a multi-task model (GET /v1/models 'tasks'): which head to run.",
    )
    jpeg_quality: int | None = Field(
        default=None, ge=1, le=100, description="JPEG/WebP quality; the server default if unset."
    )
    review: dict[str, float | bool] | None = Field(
        default=None,
        description=(
            "Review thresholds for these jobs, by rule (" + ", ".join(RULES) + "): a number "
            "replaces the server's (or tenant's) threshold, false turns the rule off."
        ),
    )

    @field_validator("review")
    @classmethod
    def _known_rules(cls, value: dict[str, float | bool] | None) -> dict[str, float | bool] | None:
        return None if value is None else validate_overrides(value)
