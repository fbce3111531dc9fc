"""A drill's own PostgreSQL database and Redis db index on the shared servers, and a tiny family.

Nothing here touches another database or db index: the PostgreSQL database is created with a
unique name and dropped after, and the Redis index is claimed with SET NX on the same key the
test fixtures use (tests/conftest.py), so a drill and a test session never share one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_LOCK_KEY = "unclip-tests:owner"  # the key tests/conftest.py claims a db index with


class ResourceError(RuntimeError):
    """A shared server is not reachable, or has no free db index."""


@dataclass(frozen=True)
class PrivateDatabase:
    """A uniquely named PostgreSQL database, migrated to head."""

    name: str

    def url(self, host: str = PG_HOST, port: int = PG_PORT) -> str:
        return f"postgresql+psycopg://{PG_USER}@{host}:{port}/{self.name}"


def _admin_dsn() -> str:
    return f"host={PG_HOST} port={PG_PORT} user={PG_USER} dbname=postgres connect_timeout=3"


def create_database(prefix: str = "unclip_drill") -> PrivateDatabase:
    """Create and migrate a fresh database; drop it with `drop_database`."""
    import psycopg

    from shared.db.migrate import upgrade
    from shared.settings import Settings

    database = PrivateDatabase(f"{prefix}_{uuid.uuid4().hex[:12]}")
    try:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database.name}"')
    except psycopg.OperationalError as exc:
        raise ResourceError(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not reachable: {exc}") from exc
    upgrade(Settings(data_dir=Path("var/unused"), database_url=database.url()))
    return database


def drop_database(database: PrivateDatabase) -> None:
    import psycopg

    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


@dataclass
class PrivateRedisDb:
    """One Redis db index, claimed for this drill; `flush()` empties only this index."""

    index: int
    token: str

    def url(self, host: str = REDIS_HOST, port: int = REDIS_PORT) -> str:
        return f"redis://{host}:{port}/{self.index}"

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.index, socket_timeout=3)

    def flush(self) -> int:
        """FLUSHDB on this index (every queued and unacked message); keeps the claim. Returns
        how many keys there were."""
        client = self.client()
        try:
            keys = int(client.dbsize())
            # One MULTI, so no other session sees the index empty and claims it meanwhile.
            pipe = client.pipeline(transaction=True)
            pipe.flushdb()
            pipe.set(REDIS_LOCK_KEY, self.token)
            pipe.execute()
            return keys - 1  # the claim key is not a message
        finally:
            client.close()

    def release(self) -> None:
        client = self.client()
        try:
            client.flushdb()
        finally:
            client.close()


def claim_redis_db() -> PrivateRedisDb:
    """The highest free db index 1-15 (empty, then claimed with SET NX)."""
    import redis

    token = uuid.uuid4().hex
    try:
        for index in range(15, 0, -1):
            client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index, socket_timeout=3)
            try:
                if client.dbsize() == 0 and client.set(REDIS_LOCK_KEY, token, nx=True):
                    return PrivateRedisDb(index, token)
            finally:
                client.close()
    except redis.exceptions.ConnectionError as exc:
        raise ResourceError(f"Redis on {REDIS_HOST}:{REDIS_PORT} is not reachable: {exc}") from exc
    raise ResourceError("every Redis db 1-15 is in use; flush a stale one of your own")


def make_family(directory: Path) -> Path:
    """The tiny random-weight reference family (worker/unclip/reference_family.py) on disk."""
    from worker.unclip.reference_family import save_reference_family

    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "family.json").is_file():
        save_reference_family(directory)
    return directory
