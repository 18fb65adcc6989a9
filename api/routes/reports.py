"""What a person reviewing a batch uses: the report page, the previews it shows, and the
review decision its buttons record.

These routes take an API key as every /v1 route does, or a report link's token (``?token=``,
from ``POST /v1/batches/{id}/report-link``) that opens one batch and nothing else.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from fastapi.responses import HTMLResponse

from api.deps import DispatcherDep, ModelsDep, ReviewerDep, SessionDep, SettingsDep, StorageDep
from api.errors import JSON_ERROR_RESPONSES
from api.reports import PAGE_SIZE, Filters, render_report
from api.review_schemas import ReviewCreate, ReviewOut
from api.routes.jobs import job_out
from api.schemas import ReviewCountsOut
from shared import jobs
from shared.db.tables import JobStatus
from shared.errors import InvalidRequest, NotFound
from shared.jobs.review import ReportFilter, ready_models

router = APIRouter(tags=["review"])

MAX_OFFSET = 2**31 - 1
"""Past any batch's size; bounded so a huge offset is the caller's 422, not the database's
"out of range" (a 500)."""


@router.get(
    "/v1/batches/{batch_id}/report", response_class=HTMLResponse, responses=JSON_ERROR_RESPONSES
)
def report_page(
    batch_id: uuid.UUID,
    session: SessionDep,
    models: ModelsDep,
    reviewer: ReviewerDep,
    show: Annotated[str | None, Query(description="flagged, pending, or a job status")] = None,
    rule: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> HTMLResponse:
    """The batch's report: counts, throughput, the flagged photos first with their reasons,
    before and after side by side, filters, and buttons that record decisions."""
    reviewer.check_batch(batch_id)
    token = reviewer.token
    summary = jobs.summarize_batch(session, batch_id, reviewer.caller.tenant_id)
    narrowed = _show(show or None)
    page, matching = jobs.report_jobs(
        session, batch_id, show=narrowed, rule=rule or None, offset=offset, limit=PAGE_SIZE
    )

    def link(at: int) -> str:
        query = {"show": show or "", "rule": rule or "", "offset": at, "token": token or ""}
        return "?" + urlencode({k: v for k, v in query.items() if v != ""})

    suffix = f"?{urlencode({'token': token})}" if token else ""
    html = render_report(
        summary,
        jobs.review_counts(session, batch_id),
        page,
        matching=matching,
        previews=lambda job, side: f"../../jobs/{job.id}/previews/{side}{suffix}",
        redone_by=jobs.redone_by(session, [job.id for job in page]),
        filters=Filters(show=show or None, rule=rule or None),
        models=ready_models(models),
        interactive=True,
        token=token,
        offset=offset,
        page_link=link,
    )
    return HTMLResponse(html)


def _show(show: str | None) -> ReportFilter | None:
    if show in (None, "flagged", "pending"):
        return show  # type: ignore[return-value]
    try:
        return JobStatus(show)
    except ValueError:
        raise InvalidRequest(f"'show' is flagged, pending or a job status, not {show!r}") from None


@router.get(
    "/v1/jobs/{job_id}/previews/{side}",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **JSON_ERROR_RESPONSES},
)
def read_preview(
    job_id: uuid.UUID,
    side: Literal["before", "after"],
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    reviewer: ReviewerDep,
) -> Response:
    """A job's 512-px JPEG of its input (``before``) or result (``after``), for pages that
    cannot reach the object store (the embedded mode); API clients get presigned URLs."""
    job = reviewer.job(session, job_id)
    key = job.preview_key(side)
    if key is None:
        raise NotFound(f"job {job_id} has no {side} preview")
    data = storage.get(settings.output_bucket, key)
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@router.post("/v1/jobs/{job_id}/review", response_model=ReviewOut)
def review_job(
    job_id: uuid.UUID,
    body: ReviewCreate,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    models: ModelsDep,
    reviewer: ReviewerDep,
) -> ReviewOut:
    """Record a person's decision: ``accepted``, ``rejected``, or ``redo`` (a new job in the same
    batch, with ``model`` and ``options`` if given, linked to this one; both results stay)."""
    reviewer.job(session, job_id)  # another tenant's job, or outside the link's batch: 404
    job, redo = jobs.decide(
        session,
        settings,
        dispatcher,
        models,
        job_id,
        body.decision,
        caller=reviewer.caller,
        model=body.model,
        options=body.options.model_dump(exclude_none=True) if body.options else None,
        note=body.note,
    )
    counts = jobs.review_counts(session, job.batch_id) if job.batch_id else None
    return ReviewOut(
        job=job_out(job, settings, storage),
        redo=job_out(redo, settings, storage) if redo else None,
        batch=ReviewCountsOut.from_counts(counts) if counts else None,
    )
