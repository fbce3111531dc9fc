"""GET/list/cancel/images of /v1/jobs against a temp SQLite database and a recording queue."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import update

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job, JobImage
from shared.settings import Settings
from shared.storage.keys import image_key
from shared.storage.local import LocalStorage

from .conftest import RecordingQueue, image_bytes


def _submit(client: TestClient, prompt: str = "a red circle", n: int = 1) -> str:
    response = client.post("/v1/jobs", json={"prompt": prompt, "n": n})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _finish(settings: Settings, storage: LocalStorage, job_id: str, published: bool) -> bytes:
    """Do what a worker does at the end: store a PNG, add its row, mark the job succeeded."""
    png = image_bytes((16, 16))
    key = image_key(job_id, 1, 0)
    storage.put_bytes(key, png, "image/png")
    engine = make_engine(settings)
    with make_sessionmaker(engine).begin() as session:
        session.add(
            JobImage(
                job_id=job_id,
                index=0,
                attempt=1,
                storage_key=key,
                width=16,
                height=16,
                published=published,
            )
        )
        session.execute(update(Job).where(Job.id == job_id).values(status="succeeded"))
    engine.dispose()
    return png


def test_read_job_and_unknown_job(client: TestClient) -> None:
    job_id = _submit(client)
    body = client.get(f"/v1/jobs/{job_id}").json()
    assert body["id"] == job_id and body["status"] == "queued" and body["progress"] == 0.0
    assert body["created_at"].endswith(("Z", "+00:00"))
    missing = client.get("/v1/jobs/nope")
    assert missing.status_code == 404
    assert (
        missing.json()["error"]["param"] == "job_id"
        and "nope" in missing.json()["error"]["message"]
    )


def test_list_pages_newest_first_without_gaps(client: TestClient) -> None:
    ids = [_submit(client, prompt=f"p{i}") for i in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["data"]]
        assert page["has_more"] == (page["next_cursor"] is not None)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]


def test_list_rejects_bad_limit_and_cursor(client: TestClient) -> None:
    bad_limit = client.get("/v1/jobs", params={"limit": 0})
    assert bad_limit.status_code == 400 and bad_limit.json()["error"]["param"] == "limit"
    bad_cursor = client.get("/v1/jobs", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400 and bad_cursor.json()["error"]["param"] == "cursor"


def test_cancel_queued_then_again_then_finished(
    client: TestClient, api_settings: Settings, storage: LocalStorage, queue: RecordingQueue
) -> None:
    job_id = _submit(client)
    first = client.post(f"/v1/jobs/{job_id}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert first.json()["status_reason"] == "cancelled_by_client"
    assert first.json()["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    done = _submit(client)
    _finish(api_settings, storage, done, published=True)
    conflict = client.post(f"/v1/jobs/{done}/cancel")
    assert conflict.status_code == 409 and "succeeded" in conflict.json()["error"]["message"]
    assert client.post("/v1/jobs/nope/cancel").status_code == 404


def test_image_served_only_once_published(
    client: TestClient, api_settings: Settings, storage: LocalStorage
) -> None:
    job_id = _submit(client)
    assert client.get(f"/v1/jobs/{job_id}/images/0").status_code == 404
    _finish(api_settings, storage, job_id, published=False)
    hidden = client.get(f"/v1/jobs/{job_id}/images/0")
    assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "index"
    assert client.get(f"/v1/jobs/{job_id}").json()["images"] == []
    engine = make_engine(api_settings)
    with make_sessionmaker(engine).begin() as session:
        session.execute(update(JobImage).values(published=True))
    engine.dispose()
    served = client.get(f"/v1/jobs/{job_id}/images/0")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content == storage.get_bytes(image_key(job_id, 1, 0))
    [image] = client.get(f"/v1/jobs/{job_id}").json()["images"]
    assert (image["index"], image["width"], image["height"]) == (0, 16, 16)
    # A signed, expiring URL (shared/image_urls.py) on the public base URL.
    assert image["url"].startswith(f"http://test.example/v1/jobs/{job_id}/images/0?expires=")
    signed = client.get(image["url"].removeprefix("http://test.example"))
    assert signed.status_code == 200 and signed.content == served.content
    assert client.get(f"/v1/jobs/{job_id}/images/-1").status_code == 400


def test_unknown_route_has_the_error_shape(client: TestClient) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
