"""Local storage: round trips, atomic replacement, keys that would escape the root refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import InvalidStorageKey, StorageKeyNotFound
from shared.settings import Settings
from shared.storage.base import Storage
from shared.storage.factory import make_storage
from shared.storage.local import LocalStorage


def test_round_trip_replace_and_delete(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    assert isinstance(storage, Storage)
    storage.put_bytes("jobs/a/x.png", b"one", "image/png")
    storage.put_bytes("jobs/a/x.png", b"two", "image/png")
    assert storage.get_bytes("jobs/a/x.png") == b"two"
    assert storage.exists("jobs/a/x.png") and not storage.exists("jobs/a/y.png")
    # No temp files are left beside the object.
    assert sorted(p.name for p in (tmp_path / "root/jobs/a").iterdir()) == ["x.png"]
    storage.delete("jobs/a/x.png")
    storage.delete("jobs/a/x.png")  # idempotent
    with pytest.raises(StorageKeyNotFound, match="jobs/a/x.png"):
        storage.get_bytes("jobs/a/x.png")


@pytest.mark.parametrize(
    "key", ["../outside", "a/../../b", "/etc/passwd", "", "a//b", "a\\b", "./a", "a/."]
)
def test_keys_escaping_or_malformed_are_refused(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidStorageKey, match="not allowed|outside"):
        storage.put_bytes(key, b"x", "text/plain")
    assert not (tmp_path / "outside").exists()


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    storage = LocalStorage(tmp_path / "root")
    with pytest.raises(InvalidStorageKey, match="outside"):
        storage.put_bytes("link/file", b"x", "text/plain")


def test_factory_builds_local_from_file_url(tmp_path: Path) -> None:
    storage = make_storage(Settings(data_dir=tmp_path))
    assert isinstance(storage, LocalStorage) and storage.root == tmp_path / "storage"
    storage.put_bytes("k", b"v", "text/plain")
    assert (tmp_path / "storage" / "k").read_bytes() == b"v"


def test_delete_prefix_removes_one_jobs_files_only(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "store")
    for key in ("jobs/a/inputs/image.png", "jobs/a/attempt-1/images/0.png", "jobs/ab/x.png"):
        storage.put_bytes(key, b"x", "image/png")
    assert storage.delete_prefix("jobs/a/") == 2
    assert not storage.exists("jobs/a/attempt-1/images/0.png") and storage.exists("jobs/ab/x.png")
    assert storage.delete_prefix("jobs/a/") == 0  # safe to repeat
