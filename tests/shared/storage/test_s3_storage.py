"""S3 storage against moto: prefixing, round trips, missing keys, and the factory's s3:// URLs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from shared.errors import InvalidStorageKey, StorageError, StorageKeyNotFound
from shared.settings import Settings
from shared.storage.factory import make_storage
from shared.storage.s3 import S3Storage


@pytest.fixture
def s3_bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="renders")
        yield "renders"


def test_round_trip_under_prefix(s3_bucket: str, tmp_path: Path) -> None:
    storage = make_storage(Settings(data_dir=tmp_path, storage_url="s3://renders/farm/one"))
    assert isinstance(storage, S3Storage)
    storage.put_bytes("jobs/j/attempt-1/images/0.png", b"png", "image/png")
    raw = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket="renders", Key="farm/one/jobs/j/attempt-1/images/0.png"
    )
    assert raw["Body"].read() == b"png" and raw["ContentType"] == "image/png"
    assert storage.get_bytes("jobs/j/attempt-1/images/0.png") == b"png"
    assert storage.exists("jobs/j/attempt-1/images/0.png")
    storage.delete("jobs/j/attempt-1/images/0.png")
    assert not storage.exists("jobs/j/attempt-1/images/0.png")
    with pytest.raises(StorageKeyNotFound):
        storage.get_bytes("jobs/j/attempt-1/images/0.png")
    with pytest.raises(InvalidStorageKey):
        storage.put_bytes("../x", b"", "text/plain")


def test_missing_bucket_is_a_storage_error(s3_bucket: str) -> None:
    storage = S3Storage("no-such-bucket", region="us-east-1")
    with pytest.raises(StorageError, match="s3://no-such-bucket/k"):
        storage.put_bytes("k", b"x", "text/plain")


def test_delete_prefix_removes_one_jobs_keys_only(s3_bucket: str, tmp_path: Path) -> None:
    storage = make_storage(Settings(data_dir=tmp_path, storage_url="s3://renders/farm"))
    for key in ("jobs/a/inputs/image.png", "jobs/a/attempt-1/images/0.png", "jobs/ab/x.png"):
        storage.put_bytes(key, b"x", "image/png")
    assert storage.delete_prefix("jobs/a/") == 2
    assert not storage.exists("jobs/a/inputs/image.png") and storage.exists("jobs/ab/x.png")
    assert storage.delete_prefix("jobs/a/") == 0  # safe to repeat
