"""How fast the API answers 503 when PostgreSQL or Redis is refused or hung (issue 10, item 2).

    .venv/bin/python -m bench.bench_fail_fast [--repeat 3]

Needs the shared PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379); they are never
touched: the API reaches one of them through bench/drills_lib/tcp_proxy.py, which then
refuses or hangs. The API first makes a request with the proxy passing, so it holds open
connections when the dependency fails (the harder case). Prints one line per case: the
seconds a POST /v1/jobs took to answer 503 (min-max), its Retry-After, and /healthz meanwhile.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from bench.drills_lib.tcp_proxy import TcpProxy
from shared.db.migrate import upgrade
from shared.settings import Settings

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
BODY = {"kind": "generate", "prompt": "a red circle", "n": 1, "size": "64x64", "seed": 1}


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


def _case(settings: Settings, proxy: TcpProxy, mode: str, repeat: int) -> str:
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/jobs", json=BODY).status_code == 202  # open connections
        proxy.set_mode(mode)
        took, retry_after = [], ""
        for _ in range(repeat):
            started = time.monotonic()
            response = client.post("/v1/jobs", json=BODY)
            took.append(time.monotonic() - started)
            assert response.status_code == 503, response.text
            retry_after = response.headers.get("Retry-After", "")
        started = time.monotonic()
        health = client.get("/healthz").status_code
        health_s = time.monotonic() - started
        proxy.set_mode("pass")
    return (f"503 in {min(took):.2f}-{max(took):.2f} s, Retry-After {retry_after}; "
            f"/healthz {health} in {health_s * 1000:.0f} ms")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="POSTs per case (default 3)")
    args = parser.parse_args()
    name = f"unclip_bench_ff_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_client, index = _free_redis_db()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-fail-fast-"))
    database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    broker_url = f"redis://127.0.0.1:6379/{index}"
    try:
        upgrade(Settings(data_dir=data_dir, database_url=database_url))
        for what, port in (("database", 5432), ("broker", 6379)):
            for mode in ("refuse", "hang"):
                with TcpProxy(("127.0.0.1", port), name=what) as proxy:
                    settings = Settings(
                        data_dir=data_dir,
                        database_url=_through(database_url, proxy) if what == "database"
                        else database_url,
                        broker_url=_through(broker_url, proxy) if what == "broker"
                        else broker_url,
                    )  # fmt: skip
                    print(f"{what} {mode}: {_case(settings, proxy, mode, args.repeat)}", flush=True)
    finally:
        redis_client.flushdb()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
