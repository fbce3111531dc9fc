"""Domain exceptions; api/errors.py maps each family to one HTTP status in one place."""

from __future__ import annotations


class UnclipError(Exception):
    """Base of every domain error; `param` names the offending input where there is one."""

    code: str = "error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class InvalidInput(UnclipError):
    """A request value outside what is allowed (HTTP 400)."""

    code = "invalid_value"


class InvalidImage(InvalidInput):
    """An upload that is no usable image: not PNG, JPEG or WebP, corrupt, not square, or a mask
    that does not fit its image (HTTP 400, as OpenAI's images API answers bad input)."""

    code = "invalid_image"


class UnprocessableInput(UnclipError):
    """Well-formed input that cannot be used: an Idempotency-Key sent again with another body
    (HTTP 422, as the IETF Idempotency-Key draft answers it)."""

    code = "unprocessable_input"


class PayloadTooLarge(UnclipError):
    """A body, upload or image larger than allowed (HTTP 413)."""

    code = "payload_too_large"


class UnsupportedMedia(UnclipError):
    """A request body of a content type the endpoint does not read (HTTP 415)."""

    code = "unsupported_media_type"


class ContentPolicyViolation(UnclipError):
    """Moderation refused the request (HTTP 400, code content_policy_violation)."""

    code = "content_policy_violation"


class NotFound(UnclipError):
    """No such job, image or key (HTTP 404)."""

    code = "not_found"


class Gone(UnclipError):
    """The job's files were removed: retention expired it, or its owner deleted it (HTTP 410)."""

    code = "expired"


class Conflict(UnclipError):
    """The request is valid but the job's state forbids it, e.g. cancelling a finished job (409)."""

    code = "conflict"


class Unauthenticated(UnclipError):
    """A missing, unknown, revoked or suspended API key (HTTP 401)."""

    code = "invalid_api_key"


class PermissionDenied(UnclipError):
    """A valid key that may not do this, e.g. a non-admin key on /v1/admin (HTTP 403)."""

    code = "permission_denied"


class RateLimited(UnclipError):
    """Too many requests for this key now (HTTP 429 with Retry-After)."""

    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class QuotaExceeded(RateLimited):
    """The key has as many active (queued or running) jobs as it may (HTTP 429)."""

    code = "quota_exceeded"


class QueueUnavailable(UnclipError):
    """The broker cannot take the message now (HTTP 503 with Retry-After)."""

    code = "queue_unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 30) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DatabaseUnavailable(UnclipError):
    """The database is down, hung or refusing connections now (HTTP 503 with Retry-After)."""

    code = "database_unavailable"


class StorageError(UnclipError):
    """The storage backend failed (transient: retry with backoff)."""

    code = "storage_error"


class StorageKeyNotFound(StorageError, NotFound):
    """A storage key that holds nothing."""

    code = "storage_key_not_found"


class InvalidStorageKey(StorageError, ValueError):
    """A storage key that is malformed or would escape the storage root."""

    code = "invalid_storage_key"


class InvalidTransition(UnclipError, ValueError):
    """A job state change the state machine does not allow (a programming error)."""

    code = "invalid_transition"


class ConfigurationError(UnclipError, ValueError):
    """Settings that cannot be used, found when a factory builds something from them."""

    code = "configuration_error"
