"""The OpenAPI document as the API behaves: 400 (not 422) for invalid input, every error in
the error shape, and the request bodies routes read by hand (POST /v1/jobs)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from api.schemas.errors import ErrorBody, error_responses
from api.schemas.jobs import JobCreate

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model="ErrorBody")}
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# FastAPI documents its own validation answer (422 HTTPValidationError); the API answers 400.
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
# What any operation may answer: invalid input, no key, an unknown id, a server failure, a
# database or broker that is down (503 with Retry-After).
ALWAYS = (400, 401, 404, 500, 503)
WITH_BODY = (413, 415)
ADMIN = (403,)  # a key that is not an admin's


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _fix_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    auto = responses.get("422", {}).get("content", {}).get("application/json", {})
    if auto.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
        del responses["422"]
    statuses = ALWAYS + (WITH_BODY if method in ("post", "put", "patch") else ())
    statuses += ADMIN if path.startswith("/v1/admin/") else ()
    for status, spec in error_responses(*statuses).items():
        responses.setdefault(str(status), _error(spec["description"]))
    responses.setdefault("default", _error("Any other error, in the same error shape"))


def _component_schemas() -> dict[str, Any]:
    """JSON schemas of the models OpenAPI refers to but no route declares (with $defs)."""
    _, top = models_json_schema(
        [(JobCreate, "validation"), (ErrorBody, "serialization")], ref_template=REF
    )
    return dict(top.get("$defs", {}))


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, built once and cached on the app."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                _fix_operation(path, method, item[method])
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION:
        schemas.pop(name, None)
    for name, schema in _component_schemas().items():
        schemas.setdefault(name, schema)
    app.openapi_schema = document
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve build_openapi's document at /openapi.json."""

    def openapi() -> dict[str, Any]:
        return build_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override
