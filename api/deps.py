"""Dependencies as ``Annotated`` aliases, so routes read as plain signatures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.orm import Session

from shared import jobs
from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.db.tables import Job, Tenant
from shared.errors import BatchNotFound, JobNotFound
from shared.queue import Dispatcher
from shared.storage import Storage
from shared.tenants import OPERATOR, Caller, SubmissionLimiter, authenticate, caller_for
from shared.tenants.links import verify_report_link


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    settings: Settings = request.app.state.settings
    with session_factory(settings.database_url)() as session:
        yield session


def get_storage(request: Request) -> Storage:
    return request.app.state.storage


def get_models(request: Request) -> ModelStore:
    return request.app.state.models


def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def get_caller(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="Bearer <API key>, when the server requires keys")
    ] = None,
) -> Caller:
    """Who is asking. Runs in its own short session so a request's work never shares a
    transaction with its authentication."""
    settings: Settings = request.app.state.settings
    if settings.auth == "none":
        return OPERATOR
    with session_factory(settings.database_url)() as session:
        return authenticate(session, settings, authorization)


def get_submitter(request: Request, caller: Annotated[Caller, Depends(get_caller)]) -> Caller:
    """A caller allowed to submit now: counts the request against the tenant's rate."""
    limiter: SubmissionLimiter = request.app.state.limiter
    limiter.hit(caller)
    return caller


@dataclass(frozen=True)
class Reviewer:
    """Who looks at a batch's report: a caller with an API key (any batch of its tenant), or
    the holder of a report link (``batch_id``: that batch only)."""

    caller: Caller
    batch_id: uuid.UUID | None = None
    token: str | None = None
    """The link's token, which the page passes on to its previews and buttons."""

    def check_batch(self, batch_id: uuid.UUID) -> None:
        if self.batch_id is not None and batch_id != self.batch_id:
            raise BatchNotFound(f"batch {batch_id} not found")

    def job(self, session: Session, job_id: uuid.UUID) -> Job:
        """The job, if this reviewer may see it; else ``JobNotFound``, as for a missing one."""
        job = jobs.get_job(session, job_id, self.caller.tenant_id)
        if self.batch_id is not None and job.batch_id != self.batch_id:
            raise JobNotFound(f"job {job_id} not found")
        return job


def get_reviewer(
    request: Request,
    token: Annotated[
        str | None, Query(max_length=512, description="A report link's token, instead of a key.")
    ] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Reviewer:
    settings: Settings = request.app.state.settings
    if settings.auth == "none":
        return Reviewer(OPERATOR)
    if token is None or authorization is not None:
        return Reviewer(get_caller(request, authorization))
    with session_factory(settings.database_url)() as session:
        grant = verify_report_link(session, token)
        tenant = session.get(Tenant, grant.tenant_id)
        assert tenant is not None  # verify_report_link checked it exists
        return Reviewer(caller_for(settings, tenant), grant.batch_id, token)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
CallerDep = Annotated[Caller, Depends(get_caller)]
SubmitterDep = Annotated[Caller, Depends(get_submitter)]
ReviewerDep = Annotated[Reviewer, Depends(get_reviewer)]
