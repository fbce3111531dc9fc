"""A drill stack: a private database and Redis index behind TCP proxies, the API, workers, sweeper.

Every process (API, workers, sweeper) reaches PostgreSQL and Redis through the stack's own
proxies, so a drill can take either down or hang it without touching the shared servers;
the drill itself reads rows on a direct connection that no proxy mode affects.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.orm import Session, sessionmaker

from bench.drills_lib.processes import ManagedProcess, ProcessFailed
from bench.drills_lib.resources import (
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    PrivateDatabase,
    PrivateRedisDb,
    claim_redis_db,
    create_database,
    drop_database,
    make_family,
)
from bench.drills_lib.tcp_proxy import TcpProxy
from shared.cli import COMMANDS
from shared.db.engine import make_engine, make_sessionmaker
from shared.settings import Settings

ALL_QUEUES = "prior,decoder,upsampler"
HTTP_TIMEOUT_S = 10.0


def sweeper_available() -> bool:
    """`unclip sweeper` exists in this tree (shared/cli.py COMMANDS)."""
    return "sweeper" in COMMANDS


def drain_available() -> bool:
    """The graceful-drain setting (UNCLIP_DRAIN_TIMEOUT_S) exists in this tree."""
    return "drain_timeout_s" in Settings.model_fields


@dataclass(frozen=True)
class StackConfig:
    """Short timings, so a dead worker or a lost message shows within seconds."""

    heartbeat_interval_s: float = 1.0
    heartbeat_stale_s: float = 4.0
    progress_interval_s: float = 0.1
    sweeper_stuck_after_s: float = 5.0
    sweeper_interval_s: float = 1.0
    drain_timeout_s: float = 5.0
    max_attempts: int = 3
    with_sweeper: bool = True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """Open with `with Stack(...) as stack:`; everything it started is stopped on exit."""

    def __init__(
        self,
        name: str,
        config: StackConfig | None = None,
        *,
        keep: bool = False,
        family: Path | None = None,
    ) -> None:
        self.name = name
        self.keep = keep  # leave the logs and data under work_dir for a post-mortem
        self.config = config or StackConfig()
        self.work_dir = Path(tempfile.mkdtemp(prefix=f"unclip-drill-{name}-"))
        self.data_dir = self.work_dir / "data"
        self.database: PrivateDatabase | None = None
        self.redis: PrivateRedisDb | None = None
        self.pg_proxy = TcpProxy((PG_HOST, PG_PORT), name=f"{name}-pg")
        self.redis_proxy = TcpProxy((REDIS_HOST, REDIS_PORT), name=f"{name}-redis")
        self.processes: list[ManagedProcess] = []
        self.api: ManagedProcess | None = None
        self.sweeper: ManagedProcess | None = None
        # A fresh connection per request, as a load balancer's probe: no keep-alive artefacts.
        self.client = httpx.Client(
            timeout=HTTP_TIMEOUT_S, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self.sessions: sessionmaker[Session] | None = None
        self._engine: Any = None
        self.family = family or self.work_dir / "family"  # made on open() if missing
        self.problems: list[str] = []  # e.g. a sweeper that would not start

    # ---- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Stack:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        make_family(self.family)
        self.database = create_database()
        self.redis = claim_redis_db()
        self.pg_proxy.start()
        self.redis_proxy.start()
        direct = Settings(data_dir=self.data_dir, database_url=self.database.url())
        self._engine = make_engine(direct)
        self.sessions = make_sessionmaker(self._engine)
        self.start_api()
        if self.config.with_sweeper and sweeper_available():
            self.start_sweeper()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout_s=10)
        self.client.close()
        self.pg_proxy.close()
        self.redis_proxy.close()
        if self._engine is not None:
            self._engine.dispose()
        if self.database is not None:
            drop_database(self.database)
            self.database = None
        if self.redis is not None:
            self.redis.release()
            self.redis = None
        if not self.keep:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    # ---- what the processes are told -----------------------------------------------------
    def env(self, **overrides: str) -> dict[str, str]:
        assert self.database is not None and self.redis is not None
        cfg = self.config
        env = dict(os.environ)
        env.update(
            UNCLIP_DATA_DIR=str(self.data_dir),
            UNCLIP_DATABASE_URL=self.database.url(port=self.pg_proxy.port),
            UNCLIP_BROKER_URL=self.redis.url(port=self.redis_proxy.port),
            UNCLIP_STORAGE_URL=(self.data_dir / "storage").as_uri(),
            UNCLIP_FAMILY=str(self.family),
            UNCLIP_DEVICE="cpu",
            UNCLIP_PROGRESS_INTERVAL_S=str(cfg.progress_interval_s),
            UNCLIP_HEARTBEAT_INTERVAL_S=str(cfg.heartbeat_interval_s),
            UNCLIP_HEARTBEAT_STALE_S=str(cfg.heartbeat_stale_s),
            UNCLIP_MAX_ATTEMPTS=str(cfg.max_attempts),
            UNCLIP_SWEEPER__STUCK_AFTER_S=str(cfg.sweeper_stuck_after_s),
            UNCLIP_SWEEPER__INTERVAL_S=str(cfg.sweeper_interval_s),
            UNCLIP_DRAIN_TIMEOUT_S=str(cfg.drain_timeout_s),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        env.update(overrides)
        return env

    def _spawn(self, name: str, argv: list[str], **env: str) -> ManagedProcess:
        log = self.work_dir / "logs" / f"{name}.log"
        process = ManagedProcess(name, argv, self.env(**env), log).start()
        self.processes.append(process)
        return process

    def start_api(self) -> ManagedProcess:
        port = _free_port()
        self.api = self._spawn(
            "api", ["api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        )
        self.client.base_url = httpx.URL(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.client.get("/healthz", timeout=2).status_code == 200:
                    return self.api
            except httpx.TransportError:
                pass
            if not self.api.running():
                raise ProcessFailed(f"`unclip api` exited:\n{self.api.log_text()[-3000:]}")
            time.sleep(0.3)
        raise ProcessFailed("`unclip api` never answered /healthz")

    def start_worker(
        self,
        name: str,
        *,
        queues: str = ALL_QUEUES,
        family: Path | None = None,
        wait: bool = True,
        concurrency: int = 1,
    ) -> ManagedProcess:
        """`unclip worker` named `name@drill` on `queues`; waits for Celery's ' ready.'."""
        overrides = {} if family is None else {"UNCLIP_FAMILY": str(family)}
        worker = self._spawn(
            name,
            [
                "worker",
                "--queues",
                queues,
                "--name",
                f"{name}@drill",
                "--concurrency",
                str(concurrency),
            ],
            **overrides,
        )
        if wait:
            worker.wait_for_log(" ready.")
        return worker

    def start_sweeper(self) -> ManagedProcess:
        """`unclip sweeper`; a sweeper that fails to start is noted, not fatal (drills show it)."""
        self.sweeper = self._spawn("sweeper", ["sweeper"])
        try:
            self.sweeper.wait_for_log("unclip sweeper:", timeout_s=60)  # its start-up line
        except ProcessFailed as exc:
            self.problems.append(f"sweeper did not start: {str(exc).splitlines()[0][:160]}")
        return self.sweeper

    def worker_named(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def db(self) -> sessionmaker[Session]:
        assert self.sessions is not None
        return self.sessions
