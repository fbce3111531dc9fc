"""Local-directory storage: atomic writes (temp file + rename), keys confined to the root."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from shared.errors import InvalidStorageKey, StorageError, StorageKeyNotFound


def check_key(key: str) -> str:
    """Reject keys that are empty, absolute, or hold '.', '..', empty or backslashed parts."""
    parts = key.split("/")
    bad = (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
    )
    if bad:
        raise InvalidStorageKey(
            f"storage key {key!r} is not allowed; use a relative path of '/'-separated names "
            "without empty, '.' or '..' parts or backslashes"
        )
    return key


class LocalStorage:
    """Files under `root`, one per key."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidStorageKey(f"storage key {key!r} resolves outside {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"cannot write storage key {key!r} under {self.root}: {exc}"
            ) from exc

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageKeyNotFound(f"storage key {key!r} holds nothing") from exc
        except OSError as exc:
            raise StorageError(f"cannot read storage key {key!r}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete storage key {key!r}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        files = [p for p in folder.rglob("*") if p.is_file()]
        try:
            shutil.rmtree(folder)
        except FileNotFoundError:
            pass  # removed by a concurrent cleanup
        except OSError as exc:
            raise StorageError(f"cannot delete storage prefix {prefix!r}: {exc}") from exc
        return len(files)
