"""SQLite transactions of one process's threads take turns: one at a time, handed over when one
ends, reentrant in its thread, and never a lock-out (a waiter past wait_s goes ahead)."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import Engine, text

from shared.db.engine import engine_for_url
from shared.db.sqlite_turns import TransactionTurns, install_sqlite_turns


def _engine(tmp_path: Path, wait_s: float = 10.0) -> tuple[Engine, TransactionTurns]:
    engine = engine_for_url(f"sqlite:///{tmp_path / 'turns.db'}", pool_size=10)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE log (who TEXT, what TEXT)"))
    return engine, install_sqlite_turns(engine, TransactionTurns(wait_s=wait_s))


def test_a_second_thread_begins_only_after_the_first_ends(tmp_path: Path) -> None:
    engine, turns = _engine(tmp_path)
    first_in, order = threading.Event(), []
    release = threading.Event()

    def first() -> None:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO log VALUES ('a', 'in')"))
            first_in.set()
            release.wait(5)
            order.append("a commits")

    def second() -> None:
        first_in.wait(5)
        with engine.begin() as connection:
            order.append("b begins")
            connection.execute(text("INSERT INTO log VALUES ('b', 'in')"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_in.wait(5)
    # b waits for its turn: it cannot have begun while a holds one.
    threads[1].join(0.3)
    assert threads[1].is_alive() and order == []
    release.set()
    for t in threads:
        t.join(5)
    assert order == ["a commits", "b begins"]
    assert turns.owner is None
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM log")).scalar_one() == 2


def test_the_owning_thread_may_open_a_nested_transaction(tmp_path: Path) -> None:
    engine, turns = _engine(tmp_path)
    with engine.begin() as outer:
        outer.execute(text("SELECT 1"))
        with engine.connect() as inner:  # another connection, same thread: not blocked
            assert inner.execute(text("SELECT count(*) FROM log")).scalar_one() == 0
            inner.rollback()
        assert turns.owner == threading.get_ident()
    assert turns.owner is None


def test_a_transaction_closed_without_commit_gives_its_turn_back(tmp_path: Path) -> None:
    engine, turns = _engine(tmp_path)
    connection = engine.connect()
    connection.execute(text("INSERT INTO log VALUES ('a', 'abandoned')"))
    assert turns.owner == threading.get_ident()
    connection.close()  # rolls back
    assert turns.owner is None


def test_a_waiter_goes_ahead_after_wait_s_instead_of_locking_out(tmp_path: Path) -> None:
    """A holder that waits for another thread's transaction would deadlock with a plain lock."""
    engine, turns = _engine(tmp_path, wait_s=0.2)
    done = threading.Event()

    def reader() -> None:  # reads only: SQLite itself lets it through beside the writer
        with engine.begin() as connection:
            connection.execute(text("SELECT count(*) FROM log")).scalar_one()
        done.set()

    with engine.begin() as connection:
        connection.execute(text("SELECT 1"))
        helper = threading.Thread(target=reader)
        helper.start()
        assert done.wait(5)  # it got no turn within 0.2 s and ran anyway
        helper.join(5)
    assert turns.owner is None


def test_many_threads_writing_at_once_all_land(tmp_path: Path) -> None:
    engine, turns = _engine(tmp_path)

    def write(i: int) -> None:
        for j in range(10):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO log VALUES (:w, :j)"), {"w": str(i), "j": j})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM log")).scalar_one() == 80
    assert turns.owner is None
