"""The error body every 4xx/5xx answer carries, in the OpenAI shape."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """What went wrong: a message naming the bad value and what is allowed."""

    message: str
    type: str  # invalid_request_error | server_error
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """{"error": {...}}."""

    error: ErrorDetail
