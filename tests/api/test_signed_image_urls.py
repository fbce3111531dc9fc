"""Signed, expiring image URLs: fetched with no Authorization header; tampered or expired is 403."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import update

from api.app import create_app
from shared.db import api_keys as key_store
from shared.db import migrate
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage
from shared.errors import PermissionDenied
from shared.image_urls import signed_image_url, verify_image_signature
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue

BASE = "https://img.example"
SECRET = "u" * 32
KEY_SECRET = "k" * 32


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "var", public_base_url=BASE, url_signing_secret=SECRET,
                    api_key_secret=KEY_SECRET, **overrides)  # type: ignore[arg-type]  # fmt: skip


def _query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_url_is_on_the_public_base_and_verifies(tmp_path: Path) -> None:
    settings = _settings(tmp_path, image_url_ttl_s=600)
    url = signed_image_url(settings, "job1", 2, now=1_000_000.0)
    assert url.startswith(f"{BASE}/v1/jobs/job1/images/2?")
    query = _query(url)
    assert int(query["expires"]) == 1_000_600
    verify_image_signature(settings, "job1", 2, expires=1_000_600,
                           signature=query["signature"], now=1_000_599.0)  # fmt: skip


@pytest.mark.parametrize(
    ("job_id", "index", "expires", "code"),
    [
        ("job2", 2, 1_000_600, "invalid_signature"),  # another job
        ("job1", 3, 1_000_600, "invalid_signature"),  # another image
        ("job1", 2, 1_000_601, "invalid_signature"),  # a later expiry
    ],
)
def test_a_changed_url_is_refused(
    tmp_path: Path, job_id: str, index: int, expires: int, code: str
) -> None:
    settings = _settings(tmp_path, image_url_ttl_s=600)
    signature = _query(signed_image_url(settings, "job1", 2, now=1_000_000.0))["signature"]
    with pytest.raises(PermissionDenied) as caught:
        verify_image_signature(settings, job_id, index, expires=expires, signature=signature,
                               now=1_000_000.0)  # fmt: skip
    assert caught.value.code == code


def test_expired_or_other_secret_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path, image_url_ttl_s=60)
    signature = _query(signed_image_url(settings, "job1", 0, now=1_000_000.0))["signature"]
    with pytest.raises(PermissionDenied) as caught:
        verify_image_signature(settings, "job1", 0, expires=1_000_060, signature=signature,
                               now=1_000_061.0)  # fmt: skip
    assert caught.value.code == "url_expired" and "1000060" in caught.value.message
    other = settings.model_copy(update={"url_signing_secret": settings.api_key_secret})
    with pytest.raises(PermissionDenied):
        verify_image_signature(other, "job1", 0, expires=1_000_060, signature=signature,
                               now=1_000_000.0)  # fmt: skip


def test_production_needs_a_public_base_url_and_a_real_secret(tmp_path: Path) -> None:
    ready = dict(env="production", database_url="postgresql+psycopg://u@h/db",
                 admin_token="a" * 32, api_key_secret=KEY_SECRET)  # fmt: skip
    with pytest.raises(ValidationError, match="public_base_url"):
        Settings(data_dir=tmp_path, url_signing_secret=SECRET, **ready)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="url_signing_secret"):
        Settings(data_dir=tmp_path, public_base_url=BASE, **ready)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="http"):
        Settings(data_dir=tmp_path, public_base_url="img.example")
    ok = Settings(data_dir=tmp_path, public_base_url=BASE, url_signing_secret=SECRET, **ready)  # type: ignore[arg-type]
    assert ok.image_url_ttl_s == 3600 and SECRET not in repr(ok)


# ---- the image route, with keys required ------------------------------------------------------


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, Settings, str]]:
    """An app that requires API keys, one key, and a succeeded job of that key with one PNG."""
    settings = _settings(tmp_path, require_api_keys=True, image_url_ttl_s=300)
    migrate.upgrade(settings)
    storage = LocalStorage(settings.data_dir / "storage")
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        secret = key_store.create_key(session=session, server_secret=KEY_SECRET, name="a").secret
    with TestClient(create_app(settings, storage=storage, queue=RecordingQueue())) as client:
        auth = {"Authorization": f"Bearer {secret}"}
        created = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=auth)
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (1, 2, 3)).save(buffer, format="PNG")
        key = f"jobs/{job_id}/attempt-3/images/0.png"
        storage.put_bytes(key, buffer.getvalue(), "image/png")
        with make_sessionmaker(engine).begin() as session:
            session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))
            session.add(JobImage(job_id=job_id, index=0, attempt=3, storage_key=key, width=64,
                                 height=64, published=True))  # fmt: skip
        yield client, settings, job_id
    engine.dispose()


def _path(url: str) -> str:
    return url.removeprefix(BASE)


def test_signed_url_needs_no_authorization(keyed: tuple[TestClient, Settings, str]) -> None:
    client, settings, job_id = keyed
    url = signed_image_url(settings, job_id, 0)
    response = client.get(_path(url))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).getpixel((0, 0)) == (1, 2, 3)
    max_age = int(response.headers["cache-control"].rpartition("=")[2])
    assert 0 < max_age <= 300
    unsigned = client.get(f"/v1/jobs/{job_id}/images/0")
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "invalid_api_key"


def test_tampered_expired_or_moved_url_is_403(
    keyed: tuple[TestClient, Settings, str],
) -> None:
    client, settings, job_id = keyed
    query = _query(signed_image_url(settings, job_id, 0))
    flipped = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")
    past = int(time.time()) - 10
    expired = _query(signed_image_url(settings, job_id, 0, now=past - settings.image_url_ttl_s))
    cases = {
        "invalid_signature": f"expires={query['expires']}&signature={flipped}",
        "url_expired": f"expires={expired['expires']}&signature={expired['signature']}",
    }
    for code, params in cases.items():
        response = client.get(f"/v1/jobs/{job_id}/images/0?{params}")
        assert response.status_code == 403, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["type"] == "invalid_request_error"
    # Another image of the same job is not opened by this image's signature.
    other = client.get(f"/v1/jobs/{job_id}/images/1?expires={query['expires']}"
                       f"&signature={query['signature']}")  # fmt: skip
    assert other.status_code == 403
