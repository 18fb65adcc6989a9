"""/v1/jobs: submit, read, list and cancel restoration jobs."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import ValidationError

from api.deps import (
    CallerDep,
    DispatcherDep,
    ModelsDep,
    SessionDep,
    SettingsDep,
    StorageDep,
    SubmitterDep,
)
from api.schemas import JobCreate, JobOut, JobPage, Previews
from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.tables import Job, JobStatus
from shared.errors import InvalidRequest, PayloadTooLarge
from shared.storage import Storage
from shared.storage.keys import upload_key

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_JOB_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "options": {"type": "string", "description": "JSON object"},
                        "webhook_url": {"type": "string"},
                    },
                }
            },
        },
    }
}


_FORM_FIELDS = ("file", "model", "options", "webhook_url")


def job_out(job: Job, settings: Settings, storage: Storage) -> JobOut:
    link = jobs.result_link(settings, storage, job)
    previews = jobs.preview_links(settings, storage, job)
    return JobOut.from_job(
        job,
        result_url=link.url if link else None,
        expires=link.expires_in_s if link else None,
        previews=Previews(
            before=previews[0], after=previews[1], expires_in_s=settings.presign_expiry_s
        )
        if previews
        else None,
    )


async def _read_job_request(
    request: Request, settings: Settings, storage: Storage, models: ModelStore, tenant_id: str
) -> tuple[JobCreate, str | None]:
    """JSON names an object already in storage; multipart carries a small file to store first.
    Returns the request and, for a file sent here, its SHA-256: what makes a retried upload
    the same request for its idempotency key, though it is stored under a new key."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("multipart requests need a 'file' part")
        # As strict as the JSON body (extra="forbid"): a field the API does not know, or one
        # given twice, is the client's mistake to hear about, not to have half-ignored.
        unknown = sorted(repr(name) for name in set(form.keys()) - set(_FORM_FIELDS))
        if unknown:
            raise InvalidRequest(f"unknown multipart fields: {', '.join(unknown)}")
        repeated = [name for name in _FORM_FIELDS if len(form.getlist(name)) > 1]
        if repeated:
            raise InvalidRequest(f"multipart fields given more than once: {', '.join(repeated)}")
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"uploads over {settings.max_upload_bytes} bytes must use POST /v1/uploads"
            )
        key = upload_key(upload.filename or "upload", tenant_id)
        try:
            options = json.loads(str(form.get("options") or "{}"))
            body = JobCreate.model_validate(
                {
                    "model": form.get("model") or JobCreate.model_fields["model"].default,
                    "input_key": key,
                    "options": options,
                    "webhook_url": form.get("webhook_url") or None,
                }
            )
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"'options' is not valid JSON: {exc}") from exc
        except ValidationError as exc:
            raise _validation_error(exc) from exc
        models.chain(body.model)  # refuse an unknown model before storing the upload
        storage.put(settings.input_bucket, key, data, upload.content_type)
        return body, hashlib.sha256(data).hexdigest()
    try:
        return JobCreate.model_validate_json(await request.body()), None
    except ValidationError as exc:
        raise _validation_error(exc) from exc


def _validation_error(exc: ValidationError) -> Exception:
    from fastapi.exceptions import RequestValidationError

    return RequestValidationError(exc.errors(include_url=False))


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    openapi_extra=_JOB_BODY,
    responses={200: {"model": JobOut, "description": "The job first made with this key"}},
    summary="Submit a job (JSON with an object key, or multipart with the file)",
)
async def create_job(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    dispatcher: DispatcherDep,
    models: ModelsDep,
    caller: SubmitterDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    body, input_digest = await _read_job_request(
        request, settings, storage, models, caller.tenant_id
    )
    job, created = jobs.submit_job(
        session,
        settings,
        dispatcher,
        models,
        model=body.model,
        input_key=body.input_key,
        input_bucket=body.input_bucket,
        options=body.options.model_dump(exclude_none=True),
        idempotency_key=idempotency_key,
        webhook_url=body.webhook_url,
        caller=caller,
        input_digest=input_digest,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if not created:
        response.status_code = status.HTTP_200_OK
    return job_out(job, settings, storage)


@router.get("/{job_id}", response_model=JobOut)
def read_job(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    caller: CallerDep,
) -> JobOut:
    return job_out(jobs.get_job(session, job_id, caller.tenant_id), settings, storage)


@router.get("", response_model=JobPage)
def list_jobs(
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    caller: CallerDep,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    batch_id: uuid.UUID | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    if batch_id is not None:
        jobs.get_batch(session, batch_id, caller.tenant_id)  # another tenant's batch: 404
    items, next_cursor = jobs.list_jobs(
        session,
        tenant_id=caller.tenant_id,
        status=status_,
        batch_id=batch_id,
        cursor=cursor,
        limit=limit,
    )
    return JobPage(items=[job_out(j, settings, storage) for j in items], next_cursor=next_cursor)


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(
    job_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
    caller: CallerDep,
) -> JobOut:
    """Cancel a queued job at once, or ask the worker running it to stop."""
    return job_out(jobs.cancel_job(session, job_id, caller.tenant_id), settings, storage)
