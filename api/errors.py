"""The one place domain exceptions become HTTP answers, all in the OpenAI error shape."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from api.schemas.errors import ErrorBody, ErrorDetail, ErrorType
from shared.errors import (
    Conflict,
    ContentPolicyViolation,
    DatabaseUnavailable,
    Gone,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    QueueUnavailable,
    RateLimited,
    StorageError,
    Unauthenticated,
    UnclipError,
    UnprocessableInput,
    UnsupportedMedia,
)

logger = logging.getLogger(__name__)
MAX_SHOWN_CHARS = 200

# Most specific first: StorageKeyNotFound is a StorageError and a NotFound, and a stored
# object that vanished behind a row is our fault, not the client's.
STATUS_BY_ERROR: tuple[tuple[type[UnclipError], int], ...] = (
    (StorageError, 503),
    (ContentPolicyViolation, 400),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (PayloadTooLarge, 413),
    (UnsupportedMedia, 415),
    (UnprocessableInput, 422),
    (RateLimited, 429),
    (QueueUnavailable, 503),
    (DatabaseUnavailable, 503),  # shared/db/engine.py raises it for outages
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
    kind: ErrorType = "invalid_request_error" if status < 500 else "server_error"
    body = ErrorBody(error=ErrorDetail(message=message, type=kind, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def domain_error_response(exc: UnclipError) -> JSONResponse:
    """The answer to a domain error: its status, message, param and code."""
    status = status_for(exc)
    headers = None
    if isinstance(exc, QueueUnavailable | RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s)}
    elif isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        headers = {"Retry-After": "5"}
    return error_response(status, exc.message, param=exc.param, code=exc.code, headers=headers)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, UnclipError)
    response = domain_error_response(exc)
    if response.status_code >= 500:
        logger.warning(
            "%s %s -> %d: %s", request.method, request.url.path, response.status_code, exc.message
        )
    return response


def _shown(value: object) -> str:
    """A client's value for a message, cut short: a message must not echo a whole body."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else f"{text[:MAX_SHOWN_CHARS]}..."


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    # The API answers 400 for every input it cannot accept (OpenAPI says so, not 422).
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header")]
    if first.get("type") == "json_invalid":  # its loc is ("body", <character offset>)
        param, message = "body", f"the body is not valid JSON ({first.get('msg')})"
    else:
        param = ".".join(loc) or "body"  # a body of the wrong type (a list, null) names none
        message = f"{param}: {first.get('msg')} (got {_shown(first.get('input'))})"
    return error_response(400, message, param=param, code="invalid_value")


def http_error_response(status: int, detail: str, method: str, path: str,
                        headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    """Starlette's HTTP errors (no route, wrong method, ...) in the error shape."""
    message = detail
    if status == 404:
        message = f"no route {method} {path}"
    elif status == 405:
        allowed = (headers or {}).get("Allow")
        message = f"method {method} is not allowed on {path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
    elif status == 413:
        message = "request body is larger than allowed"
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(status)
    return error_response(status, message, code=code, headers=headers or None)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (Starlette names only the first
    route that matched the path, e.g. POST on /v1/jobs, though GET is served there too)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):  # included routers' too
        match, _ = route.matches(request.scope)  # PARTIAL: the path matches, the method not
        if match != Match.NONE:
            methods |= set(route.methods or ())
    return ", ".join(sorted(methods))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    # FastAPI turns any failure while it parses a form into a 400 "error parsing the body":
    # a body cut off at the size limit (api/edge.py) is still a 413, and a malformed one a
    # 400 about the body.
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, UnclipError):
        return domain_error_response(cause)
    if exc.status_code == 400:  # Starlette's and FastAPI's: the body could not be parsed
        detail = str(exc.detail)
        if exc.__cause__ is not None and str(exc.__cause__):
            detail = f"{detail}: {exc.__cause__}"
        return error_response(400, detail, param="body", code="invalid_value")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed
    return http_error_response(
        exc.status_code, str(exc.detail), request.method, request.url.path, headers
    )


async def _on_data_error(request: Request, exc: Exception) -> JSONResponse:
    # A value the database refused (out of range, unstorable) that no check at the edge
    # caught: the client's input, so a 400; logged, as the edge should have named it.
    logger.warning("%s %s: the database refused a value: %s", request.method,
                   request.url.path, exc)  # fmt: skip
    return error_response(
        400,
        "a value in the request cannot be stored (out of range or holding unstorable "
        "characters); check the request's numbers and text",
        code="invalid_value",
    )


def error_for_exception(exc: Exception, *, request_id: str, scope: Scope) -> JSONResponse:
    """The answer to an exception that escaped the app (api/edge.py); unexpected ones are 500,
    logged with the request id, their details kept from the client."""
    if isinstance(exc, UnclipError):
        return domain_error_response(exc)
    if isinstance(exc, HTTPException):
        method, path = scope.get("method", ""), scope.get("path", "")
        return http_error_response(exc.status_code, str(exc.detail), method, path,
                                   dict(exc.headers or {}))  # fmt: skip
    logger.error("request %s %s %s failed", request_id, scope.get("method"), scope.get("path"),
                 exc_info=exc)  # fmt: skip
    return error_response(
        500,
        f"the server failed on this request (request id {request_id}); it is logged under that id",
        code="internal_error",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(UnclipError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(DataError, _on_data_error)
