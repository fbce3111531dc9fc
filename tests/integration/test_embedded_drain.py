"""Graceful drain of the embedded default (`unclip up`: SQLite, filesystem broker), whose worker
holds a prefetched message beside the running one: SIGTERM mid-decoder with jobs queued, start
it again on the same data folder, and every job ends succeeded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.models import Job
from shared.queue.celery_app import FILESYSTEM_PREFETCH
from shared.settings import Settings
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DRAIN_TIMEOUT_S = 2.0
GIVE_UP_S = 120.0
# A decoder long enough (seconds) that the drain cuts it at a step boundary.
STEPS = {"prior": 10, "decoder": 250, "upsampler": 4}


def _up(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "UNCLIP_DATA_DIR": str(settings.data_dir),
           "UNCLIP_FAMILY": str(settings.family), "UNCLIP_DEVICE": "cpu",
           "UNCLIP_FLEET__METRICS_PORT": "0", "UNCLIP_DRAIN_TIMEOUT_S": str(DRAIN_TIMEOUT_S),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    for name in ("UNCLIP_DATABASE_URL", "UNCLIP_BROKER_URL", "UNCLIP_STORAGE_URL"):
        env.pop(name, None)  # the embedded default: SQLite, filesystem broker, local files
    command = [sys.executable, "-m", "shared.cli", "up", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    process.kill()
    raise AssertionError(f"no /readyz:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=GIVE_UP_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return time.monotonic() - started


def test_sigterm_with_a_prefetched_message_loses_no_job(
    tmp_path: Path, tiny_family_dir: Path
) -> None:
    assert FILESYSTEM_PREFETCH > 1  # what makes this drill differ from prefetch 1
    settings = Settings(data_dir=tmp_path / "data", family=tiny_family_dir)
    sessions = make_sessionmaker(make_engine(settings))
    log = tmp_path / "up.log"
    port = free_port()
    first = _up(settings, port, log)
    try:
        ids = []
        for i in range(3):
            body = {"prompt": f"a red square number {i}", "n": 1, "size": "64x64", "seed": i,
                    "steps": STEPS}  # fmt: skip
            response = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json=body, timeout=30)
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        def statuses() -> list[str]:
            with sessions() as session:
                rows = session.execute(select(Job.status).where(Job.id.in_(ids))).scalars()
                return sorted(rows)

        deadline = time.monotonic() + GIVE_UP_S
        while "decoder" not in statuses():
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.05)
    finally:
        took = _stop(first)
    assert first.returncode == 0, log.read_text()[-3000:]
    assert took <= DRAIN_TIMEOUT_S + 2.0, f"`unclip up` took {took:.1f} s to stop"
    assert "handed back" in log.read_text()

    second = _up(settings, free_port(), log)
    try:
        deadline = time.monotonic() + GIVE_UP_S
        while not all(s in ("succeeded", "failed", "cancelled") for s in statuses()):
            assert time.monotonic() < deadline, statuses()
            time.sleep(0.5)
    finally:
        _stop(second)
    assert statuses() == ["succeeded"] * 3
