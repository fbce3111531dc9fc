"""The fleet view and worker metrics with two real `unclip worker` processes (PostgreSQL + Redis).

The workers get a database and a Redis db of this module alone, so the fleet they show is
exactly theirs: one serves the prior queue, the other the decoder and upsampler queues.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from shared.settings import Settings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TOKEN = "fleet-e2e-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
READY_S = 120.0
REGISTER_S = 15.0
JOB_TIMEOUT_S = 240.0
STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}


@dataclass
class Node:
    """One `unclip worker` process."""

    name: str
    queues: list[str]
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def _start(settings: Settings, name: str, queues: list[str], data_dir: Path) -> Node:
    port = free_port()
    env = dict(os.environ)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir), UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url, UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family), UNCLIP_DEVICE="cpu",
        UNCLIP_HEARTBEAT_INTERVAL_S="1", UNCLIP_HEARTBEAT_STALE_S="4",
        UNCLIP_PROGRESS_INTERVAL_S="0.05", UNCLIP_FLEET__METRICS_PORT=str(port),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    log_path = data_dir / f"{name.split('@')[0]}.log"
    command = [sys.executable, "-m", "shared.cli", "worker", "--queues", ",".join(queues),
               "--name", name]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return Node(name, queues, port, process, log_path)


def _wait_ready(node: Node) -> None:
    deadline = time.monotonic() + READY_S
    while " ready." not in node.log():
        if node.process.poll() is not None:
            pytest.fail(f"{node.name} exited with {node.process.returncode}:\n{node.log()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{node.name} not ready after {READY_S:.0f} s:\n{node.log()[-3000:]}")
        time.sleep(0.3)


def _stop(node: Node) -> None:
    if node.process.poll() is None:
        os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait()


@dataclass
class Fleet:
    client: TestClient
    settings: Settings
    prior: Node
    rest: Node


@pytest.fixture(scope="module")
def fleet(
    tmp_path_factory: pytest.TempPathFactory, farm_database: str, farm_redis: Any,
    tiny_family_dir: Path,
) -> Iterator[Fleet]:  # fmt: skip
    data_dir = tmp_path_factory.mktemp("fleet")
    settings = Settings(
        data_dir=data_dir, family=tiny_family_dir, database_url=farm_database,
        broker_url=farm_redis.url, admin_token=TOKEN, heartbeat_interval_s=1.0,
        heartbeat_stale_s=4.0,
    )  # fmt: skip
    tag = uuid.uuid4().hex[:6]
    prior = _start(settings, f"fleet-prior-{tag}@localhost", ["prior"], data_dir)
    rest = _start(settings, f"fleet-rest-{tag}@localhost", ["decoder", "upsampler"], data_dir)
    try:
        _wait_ready(prior)
        _wait_ready(rest)
        with TestClient(create_app(settings)) as client:
            yield Fleet(client, settings, prior, rest)
    finally:
        _stop(prior)
        _stop(rest)


def _workers(fleet: Fleet) -> dict[str, dict[str, Any]]:
    response = fleet.client.get("/v1/fleet", headers=ADMIN)
    assert response.status_code == 200, response.text
    return {w["node"]: w for w in response.json()["workers"]}


def _wait_job(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "rejected"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {JOB_TIMEOUT_S:.0f} s: {job}")


def _value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
           **labels: str) -> float:  # fmt: skip
    return found.get((name, frozenset(labels.items())), 0.0)


def test_fleet_lists_two_running_workers_with_their_queues(fleet: Fleet) -> None:
    # A pool child registers from its heartbeat thread, which may write just after " ready.".
    deadline = time.monotonic() + REGISTER_S
    while len(workers := _workers(fleet)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(workers) == {fleet.prior.name, fleet.rest.name}
    assert workers[fleet.prior.name]["queues"] == ["prior"]
    assert workers[fleet.rest.name]["queues"] == ["decoder", "upsampler"]
    for node in (fleet.prior, fleet.rest):
        worker = workers[node.name]
        assert worker["state"] == "idle" and worker["device"] == "cpu"
        # The registered process is the pool child that runs (and claims) the stage tasks.
        assert worker["id"] == f"{node.name}:{worker['pid']}"
        assert worker["pid"] != node.process.pid


def test_a_job_moves_worker_metrics_logs_and_the_fleet_view(fleet: Fleet) -> None:
    body = {"prompt": "a green triangle", "n": 1, "size": "64x64", "seed": 3, "steps": STEPS}
    response = fleet.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    job = _wait_job(fleet.client, response.json()["id"])
    assert job["status"] == "succeeded", job
    prior, rest = fleet.prior.metrics(), fleet.rest.metrics()
    assert _value(prior, "unclip_stage_seconds_count", stage="prior") == 1
    assert _value(prior, "unclip_batch_size_count", stage="prior") == 1
    assert _value(rest, "unclip_stage_seconds_count", stage="decoder") == 1
    assert _value(rest, "unclip_stage_seconds_count", stage="upsampler") == 1
    assert _value(rest, "unclip_jobs_finished_total", status="succeeded") == 1
    assert _value(prior, "unclip_jobs_finished_total", status="succeeded") == 0
    # The prior's prompt checks and the upsampler's image check, each counted where it ran.
    assert _value(prior, "unclip_moderation_decisions_total", check="lexical", decision="allow")
    assert any(name == "unclip_moderation_decisions_total" and ("check", "image") in labels
               for name, labels in rest)  # fmt: skip

    workers = _workers(fleet)
    assert (workers[fleet.prior.name]["jobs_done"], workers[fleet.rest.name]["jobs_done"]) == (1, 2)
    throughput = fleet.client.get("/v1/fleet", headers=ADMIN).json()["throughput"]
    assert [t["succeeded"] for t in throughput] == [1, 1, 1]

    # Every JSON log line carries job_id, stage and attempt; the decoder's lines name its claim.
    lines = [json.loads(line) for line in fleet.rest.log().splitlines() if line.startswith("{")]
    assert lines and all({"job_id", "stage", "attempt", "event"} <= set(x) for x in lines)
    decoder = [x for x in lines if x["job_id"] == job["id"] and x["stage"] == "decoder"]
    assert decoder and decoder[-1]["attempt"] == 2, decoder


def test_stopped_and_killed_workers_stay_in_the_fleet(fleet: Fleet) -> None:
    fleet.rest.process.send_signal(signal.SIGTERM)
    fleet.rest.process.wait(timeout=60)
    os.killpg(fleet.prior.process.pid, signal.SIGKILL)
    fleet.prior.process.wait()
    deadline = time.monotonic() + 30
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {name: w["state"] for name, w in _workers(fleet).items()}
        if states == {fleet.prior.name: "lost", fleet.rest.name: "stopped"}:
            break
        time.sleep(0.5)
    assert states == {fleet.prior.name: "lost", fleet.rest.name: "stopped"}
