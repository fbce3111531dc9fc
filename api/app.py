"""create_app(settings, *, storage=None, queue=None): the FastAPI app, parts passed in or built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import admin, health, jobs
from shared.db.engine import make_engine, make_sessionmaker
from shared.moderation.gate import lexical_checker_for
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storage.base import Storage


def _default_queue(settings: Settings) -> StageQueue:
    from shared.queue.celery_app import make_celery
    from shared.queue.dispatch import CeleryStageQueue

    return CeleryStageQueue(make_celery(settings), retry_after_s=settings.broker_retry_after_s)


def create_app(
    settings: Settings, *, storage: Storage | None = None, queue: StageQueue | None = None
) -> FastAPI:
    """The API for `settings`; tests pass their own storage and queue."""
    from shared.storage.factory import make_storage

    # A bad moderation policy stops the API at start-up, not at the first request.
    lexical_checker_for(settings.moderation_policy)
    engine = make_engine(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title="unclip-farm", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.storage = storage if storage is not None else make_storage(settings)
    app.state.queue = queue if queue is not None else _default_queue(settings)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(admin.router)
    return app
