"""Engine and session factory built from settings; every backend fails fast when it is down.

PostgreSQL gets a connect deadline, a statement timeout, TCP keepalives and client-side call
deadlines (shared/db/deadline.py), so a server that is down or hung is noticed within about a
second (settings.db_*_timeout_s: a checkout of a hung server costs the ping deadline plus one
connect deadline, 0.25 + 1 s by default); SQLite gets foreign keys, WAL and a bounded busy
wait. Either way an outage surfaces as DatabaseUnavailable (an OperationalError too), which the
API answers with 503.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from shared.db.deadline import install_connect_deadline, install_deadlines
from shared.db.sqlite_turns import install_sqlite_turns
from shared.errors import DatabaseUnavailable
from shared.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Waiting for a free pooled connection: past this the caller gets a TimeoutError (503).
# Engines built from settings use settings.db_pool_timeout_s instead.
POOL_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
# libpq's own connect_timeout: whole seconds, at least 2 (the client-side deadline answers first).
LIBPQ_MIN_CONNECT_TIMEOUT_S = 2
# A call still unanswered this long after the server's statement timeout: the server is gone.
DEADLINE_MARGIN_S = 1.0
# Connections a pool keeps open (SQLAlchemy's default); a process with more threads talking to
# the database at once (a worker running a batch) asks for more: connections past the pool
# size are opened for one checkout and closed at checkin, a new connection each time.
POOL_SIZE = 5


class DatabaseUnavailableError(DatabaseUnavailable, OperationalError):  # type: ignore[misc]
    """A database outage raised by our engines: the domain error (503 in the API) that is
    still the OperationalError SQLAlchemy raised, so code catching that keeps working."""

    def __init__(self, cause: DBAPIError) -> None:
        original = cast(BaseException, cause.orig)
        OperationalError.__init__(
            self, cause.statement, cause.params, original, hide_parameters=True,
            connection_invalidated=cause.connection_invalidated,
        )  # fmt: skip
        first = str(cause.orig or cause).strip().splitlines()
        self.message = f"the database is unavailable: {first[0] if first else type(cause).__name__}"
        self.param = None


class PoolExhaustedError(DatabaseUnavailable, PoolTimeoutError):  # type: ignore[misc]
    """No pooled connection came free within the pool timeout (the database is hung)."""

    def __init__(self, message: str) -> None:
        PoolTimeoutError.__init__(self, message)
        self.message = f"the database is unavailable: {message}"
        self.param = None


class _FailFastPool(QueuePool):
    """A QueuePool whose exhaustion is the domain's DatabaseUnavailable."""

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except PoolTimeoutError as exc:
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise PoolExhaustedError(str(exc).split(" (Background")[0]) from exc


def _as_outage(context: ExceptionContext) -> None:
    """handle_error hook: a connection failure or timeout becomes DatabaseUnavailableError."""
    error = context.sqlalchemy_exception
    if context.is_pre_ping or not isinstance(error, DBAPIError):
        return  # the pool's own liveness check handles (and retries) its failures
    outage = isinstance(error, (OperationalError, InterfaceError)) or context.is_disconnect
    if outage and not isinstance(error, DatabaseUnavailableError):
        raise DatabaseUnavailableError(error) from context.original_exception


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL lets the API read while a worker writes; busy_timeout waits out short write locks.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def postgres_connect_args(
    *, connect_timeout_s: float, statement_timeout_s: float | None
) -> dict[str, Any]:
    """libpq parameters: bounded connect, bounded statements, dead peers noticed in seconds."""
    args: dict[str, Any] = {
        "connect_timeout": max(LIBPQ_MIN_CONNECT_TIMEOUT_S, math.ceil(connect_timeout_s)),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        # Unacknowledged data older than this drops the connection (a partitioned server).
        "tcp_user_timeout": 10_000,
    }
    if statement_timeout_s is not None:
        ms = int(statement_timeout_s * 1000)
        args["options"] = f"-c statement_timeout={ms} -c lock_timeout={ms}"
    return args


def engine_for_url(
    url: str,
    *,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    statement_timeout_s: float | None = None,
    ping_timeout_s: float | None = None,
    pool_timeout_s: float = POOL_TIMEOUT_S,
    pool_size: int = POOL_SIZE,
    sqlite_turns: bool = False,
) -> Engine:
    """An engine for `url`; SQLite files get their folder created and their pragmas set.

    `statement_timeout_s` None (migrations) lets statements run as long as they need; the
    pool's liveness ping gets `ping_timeout_s` (None: the connect timeout); the pool keeps
    up to `pool_size` connections open. `sqlite_turns`: on SQLite, this process's threads
    run their transactions one at a time, handed over at once (shared/db/sqlite_turns.py).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        connect_args = postgres_connect_args(
            connect_timeout_s=connect_timeout_s, statement_timeout_s=statement_timeout_s
        )
        engine = create_engine(
            url, pool_pre_ping=True, pool_timeout=pool_timeout_s, poolclass=_FailFastPool,
            pool_size=pool_size, connect_args=connect_args,
        )  # fmt: skip
        event.listen(engine, "handle_error", _as_outage)
        install_connect_deadline(engine, connect_s=connect_timeout_s)
        if statement_timeout_s is not None:  # the server's own timeout answers first
            install_deadlines(
                engine, statement_s=statement_timeout_s + DEADLINE_MARGIN_S,
                ping_s=connect_timeout_s if ping_timeout_s is None else ping_timeout_s,
            )  # fmt: skip
        return engine
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_timeout=pool_timeout_s)
    database = parsed.database or ""
    sizing: dict[str, Any] = {}
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        sizing["pool_size"] = pool_size  # a file's QueuePool (memory databases pool otherwise)
    engine = create_engine(
        url, **sizing,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )  # fmt: skip
    event.listen(engine, "connect", _enable_sqlite_pragmas)
    event.listen(engine, "handle_error", _as_outage)
    if sqlite_turns:
        install_sqlite_turns(engine)
    return engine


def make_engine(
    settings: Settings, *, pool_size: int = POOL_SIZE, sqlite_turns: bool = False
) -> Engine:
    """The engine for settings.database_url, with the settings' connect and statement timeouts
    (`sqlite_turns`: see engine_for_url)."""
    return engine_for_url(
        settings.database_url,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        ping_timeout_s=settings.db_ping_timeout_s,
        pool_timeout_s=settings.db_pool_timeout_s,
        pool_size=pool_size,
        sqlite_turns=sqlite_turns,
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (responses are built after it)."""
    return sessionmaker(bind=engine, expire_on_commit=False)
