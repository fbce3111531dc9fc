"""FastAPI dependencies: settings, a database session, storage and the queue, from app.state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Principal, get_principal, require_admin_principal
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage


def get_settings_dep(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_engine(request: Request) -> Engine:
    return cast(Engine, request.app.state.engine)


def get_session_factory(request: Request) -> sessionmaker[Session]:
    return cast(sessionmaker[Session], request.app.state.sessionmaker)


def get_db(request: Request) -> Iterator[Session]:
    with get_session_factory(request)() as session:
        yield session


def get_storage(request: Request) -> Storage:
    return cast(Storage, request.app.state.storage)


def get_queue(request: Request) -> StageQueue:
    return cast(StageQueue, request.app.state.queue)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
SessionDep = Annotated[Session, Depends(get_db)]
StorageDep = Annotated[Storage, Depends(get_storage)]
QueueDep = Annotated[StageQueue, Depends(get_queue)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(require_admin_principal)]
