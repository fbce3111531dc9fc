"""API keys at the edge: 401 before the body, hashed storage, suspension, isolation, admins."""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db import api_keys as key_store
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import ApiKey, JobImage
from shared.image_urls import signed_image_url
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import ADMIN_TOKEN, KEY_SECRET, bearer, keyed_settings, new_key, serve

UNDER_CAP = 8 * 1024 * 1024  # below the API's body-size cap, so the cap does not answer


def _client(settings: Settings) -> TestClient:
    storage = LocalStorage(settings.data_dir / "storage")
    return TestClient(create_app(settings, storage=storage, queue=RecordingQueue()))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return keyed_settings(tmp_path / "var")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with _client(settings) as test_client:
        yield test_client


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return str(error["message"])


def _submit(client: TestClient, headers: dict[str, str] | None = None) -> str:
    answer = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=headers or {})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _read_answer(conn: socket.socket) -> bytes:
    """One HTTP answer (headers and a Content-Length body) from a raw connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/admin/keys", {}),
        ("/v1/admin/moderation/jobs/x/release", {"Authorization": "Bearer sk-unclip-not-a-key"}),
        ("/v1/jobs", {}),
    ],
)
def test_an_unauthenticated_upload_is_refused_before_its_body_is_sent(
    tmp_path: Path, path: str, headers: dict[str, str], framing: str
) -> None:
    # A length under the body cap (or none, chunked): only authentication can stop it early.
    settings = keyed_settings(tmp_path / "var", require_api_keys=True)
    app = create_app(settings, storage=LocalStorage(tmp_path / "s"), queue=RecordingQueue())
    first = b"{" + b" " * 65535  # 64 KiB; the rest of the body is never sent
    if framing == "chunked":
        length, first = "Transfer-Encoding: chunked", b"%x\r\n%s\r\n" % (len(first), first)
    else:
        length = f"Content-Length: {UNDER_CAP}"
    with serve(app) as base:
        address = urlsplit(base)
        lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json",
                 length, *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
        with socket.create_connection((address.hostname, address.port), timeout=20) as conn:
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first)
            answer = _read_answer(conn)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
    assert b'"code":"invalid_api_key"' in answer.replace(b" ", b"")


def test_keyless_requests_are_the_local_principal_when_keys_are_optional(
    client: TestClient,
) -> None:
    job_id = _submit(client)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_required_keys_refuse_keyless_requests_but_not_health(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var", require_api_keys=True)
    secret = new_key(settings, "alice")
    with _client(settings) as client:
        answer = client.post("/v1/jobs", json={"prompt": "a red circle"})
        assert "Authorization: Bearer" in _error(answer, 401, "invalid_api_key")
        assert answer.headers["www-authenticate"] == "Bearer"
        assert client.get("/healthz").status_code == 200
        _submit(client, bearer(secret))


def test_production_requires_keys_by_default(tmp_path: Path) -> None:
    production = Settings(
        data_dir=tmp_path, env="production", database_url="postgresql+psycopg://u@h/db",
        admin_token="a" * 32, api_key_secret="k" * 32, url_signing_secret="u" * 32,
        public_base_url="https://api.example",
    )  # fmt: skip
    assert production.require_api_keys
    assert not Settings(data_dir=tmp_path).require_api_keys


@pytest.mark.parametrize(
    "authorization", ["Bearer sk-unclip-unknown-key-0000000000", "Basic abc", "Bearer"]
)
def test_unknown_or_malformed_keys_are_401_even_when_keys_are_optional(
    client: TestClient, authorization: str
) -> None:
    answer = client.get("/v1/jobs", headers={"Authorization": authorization})
    _error(answer, 401, "invalid_api_key")


def test_a_key_sent_without_bearer_is_not_echoed_whole(
    settings: Settings, client: TestClient
) -> None:
    secret = new_key(settings, "dave")
    answer = client.get("/v1/jobs", headers={"Authorization": secret})
    message = _error(answer, 401, "invalid_api_key")
    assert secret not in answer.text and "Bearer KEY" in message


def test_a_revoked_key_is_invalid(settings: Settings, client: TestClient) -> None:
    secret = new_key(settings, "bob")
    assert client.get("/v1/jobs", headers=bearer(secret)).status_code == 200
    with make_sessionmaker(make_engine(settings))() as session:
        key_store.revoke_key(session=session, name="bob")
        session.commit()
    message = _error(client.get("/v1/jobs", headers=bearer(secret)), 401, "invalid_api_key")
    assert "revoked" in message


def test_a_suspended_key_says_so(settings: Settings, client: TestClient) -> None:
    secret = new_key(settings, "carol")
    with make_sessionmaker(make_engine(settings))() as session:
        row = key_store.get_key_by_name(session=session, name="carol")
        key_store.suspend_key(session=session, key_id=row.id, reason="repeated policy blocks")
        session.commit()
    answer = client.post("/v1/jobs", json={"prompt": "x"}, headers=bearer(secret))
    assert "repeated policy blocks" in _error(answer, 401, "key_suspended")


def test_keys_are_stored_as_a_keyed_hash_never_in_clear(settings: Settings) -> None:
    secret = new_key(settings, "dave")
    with make_sessionmaker(make_engine(settings))() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.name == "dave")).one()
        stored = [str(getattr(row, c.key)) for c in ApiKey.__table__.columns]
    assert all(secret not in value for value in stored)
    assert (
        row.key_hash == hmac.new(KEY_SECRET.encode(), secret.encode(), hashlib.sha256).hexdigest()
    )
    assert secret.startswith(row.prefix) and len(row.prefix) < len(secret) // 2
    # Under another server secret the same key matches nothing.
    other = keyed_settings(settings.data_dir, api_key_secret="another-secret-0123456789")
    with _client(other) as client:
        _error(client.get("/v1/jobs", headers=bearer(secret)), 401, "invalid_api_key")


def _publish_image(settings: Settings, job_id: str) -> None:
    storage = LocalStorage(settings.data_dir / "storage")
    key = f"jobs/{job_id}/a1/image-0.png"
    storage.put_bytes(key, b"\x89PNG\r\n\x1a\nfake", "image/png")
    with make_sessionmaker(make_engine(settings)).begin() as session:
        session.add(JobImage(job_id=job_id, index=0, attempt=1, storage_key=key, width=64,
                             height=64, published=True))  # fmt: skip


def test_another_key_gets_404_for_every_job_route_and_an_admin_sees_all(
    settings: Settings, client: TestClient
) -> None:
    alice, bob = new_key(settings, "alice"), new_key(settings, "bob")
    admin = new_key(settings, "root", is_admin=True)
    job_id = _submit(client, bearer(alice))
    local_job = _submit(client)
    _publish_image(settings, job_id)
    for who in (bearer(bob), {}):  # another key, and the keyless local principal
        for answer in (
            client.get(f"/v1/jobs/{job_id}", headers=who),
            client.get(f"/v1/jobs/{job_id}/images/0", headers=who),
            client.post(f"/v1/jobs/{job_id}/cancel", headers=who),
        ):
            _error(answer, 404, "not_found")
        listed = [job["id"] for job in client.get("/v1/jobs", headers=who).json()["data"]]
        assert job_id not in listed
    _error(client.get(f"/v1/jobs/{local_job}", headers=bearer(alice)), 404, "not_found")
    assert [j["id"] for j in client.get("/v1/jobs", headers=bearer(alice)).json()["data"]] == [
        job_id
    ]
    assert client.get(f"/v1/jobs/{job_id}/images/0", headers=bearer(alice)).status_code == 200
    listed = {job["id"] for job in client.get("/v1/jobs", headers=bearer(admin)).json()["data"]}
    assert listed == {job_id, local_job}
    assert client.get(f"/v1/jobs/{job_id}", headers=bearer(admin)).status_code == 200
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(alice))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_a_signed_image_url_needs_no_key_even_when_keys_are_required(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var", require_api_keys=True, url_signing_secret="u" * 32)
    alice = new_key(settings, "alice")
    with _client(settings) as client:
        job_id = _submit(client, bearer(alice))
        _publish_image(settings, job_id)
        path = urlsplit(signed_image_url(settings, job_id, 0))
        answer = client.get(f"{path.path}?{path.query}")
        assert answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
        _error(client.get(path.path), 401, "invalid_api_key")


def test_admin_endpoints_take_admin_keys_and_the_bootstrap_token(
    settings: Settings, client: TestClient
) -> None:
    user, admin = new_key(settings, "user"), new_key(settings, "ops", is_admin=True)
    for path in ("/v1/admin/keys", "/v1/admin/moderation/jobs"):
        assert "admin" in _error(client.get(path), 401, "invalid_api_key")
        assert "admin" in _error(client.get(path, headers=bearer(user)), 403, "admin_key_required")
        assert client.get(path, headers=bearer(admin)).status_code == 200
        assert client.get(path, headers=bearer(ADMIN_TOKEN)).status_code == 200


def test_a_placeholder_admin_token_is_never_accepted(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var", admin_token="change-me")
    with _client(settings) as client:
        answer = client.get("/v1/admin/keys", headers=bearer("change-me"))
        _error(answer, 401, "invalid_api_key")
