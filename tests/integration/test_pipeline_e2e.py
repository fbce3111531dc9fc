"""UNCLIP_PIPELINE=2 against real PostgreSQL, Redis and an `unclip worker`: two pool processes
that take turns on the device render every job, each registered in the fleet."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from shared.db.models import Worker

pytestmark = pytest.mark.integration

STEPS = {"prior": 2, "decoder": 3, "upsampler": 2}


def test_a_pipelined_worker_renders_every_job_with_two_pool_processes(farm: Any) -> None:
    farm.worker("pipe", UNCLIP_PIPELINE="2")
    jobs = [farm.submit(seed=40 + i, steps=STEPS) for i in range(4)]
    for job_id in jobs:
        job = farm.wait_job(job_id)
        assert job["status"] == "succeeded", job
    deadline = time.monotonic() + 15
    while True:
        with farm.sessions() as session:
            rows = session.scalars(select(Worker).where(Worker.node == "pipe@localhost")).all()
        done = sum(row.jobs_done for row in rows)
        if done >= 3 * len(jobs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len({row.pid for row in rows}) == 2  # one registry row per pool process
    assert done == 3 * len(jobs)  # every stage of every job, each done once
