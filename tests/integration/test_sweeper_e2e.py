"""No lost hand-off, against real PostgreSQL, Redis and `unclip worker` / `unclip sweeper`
processes: a publish that failed after its commit, Redis losing every queued message, a whole
worker killed, a pool child killed, and a broken worker beside a healthy one.

Each test gets the `farm` fixture (tests/integration/conftest.py): a database and a Redis db
index of the module alone, and the processes the test starts, so what is queued and who
consumes it is the test's own.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db.models import Job, OutboxMessage
from shared.db.states import Stage
from shared.storage.factory import make_storage
from worker.tasks import base
from worker.tasks.base import RenderTask, Resources
from worker.tasks.prior_task import PriorTask

pytestmark = pytest.mark.integration

JOB_TIMEOUT_S = 240.0
STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}


def _queued_messages(redis_db: Any, queue: str) -> int:
    return int(redis_db.client.llen(queue))


def test_publish_failing_after_the_commit_ends_in_success_via_the_sweeper(
    farm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job's first message goes nowhere; the prior runs here, commits, and its publish of
    # the decoder's message fails.
    class DropQueue:
        def enqueue(self, job_id: str, stage: Stage, attempt: int) -> str:
            return "dropped"

        def check(self) -> None:
            return None

    with TestClient(create_app(farm.settings, queue=DropQueue())) as client:
        body = {"kind": "generate", "prompt": "a blue square", "n": 1, "size": "64x64",
                "seed": 5, "steps": STEPS}  # fmt: skip
        response = client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    settings = farm.settings
    monkeypatch.setattr(RenderTask, "_resources",
                        Resources(settings, farm.sessions, make_storage(settings)))  # fmt: skip

    def broker_down(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(base, "enqueue_stage", broker_down)
    prior = Celery("test-prior", set_as_current=False).register_task(PriorTask())
    assert prior.apply(kwargs={"job_id": job_id, "attempt": 0}).get() == "done"
    with farm.sessions() as session:
        assert session.get_one(Job, job_id).status == "decoder"
        row = session.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id)).one()
        assert (row.stage, row.published_at) == ("decoder", None)

    farm.worker("w1")
    farm.sweeper()
    done = farm.wait_job(job_id)
    assert done["status"] == "succeeded", done
    assert [(s, st) for s, st, _, _ in farm.attempts(job_id)] == [
        ("prior", "succeeded"), ("decoder", "succeeded"), ("upsampler", "succeeded"),
    ]  # fmt: skip
    with farm.sessions() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.job_id == job_id))
        assert all(r.published_at is not None for r in rows)


def test_flushdb_with_10_queued_jobs_ends_with_10_successes(farm: Any, farm_redis: Any) -> None:
    jobs = [farm.submit(seed=100 + k) for k in range(10)]  # no worker yet: all stay queued
    assert _queued_messages(farm_redis, "prior") == 10
    farm_redis.flush()  # Redis restarted without its append-only file: every message is gone
    assert _queued_messages(farm_redis, "prior") == 0
    farm.worker("w1")
    farm.sweeper()
    finished = [farm.wait_job(job_id) for job_id in jobs]
    assert [j["status"] for j in finished] == ["succeeded"] * 10
    for job_id in jobs:  # each stage ran once: the re-published messages did no extra work
        assert [(s, st) for s, st, _, _ in farm.attempts(job_id)] == [
            ("prior", "succeeded"), ("decoder", "succeeded"), ("upsampler", "succeeded"),
        ]  # fmt: skip


def test_killed_worker_is_recovered_through_its_stale_heartbeat(farm: Any) -> None:
    """kill -9 of the worker's main process (and its pool): no visibility timeout is waited
    for; the sweeper sees the heartbeat go stale and re-queues the decoder."""
    victim = farm.worker("victim")
    job_id = farm.submit(seed=7, steps={"prior": 2, "decoder": 250, "upsampler": 2})
    dead_worker = farm.running_decoder(job_id)
    farm.shorten_decoder(job_id)
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    farm.worker("heir")
    farm.sweeper()
    done = farm.wait_job(job_id)
    assert done["status"] == "succeeded", done
    rows = farm.attempts(job_id)
    assert [(s, st) for s, st, _, _ in rows] == [
        ("prior", "succeeded"), ("decoder", "lost"), ("decoder", "succeeded"),
        ("upsampler", "succeeded"),
    ]  # fmt: skip
    assert rows[1][2] == dead_worker and "heartbeat_stale" in rows[1][3]


def test_killed_pool_process_is_released_at_once(farm: Any) -> None:
    """kill -9 of the pool child running the decoder: its worker releases the claim at once,
    so the re-queued message takes over long before the heartbeat could go stale."""
    farm.worker("w1", UNCLIP_HEARTBEAT_STALE_S="600")
    job_id = farm.submit(seed=8, steps={"prior": 2, "decoder": 250, "upsampler": 2})
    victim = farm.running_decoder(job_id)
    farm.shorten_decoder(job_id)
    os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
    done = farm.wait_job(job_id, timeout_s=300)  # far below the 600 s stale threshold
    assert done["status"] == "succeeded", done
    rows = farm.attempts(job_id)
    assert [(s, st) for s, st, _, _ in rows] == [
        ("prior", "succeeded"), ("decoder", "lost"), ("decoder", "succeeded"),
        ("upsampler", "succeeded"),
    ]  # fmt: skip
    assert rows[1][2] == victim and rows[1][3].startswith("worker_lost")
    assert rows[2][2] != victim


def test_broken_worker_beside_a_healthy_one_leaves_it_every_job(farm: Any, tmp_path: Path) -> None:
    broken_family = tmp_path / "broken-family"
    broken_family.mkdir()
    (broken_family / "family.json").write_text('{"format": "unclip-family/1", "name":')
    broken = farm.worker("broken", UNCLIP_FAMILY=str(broken_family))
    jobs = [farm.submit(seed=200 + k) for k in range(3)]
    farm.wait_log(broken, "stopped consuming", timeout_s=JOB_TIMEOUT_S)
    farm.worker("healthy")
    jobs += [farm.submit(seed=210 + k) for k in range(3)]
    finished = [farm.wait_job(job_id) for job_id in jobs]
    assert [j["status"] for j in finished] == ["succeeded"] * len(jobs)
    for job_id in jobs:
        rows = farm.attempts(job_id)
        assert [st for _, st, _, _ in rows] == ["succeeded"] * 3  # none failed, none lost
        assert all(w.startswith("healthy@") for _, _, w, _ in rows)
    assert broken.process.poll() is None  # still up, consuming nothing
