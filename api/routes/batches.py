"""/v1/batches: many images, one request."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from api.deps import (
    CallerDep,
    DispatcherDep,
    ModelsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    SubmitterDep,
)
from api.schemas import BatchCreate, BatchOut
from shared import jobs

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
    return BatchOut.from_summary(jobs.summarize_batch(session, batch.id))


@router.get("/{batch_id}", response_model=BatchOut)
def read_batch(batch_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> BatchOut:
    return BatchOut.from_summary(jobs.summarize_batch(session, batch_id, caller.tenant_id))
