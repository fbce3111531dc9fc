"""/v1/admin/keys: an admin key creates (secret shown once), lists and revokes keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import bearer, keyed_settings, new_key


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return keyed_settings(tmp_path / "var")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    storage = LocalStorage(settings.data_dir / "storage")
    with TestClient(create_app(settings, storage=storage, queue=RecordingQueue())) as test:
        yield test


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return bearer(new_key(settings, "ops", is_admin=True))


def test_create_list_revoke_round_trip(client: TestClient, admin: dict[str, str]) -> None:
    made = client.post(
        "/v1/admin/keys", json={"name": "ci", "rpm": 30, "max_active_jobs": 2}, headers=admin
    )
    assert made.status_code == 201, made.text
    body = made.json()
    secret = body["key"]
    assert body["name"] == "ci" and body["rpm"] == 30 and body["max_active_jobs"] == 2
    assert not body["is_admin"] and secret.startswith(body["prefix"])
    job = client.post("/v1/jobs", json={"prompt": "a red circle"}, headers=bearer(secret))
    assert job.status_code == 202, job.text
    listed = client.get("/v1/admin/keys", headers=admin)
    assert listed.status_code == 200
    assert secret not in listed.text and "key_hash" not in listed.text
    [ci] = [key for key in listed.json()["data"] if key["name"] == "ci"]
    assert ci["revoked_at"] is None and ci["id"] == body["id"]
    revoked = client.delete("/v1/admin/keys/ci", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    again = client.get("/v1/jobs", headers=bearer(secret))
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_api_key"


def test_an_admin_key_made_over_the_api_can_administer(
    client: TestClient, admin: dict[str, str]
) -> None:
    made = client.post("/v1/admin/keys", json={"name": "ops2", "is_admin": True}, headers=admin)
    second = bearer(made.json()["key"])
    assert client.get("/v1/admin/keys", headers=second).status_code == 200


def test_a_taken_name_is_409_and_bad_limits_are_400(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert client.post("/v1/admin/keys", json={"name": "dup"}, headers=admin).status_code == 201
    taken = client.post("/v1/admin/keys", json={"name": "dup"}, headers=admin)
    assert taken.status_code == 409 and "dup" in taken.json()["error"]["message"]
    bad = client.post("/v1/admin/keys", json={"name": "x", "rpm": 0}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"


def test_revoking_an_unknown_name_is_404_naming_the_keys(
    client: TestClient, admin: dict[str, str]
) -> None:
    answer = client.delete("/v1/admin/keys/nobody", headers=admin)
    assert answer.status_code == 404
    assert "nobody" in answer.json()["error"]["message"]
    assert "ops" in answer.json()["error"]["message"]


def test_a_plain_key_cannot_manage_keys(client: TestClient, settings: Settings) -> None:
    user = bearer(new_key(settings, "user"))
    answer = client.post("/v1/admin/keys", json={"name": "mine", "is_admin": True}, headers=user)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "admin_key_required"


@pytest.mark.parametrize(
    ("field", "value"),
    [("rpm", 10**20), ("max_active_jobs", 2**31), ("rpm", "5"), ("is_admin", "yes"),
     ("is_admin", 1), ("max_active_jobs", True)],
)  # fmt: skip
def test_out_of_range_or_loosely_typed_limits_are_a_400_naming_the_field(
    client: TestClient, admin: dict[str, str], field: str, value: object
) -> None:
    answer = client.post("/v1/admin/keys", json={"name": "z", field: value}, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == field
    listed = client.get("/v1/admin/keys", headers=admin).json()["data"]
    assert "z" not in [key["name"] for key in listed]
