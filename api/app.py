"""create_app(settings, *, storage=None, queue=None): the FastAPI app, parts passed in or built."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from api.auth import ApiKeyAuth
from api.edge import EdgeMiddleware, JsonBodyMiddleware
from api.errors import install_error_handlers
from api.openapi import install_openapi
from api.routes import admin, appeals, fleet, health, images, jobs, keys, metrics, models
from api.routes import embeddings as embedding_routes
from api.routes import events as job_events
from api.routes import manifest as job_manifest
from api.routes import webhooks as job_webhooks
from api.routes.docs import mount_docs
from api.routes.ui import mount_ui
from api.uploads import body_limit
from shared.db.engine import make_engine, make_sessionmaker
from shared.moderation.gate import lexical_checker_for
from shared.queue.dispatch import StageQueue
from shared.settings import Settings
from shared.storable import check_storable
from shared.storage.base import Storage


def _default_queue(settings: Settings) -> StageQueue:
    from shared.queue.celery_app import make_celery
    from shared.queue.dispatch import CeleryStageQueue

    return CeleryStageQueue(make_celery(settings), retry_after_s=settings.broker_retry_after_s)


def check_storable_params(request: Request) -> None:
    """400 naming the parameter when a path or query value holds NUL or another unstorable
    character (a job id, a cursor), before any route hands it to the database."""
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_storable(value, param=name)
    for name, value in request.query_params.multi_items():
        check_storable(name, param=name)
        check_storable(value, param=name)


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

    app = FastAPI(
        title="unclip-farm",
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(check_storable_params)],
        docs_url=None,  # served from local assets by mount_docs (api/routes/docs.py)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.storage = storage if storage is not None else make_storage(settings)
    app.state.queue = queue if queue is not None else _default_queue(settings)
    install_error_handlers(app)
    install_openapi(app)
    # Middleware added last runs first: the edge (request id, body cap, JSON for whatever
    # escapes), then keys (before any body is read, api/auth.py), then the JSON body check.
    app.add_middleware(JsonBodyMiddleware)
    # Keys are checked before any body is read (api/auth.py).
    app.add_middleware(ApiKeyAuth, settings=settings, sessions=app.state.sessionmaker)
    app.add_middleware(
        EdgeMiddleware, max_body_bytes=body_limit(settings.limits, base64_encoded=True)
    )
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(admin.router)
    app.include_router(appeals.router)  # moderation appeals (H-moderation)
    app.include_router(appeals.admin_router)
    app.include_router(keys.router)
    app.include_router(images.router)
    app.include_router(models.router)
    app.include_router(fleet.router)
    app.include_router(metrics.router)
    app.include_router(job_events.router)
    app.include_router(job_webhooks.router)
    app.include_router(embedding_routes.router)
    app.include_router(job_manifest.router)  # manifest and replay (H-embed)
    mount_ui(app)
    mount_docs(app)
    return app
