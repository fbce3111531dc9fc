"""/healthz answers while the process runs; /readyz checks the database and the broker."""

from __future__ import annotations

from fastapi.testclient import TestClient

from shared.db.engine import engine_for_url

from .conftest import RecordingQueue


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_ok_then_broker_down(client: TestClient, queue: RecordingQueue) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}
    queue.down = True
    down = client.get("/readyz")
    assert down.status_code == 503 and "retry-after" in down.headers
    assert down.json()["database"] == "ok" and down.json()["broker"].startswith("unreachable")


def test_readyz_database_down(client: TestClient) -> None:
    client.app.state.engine = engine_for_url(  # type: ignore[attr-defined]
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    )
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json()["database"].startswith("unreachable")
