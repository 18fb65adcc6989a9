"""/v1/batches: many images, one request."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

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


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=BatchOut)
def create_batch(
    body: BatchCreate,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    models: ModelsDep,
    caller: SubmitterDep,
) -> BatchOut:
    batch = jobs.submit_batch(
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
    )
    response.headers["Location"] = f"/v1/batches/{batch.id}"
    return BatchOut.from_summary(jobs.summarize_batch(session, batch.id))


@router.get("/{batch_id}", response_model=BatchOut)
def read_batch(batch_id: uuid.UUID, session: SessionDep, caller: CallerDep) -> BatchOut:
    return BatchOut.from_summary(jobs.summarize_batch(session, batch_id, caller.tenant_id))
