"""How fast the API answers when PostgreSQL or Redis is refused or hung (issue 10, item 2).

    .venv/bin/python -m bench.bench_fail_fast [--repeat 3] [--json PATH]

Needs the shared PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379); they are never
touched: the API reaches one of them through bench/drills_lib/tcp_proxy.py, which then
refuses or hangs (accepts TCP, answers nothing). Each case first makes every request with
the proxy passing, so the API holds open connections when the dependency fails (the harder
case), then times each route `--repeat` times:

- POST /v1/jobs without a key, and with an API key (the key lookup and the rate-limit
  counter, which lives in Redis in this distributed setup);
- POST /v1/images/generations (the OpenAI sync path);
- GET /v1/jobs/{id}, GET /readyz and GET /healthz;
- with the database: a sync POST /v1/images/generations already waiting for its job (no
  worker runs) when the database fails, timed from the failure.

Prints one line per route and case: the status codes, the seconds (min-max) and Retry-After.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from bench.drills_lib.tcp_proxy import TcpProxy
from shared.db import api_keys
from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.settings import Settings

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
BODY = {"kind": "generate", "prompt": "a red circle", "n": 1, "size": "64x64", "seed": 1}
IMAGES_BODY = {"prompt": "a red circle", "n": 1, "size": "256x256"}
KEY_SECRET = "bench-fail-fast-key-secret-0123456789"
# The sync images wait (settings.sync_timeout_s): far past any timeout under test.
SYNC_TIMEOUT_S = 30.0
WAITING_HEAD_START_S = 1.0


@dataclass
class Timing:
    """One route in one case: what each try answered and how long it took."""

    dependency: str
    mode: str
    route: str
    statuses: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    retry_after: str = ""
    codes: list[str] = field(default_factory=list)

    def line(self) -> str:
        statuses = ",".join(sorted({str(s) for s in self.statuses}))
        codes = ",".join(sorted({c for c in self.codes if c}))
        took = f"{min(self.seconds):.2f}-{max(self.seconds):.2f} s"
        extra = f" Retry-After {self.retry_after}" if self.retry_after else ""
        return (f"{self.dependency:<8} {self.mode:<6} {self.route:<34} {statuses:<7} {took:<14}"
                f"{extra} {codes}").rstrip()  # fmt: skip


def _through(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))


def _free_redis_db() -> tuple[redis.Redis, int]:
    for index in range(1, 16):
        client = redis.Redis(host="127.0.0.1", port=6379, db=index, socket_timeout=3)
        if client.dbsize() == 0 and client.set("unclip-tests:owner", "bench-fail-fast", nx=True):
            return client, index
        client.close()
    raise SystemExit("no empty Redis db index among 1-15")


def _new_key(settings: Settings) -> str:
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session:
            created = api_keys.create_key(
                session=session, server_secret=KEY_SECRET, name=f"bench-{uuid.uuid4().hex[:6]}"
            )
            session.commit()
            return created.secret
    finally:
        engine.dispose()


def _requests(job_id: str, key: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    keyed = {"Authorization": f"Bearer {key}"}
    return {
        "POST /v1/jobs": ("POST", "/v1/jobs", {"json": BODY}),
        "POST /v1/jobs (API key)": ("POST", "/v1/jobs", {"json": BODY, "headers": keyed}),
        "POST /v1/images/generations": ("POST", "/v1/images/generations", {"json": IMAGES_BODY}),
        "GET /v1/jobs/{id}": ("GET", f"/v1/jobs/{job_id}", {}),
        "GET /readyz": ("GET", "/readyz", {}),
        "GET /healthz": ("GET", "/healthz", {}),
    }  # fmt: skip


def _send(client: TestClient, method: str, path: str, kwargs: dict[str, Any]) -> Any:
    return client.request(method, path, **kwargs)


def _error_code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return "not-json"
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else ""


def _waiting_sync(client: TestClient, proxy: TcpProxy, mode: str, timing: Timing) -> None:
    """A sync images request waiting for its job when the database fails: time to answer."""
    answered: list[Any] = []
    waiter = threading.Thread(
        target=lambda: answered.append(
            _send(client, "POST", "/v1/images/generations", {"json": IMAGES_BODY})
        ),  # fmt: skip
        daemon=True,
    )
    waiter.start()
    time.sleep(WAITING_HEAD_START_S)  # submitted and polling its row by now
    started = time.monotonic()
    proxy.set_mode(mode)
    waiter.join(SYNC_TIMEOUT_S + 5)
    timing.seconds.append(time.monotonic() - started)
    proxy.set_mode("pass")
    if answered:
        timing.statuses.append(answered[0].status_code)
        timing.codes.append(_error_code(answered[0]))
        timing.retry_after = answered[0].headers.get("Retry-After", "")


def _case(settings: Settings, proxy: TcpProxy, what: str, mode: str, repeat: int) -> list[Timing]:
    key = _new_key(settings)
    with TestClient(create_app(settings)) as client:
        first = _send(client, "POST", "/v1/jobs", {"json": BODY})
        assert first.status_code == 202, first.text
        routes = _requests(first.json()["id"], key)
        for method, path, kwargs in routes.values():  # open connections along every path
            headers = {**kwargs.get("headers", {}), "Prefer": "respond-async"}
            _send(client, method, path, {**kwargs, "headers": headers})
        timings = {name: Timing(what, mode, name) for name in routes}
        proxy.set_mode(mode)
        for _ in range(repeat):
            for name, (method, path, kwargs) in routes.items():
                started = time.monotonic()
                response = _send(client, method, path, kwargs)
                timing = timings[name]
                timing.seconds.append(time.monotonic() - started)
                timing.statuses.append(response.status_code)
                timing.codes.append(_error_code(response) if response.status_code >= 400 else "")
                timing.retry_after = response.headers.get("Retry-After", timing.retry_after)
        proxy.set_mode("pass")
        found = list(timings.values())
        if what == "database":
            waiting = Timing(what, mode, "sync images request already waiting")
            for _ in range(repeat):
                _waiting_sync(client, proxy, mode, waiting)
            found.append(waiting)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="tries per route and case (3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = parser.parse_args()
    name = f"unclip_bench_ff_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_client, index = _free_redis_db()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-fail-fast-"))
    database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    broker_url = f"redis://127.0.0.1:6379/{index}"
    common = dict(data_dir=data_dir, api_key_secret=KEY_SECRET, sync_timeout_s=SYNC_TIMEOUT_S)
    found: list[Timing] = []
    try:
        upgrade(Settings(**common, database_url=database_url))  # type: ignore[arg-type]
        for what, port in (("database", 5432), ("broker", 6379)):
            for mode in ("refuse", "hang"):
                with TcpProxy(("127.0.0.1", port), name=what) as proxy:
                    settings = Settings(
                        **common,  # type: ignore[arg-type]
                        database_url=_through(database_url, proxy) if what == "database"
                        else database_url,
                        broker_url=_through(broker_url, proxy) if what == "broker"
                        else broker_url,
                    )  # fmt: skip
                    for timing in _case(settings, proxy, what, mode, args.repeat):
                        print(timing.line(), flush=True)
                        found.append(timing)
    finally:
        redis_client.flushdb()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(t) for t in found], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
