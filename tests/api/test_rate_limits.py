"""Requests per minute and active-job quotas per key, shared by several API processes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.app import create_app
from shared.db.base import utcnow
from shared.db.engine import make_engine
from shared.db.models import Job
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue
from .keys_support import bearer, job_count, key_id, keyed_settings, new_key, serve

JOB = {"prompt": "a red circle"}


@contextmanager
def _clients(settings: Settings, count: int) -> Iterator[list[TestClient]]:
    """`count` app instances (as separate API processes would be) on one database/broker."""
    with ExitStack() as stack:
        clients = []
        for _ in range(count):
            storage = LocalStorage(settings.data_dir / "storage")
            app = create_app(settings, storage=storage, queue=RecordingQueue())
            clients.append(stack.enter_context(TestClient(app)))
        yield clients


def _code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def test_rpm_headers_count_down_then_429_with_retry_after(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    alice, bob = new_key(settings, "alice", rpm=3), new_key(settings, "bob", rpm=3)
    with _clients(settings, 1) as [client]:
        for _ in range(5):  # reads are not create requests
            assert client.get("/v1/jobs", headers=bearer(alice)).status_code == 200
        remaining = []
        for _ in range(3):
            answer = client.post("/v1/jobs", json=JOB, headers=bearer(alice))
            assert answer.status_code == 202, answer.text
            assert answer.headers["x-ratelimit-limit-requests"] == "3"
            assert re.fullmatch(r"\d+(\.\d+)?(ms|s)", answer.headers["x-ratelimit-reset-requests"])
            remaining.append(answer.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        refused = client.post("/v1/jobs", json=JOB, headers=bearer(alice))
        assert refused.status_code == 429 and _code(refused) == "rate_limit_exceeded"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        assert client.post("/v1/jobs", json=JOB, headers=bearer(bob)).status_code == 202
    assert job_count(settings, key_id(settings, "alice")) == 3


def test_the_openai_endpoints_share_the_keys_rpm(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    alice = bearer(new_key(settings, "alice", rpm=2))
    asynchronous = {**alice, "Prefer": "respond-async"}
    with _clients(settings, 1) as [client]:
        assert client.post("/v1/jobs", json=JOB, headers=alice).status_code == 202
        first = client.post("/v1/images/generations", json=JOB, headers=asynchronous)
        assert first.status_code == 202, first.text
        assert first.headers["x-ratelimit-remaining-requests"] == "0"
        refused = client.post("/v1/images/generations", json=JOB, headers=asynchronous)
        assert refused.status_code == 429 and "retry-after" in refused.headers


def _shared_rpm(settings: Settings) -> None:
    name = f"k-{uuid.uuid4().hex[:8]}"
    secret = bearer(new_key(settings, name, rpm=4))
    with _clients(settings, 2) as clients:
        statuses = [
            clients[i % 2].post("/v1/jobs", json=JOB, headers=secret).status_code for i in range(6)
        ]
    assert statuses == [202, 202, 202, 202, 429, 429]


def test_rpm_holds_across_two_api_processes_on_the_embedded_database(tmp_path: Path) -> None:
    _shared_rpm(keyed_settings(tmp_path / "var"))


@pytest.mark.integration
def test_rpm_holds_across_two_api_processes_on_redis(tmp_path: Path, redis_url: str) -> None:
    _shared_rpm(keyed_settings(tmp_path / "var", broker_url=redis_url))


@pytest.mark.integration
def test_rpm_holds_across_two_api_processes_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    _shared_rpm(keyed_settings(tmp_path / "var", database_url=postgres_url))


def test_active_job_quota_then_room_again_after_a_cancel(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    alice = bearer(new_key(settings, "alice", max_active_jobs=2))
    with _clients(settings, 2) as [one, two]:
        first = one.post("/v1/jobs", json=JOB, headers=alice).json()["id"]
        assert two.post("/v1/jobs", json=JOB, headers=alice).status_code == 202
        refused = two.post("/v1/jobs", json=JOB, headers=alice)
        assert refused.status_code == 429 and _code(refused) == "quota_exceeded"
        assert "max_active_jobs=2" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert one.post(f"/v1/jobs/{first}/cancel", headers=alice).status_code == 200
        assert two.post("/v1/jobs", json=JOB, headers=alice).status_code == 202


def test_quota_retry_after_comes_from_the_earliest_active_job(tmp_path: Path) -> None:
    settings = keyed_settings(tmp_path / "var")
    alice = bearer(new_key(settings, "alice", max_active_jobs=2))
    now = utcnow()
    with _clients(settings, 1) as [client]:
        done = client.post("/v1/jobs", json=JOB, headers=alice).json()["id"]
        running = client.post("/v1/jobs", json=JOB, headers=alice).json()["id"]
        engine = make_engine(settings)
        with engine.begin() as connection:  # a 100 s job finished; another began 40 s ago
            connection.execute(
                update(Job).where(Job.id == done).values(
                    status="succeeded", started_at=now - timedelta(seconds=300),
                    finished_at=now - timedelta(seconds=200),
                )
            )  # fmt: skip
            connection.execute(
                update(Job)
                .where(Job.id == running)
                .values(status="prior", started_at=now - timedelta(seconds=40))
            )
        engine.dispose()
        assert client.post("/v1/jobs", json=JOB, headers=alice).status_code == 202
        refused = client.post("/v1/jobs", json=JOB, headers=alice)
    assert refused.status_code == 429 and _code(refused) == "quota_exceeded"
    assert 55 <= int(refused.headers["retry-after"]) <= 61


def _concurrent_quota(settings: Settings) -> None:
    name = f"q-{uuid.uuid4().hex[:8]}"
    secret = bearer(new_key(settings, name, max_active_jobs=3))
    storage = LocalStorage(settings.data_dir / "storage")
    app = create_app(settings, storage=storage, queue=RecordingQueue())
    with (
        serve(app) as base,
        httpx.Client(base_url=base, timeout=60) as http,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        answers = list(
            pool.map(lambda _: http.post("/v1/jobs", json=JOB, headers=secret), range(10))
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * 3 + [429] * 7, [a.text for a in answers if a.status_code >= 500]
    assert job_count(settings, key_id(settings, name)) == 3


def test_concurrent_submissions_never_pass_the_quota_on_sqlite(tmp_path: Path) -> None:
    _concurrent_quota(keyed_settings(tmp_path / "var"))


@pytest.mark.integration
def test_concurrent_submissions_never_pass_the_quota_on_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    _concurrent_quota(keyed_settings(tmp_path / "var", database_url=postgres_url))


def _concurrent_rpm(settings: Settings) -> None:
    name = f"r-{uuid.uuid4().hex[:8]}"
    secret = bearer(new_key(settings, name, rpm=4))
    storage = LocalStorage(settings.data_dir / "storage")
    app = create_app(settings, storage=storage, queue=RecordingQueue())
    with (
        serve(app) as base,
        httpx.Client(base_url=base, timeout=60) as http,
        ThreadPoolExecutor(max_workers=10) as pool,
    ):
        answers = list(
            pool.map(lambda _: http.post("/v1/jobs", json=JOB, headers=secret), range(10))
        )
    assert sorted(a.status_code for a in answers) == [202] * 4 + [429] * 6
    assert sorted(a.headers["x-ratelimit-remaining-requests"] for a in answers)[-4:] == [
        "0", "1", "2", "3",
    ]  # fmt: skip


def test_concurrent_requests_never_pass_the_rpm_on_sqlite(tmp_path: Path) -> None:
    _concurrent_rpm(keyed_settings(tmp_path / "var"))


@pytest.mark.integration
def test_concurrent_requests_never_pass_the_rpm_on_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    _concurrent_rpm(keyed_settings(tmp_path / "var", database_url=postgres_url))


def test_a_dead_rate_limit_store_lets_requests_through_without_headers(tmp_path: Path) -> None:
    # Port 1 refuses connections: the counters are unreachable, the API still serves.
    settings = keyed_settings(tmp_path / "var", broker_url="redis://127.0.0.1:1/0")
    alice = bearer(new_key(settings, "alice", rpm=1))
    with _clients(settings, 1) as [client]:
        answers = [client.post("/v1/jobs", json=JOB, headers=alice) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    assert "x-ratelimit-remaining-requests" not in answers[0].headers
