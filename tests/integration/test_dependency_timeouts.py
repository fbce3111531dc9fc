"""Dependencies that fail fast: with PostgreSQL or Redis refused or hung (behind a TCP proxy of
this test's own; the shared servers are never touched), the API answers 503 with Retry-After in
its error shape within a second or two, and /healthz keeps answering."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from shared.db import api_keys
from shared.db.engine import make_engine, make_sessionmaker
from shared.settings import Settings

pytestmark = pytest.mark.integration

# The target is 2 s: a hung database costs the ping deadline and a connect deadline (0.25 +
# 1 s by default), a hung Redis one socket timeout (1 s). The rest is slack for a loaded machine.
FAIL_FAST_S = 2.5
KEY_SECRET = "test-fail-fast-key-secret-0123456789"


class Proxy:
    """127.0.0.1:<port> -> upstream. Modes: "pass"; "refuse" (port closed, connections reset);
    "hang" (connections accepted and held, nothing forwarded either way)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._mode = "pass"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        if mode == "refuse":  # a server that went down: its connections are reset
            for sock in self._held:
                _reset(sock)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(client)
            if self.mode == "refuse":
                _reset(client)
            elif self.mode == "pass":
                threading.Thread(target=self._pipe_pair, args=(client,), daemon=True).start()

    def _pipe_pair(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream, timeout=5)
        self._held.append(upstream)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        src.settimeout(0.1)
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    return
                while self.mode == "hang" and not self._stop.is_set():
                    time.sleep(0.05)  # the bytes are held, as by a stalled server
                if self.mode == "refuse":
                    return
                dst.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for sock in self._held:
            with contextlib.suppress(OSError):
                sock.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _through(url: str, proxy: Proxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    user = f"{netloc[0]}@" if len(netloc) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


@pytest.fixture
def pg_proxy() -> Iterator[Proxy]:
    proxy = Proxy(("127.0.0.1", 5432))
    yield proxy
    proxy.close()


@pytest.fixture
def redis_proxy() -> Iterator[Proxy]:
    proxy = Proxy(("127.0.0.1", 6379))
    yield proxy
    proxy.close()


def _timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def _assert_503(response: Any, code: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == code, error
    assert error["message"]


def _job_body() -> dict[str, Any]:
    return {"kind": "generate", "prompt": "a red circle", "n": 1, "size": "64x64", "seed": 1}


@pytest.mark.parametrize("warm", [False, True], ids=["no-connection-yet", "pooled-connection"])
@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_database_down_or_hung_answers_503_fast(
    tmp_path: Path, postgres_url: str, redis_url: str, pg_proxy: Proxy, mode: str, warm: bool
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=_through(postgres_url, pg_proxy),
                        broker_url=redis_url)  # fmt: skip
    if not warm:
        pg_proxy.mode = mode  # every connection the API makes is refused, or held
    with TestClient(create_app(settings)) as client:
        if warm:  # the API holds open connections when the server goes down or hangs
            assert client.get("/v1/jobs").status_code == 200
            pg_proxy.mode = mode
        response, took = _timed(lambda: client.get("/v1/jobs"))
        _assert_503(response, "database_unavailable")
        assert took < FAIL_FAST_S, f"GET /v1/jobs took {took:.1f} s with the database {mode}"
        response, took = _timed(lambda: client.post("/v1/jobs", json=_job_body()))
        _assert_503(response, "database_unavailable")
        assert took < FAIL_FAST_S
        assert client.get("/healthz").status_code == 200
        ready, took = _timed(lambda: client.get("/readyz"))
        assert ready.status_code == 503 and "Retry-After" in ready.headers
        assert took < FAIL_FAST_S
        pg_proxy.mode = "pass"  # the database is back: so is the API
        assert client.get("/v1/jobs").status_code == 200


def _new_key(settings: Settings) -> str:
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            created = api_keys.create_key(
                session=session, server_secret=KEY_SECRET, name=f"ff-{uuid.uuid4().hex[:8]}"
            )
            session.commit()
            return created.secret
    finally:
        engine.dispose()


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_broker_down_or_hung_answers_503_fast(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_proxy: Proxy, mode: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=postgres_url,
                        api_key_secret=SecretStr(KEY_SECRET),
                        broker_url=_through(redis_url, redis_proxy))  # fmt: skip
    keyed = {"Authorization": f"Bearer {_new_key(settings)}"}
    with TestClient(create_app(settings)) as client:
        first = client.post("/v1/jobs", json=_job_body())  # a live connection to the broker
        assert first.status_code == 202, first.text
        assert client.post("/v1/jobs", json=_job_body(), headers=keyed).status_code == 202
        redis_proxy.mode = mode
        response, took = _timed(lambda: client.post("/v1/jobs", json=_job_body()))
        _assert_503(response, "queue_unavailable")
        assert took < FAIL_FAST_S, f"POST /v1/jobs took {took:.1f} s with the broker {mode}"
        # With a key, its rate-limit counter lives in the same Redis: one timeout, then 503.
        response, took = _timed(lambda: client.post("/v1/jobs", json=_job_body(), headers=keyed))
        _assert_503(response, "queue_unavailable")
        assert took < FAIL_FAST_S, f"a keyed POST took {took:.1f} s with the broker {mode}"
        ready, took = _timed(lambda: client.get("/readyz"))
        assert ready.status_code == 503 and took < FAIL_FAST_S
        assert client.get("/healthz").status_code == 200
        assert client.get(f"/v1/jobs/{first.json()['id']}").status_code == 200
