"""Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): one job per key and body."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api import submission
from api.app import create_app
from api.submission import request_fingerprint
from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import IdempotencyRecord
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes
from .keys_support import bearer, job_count, key_id, keyed_settings, new_key, serve

JOB = {"prompt": "a red circle", "n": 2}
CONCURRENT = 20


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return keyed_settings(tmp_path / "var")


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def client(settings: Settings, queue: RecordingQueue) -> Iterator[TestClient]:
    storage = LocalStorage(settings.data_dir / "storage")
    with TestClient(create_app(settings, storage=storage, queue=queue)) as test:
        yield test


def _post(client: TestClient, key: str, body: dict[str, object], **headers: str) -> httpx.Response:
    return client.post("/v1/jobs", json=body, headers={"Idempotency-Key": key, **headers})


def test_a_retry_answers_the_first_job_and_another_body_is_422(
    client: TestClient, settings: Settings, queue: RecordingQueue
) -> None:
    first = _post(client, "k1", JOB)
    assert first.status_code == 202
    # The same body in another key order is the same request.
    again = _post(client, "k1", {"n": 2, "prompt": "a red circle"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = _post(client, "k1", {**JOB, "n": 3})
    assert other.status_code == 422, other.text
    assert other.json()["error"]["code"] == "idempotency_key_mismatch"
    assert job_count(settings, None) == 1 and len(queue.sent) == 1


def test_keys_scope_idempotency_keys(client: TestClient, settings: Settings) -> None:
    alice, bob = new_key(settings, "alice"), new_key(settings, "bob")
    ids = {
        _post(client, "shared-key", JOB, **bearer(secret)).json()["id"]
        for secret in (alice, bob, alice, bob)
    }
    ids.add(_post(client, "shared-key", JOB).json()["id"])  # the keyless principal: a third
    assert len(ids) == 3
    assert job_count(settings, key_id(settings, "alice")) == 1


def test_an_expired_record_no_longer_answers(client: TestClient, settings: Settings) -> None:
    first = _post(client, "old", JOB).json()["id"]
    engine = make_engine(settings)
    with engine.begin() as connection:  # as if the 24 h had passed
        connection.execute(
            update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    engine.dispose()
    again = _post(client, "old", {**JOB, "n": 3})
    assert again.status_code == 202 and again.json()["id"] != first


def test_records_are_kept_24_hours(client: TestClient, settings: Settings) -> None:
    before = utcnow()
    _post(client, "day", JOB)
    engine = make_engine(settings)
    with engine.connect() as connection:
        record = connection.execute(IdempotencyRecord.__table__.select()).one()
    engine.dispose()
    kept = record.expires_at.replace(tzinfo=before.tzinfo) - before
    assert timedelta(hours=24) - timedelta(minutes=1) < kept <= timedelta(hours=24, minutes=1)


def test_a_failed_first_request_frees_the_key(
    client: TestClient, settings: Settings, queue: RecordingQueue
) -> None:
    queue.down = True
    assert _post(client, "retry-me", JOB).status_code == 503
    queue.down = False
    retried = _post(client, "retry-me", JOB)
    assert retried.status_code == 202 and retried.json()["status"] == "queued"


def test_multipart_retries_with_new_boundaries_are_the_same_request(
    client: TestClient, settings: Settings
) -> None:
    picture = image_bytes((32, 32))
    answers = [
        client.post(
            "/v1/jobs",
            data={"kind": "variation", "n": "1"},
            files={"image": ("a.png", picture, "image/png")},
            headers={"Idempotency-Key": "upload"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [202, 200], answers[0].text
    assert answers[0].json()["id"] == answers[1].json()["id"]
    changed = client.post(
        "/v1/jobs",
        data={"kind": "variation", "n": "1"},
        files={"image": ("a.png", image_bytes((40, 40)), "image/png")},
        headers={"Idempotency-Key": "upload"},
    )
    assert changed.status_code == 422


def _in_flight_record(settings: Settings, key: str, *, age: timedelta) -> None:
    """A record as a first request leaves it while it runs (or when it died at that point)."""
    engine = make_engine(settings)
    fingerprint = request_fingerprint("/v1/jobs", JOB, {})
    with make_sessionmaker(engine).begin() as session:
        session.add(IdempotencyRecord(
            scope="local", key=key, fingerprint=fingerprint, created_at=utcnow() - age,
            expires_at=utcnow() + timedelta(hours=24),
        ))  # fmt: skip
    engine.dispose()


def test_a_request_whose_first_is_still_in_flight_gets_409(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "IN_FLIGHT_WAIT_S", 0.2)
    _in_flight_record(settings, "busy", age=timedelta(seconds=1))
    answer = _post(client, "busy", JOB)
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "idempotency_key_in_use"
    assert job_count(settings, None) == 0


def test_a_first_request_that_died_does_not_block_its_key(
    client: TestClient, settings: Settings
) -> None:
    _in_flight_record(settings, "orphan", age=timedelta(minutes=10))
    answer = _post(client, "orphan", JOB)
    assert answer.status_code == 202, answer.text
    assert _post(client, "orphan", JOB).json()["id"] == answer.json()["id"]


def _concurrent_one_job(settings: Settings) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    headers = {**bearer(new_key(settings, name, rpm=1000)), "Idempotency-Key": "burst"}
    storage = LocalStorage(settings.data_dir / "storage")
    queue = RecordingQueue()
    app = create_app(settings, storage=storage, queue=queue)
    start = threading.Barrier(CONCURRENT)

    def send(http: httpx.Client) -> httpx.Response:
        start.wait()
        return http.post("/v1/jobs", json=JOB, headers=headers)

    with (
        serve(app) as base,
        httpx.Client(base_url=base, timeout=60) as http,
        ThreadPoolExecutor(max_workers=CONCURRENT) as pool,
    ):
        answers = list(pool.map(lambda _: send(http), range(CONCURRENT)))
        mismatch = http.post("/v1/jobs", json={**JOB, "n": 1}, headers=headers)
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(202) == 1 and set(statuses) <= {200, 202, 409}, statuses
    assert len({a.json()["id"] for a in answers if a.status_code in (200, 202)}) == 1
    assert job_count(settings, key_id(settings, name)) == 1 and len(queue.sent) == 1
    assert mismatch.status_code == 422
    assert mismatch.json()["error"]["code"] == "idempotency_key_mismatch"


def test_twenty_concurrent_requests_make_one_job_on_sqlite(settings: Settings) -> None:
    _concurrent_one_job(settings)


@pytest.mark.integration
def test_twenty_concurrent_requests_make_one_job_on_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    _concurrent_one_job(keyed_settings(tmp_path / "var", database_url=postgres_url))
