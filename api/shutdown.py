"""Whether the server is shutting down: long-lived responses (event streams) end early then.

uvicorn waits for open connections before it stops; a stream that followed a job forever
would hold a SIGTERM'd API until the client left. `unclip api` registers its server here,
and a stream returns at its next poll once the server was told to exit (clients resume with
Last-Event-ID). Without a registered server (tests, another ASGI server) it is never true.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request

_STATE_NAME = "server_stopping"


def register_stopping(app: FastAPI, stopping: Callable[[], bool]) -> None:
    """Tell the app how to ask its server whether it is shutting down."""
    setattr(app.state, _STATE_NAME, stopping)


def shutting_down(request: Request) -> bool:
    stopping: Callable[[], bool] | None = getattr(request.app.state, _STATE_NAME, None)
    return stopping is not None and stopping()
