"""GET /v1/fleet: admin only; workers with their queues and state, queue depth, throughput."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from shared.db import api_keys as key_store
from shared.db import migrate
from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import StageAttempt
from shared.db.workers import WorkerActivity, WorkerRecord, save_worker, stop_worker
from shared.settings import Settings

TOKEN = "fleet-test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    settings = Settings(
        data_dir=tmp_path / "var", public_base_url="http://test.example", admin_token=TOKEN
    )
    migrate.upgrade(settings)
    return settings


@pytest.fixture
def sessions(api_settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(api_settings))


def _register(
    sessions: sessionmaker[Session], node: str, queues: tuple[str, ...], *, silent_s: float = 0,
    job: str | None = None, stage: str | None = None, done: int = 0,
) -> str:  # fmt: skip
    beat = utcnow() - timedelta(seconds=silent_s)
    record = WorkerRecord(
        id=f"{node}:100", node=node, host="gpu-host-1", pid=100, queues=queues, device="cuda",
        dtype="float16", family="models/shapes", started_at=beat - timedelta(minutes=5),
    )  # fmt: skip
    activity = WorkerActivity(current_job_id=job, current_stage=stage,
                              current_since=beat if job else None, jobs_done=done)  # fmt: skip
    with sessions.begin() as session:
        save_worker(session=session, record=record, activity=activity, now=beat)
    return record.id


def _key(sessions: sessionmaker[Session], settings: Settings, name: str, admin: bool) -> str:
    with sessions.begin() as session:
        return key_store.create_key(
            session=session, server_secret=settings.api_key_secret.get_secret_value(), name=name,
            is_admin=admin,
        ).secret  # fmt: skip


def test_fleet_needs_an_admin(
    client: TestClient, sessions: sessionmaker[Session], api_settings: Settings
) -> None:
    assert client.get("/v1/fleet").status_code == 401
    wrong = client.get("/v1/fleet", headers={"Authorization": "Bearer not-a-key"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["message"]
    user = _key(sessions, api_settings, "user", admin=False)
    refused = client.get("/v1/fleet", headers={"Authorization": f"Bearer {user}"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "admin_key_required"
    admin = _key(sessions, api_settings, "ops", admin=True)
    assert client.get("/v1/fleet", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_fleet_lists_workers_with_queues_and_lost_ones(
    client: TestClient, sessions: sessionmaker[Session], api_settings: Settings
) -> None:
    prior = _register(sessions, "prior@gpu-host-1", ("prior",), job="job-9", stage="prior", done=4)
    decoder = _register(sessions, "decoder@gpu-host-1", ("decoder", "upsampler"))
    gone = _register(sessions, "old@gpu-host-2", ("prior",),
                     silent_s=api_settings.heartbeat_stale_s + 10)  # fmt: skip
    stopped = _register(sessions, "done@gpu-host-3", ("upsampler",))
    with sessions.begin() as session:
        stop_worker(session=session, worker_id=stopped)
    response = client.get("/v1/fleet", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    workers = {w["id"]: w for w in body["workers"]}
    assert set(workers) == {prior, decoder, gone, stopped}
    assert (workers[prior]["queues"], workers[prior]["state"]) == (["prior"], "busy")
    assert (workers[prior]["current_job_id"], workers[prior]["current_stage"]) == ("job-9", "prior")
    assert workers[prior]["jobs_done"] == 4
    assert (workers[decoder]["queues"], workers[decoder]["state"]) == (["decoder", "upsampler"],
                                                                       "idle")  # fmt: skip
    assert workers[gone]["state"] == "lost"
    assert workers[stopped]["state"] == "stopped"
    assert (workers[decoder]["device"], workers[decoder]["dtype"]) == ("cuda", "float16")
    assert body["stale_after_s"] == api_settings.heartbeat_stale_s


def test_fleet_shows_queue_depth_and_throughput_per_stage(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    ids = [client.post("/v1/jobs", json={"prompt": f"circle {k}"}).json()["id"] for k in range(3)]
    now = utcnow()
    with sessions.begin() as session:
        for number, status in enumerate(["succeeded", "succeeded", "failed"], start=1):
            session.add(StageAttempt(job_id=ids[0], stage="prior", attempt=number, status=status,
                                     started_at=now - timedelta(seconds=20),
                                     finished_at=now - timedelta(seconds=10)))  # fmt: skip
    body = client.get("/v1/fleet", headers=ADMIN).json()
    queues = {q["stage"]: (q["depth"], q["running"]) for q in body["queues"]}
    assert queues == {"prior": (3, 0), "decoder": (0, 0), "upsampler": (0, 0)}
    throughput = {t["stage"]: t for t in body["throughput"]}
    assert (throughput["prior"]["succeeded"], throughput["prior"]["failed"]) == (2, 1)
    window = throughput["prior"]["window_s"]
    assert throughput["prior"]["succeeded_per_minute"] == pytest.approx(2 * 60 / window)
    assert throughput["decoder"]["succeeded"] == 0
