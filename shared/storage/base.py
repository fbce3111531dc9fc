"""The Storage protocol every backend implements; keys are '/'-separated relative paths."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Storage(Protocol):
    """Bytes by key. get_bytes raises StorageKeyNotFound for a missing key; delete is idempotent."""

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing what was there (readers never see half a write)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The bytes under `key`."""
        ...

    def exists(self, key: str) -> bool:
        """Whether `key` holds something."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; a missing key is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key under `prefix` (a folder such as 'jobs/<id>/'); how many went.

        Safe to repeat: nothing left is not an error."""
        ...
