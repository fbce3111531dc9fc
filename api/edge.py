"""The edge every request crosses: request ids, the body cap, JSON checks, and no bare 500s.

Two pure ASGI middlewares (api/app.py installs them):
- `EdgeMiddleware`, outermost: gives every response an `x-request-id` (a sane one the client
  sent, else a new one), refuses a body over the cap (413, from Content-Length before reading,
  or as the bytes arrive), and turns any exception that escapes the app into a JSON answer
  in the error shape (500 for an unexpected one, logged with the request id) instead of a
  plain-text 500 and a dropped connection.
- `JsonBodyMiddleware`, inside authentication: parses a JSON body once to refuse nesting
  deeper than MAX_JSON_DEPTH and strings a database cannot store, with a 400 naming the
  field, before any route parses it.

FastAPI's own `max_body_size` (checked in 0.165 / Starlette 1.10) answers a plain-text
"Content Too Large", and replaces whatever the app answers whenever Content-Length is over
the limit, so its 413 cannot carry the error shape; the cap is kept here instead.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_for_exception
from shared.errors import InvalidInput, PayloadTooLarge
from shared.storable import check_storable

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# A client's id is echoed only when it is short and plain; anything else gets a new one.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_JSON_DEPTH = 32
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being served in this context (for logs), None outside one."""
    return _request_id.get()


def _request_id_for(headers: Headers) -> str:
    sent = headers.get(REQUEST_ID_HEADER, "")
    return sent if SANE_REQUEST_ID.fullmatch(sent) else f"req_{uuid.uuid4().hex}"


class EdgeMiddleware:
    """Request ids, the body cap and JSON errors for whatever escapes the app."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _request_id_for(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        token = _request_id.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            self._check_declared_length(headers)
            await self.app(scope, self._limited(receive), send_with_id)
        except Exception as exc:  # noqa: BLE001  (the point: nothing escapes as a bare 500)
            if started:
                logger.exception("request %s failed after its response started", request_id)
                return
            response = error_for_exception(exc, request_id=request_id, scope=scope)
            await response(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)

    def _check_declared_length(self, headers: Headers) -> None:
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PayloadTooLarge(
                f"request body of {declared} bytes exceeds the limit of {self.max_body_bytes} "
                "bytes",
                param="body",
            )

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(
                        f"request body exceeds the limit of {self.max_body_bytes} bytes",
                        param="body",
                    )
            return message

        return limited_receive


def _is_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _path(parent: str, key: str | int) -> str:
    return f"{parent}.{key}" if parent else str(key)


def check_json_value(value: Any) -> None:
    """400 for nesting deeper than MAX_JSON_DEPTH or a string (key or value) a database
    cannot store, naming where (`steps.prior`, `items.3`)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidInput(
                f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels (at {where or 'top'}); "
                f"at most {MAX_JSON_DEPTH} are allowed",
                param="body",
                code="json_too_deep",
            )
        if isinstance(item, str):
            check_storable(item, param=where or "body")
        elif isinstance(item, dict):
            for key, child in item.items():
                check_storable(key, param=_path(where, "(key)"))
                stack.append((child, _path(where, key), depth + 1))
        elif isinstance(item, list):
            stack.extend((child, _path(where, i), depth + 1) for i, child in enumerate(item))


def check_json_body(body: bytes) -> None:
    """check_json_value on a raw body; a body that is not JSON is left to the route to refuse."""
    try:
        value = json.loads(body)
    except RecursionError as exc:  # deeper than the parser's own stack allows
        raise InvalidInput(
            f"the JSON body nests too deeply; at most {MAX_JSON_DEPTH} levels are allowed",
            param="body",
            code="json_too_deep",
        ) from exc
    except ValueError:
        return
    check_json_value(value)


class JsonBodyMiddleware:
    """Check a JSON body (depth, storable strings) once, then hand the same bytes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            check_json_body(body)
        await self.app(scope, _replay(body, receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # what follows the body: a disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
