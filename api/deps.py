"""Dependencies as ``Annotated`` aliases, so routes read as plain signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from shared.catalogue import ModelStore
from shared.config import Settings
from shared.db.engine import session_factory
from shared.queue import Dispatcher
from shared.storage import Storage
from shared.tenants import OPERATOR, Caller, SubmissionLimiter, authenticate


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


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
CallerDep = Annotated[Caller, Depends(get_caller)]
SubmitterDep = Annotated[Caller, Depends(get_submitter)]
