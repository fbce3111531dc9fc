"""Issue 15 on the API: SSE events with resume, queue standing, listing filters, webhooks
on create, DELETE and expiry (410), the delivery log."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.job_events import record_event
from shared.db.models import Job, JobImage
from shared.db.states import JobStatus, transition
from shared.settings import Settings
from shared.storage.local import LocalStorage

BODY = {"kind": "generate", "prompt": "a red circle", "size": "64x64"}


def _sessions(settings: Settings) -> Any:
    return make_sessionmaker(make_engine(settings))


def _events(client: TestClient, job_id: str, last: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:  # noqa: E501
    headers = {"Last-Event-ID": last} if last else {}
    out = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        for line in stream.iter_lines():
            if not line:
                if "event" in block:
                    out.append((block["event"], block["id"], json.loads(block["data"])))
                block = {}
                continue
            key, _, value = line.partition(":")
            block[key] = value.strip()
    return out


def _finish(session: Session, job_id: str, storage: LocalStorage) -> None:
    """Run the job through its stages the way workers record them, then publish one PNG."""
    for before, stage in (("queued", "prior"), ("prior", "decoder"), ("decoder", "upsampler")):
        assert transition(session, job_id, [JobStatus(before)], JobStatus(stage))
        record_event(session, job_id, "progress", {"stage": stage, "step": 1, "steps": 1})
        record_event(session, job_id, "stage_done", {"stage": stage})
    key = f"jobs/{job_id}/attempt-3/images/0.png"
    storage.put_bytes(key, b"\x89PNG\r\n\x1a\nx", "image/png")
    session.add(JobImage(job_id=job_id, index=0, attempt=3, storage_key=key, width=64,
                         height=64, published=True))  # fmt: skip
    session.flush()
    assert transition(session, job_id, [JobStatus.upsampler], JobStatus.succeeded)


def test_sse_replays_in_order_and_resumes_after_last_event_id(
    client: TestClient, api_settings: Settings, storage: LocalStorage
) -> None:
    job = client.post("/v1/jobs", json=BODY).json()
    with _sessions(api_settings).begin() as session:
        _finish(session, job["id"], storage)
    events = _events(client, job["id"])
    names = [name for name, _, _ in events]
    assert names == ["queued", "started", "progress", "stage_done", "started", "progress",
                     "stage_done", "started", "progress", "stage_done", "succeeded"]  # fmt: skip
    ids = [int(event_id) for _, event_id, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [d["stage"] for n, _, d in events if n == "started"] == ["prior", "decoder", "upsampler"]
    [url] = events[-1][2]["images"]
    assert client.get(url.replace("http://test.example", "")).status_code == 200
    # Reconnecting after the fifth event gives exactly the rest.
    rest = _events(client, job["id"], last=events[4][1])
    assert [(n, i) for n, i, _ in rest] == [(n, i) for n, i, _ in events[5:]]
    assert client.get(f"/v1/jobs/{job['id']}/events",
                      headers={"Last-Event-ID": "x1"}).status_code == 400  # fmt: skip


def test_queued_jobs_report_position_eta_and_why_they_cannot_run(client: TestClient) -> None:
    jobs = [client.post("/v1/jobs", json=BODY).json() for _ in range(3)]
    assert [j["queue_position"] for j in jobs] == [0, 1, 2]
    again = client.get(f"/v1/jobs/{jobs[2]['id']}").json()
    assert again["queue_position"] == 2 and again["eta_s"] > 0
    # No worker has registered for any queue in this test.
    assert again["servable"] is False
    assert "no live worker serves the prior" in again["unservable_reason"]


def test_listing_filters_and_unknown_values(client: TestClient, api_settings: Settings) -> None:
    first = client.post("/v1/jobs", json=BODY).json()
    second = client.post("/v1/jobs", json=BODY).json()
    client.post(f"/v1/jobs/{second['id']}/cancel")
    cancelled = client.get("/v1/jobs?status=cancelled").json()["data"]
    assert [j["id"] for j in cancelled] == [second["id"]]
    both = client.get("/v1/jobs?status=cancelled&status=queued&kind=generate").json()["data"]
    assert {j["id"] for j in both} == {first["id"], second["id"]}
    assert client.get("/v1/jobs?kind=variation").json()["data"] == []
    after = client.get("/v1/jobs", params={"created_after": first["created_at"]}).json()["data"]
    assert [j["id"] for j in after] == [second["id"]]
    bad = client.get("/v1/jobs?status=finished")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    assert "'succeeded'" in bad.json()["error"]["message"]  # the allowed values are named
    assert client.get("/v1/jobs?kind=paint").status_code == 400


def test_webhook_fields_are_checked_and_logged(
    client: TestClient, api_settings: Settings
) -> None:
    made = client.post("/v1/jobs", json={**BODY, "webhook_url": "https://hooks.example/x",
                                         "webhook_events": ["started", "completed"]})  # fmt: skip
    assert made.status_code == 202, made.text
    with _sessions(api_settings)() as session:
        row = session.get_one(Job, made.json()["id"])
        assert (row.webhook_url, row.webhook_events) == ("https://hooks.example/x",
                                                         "started,completed")  # fmt: skip
    bad = client.post("/v1/jobs", json={**BODY, "webhook_url": "ftp://x.example/"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "webhook_url"
    wrong = client.post("/v1/jobs", json={**BODY, "webhook_url": "https://a.example/",
                                          "webhook_events": ["finished"]})  # fmt: skip
    assert wrong.status_code == 400
    assert client.get(f"/v1/jobs/{made.json()['id']}/webhooks").json()["data"] == []
    secret = client.get("/v1/webhooks/secret").json()["secret"]
    assert secret.startswith("whsec_")


def test_delete_removes_files_and_images_answer_410(
    client: TestClient, api_settings: Settings, storage: LocalStorage
) -> None:
    job = client.post("/v1/jobs", json=BODY).json()
    running = client.post("/v1/jobs", json=BODY).json()
    with _sessions(api_settings).begin() as session:
        _finish(session, job["id"], storage)
        assert transition(session, running["id"], [JobStatus.queued], JobStatus.prior)
    image = client.get(f"/v1/jobs/{job['id']}").json()["images"][0]["url"]
    deleted = client.delete(f"/v1/jobs/{job['id']}")
    assert deleted.status_code == 200
    assert (deleted.json()["status"], deleted.json()["status_reason"]) == ("expired",
                                                                         "deleted_by_client")
    assert not (storage.root / "jobs" / job["id"]).exists()
    gone = client.get(image.replace("http://test.example", ""))
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "expired"
    # The job no longer offers image URLs, and its event stream tells of the expiry after
    # the success, whose image list is then empty.
    assert deleted.json()["images"] == []
    assert client.get(f"/v1/jobs/{job['id']}").json()["images"] == []
    events = _events(client, job["id"])
    assert [name for name, _, _ in events][-2:] == ["succeeded", "expired"]
    assert events[-2][2]["images"] == []
    assert client.delete(f"/v1/jobs/{running['id']}").status_code == 409
    assert client.delete("/v1/jobs/no-such-job").status_code == 404


def test_stage_and_its_step_counts_never_mix_and_attempt_counts_the_stage(
    client: TestClient, api_settings: Settings
) -> None:
    from shared.db.models import StageAttempt

    job = client.post("/v1/jobs", json=BODY).json()
    with _sessions(api_settings).begin() as session:
        row = session.get_one(Job, job["id"])
        # The prior finished (2 of 2 steps); the job now waits for a decoder worker.
        row.status, row.progress_stage, row.progress_step, row.progress_total = (
            "decoder", "prior", 2, 2)  # fmt: skip
        row.attempt = 1
        session.add(StageAttempt(job_id=row.id, stage="prior", attempt=1, status="succeeded"))
    waiting = client.get(f"/v1/jobs/{job['id']}").json()
    assert (waiting["stage"], waiting["progress_step"], waiting["progress_total"]) == (
        "decoder", None, None)  # fmt: skip
    assert waiting["attempt"] == 0  # no decoder attempt yet
    with _sessions(api_settings).begin() as session:
        row = session.get_one(Job, job["id"])
        row.worker_id, row.progress_stage, row.progress_step, row.progress_total = (
            "w:1", "decoder", 3, 10)  # fmt: skip
        row.attempt = 2  # the row's counter runs over the whole job
        session.add(StageAttempt(job_id=row.id, stage="decoder", attempt=2, status="running"))
    running = client.get(f"/v1/jobs/{job['id']}").json()
    assert (running["stage"], running["progress_step"], running["progress_total"]) == (
        "decoder", 3, 10)  # fmt: skip
    assert running["attempt"] == 1  # the first attempt of this stage, not "attempt 2"


def test_a_released_hold_streams_on_to_the_jobs_real_end(
    client: TestClient, api_settings: Settings, storage: LocalStorage
) -> None:
    """`held` is final only while the job stays held: after a reviewer's release the stream
    replays past it to the job's success, and a reconnect after the last event ends at once."""
    job = client.post("/v1/jobs", json=BODY).json()
    with _sessions(api_settings).begin() as session:
        assert transition(session, job["id"], [JobStatus.queued], JobStatus.held)
    assert [name for name, _, _ in _events(client, job["id"])] == ["queued", "held"]
    with _sessions(api_settings).begin() as session:
        assert transition(session, job["id"], [JobStatus.held], JobStatus.queued)
        _finish(session, job["id"], storage)
    events = _events(client, job["id"])
    names = [name for name, _, _ in events]
    assert names[:3] == ["queued", "held", "queued"] and names[-1] == "succeeded"
    assert _events(client, job["id"], last=events[-1][1]) == []  # closes, does not hang


def test_streams_end_when_the_server_shuts_down(client: TestClient) -> None:
    from api.shutdown import register_stopping

    job = client.post("/v1/jobs", json=BODY).json()  # stays queued: no worker here
    register_stopping(client.app, lambda: True)  # type: ignore[arg-type]
    assert [name for name, _, _ in _events(client, job["id"])] == ["queued"]
