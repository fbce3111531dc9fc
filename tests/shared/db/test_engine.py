"""The pool's pre-ping skips connections checked in a moment ago and pings idle ones."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from shared.db.engine import PING_IDLE_S, skip_recent_pings


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pinging_engine(tmp_path: Any, clock: FakeClock) -> tuple[Any, list[Any]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'ping.db'}", pool_pre_ping=True)
    pings: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return bool(ping(dbapi_connection))

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    skip_recent_pings(engine, clock=clock)
    return engine, pings


def _query(engine: Any) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("select 1")).scalar() == 1


def test_a_connection_back_a_moment_ago_is_not_pinged(tmp_path: Any) -> None:
    clock = FakeClock()
    engine, pings = _pinging_engine(tmp_path, clock)
    _query(engine)  # a new connection
    first = len(pings)
    for _ in range(5):
        clock.now += PING_IDLE_S / 10
        _query(engine)
    assert len(pings) == first


def test_a_connection_idle_past_the_threshold_is_pinged(tmp_path: Any) -> None:
    clock = FakeClock()
    engine, pings = _pinging_engine(tmp_path, clock)
    _query(engine)
    first = len(pings)
    clock.now += PING_IDLE_S + 0.01
    _query(engine)
    assert len(pings) == first + 1
    clock.now += 0.01  # just used: not again
    _query(engine)
    assert len(pings) == first + 1


def test_a_failed_ping_still_reconnects(tmp_path: Any) -> None:
    """The pool's own handling stays: a stale connection is dropped and a new one used."""
    clock = FakeClock()
    engine, _ = _pinging_engine(tmp_path, clock)
    _query(engine)
    with engine.connect() as connection:
        stale = connection.connection.dbapi_connection
    stale.close()  # what a restarted server leaves in the pool
    clock.now += PING_IDLE_S + 0.01
    _query(engine)  # would raise if the closed connection were handed out
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is not stale
