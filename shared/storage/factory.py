"""make_storage(settings): the backend UNCLIP_STORAGE_URL names (file:///path or s3://bucket/prefix)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from shared.errors import ConfigurationError
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.local import LocalStorage


def make_storage(settings: Settings) -> Storage:
    """The storage backend of settings.storage_url."""
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        if url.netloc not in ("", "localhost"):
            raise ConfigurationError(
                f"storage_url {settings.storage_url!r} names host {url.netloc!r}; "
                "use file:///absolute/path"
            )
        return LocalStorage(Path(unquote(url.path)))
    if url.scheme == "s3":
        from shared.storage.s3 import S3Storage  # boto3 only where S3 is used

        return S3Storage(
            url.netloc,
            url.path.strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
        )
    raise ConfigurationError(
        f"storage_url {settings.storage_url!r} has scheme {url.scheme!r}; "
        "use file:///absolute/path or s3://bucket/prefix"
    )
