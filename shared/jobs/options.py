"""Per-job options: validated once at submission, read by the worker."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
