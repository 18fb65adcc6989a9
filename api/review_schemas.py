"""Request and response bodies of reviewing a batch: decisions, the review queue, the report
link (the job and batch bodies they embed are ``api.schemas``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import JobOut, ReviewCountsOut
from shared.db.tables import ReviewDecision
from shared.jobs.options import JobOptions


class ReviewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    decision: ReviewDecision
    model: str | None = Field(
        default=None,
        min_length=1,  # "" is a mistake to hear about, not a silent redo with the old model
        max_length=255,
        description="For 'redo': the model to run instead; the old job's if left out.",
    )
    options: JobOptions | None = Field(
        default=None, description="For 'redo': options replacing the old job's, one by one."
    )
    note: str | None = Field(default=None, max_length=2000)


class ReviewPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


class ReviewOut(BaseModel):
    job: JobOut
    redo: JobOut | None = Field(description="For 'redo': the new job, queued.")
    batch: ReviewCountsOut | None = Field(description="The batch's review counts, after this.")


class ReportLink(BaseModel):
    url: str = Field(description="Opens the batch's report page without an API key.")
    expires_in_s: int
