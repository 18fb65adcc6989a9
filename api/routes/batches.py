"""/v1/batches: many images, one request."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Header, Query, Request, Response, status
from sqlalchemy.orm import Session

from api.deps import (
    CallerDep,
    DispatcherDep,
    ModelsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    SubmitterDep,
)
from api.review_schemas import ReportLink, ReviewPage
from api.routes.jobs import job_out
from api.schemas import BatchCreate, BatchOut
from shared import jobs
from shared.errors import Unauthenticated
from shared.jobs.review import QueueFilter
from shared.tenants import get_tenant
from shared.tenants.links import sign_report_link

router = APIRouter(prefix="/v1/batches", tags=["batches"])


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    responses={200: {"model": BatchOut, "description": "The batch first made with this key"}},
)
def create_batch(
    body: BatchCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    models: ModelsDep,
    caller: SubmitterDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> BatchOut:
    """Every object under a prefix, or a list of keys. The same ``Idempotency-Key`` with the
    same body returns the first batch (200) and enqueues nothing."""
    batch, created = jobs.submit_batch(
        session,
        settings,
        dispatcher,
        storage,
        models,
        model=body.model,
        keys=body.keys,
        prefix=body.prefix,
        input_bucket=body.input_bucket,
        options=body.options.model_dump(exclude_none=True),
        webhook_url=body.webhook_url,
        caller=caller,
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return batch_out(session, batch.id)


def batch_out(session: Session, batch_id: uuid.UUID, tenant_id: str | None = None) -> BatchOut:
    summary = jobs.summarize_batch(session, batch_id, tenant_id)
    return BatchOut.from_summary(summary, jobs.review_counts(session, batch_id))


@router.get("/{batch_id}", response_model=BatchOut)
def read_batch(batch_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> BatchOut:
    return batch_out(session, batch_id, caller.tenant_id)


@router.get("/{batch_id}/review", response_model=ReviewPage)
def review_queue(
    batch_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    caller: CallerDep,
    which: Annotated[
        QueueFilter,
        Query(alias="decision", description="pending (default), decided, or all flagged jobs"),
    ] = "pending",
    rule: Annotated[
        str | None, Query(max_length=64, description="Only jobs that tripped it.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReviewPage:
    """The batch's flagged jobs, oldest first, with their reasons, signals and previews."""
    jobs.get_batch(session, batch_id, caller.tenant_id)  # another tenant's batch: 404
    items, next_cursor = jobs.review_queue(
        session, batch_id, which=which, rule=rule, cursor=cursor, limit=limit
    )
    return ReviewPage(
        items=[job_out(job, settings, storage) for job in items], next_cursor=next_cursor
    )


@router.post("/{batch_id}/report-link", response_model=ReportLink, status_code=201)
def create_report_link(
    batch_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> ReportLink:
    """A link to the batch's report page that works without an API key until it expires
    (``DARKROOM_REPORT_LINK_EXPIRY_S``), for a person who reviews but holds no key. It lasts
    no longer than the key that asked for it: revoking the key ends the link."""
    jobs.get_batch(session, batch_id, caller.tenant_id)
    page = str(request.url_for("report_page", batch_id=batch_id))
    expires = settings.report_link_expiry_s
    if settings.auth == "none":
        return ReportLink(url=page, expires_in_s=expires)
    if caller.key_id is None:  # API keys on, so every caller here came with one
        raise Unauthenticated("a report link is made with an API key")
    tenant = get_tenant(session, caller.tenant_id)
    token = sign_report_link(tenant, batch_id, caller.key_id, expires)
    return ReportLink(url=f"{page}?{urlencode({'token': token})}", expires_in_s=expires)
