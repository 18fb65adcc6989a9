"""The batch report page: one server-rendered HTML file, no build step, nothing from a CDN.

The API serves it (``GET /v1/batches/{id}/report``: previews from the API, review buttons
that call it) and ``darkroom report`` writes it as a snapshot file with the previews inlined,
for a person without the server. Both render :func:`render_report` from the same template.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import PurePosixPath
from typing import Any

import jinja2

from shared.db.tables import Job, JobStatus, ReviewDecision
from shared.jobs import BatchSummary, ReviewCounts
from shared.review import RULES

PAGE_SIZE = 50

SHOWS = (
    ("flagged", "flagged"),
    ("pending", "flagged, awaiting review"),
    *((status.value, status.value) for status in JobStatus),
)
"""The report's "show" filter: (value, label)."""

_UNDONE = (JobStatus.failed, JobStatus.cancelled)

_SAME_AGAIN = frozenset({"invalid_image"})
"""Failures a redo would meet again whatever its model or options: the input itself is not a
photo Darkroom can read. The page offers no redo there (the API still takes one, for an
operator who has since raised ``DARKROOM_MAX_PIXELS``, say)."""

PreviewSource = Callable[[Job, str], str | None]
"""Where a job's ``before`` or ``after`` preview comes from: a URL, or an inlined data URI."""


@dataclass(frozen=True)
class Filters:
    show: str | None = None
    rule: str | None = None


@lru_cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _card(
    job: Job, previews: PreviewSource, redone_by: dict[uuid.UUID, uuid.UUID], prefix: str
) -> Any:
    before = previews(job, "before") if job.before_preview_key else None
    after = previews(job, "after") if job.after_preview_key else None
    reasons = job.review_reasons or []
    # What the review endpoint would take: a redo is final, so a redone job takes nothing more.
    final = job.review_decision == ReviewDecision.redo
    return {
        "id": str(job.id),
        # The photo's path under the batch's prefix: what its owner calls it in the archive.
        "name": job.input_key.removeprefix(prefix) if prefix else PurePosixPath(job.input_key).name,
        "status": job.status.value,
        "model": job.model,
        "flagged": job.flagged,
        "reasons": reasons,
        "rules": [reason["rule"] for reason in reasons],
        "decision": job.review_decision.value if job.review_decision else None,
        "error": f"{job.error_code}: {job.error_message}" if job.status in _UNDONE else None,
        "before": before if before and after else None,
        "after": after if before and after else None,
        "redo_of": str(job.redo_of) if job.redo_of else None,
        "redone_by": str(redone_by[job.id]) if job.id in redone_by else None,
        "can_decide": job.status == JobStatus.succeeded and not final,
        "can_redo": (
            not final
            and (
                job.status == JobStatus.succeeded
                or (job.status == JobStatus.failed and job.error_code not in _SAME_AGAIN)
            )
        ),
    }


def _header(summary: BatchSummary) -> dict[str, object]:
    """The batch's figures at the top of the page (throughput in photos per minute)."""
    batch, throughput = summary.batch, summary.throughput_per_s
    return {
        "id": str(batch.id),
        "model": batch.model,
        "prefix": batch.input_prefix,
        "created": batch.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "total": summary.total,
        "done": summary.done,
        "counts": summary.counts,
        "throughput": f"{throughput * 60:.1f}" if throughput else "–",
    }


def render_report(
    summary: BatchSummary,
    review: ReviewCounts,
    page: Sequence[Job],
    *,
    matching: int,
    previews: PreviewSource,
    redone_by: dict[uuid.UUID, uuid.UUID],
    filters: Filters,
    models: Sequence[str],
    interactive: bool,
    token: str | None = None,
    offset: int = 0,
    page_link: Callable[[int], str] | None = None,
) -> str:
    """The page for one batch. ``interactive``: served, with review buttons and paging
    (``page_link(offset)`` makes the links); else a snapshot of ``page`` only."""
    batch = summary.batch
    last = offset + len(page)
    has_next = interactive and page_link is not None and last < matching
    has_previous = interactive and page_link is not None and offset > 0
    return (
        _environment()
        .get_template("report.html")
        .render(
            batch=_header(summary),
            review={
                "flagged": review.flagged,
                "pending": review.pending,
                **{d: review.decisions.get(d, 0) for d in ("accepted", "rejected", "redo")},
                "unflagged": sum(review.unflagged.values()),
            },
            rules=[
                {"name": name, "title": rule.title, "count": review.rules.get(name, 0)}
                for name, rule in RULES.items()
            ],
            shows=SHOWS,
            filters={"show": filters.show or "", "rule": filters.rule or ""},
            cards=[_card(job, previews, redone_by, batch.input_prefix or "") for job in page],
            matching=matching,
            first=offset + 1 if page else 0,
            last=last,
            previous=page_link(max(0, offset - PAGE_SIZE)) if has_previous and page_link else None,
            next=page_link(last) if has_next and page_link else None,
            models=list(models),
            interactive=interactive,
            token=token,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
