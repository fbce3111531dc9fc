"""Signed, expiring image URLs: fetchable without an Authorization header until they expire.

A URL is `{public base}/v1/jobs/{id}/images/{index}?expires=UNIX&signature=HEX`, where the
signature is HMAC-SHA256 (settings.url_signing_secret) over the job id, index and expiry.
The base is settings.public_base_url (required in production), never the request's Host.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from shared.errors import PermissionDenied
from shared.settings import Settings

# Without UNCLIP_PUBLIC_BASE_URL (development only), URLs point at `unclip api`'s default.
DEVELOPMENT_BASE_URL = "http://127.0.0.1:8000"
# Bounds of the query parameters the image route accepts (a longer value cannot be genuine).
MAX_SIGNATURE_CHARS = 128
MAX_EXPIRES = 2**62


def public_base_url(settings: Settings) -> str:
    """Where clients reach this API: UNCLIP_PUBLIC_BASE_URL, or the development default."""
    return (settings.public_base_url or DEVELOPMENT_BASE_URL).rstrip("/")


def image_path(job_id: str, index: int) -> str:
    return f"/v1/jobs/{job_id}/images/{index}"


def _signature(settings: Settings, job_id: str, index: int, expires: int) -> str:
    key = settings.url_signing_secret.get_secret_value().encode()
    message = f"image\n{job_id}\n{index}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_image_url(
    settings: Settings, job_id: str, index: int, *, now: float | None = None
) -> str:
    """The URL of image `index` of a job, valid for settings.image_url_ttl_s from `now`."""
    issued = time.time() if now is None else now
    expires = int(issued) + settings.image_url_ttl_s
    query = urlencode(
        {"expires": expires, "signature": _signature(settings, job_id, index, expires)}
    )
    return f"{public_base_url(settings)}{image_path(job_id, index)}?{query}"


def verify_image_signature(
    settings: Settings,
    job_id: str,
    index: int,
    *,
    expires: int | None,
    signature: str | None,
    now: float | None = None,
) -> None:
    """Return if the signature is genuine and unexpired; otherwise 403 saying which."""
    if expires is None or signature is None:
        missing = "expires" if expires is None else "signature"
        raise PermissionDenied(
            f"a signed image URL needs both expires and signature; {missing} is missing. Use "
            "the url from the job or images response as it is",
            param=missing,
            code="invalid_signature",
        )
    expected = _signature(settings, job_id, index, expires)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise PermissionDenied(
            f"the signature of this image URL is not valid for job {job_id} image {index} "
            f"expiring at {expires}; use the url from the job or images response unchanged",
            param="signature",
            code="invalid_signature",
        )
    current = time.time() if now is None else now
    if expires < current:
        raise PermissionDenied(
            f"this image URL expired at {expires} (unix time; now {int(current)}); read the job "
            f"again (GET /v1/jobs/{job_id}) for a fresh URL",
            param="expires",
            code="url_expired",
        )


def remaining_s(expires: int, *, now: float | None = None) -> int:
    """Seconds until `expires`, at least 0 (for Cache-Control on a signed fetch)."""
    current = time.time() if now is None else now
    return max(0, int(expires - current))
