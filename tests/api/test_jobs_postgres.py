"""The same submit / read / list / cancel path on the real PostgreSQL (timestamps, cursors)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.settings import Settings
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes

pytestmark = pytest.mark.integration


def test_api_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url)
    queue = RecordingQueue()
    app = create_app(settings, storage=LocalStorage(tmp_path / "storage"), queue=queue)
    with TestClient(app) as client:
        ids = [client.post("/v1/jobs", json={"prompt": f"p{i}"}).json()["id"] for i in range(3)]
        edit = client.post(
            "/v1/jobs",
            data={"kind": "edit", "prompt": "p"},
            files={"image": ("i.png", image_bytes(mode="RGBA"), "image/png")},
        )
        assert edit.status_code == 202, edit.text
        ids.append(edit.json()["id"])
        first = client.get("/v1/jobs", params={"limit": 3}).json()
        mine = [job["id"] for job in first["data"]]
        rest = client.get("/v1/jobs", params={"limit": 100, "cursor": first["next_cursor"]})
        mine += [job["id"] for job in rest.json()["data"]]
        # The database is shared by the test session: check our jobs' order within it.
        assert [i for i in mine if i in ids] == ids[::-1]
        cancelled = client.post(f"/v1/jobs/{ids[0]}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert cancelled["finished_at"].endswith(("Z", "+00:00"))
        assert [job_id for job_id, _, _ in queue.sent] == ids
        assert client.get("/readyz").status_code == 200
