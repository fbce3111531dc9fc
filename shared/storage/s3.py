"""S3-compatible storage via boto3 (AWS, or MinIO through endpoint_url); boto3 finds credentials."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import StorageError, StorageKeyNotFound
from shared.storage.local import check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage:
    """Objects in `bucket` under `prefix`; a key 'jobs/x/y' is stored as '<prefix>/jobs/x/y'."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        client: Any | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region)

    def _object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._object_key(key)}"

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._object_key(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot write {self._where(key)}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._object_key(key))
            body: bytes = response["Body"].read()
            return body
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise StorageKeyNotFound(f"storage key {key!r} holds nothing") from exc
            raise StorageError(f"cannot read {self._where(key)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot read {self._where(key)}: {exc}") from exc

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._object_key(key))
            return True
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise StorageError(f"cannot check {self._where(key)}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot check {self._where(key)}: {exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {self._where(key)}: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._object_key(prefix.rstrip("/")) + "/"
            )
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:  # at most 1000 per page, which is also delete_objects' limit
                    self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                    removed += len(keys)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot delete {self._where(prefix)}*: {exc}") from exc
        return removed
