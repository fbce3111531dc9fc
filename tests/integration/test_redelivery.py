"""At-least-once delivery against the real worker: duplicates render once; a dead decoder resumes.

Both run on the distributed stack (PostgreSQL, Redis, a `celery worker` subprocess).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import select

from shared.db.base import utcnow
from shared.db.claims import claim_stage
from shared.db.models import Job, JobImage
from shared.db.states import Stage
from shared.queue.celery_app import make_celery
from shared.queue.dispatch import enqueue_stage
from shared.storage.factory import make_storage
from worker.tasks import base
from worker.tasks.base import RenderTask, Resources
from worker.tasks.prior_task import PriorTask

pytestmark = pytest.mark.integration

STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}
DEAD_WORKER = "dead-worker@gone:4242"


@pytest.fixture(scope="module")
def broker(distributed_stack: Any) -> Celery:
    """A client app on the stack's broker, for sending messages by hand."""
    return make_celery(distributed_stack.settings)


def _submit(stack: Any, prompt: str, seed: int) -> str:
    body = {"kind": "generate", "prompt": prompt, "n": 1, "size": "64x64", "seed": seed,
            "steps": STEPS}  # fmt: skip
    response = stack.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _wait_for_log_line(stack: Any, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in stack.log_text():
        assert time.monotonic() < deadline, f"worker never logged {text!r}"
        time.sleep(0.2)


def test_duplicate_message_renders_once(distributed_stack: Any, broker: Celery, e2e: Any) -> None:
    stack = distributed_stack
    job_id = _submit(stack, "a yellow triangle", seed=21)
    enqueue_stage(broker, job_id, Stage.prior, 0)  # the same message a second time
    done = e2e.wait_job(stack.client, job_id)
    assert done["status"] == "succeeded", done
    # The second copy was consumed and found nothing to do.
    _wait_for_log_line(stack, f"job {job_id}: prior not claimable")
    # A late duplicate of a finished stage is a no-op too.
    enqueue_stage(broker, job_id, Stage.decoder, 1)
    _wait_for_log_line(stack, f"job {job_id}: decoder not claimable")
    e2e.check_succeeded_rows(stack, job_id, n=1)
    assert len(e2e.fetch_pngs(stack.client, e2e.wait_job(stack.client, job_id))) == 1


class _NoSend:
    """Stands in for enqueue_stage while this process runs the prior: the decoder must die."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, int]] = []

    def __call__(self, app: Any, job_id: str, stage: Any, attempt: int) -> str:
        self.sent.append((job_id, str(stage), attempt))
        return "not-sent"


def _run_prior_here(stack: Any, job_id: str, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run render.prior in this process on the stack's database, storage and family."""
    settings = stack.settings
    monkeypatch.setattr(
        RenderTask, "_resources", Resources(settings, stack.sessions, make_storage(settings))
    )
    no_send = _NoSend()
    monkeypatch.setattr(base, "enqueue_stage", no_send)
    app = Celery("test-prior", set_as_current=False)
    prior = app.register_task(PriorTask())
    assert prior.apply(kwargs={"job_id": job_id, "attempt": 0}).get() == "done"
    return no_send.sent


def test_dead_decoder_resumes_from_stored_embedding(
    distributed_stack: Any, broker: Celery, e2e: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = distributed_stack
    # A job row whose first message never reaches the worker: the API gets a queue that drops it.
    job_id = _submit_without_message(stack)
    assert _run_prior_here(stack, job_id, monkeypatch) == [(job_id, "decoder", 1)]
    with stack.sessions() as session:
        embedding_key = session.get_one(Job, job_id).prior_output_key
    assert embedding_key == f"jobs/{job_id}/attempt-1/prior/image_embeddings.safetensors"

    # A decoder attempt starts on a worker that then dies: its heartbeat is an hour old.
    with stack.sessions.begin() as session:
        dead = claim_stage(
            session, job_id=job_id, stage="decoder", worker_id=DEAD_WORKER,
            stale_after_s=stack.settings.heartbeat_stale_s, max_attempts=3,
            now=utcnow() - timedelta(hours=1),
        )  # fmt: skip
    assert dead is not None and dead.attempt == 2

    # The broker redelivers the decoder message; the live worker takes the stale claim over.
    enqueue_stage(broker, job_id, Stage.decoder, dead.attempt)
    done = e2e.wait_job(stack.client, job_id)
    assert done["status"] == "succeeded", done
    assert len(e2e.fetch_pngs(stack.client, done)) == 1

    rows = e2e.stage_rows(stack.sessions, job_id)
    assert [(s, a, st) for s, a, st, _ in rows] == [
        ("prior", 1, "succeeded"),  # the prior ran once, here, and never again
        ("decoder", 2, "lost"),
        ("decoder", 3, "succeeded"),
        ("upsampler", 4, "succeeded"),
    ]
    assert rows[1][3] == DEAD_WORKER and rows[2][3] not in ("", DEAD_WORKER)
    with stack.sessions() as session:
        job = session.get_one(Job, job_id)
        images = session.scalars(select(JobImage).where(JobImage.job_id == job_id)).all()
    assert job.prior_output_key == embedding_key  # the decoder read the stored embedding
    assert job.decoder_output_key == f"jobs/{job_id}/attempt-3/decoder/low_res.safetensors"
    assert [(i.index, i.attempt) for i in images] == [(0, 4)]


def _submit_without_message(stack: Any) -> str:
    from fastapi.testclient import TestClient

    from api.app import create_app

    class DropQueue:
        def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
            return "dropped"

        def check(self) -> None:
            return None

    with TestClient(create_app(stack.settings, queue=DropQueue())) as client:
        body = {"kind": "generate", "prompt": "a purple cross", "n": 1, "size": "64x64",
                "seed": 31, "steps": STEPS}  # fmt: skip
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _wait_for_running_decoder(stack: Any, job_id: str, timeout_s: float = 240.0) -> str:
    """The worker id of the decoder attempt once it has finished a sampling step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with stack.sessions() as session:
            job = session.get_one(Job, job_id)
        if job.status == "decoder" and job.worker_id and (job.progress_step or 0) >= 1:
            return job.worker_id
        assert job.status in ("queued", "prior", "decoder"), (job.status, job.error_message)
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never got a running decoder")


def test_killed_pool_process_mid_decoder_resumes_at_the_decoder(
    distributed_stack: Any, e2e: Any
) -> None:
    """kill -9 the pool process running the decoder: Celery re-queues the message (reject on
    worker lost), the new delivery waits until the dead claim is stale, then resumes from the
    stored embedding."""
    stack = distributed_stack
    steps = {"prior": 2, "decoder": 250, "upsampler": 2}  # a decoder long enough to be caught
    body = {"kind": "generate", "prompt": "a green circle", "n": 1, "size": "64x64", "seed": 41,
            "steps": steps}  # fmt: skip
    response = stack.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    victim = _wait_for_running_decoder(stack, job_id)
    with stack.sessions.begin() as session:
        session.get_one(Job, job_id).steps_decoder = 2  # what the resumed attempt will read
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)

    done = e2e.wait_job(stack.client, job_id, timeout_s=300)
    assert done["status"] == "succeeded", done
    rows = e2e.stage_rows(stack.sessions, job_id)
    assert [(s, st) for s, _, st, _ in rows] == [
        ("prior", "succeeded"), ("decoder", "lost"), ("decoder", "succeeded"),
        ("upsampler", "succeeded"),
    ]  # fmt: skip
    assert rows[1][3] == victim and rows[2][3] != victim
    with stack.sessions() as session:
        job = session.get_one(Job, job_id)
    assert job.prior_output_key == f"jobs/{job_id}/attempt-1/prior/image_embeddings.safetensors"
