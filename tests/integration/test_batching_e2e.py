"""Dynamic batching with a real `unclip worker` (PostgreSQL + Redis): 4 jobs, one cancelled.

The worker gets a database and a Redis db of this module alone, and starts only once the four
jobs wait in its queue, so the first message it takes finds the other three waiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import StageAttempt
from shared.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
READY_S = 120.0
JOB_TIMEOUT_S = 240.0
# A long decoder, so the cancel lands while the batch samples it.
STEPS = {"prior": 2, "decoder": 60, "upsampler": 2}


def _start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir), UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url, UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family), UNCLIP_DEVICE="cpu",
        UNCLIP_HEARTBEAT_INTERVAL_S="1", UNCLIP_HEARTBEAT_STALE_S="4",
        UNCLIP_PROGRESS_INTERVAL_S="0.05", UNCLIP_FLEET__METRICS_PORT="0",
        UNCLIP_BATCH__MAX="4", UNCLIP_BATCH__WAIT_MS="200", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    name = f"batching-{uuid.uuid4().hex[:6]}@localhost"
    command = [sys.executable, "-m", "shared.cli", "worker", "--queues",
               "prior,decoder,upsampler", "--name", name]  # fmt: skip
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _wait(
    client: TestClient, job_id: str, done: set[str], timeout_s: float, min_progress: float = 0.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in done and job["progress"] >= min_progress:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} not {sorted(done)} after {timeout_s:.0f} s: {job}")


def test_four_batched_jobs_one_cancelled_give_three_successes(
    tmp_path: Path, farm_database: str, farm_redis: Any, tiny_family_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path, family=tiny_family_dir, database_url=farm_database,
                        broker_url=farm_redis.url)  # fmt: skip
    log_path = tmp_path / "worker.log"
    with TestClient(create_app(settings)) as client:
        jobs = []
        for i in range(4):
            body = {"prompt": f"a shape number {i}", "n": 1, "seed": 40 + i, "size": "64x64",
                    "steps": STEPS, "prior_guidance": 2.0, "decoder_guidance": 3.0 + i}  # fmt: skip
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            jobs.append(response.json()["id"])
        worker = _start_worker(settings, log_path)
        try:
            victim = jobs[1]
            # Past the prior's third of the progress: the decoder batch is sampling.
            _wait(client, victim, {"decoder"}, READY_S, min_progress=0.35)
            response = client.post(f"/v1/jobs/{victim}/cancel")
            assert response.status_code == 200, response.text
            final = {j: _wait(client, j, {"succeeded", "failed", "cancelled"}, JOB_TIMEOUT_S)
                     for j in jobs}  # fmt: skip
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    log = log_path.read_text(errors="replace")
    statuses = sorted(job["status"] for job in final.values())
    assert statuses == ["cancelled", "succeeded", "succeeded", "succeeded"], log[-4000:]
    assert final[victim]["status"] == "cancelled"
    for job_id in jobs:
        if job_id != victim:
            assert len(final[job_id]["images"]) == 1
    # They ran as one batch per stage: one worker claimed all four decoders together, and
    # the victim's decoder attempt ended cancelled while the others' succeeded.
    sessions = make_sessionmaker(make_engine(settings))
    with sessions() as session:
        rows = session.execute(
            select(StageAttempt.job_id, StageAttempt.status, StageAttempt.started_at)
            .where(StageAttempt.stage == "decoder")
        ).all()  # fmt: skip
    assert sorted(job_id for job_id, _, _ in rows) == sorted(jobs)
    assert {job_id: status for job_id, status, _ in rows}[victim] == "cancelled"
    starts = [started for _, _, started in rows]
    assert (max(starts) - min(starts)).total_seconds() < 1.0
    assert "decoder batched with" in log, log[-4000:]
