"""Shared fixtures: migrated SQLite and PostgreSQL databases, a Redis db, a tiny model family.

PostgreSQL and Redis are the real servers on 127.0.0.1 (`make test` starts them). Without them
the tests that need them skip, unless UNCLIP_TEST_REQUIRE_SERVICES=1 (set by `make test`),
where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.db.engine import make_engine, make_sessionmaker
from shared.db.migrate import upgrade
from shared.db.models import Job
from shared.settings import Settings

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_LOCK_KEY = "unclip-tests:owner"


def _service_missing(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({exc}); `make test` starts it"
    if os.environ.get("UNCLIP_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test: everything under `data_dir`, nothing from a .env file."""
    return Settings(data_dir=data_dir, **overrides)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Embedded-default settings under a temp dir, with the migrations applied."""
    settings = make_settings(tmp_path / "data")
    upgrade(settings)
    return settings


@pytest.fixture
def db_sessions(sqlite_settings: Settings) -> Iterator[sessionmaker[Session]]:
    """A session factory on the migrated temp SQLite database."""
    engine = make_engine(sqlite_settings)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def make_job(db_sessions: sessionmaker[Session]) -> Callable[..., str]:
    """Insert a queued job row (fields overridable) and return its id."""

    def _make(**fields: Any) -> str:
        values: dict[str, Any] = dict(
            kind="generate", prompt="a red circle", n=1, size="64x64", seed=7,
            sampler="ddim", steps_prior=2, steps_decoder=2, steps_upsampler=2,
            prior_guidance=1.0, decoder_guidance=1.0, status="queued", attempt=0,
        )  # fmt: skip
        values.update(fields)
        with db_sessions.begin() as session:
            job = Job(**values)
            session.add(job)
            session.flush()
            return job.id

    return _make


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A uniquely named, migrated PostgreSQL database for this test session; dropped after."""
    import psycopg

    name = f"unclip_test_{uuid.uuid4().hex[:12]}"
    admin = f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=3"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _service_missing(f"PostgreSQL on {PG_HOST}:{PG_PORT}", exc)
    url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    try:
        upgrade(make_settings(Path("var/unused"), database_url=url))
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database index owned by this session (claimed with SET NX), flushed after."""
    import redis

    token = uuid.uuid4().hex
    chosen: redis.Redis | None = None
    try:
        for index in range(15, 0, -1):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index, socket_timeout=3)
            if client.dbsize() == 0 and client.set(REDIS_LOCK_KEY, token, nx=True):
                chosen = client
                break
            client.close()
    except redis.exceptions.ConnectionError as exc:
        _service_missing(f"Redis on {REDIS_HOST}:{REDIS_PORT}", exc)
    if chosen is None:
        pytest.fail("every Redis db 1-15 is in use by other test sessions; flush a stale one")
    db = chosen.connection_pool.connection_kwargs["db"]
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        chosen.flushdb()
        chosen.close()


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight model family (worker/unclip/reference_family.py) saved to disk."""
    from worker.unclip.reference_family import save_reference_family

    path = tmp_path_factory.mktemp("tiny-family")
    save_reference_family(path)
    return path
