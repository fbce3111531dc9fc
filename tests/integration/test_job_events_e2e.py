"""Events and queue standing through a real worker: SSE sees every stage in order and one
terminal event, a reconnect resumes with nothing repeated, queue positions count down."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytestmark = pytest.mark.integration

BODY = {"kind": "generate", "prompt": "a red circle", "size": "64x64",
        "steps": {"prior": 2, "decoder": 2, "upsampler": 2}}  # fmt: skip
TERMINAL = {"succeeded", "failed", "cancelled", "rejected", "held", "expired"}


def _stream(client: Any, job_id: str, last: str | None = None) -> list[tuple[str, str, Any]]:
    headers = {"Last-Event-ID": last} if last else {}
    events: list[tuple[str, str, Any]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                       timeout=240) as stream:  # fmt: skip
        assert stream.status_code == 200, stream.read()
        block: dict[str, str] = {}
        for line in stream.iter_lines():
            if line:
                key, _, value = line.partition(":")
                block[key] = value.strip()
            elif "event" in block:
                events.append((block["event"], block["id"], json.loads(block["data"])))
                block = {}
    return events


def test_sse_sees_every_stage_and_resumes(distributed_stack: Any) -> None:
    client = distributed_stack.client
    job = client.post("/v1/jobs", json=BODY)
    assert job.status_code == 202, job.text
    events = _stream(client, job.json()["id"])
    names = [name for name, _, _ in events]
    assert names[0] == "queued" and names[-1] == "succeeded"
    assert sum(name in TERMINAL for name in names) == 1
    started = [data["stage"] for name, _, data in events if name == "started"]
    done = [data["stage"] for name, _, data in events if name == "stage_done"]
    assert started == done == ["prior", "decoder", "upsampler"]
    # Progress events carry their own stage's step counts, never another stage's.
    for name, _, data in events:
        if name == "progress":
            assert data["steps"] == BODY["steps"][data["stage"]], data
    assert len(events[-1][2]["images"]) == 1
    rest = _stream(client, job.json()["id"], last=events[3][1])
    assert [(n, i) for n, i, _ in rest] == [(n, i) for n, i, _ in events[4:]]


def _cancel_unsent_jobs(stack: Any) -> None:
    """Other tests share this session's database and leave queued rows that no message will
    ever serve (their queue was a recording stub): cancel them, so only this test's jobs
    stand in the queue."""
    from sqlalchemy import select

    from shared.db import jobs as job_store
    from shared.db.models import Job

    with stack.sessions.begin() as session:
        waiting = session.scalars(select(Job.id).where(Job.status == "queued")).all()
        for job_id in waiting:
            job_store.cancel_job(session=session, job_id=job_id)


def test_queue_positions_of_waiting_jobs_count_down(distributed_stack: Any) -> None:
    client = distributed_stack.client
    _cancel_unsent_jobs(distributed_stack)
    # Each job ahead renders for about half a second, so the poll below (every 0.1 s) sees
    # the last one at position 0 before it starts (at 8 decoder steps that window was about
    # one poll long, and the check failed now and then).
    slow = {**BODY, "steps": {"prior": 8, "decoder": 60, "upsampler": 2}}
    ids = [client.post("/v1/jobs", json=slow).json()["id"] for _ in range(5)]
    last, seen = ids[-1], []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{last}").json()
        if job["queue_position"] is None:
            break
        seen.append(job["queue_position"])
        assert job["eta_s"] > 0 and job["servable"] is True
        time.sleep(0.1)
    assert seen and seen[0] >= 1, seen
    assert seen == sorted(seen, reverse=True), seen  # never moves back
    assert seen[-1] == 0  # it became next in line before it started
