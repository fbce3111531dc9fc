"""The one place domain exceptions become HTTP answers, all in the OpenAI error shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.schemas.errors import ErrorBody, ErrorDetail
from shared.errors import (
    Conflict,
    ContentPolicyViolation,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    QueueUnavailable,
    StorageError,
    UnclipError,
    UnprocessableInput,
    UnsupportedMedia,
)

logger = logging.getLogger(__name__)

# Most specific first: StorageKeyNotFound is a StorageError and a NotFound, and a stored
# object that vanished behind a row is our fault, not the client's.
STATUS_BY_ERROR: tuple[tuple[type[UnclipError], int], ...] = (
    (StorageError, 503),
    (ContentPolicyViolation, 400),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (UnsupportedMedia, 415),
    (UnprocessableInput, 422),
    (QueueUnavailable, 503),
)


def status_for(exc: UnclipError) -> int:
    """The HTTP status of a domain error (500 for one this table does not know)."""
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 500)


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer: {"error": {"message", "type", "param", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = ErrorBody(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnclipError)
    status = status_for(exc)
    headers = None
    if isinstance(exc, QueueUnavailable):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif status == 503:
        headers = {"Retry-After": "5"}
    if status >= 500:
        logger.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc.message)
    return error_response(status, exc.message, param=exc.param, code=exc.code, headers=headers)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    param = ".".join(loc) or None
    message = f"{param}: {first.get('msg')} (got {first.get('input')!r})"
    return error_response(400, message, param=param, code="invalid_value")


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, headers=dict(exc.headers or {}) or None)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(UnclipError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
