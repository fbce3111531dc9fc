"""The error body every 4xx/5xx answer carries, in the OpenAI shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

ErrorType = Literal["invalid_request_error", "server_error"]


class ErrorDetail(BaseModel):
    """What went wrong: a message naming the bad value and what is allowed."""

    message: str
    type: ErrorType = Field(description="invalid_request_error for 4xx, server_error for 5xx")
    param: str | None = Field(description="the offending field, header or parameter")
    code: str | None = Field(description="a stable machine-readable code, e.g. invalid_value")


class ErrorBody(BaseModel):
    """{"error": {"message", "type", "param", "code"}}."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the error shape."""
    return {status: {"model": ErrorBody, "description": _WHY.get(status, "Error")}
            for status in statuses}  # fmt: skip


_WHY = {
    400: "Invalid input: a value outside what is allowed, named in `param`",
    401: "Missing, unknown or revoked API key",
    403: "Not allowed (e.g. a tampered or expired image signature)",
    404: "No such job or image (or not this key's)",
    405: "Method not allowed on this path",
    409: "The job's state forbids it, or the Idempotency-Key is in flight",
    413: "Body or upload too large",
    410: "The job's images were removed (deleted by its owner, or expired by retention)",
    415: "A request body of a content type this endpoint does not read",
    422: "An Idempotency-Key sent again with another body",
    429: "Rate limit or active-job quota exceeded (see Retry-After)",
    500: "Unexpected server error (logged under the x-request-id)",
    503: "Queue or storage unavailable now (see Retry-After)",
    504: "The job did not finish in time (it goes on)",
}
