"""`unclip api` stops promptly on SIGTERM, even while a client follows a job's events."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from shared.db import migrate
from shared.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sigterm_ends_open_event_streams_and_the_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    migrate.upgrade(Settings(data_dir=data_dir))
    port = _free_port()
    env = {**os.environ, "UNCLIP_DATA_DIR": str(data_dir), "UNCLIP_FLEET__METRICS_PORT": "0"}
    for name in ("UNCLIP_DATABASE_URL", "UNCLIP_BROKER_URL", "UNCLIP_PUBLIC_BASE_URL"):
        env.pop(name, None)
    server = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "api", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        job = httpx.post(f"{base}/v1/jobs", json={"prompt": "a red circle"}, timeout=10).json()
        events: list[str] = []
        opened = threading.Event()

        def follow() -> None:  # no worker runs: the job stays queued and the stream open
            with httpx.stream("GET", f"{base}/v1/jobs/{job['id']}/events", timeout=60) as s:
                for line in s.iter_lines():
                    if line.startswith("event:"):
                        events.append(line.split(":", 1)[1].strip())
                        opened.set()

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        assert opened.wait(20), "the stream sent no event"
        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        assert time.monotonic() - stopped_at < 8  # the stream ended, not the grace period
        follower.join(timeout=5)
        assert not follower.is_alive() and events == ["queued"]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
