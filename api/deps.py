"""Dependencies as ``Annotated`` aliases, so routes read as plain signatures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from shared.db import session_factory
from shared.model_store import ModelStore
from shared.service import Dispatcher
from shared.settings import Settings
from shared.storage import Storage


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


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StorageDep = Annotated[Storage, Depends(get_storage)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
