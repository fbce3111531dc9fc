"""GET /metrics on the API: every metric name, counters that move, gauges read from the database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from shared.db import migrate
from shared.db.base import utcnow
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.workers import WorkerActivity, WorkerRecord, save_worker
from shared.metrics import METRIC_NAMES
from shared.settings import Settings


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    # Keys required: /metrics must still answer without one (it is public, like /healthz).
    settings = Settings(
        data_dir=tmp_path / "var", public_base_url="http://test.example", require_api_keys=True,
        admin_token="metrics-test-admin-token",
    )  # fmt: skip
    migrate.upgrade(settings)
    return settings


ADMIN = {"Authorization": "Bearer metrics-test-admin-token"}


@pytest.fixture
def sessions(api_settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(api_settings))


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return found.get((name, frozenset(labels.items())), 0.0)


def test_metrics_is_public_and_names_every_metric(client: TestClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in response.text, name
    assert client.get("/v1/jobs").status_code == 401  # while /v1 needs a key


def test_a_submitted_job_moves_the_submitted_counter_and_queue_depth(client: TestClient) -> None:
    before = samples(client)
    response = client.post("/v1/jobs", json={"prompt": "a red circle", "n": 1}, headers=ADMIN)
    assert response.status_code == 202, response.text
    after = samples(client)
    submitted = "unclip_jobs_submitted_total"
    assert value(after, submitted, kind="generate") == value(before, submitted, kind="generate") + 1
    assert value(after, "unclip_queue_depth", queue="prior") == 1
    assert value(after, "unclip_queue_depth", queue="decoder") == 0


def test_a_cancel_moves_the_finished_counter(client: TestClient) -> None:
    job = client.post("/v1/jobs", json={"prompt": "a blue square"}, headers=ADMIN).json()
    before = value(samples(client), "unclip_jobs_finished_total", status="cancelled")
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=ADMIN)
    assert response.status_code == 200, response.text
    after = samples(client)
    assert value(after, "unclip_jobs_finished_total", status="cancelled") == before + 1
    assert value(after, "unclip_queue_depth", queue="prior") == 0


def test_a_blocked_prompt_moves_the_moderation_counter(client: TestClient) -> None:
    name = "unclip_moderation_decisions_total"
    before = value(samples(client), name, check="lexical", decision="block")
    response = client.post("/v1/jobs", json={"prompt": "a poster saying heil hitler"},
                           headers=ADMIN)  # fmt: skip
    assert response.status_code == 400, response.text
    assert value(samples(client), name, check="lexical", decision="block") == before + 1


def test_workers_gauge_counts_registry_rows_by_state(
    client: TestClient, sessions: sessionmaker[Session], api_settings: Settings
) -> None:
    now = utcnow()
    silent_since = now - timedelta(seconds=api_settings.heartbeat_stale_s + 1)
    beats = [("a@h", now, "job-1"), ("b@h", now, None), ("c@h", silent_since, None)]
    with sessions.begin() as session:
        for node, beat, job in beats:
            record = WorkerRecord(
                id=f"{node}:1", node=node, host="h", pid=1, queues=("prior",), device="cpu",
                dtype="float32", family="f", started_at=beat,
            )  # fmt: skip
            activity = WorkerActivity(current_job_id=job, current_stage="prior" if job else None)
            save_worker(session=session, record=record, activity=activity, now=beat)
    found = samples(client)
    states = {
        s: value(found, "unclip_workers", state=s) for s in ("idle", "busy", "lost", "stopped")
    }
    assert states == {"idle": 1, "busy": 1, "lost": 1, "stopped": 0}
