"""End-to-end stacks, one per mode and test session, and the checks the e2e tests share.

distributed: PostgreSQL + Redis + a real `unclip worker` (Celery) subprocess, the API in process.
embedded: `unclip up` (SQLite, filesystem broker, local storage) as a subprocess on a free port.
Both render with the tiny random-weight reference family at 2/2/2 steps.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job, JobImage, StageAttempt
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
WORKER_READY_S = 120.0
# Generous: on a quiet machine a job takes seconds, but this one is shared with training runs.
JOB_TIMEOUT_S = 240.0
STEPS = {"prior": 2, "decoder": 2, "upsampler": 2}
TERMINAL = {"succeeded", "failed", "cancelled", "rejected"}


@dataclass
class Stack:
    """A running stack: an HTTP client on its API, its settings and its worker's log."""

    mode: str
    client: httpx.Client
    settings: Settings
    sessions: sessionmaker[Session]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        UNCLIP_DATA_DIR=str(settings.data_dir),
        UNCLIP_DATABASE_URL=settings.database_url,
        UNCLIP_BROKER_URL=settings.broker_url,
        UNCLIP_STORAGE_URL=settings.storage_url,
        UNCLIP_FAMILY=str(settings.family),
        UNCLIP_DEVICE="cpu",
        UNCLIP_PROGRESS_INTERVAL_S=str(settings.progress_interval_s),
        UNCLIP_HEARTBEAT_INTERVAL_S=str(settings.heartbeat_interval_s),
        UNCLIP_HEARTBEAT_STALE_S=str(settings.heartbeat_stale_s),
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(argv: list[str], settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    command = [sys.executable, "-m", "shared.cli", *argv]
    return subprocess.Popen(
        command, cwd=REPO, env=_env(settings), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_log(process: subprocess.Popen[bytes], log_path: Path, marker: str) -> None:
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if marker in text:
            return
        if process.poll() is not None:
            pytest.fail(f"{process.args} exited with {process.returncode}:\n{text[-3000:]}")
        time.sleep(0.3)
    pytest.fail(f"no {marker!r} in {log_path} after {WORKER_READY_S:.0f} s")


def free_port() -> int:
    """A free TCP port on the loopback (the integration tests' services bind to it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(data_dir: Path, family: Path, **overrides: Any) -> Settings:
    # Short heartbeats, so a killed worker's claim goes stale within seconds.
    return Settings(
        data_dir=data_dir, family=family, progress_interval_s=0.05, heartbeat_interval_s=1.0,
        heartbeat_stale_s=4.0, **overrides,
    )  # fmt: skip


@pytest.fixture(scope="session")
def distributed_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str,
    tiny_family_dir: Path,
) -> Iterator[Stack]:  # fmt: skip
    """PostgreSQL + Redis + a Celery worker subprocess on all three queues; API in process."""
    data_dir = tmp_path_factory.mktemp("distributed")
    settings = _settings(data_dir, tiny_family_dir, database_url=postgres_url, broker_url=redis_url)
    log_path = data_dir / "worker.log"
    worker = _start(["worker", "--queues", "prior,decoder,upsampler"], settings, log_path)
    engine = make_engine(settings)
    try:
        _wait_for_log(worker, log_path, " ready.")
        with TestClient(create_app(settings)) as client:
            yield Stack("distributed", client, settings, make_sessionmaker(engine), log_path)
    finally:
        _stop(worker)
        engine.dispose()


@pytest.fixture(scope="session")
def embedded_stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_family_dir: Path
) -> Iterator[Stack]:
    """`unclip up` on a free port: SQLite, the filesystem broker and local storage."""
    data_dir = tmp_path_factory.mktemp("embedded")
    settings = _settings(data_dir, tiny_family_dir)
    upgrade(settings)  # `unclip up` migrates too; doing it first lets this process read rows
    port = free_port()
    log_path = data_dir / "up.log"
    stack = _start(["up", "--host", "127.0.0.1", "--port", str(port)], settings, log_path)
    engine: Engine = make_engine(settings)
    try:
        _wait_for_log(stack, log_path, " ready.")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            _wait_http(client, stack)
            yield Stack("embedded", client, settings, make_sessionmaker(engine), log_path)
    finally:
        _stop(stack)
        engine.dispose()


def _wait_http(client: httpx.Client, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            pytest.fail(f"`unclip up` exited with {process.returncode}")
        time.sleep(0.3)
    pytest.fail("the embedded API never answered /readyz")


# ---- what the end-to-end tests share (tests get them through the `e2e` fixture) -------------


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def centre_mask(size: int) -> Image.Image:
    """RGBA, opaque except a transparent centre square: alpha 0 marks the area to repaint."""
    mask = Image.new("RGBA", (size, size), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((size // 4, size // 4, 3 * size // 4 - 1, 3 * size // 4 - 1),
                                   fill=(0, 0, 0, 0))  # fmt: skip
    return mask


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Poll the job until it ends; its final JSON."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s: {job}")


def fetch_pngs(client: httpx.Client, job: dict[str, Any]) -> list[Image.Image]:
    """GET every image of a finished job; each must be a PNG."""
    images = []
    for entry in job["images"]:
        response = client.get(f"/v1/jobs/{job['id']}/images/{entry['index']}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(response.content))
        image.load()
        images.append(image)
    return images


def stage_rows(sessions: sessionmaker[Session], job_id: str) -> list[tuple[str, int, str, str]]:
    """(stage, attempt, status, worker_id) of every stage attempt, in attempt order."""
    with sessions() as session:
        rows = session.execute(
            select(StageAttempt.stage, StageAttempt.attempt, StageAttempt.status,
                   StageAttempt.worker_id)
            .where(StageAttempt.job_id == job_id)
            .order_by(StageAttempt.attempt, StageAttempt.started_at)
        )  # fmt: skip
        return [(s, a, st, w or "") for s, a, st, w in rows]


def check_succeeded_rows(stack: Stack, job_id: str, n: int) -> None:
    """The job row, its images and one stage attempt per stage, as a clean run leaves them."""
    with stack.sessions() as session:
        job = session.get_one(Job, job_id)
        images = session.scalars(
            select(JobImage).where(JobImage.job_id == job_id).order_by(JobImage.index)
        ).all()
    assert (job.status, job.attempt, job.progress, job.worker_id) == ("succeeded", 3, 1.0, None)
    assert job.error_code is None and job.started_at and job.finished_at
    assert job.prior_output_key == f"jobs/{job_id}/attempt-1/prior/image_embeddings.safetensors"
    assert job.decoder_output_key == f"jobs/{job_id}/attempt-2/decoder/low_res.safetensors"
    assert [(i.index, i.attempt, i.published) for i in images] == [(k, 3, True) for k in range(n)]
    assert [i.storage_key for i in images] == [
        f"jobs/{job_id}/attempt-3/images/{k}.png" for k in range(n)
    ]
    assert [(s, a, st) for s, a, st, _ in stage_rows(stack.sessions, job_id)] == [
        ("prior", 1, "succeeded"), ("decoder", 2, "succeeded"), ("upsampler", 3, "succeeded"),
    ]  # fmt: skip


class E2E:
    """The helpers above, handed to tests as one fixture (test modules cannot import conftest)."""

    steps = STEPS
    png = staticmethod(png)
    centre_mask = staticmethod(centre_mask)
    wait_job = staticmethod(wait_job)
    fetch_pngs = staticmethod(fetch_pngs)
    stage_rows = staticmethod(stage_rows)
    check_succeeded_rows = staticmethod(check_succeeded_rows)


@pytest.fixture(scope="session")
def e2e() -> E2E:
    return E2E()


# ---- a farm of the test's own: private database and Redis db, the processes it starts ------
# (issue 10: tests/integration/test_sweeper_e2e.py and test_drain.py)

FARM_REDIS_LOCK_KEY = "unclip-tests:owner"
# "held" ends a wait too: a job moderation holds would otherwise be waited on until timeout.
FARM_ENDS = TERMINAL | {"held"}


def _farm_service_missing(message: str) -> None:
    if os.environ.get("UNCLIP_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def farm_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"unclip_farm_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _farm_service_missing(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc})")
    url = f"postgresql+psycopg://postgres@127.0.0.1/{name}"
    try:
        upgrade(Settings(data_dir=tmp_path_factory.mktemp("pg"), database_url=url))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class FarmRedis:
    url: str
    client: Any
    token: str

    def flush(self) -> None:
        """FLUSHDB, as a Redis restart without its append-only file; the index stays ours."""
        self.client.flushdb()
        self.client.set(FARM_REDIS_LOCK_KEY, self.token)


@pytest.fixture(scope="module")
def farm_redis() -> Iterator[FarmRedis]:
    """An empty Redis db index claimed for this module (SET NX), flushed after."""
    import redis

    token = f"farm:{uuid.uuid4().hex}"
    try:
        for index in range(1, 16):
            client = redis.Redis(host="127.0.0.1", port=6379, db=index, socket_timeout=3)
            if client.dbsize() == 0 and client.set(FARM_REDIS_LOCK_KEY, token, nx=True):
                break
            client.close()
        else:
            pytest.fail("no empty Redis db index among 1-15 for the farm")
    except redis.exceptions.ConnectionError as exc:
        _farm_service_missing(f"Redis on 127.0.0.1:6379 is not reachable ({exc})")
    try:
        yield FarmRedis(f"redis://127.0.0.1:6379/{index}", client, token)
    finally:
        client.flushdb()
        client.close()


@dataclass
class FarmProc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Farm:
    """The module's settings, an API client on them, and the processes a test started."""

    settings: Settings
    client: TestClient
    sessions: sessionmaker[Session]
    data_dir: Path
    procs: list[FarmProc] = field(default_factory=list)

    def start(self, name: str, *argv: str, **env: str) -> FarmProc:
        s = self.settings
        full_env = dict(os.environ)
        full_env.update(
            UNCLIP_DATA_DIR=str(s.data_dir), UNCLIP_DATABASE_URL=s.database_url,
            UNCLIP_BROKER_URL=s.broker_url, UNCLIP_STORAGE_URL=s.storage_url,
            UNCLIP_FAMILY=str(s.family), UNCLIP_DEVICE="cpu", UNCLIP_PROGRESS_INTERVAL_S="0.05",
            UNCLIP_HEARTBEAT_INTERVAL_S="1", UNCLIP_HEARTBEAT_STALE_S="4",
            UNCLIP_SWEEPER__INTERVAL_S="1", UNCLIP_SWEEPER__STUCK_AFTER_S="3",
            UNCLIP_FLEET__METRICS_PORT="0", PYTHONUNBUFFERED="1",
        )  # fmt: skip
        full_env.update(env)
        log_path = self.data_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "shared.cli", *argv], cwd=REPO, env=full_env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        proc = FarmProc(name, process, log_path)
        self.procs.append(proc)
        return proc

    def worker(self, name: str, **env: str) -> FarmProc:
        proc = self.start(name, "worker", "--name", f"{name}@localhost", **env)
        self.wait_log(proc, " ready.")
        return proc

    def sweeper(self) -> FarmProc:
        proc = self.start("sweeper", "sweeper")
        self.wait_log(proc, "unclip sweeper: sweeping")
        return proc

    def wait_log(self, proc: FarmProc, marker: str, timeout_s: float = WORKER_READY_S) -> None:
        deadline = time.monotonic() + timeout_s
        while marker not in proc.log():
            if proc.process.poll() is not None:
                pytest.fail(
                    f"{proc.name} exited ({proc.process.returncode}):\n{proc.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {marker!r} from {proc.name}:\n{proc.log()[-3000:]}")
            time.sleep(0.2)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.process.poll() is None:
                os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process.wait()
        self.procs.clear()

    def submit(self, seed: int, steps: dict[str, int] | None = None) -> str:
        body = {"kind": "generate", "prompt": "a red circle", "n": 1, "size": "64x64",
                "seed": seed, "steps": steps or STEPS}  # fmt: skip
        response = self.client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def wait_job(self, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in FARM_ENDS:
                return job
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.log()[-2000:]}" for p in self.procs)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s\n{logs}")

    def attempts(self, job_id: str) -> list[tuple[str, str, str, str]]:
        """(stage, status, worker_id, error) of the job's stage attempts, in order."""
        with self.sessions() as session:
            rows = session.execute(
                select(StageAttempt.stage, StageAttempt.status, StageAttempt.worker_id,
                       StageAttempt.error)
                .where(StageAttempt.job_id == job_id)
                .order_by(StageAttempt.attempt, StageAttempt.started_at)
            )  # fmt: skip
            return [(s, st, w or "", e or "") for s, st, w, e in rows]

    def running_decoder(self, job_id: str) -> str:
        """The worker id of the job's decoder attempt, once it has finished a step."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            with self.sessions() as session:
                job = session.get_one(Job, job_id)
            if job.status == "decoder" and job.worker_id and (job.progress_step or 0) >= 1:
                return job.worker_id
            assert job.status in ("queued", "prior", "decoder"), (job.status, job.error_message)
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} never got a running decoder")

    def shorten_decoder(self, job_id: str) -> None:
        """What the next decoder attempt will read: 2 steps, so the test ends soon."""
        from bench.drills_lib.jobs import shorten_decoder

        shorten_decoder(self.sessions, job_id)


@pytest.fixture(scope="module")
def farm_settings(
    tmp_path_factory: pytest.TempPathFactory, farm_database: str, farm_redis: FarmRedis,
    tiny_family_dir: Path,
) -> Settings:  # fmt: skip
    return Settings(
        data_dir=tmp_path_factory.mktemp("farm"), family=tiny_family_dir,
        database_url=farm_database, broker_url=farm_redis.url, progress_interval_s=0.05,
        heartbeat_interval_s=1.0, heartbeat_stale_s=4.0,
    )  # fmt: skip


@pytest.fixture
def farm(farm_settings: Settings, farm_redis: FarmRedis) -> Iterator[Farm]:
    engine = make_engine(farm_settings)
    farm_redis.flush()  # what an earlier test left queued is not this test's
    try:
        with TestClient(create_app(farm_settings)) as client:
            farm = Farm(farm_settings, client, make_sessionmaker(engine), farm_settings.data_dir)
            try:
                yield farm
            finally:
                farm.stop_all()
    finally:
        engine.dispose()
