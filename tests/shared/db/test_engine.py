"""engine_for_url: the pool keeps the connections it is sized for (a batching worker's threads)."""

from __future__ import annotations

from pathlib import Path

from shared.db.engine import POOL_SIZE, engine_for_url


def test_a_file_database_pool_keeps_the_size_asked_for(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    assert engine_for_url(url).pool.size() == POOL_SIZE  # type: ignore[attr-defined]
    assert engine_for_url(url, pool_size=11).pool.size() == 11  # type: ignore[attr-defined]


def test_a_memory_database_ignores_the_size() -> None:
    engine = engine_for_url("sqlite://", pool_size=11)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("select 1").scalar() == 1


def test_a_postgres_pool_keeps_the_size_asked_for() -> None:
    # No connection is opened: the pool is sized when the engine is built.
    url = "postgresql+psycopg://postgres@127.0.0.1/unclip_never_connected"
    engine = engine_for_url(url, statement_timeout_s=5.0, pool_size=11)
    assert engine.pool.size() == 11  # type: ignore[attr-defined]
