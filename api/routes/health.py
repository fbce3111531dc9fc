"""GET /healthz (the process answers) and GET /readyz (database and broker reachable)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, QueueDep, SettingsDep
from shared.errors import QueueUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def read_health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


def _check_database(engine: EngineDep) -> str:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"
    except SQLAlchemyError as exc:
        return f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"


@router.get("/readyz")
async def read_ready(engine: EngineDep, queue: QueueDep, settings: SettingsDep) -> JSONResponse:
    """200 when the database and the broker answer, else 503 saying which did not."""
    database = await run_in_threadpool(_check_database, engine)
    try:
        await run_in_threadpool(queue.check)
        broker = "ok"
    except QueueUnavailable as exc:
        broker = f"unreachable: {exc.message}"
    ready = database == "ok" and broker == "ok"
    body = {"status": "ready" if ready else "unready", "database": database, "broker": broker}
    headers = None if ready else {"Retry-After": str(settings.broker_retry_after_s)}
    return JSONResponse(body, status_code=200 if ready else 503, headers=headers)
