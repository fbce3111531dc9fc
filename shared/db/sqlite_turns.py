"""One SQLite transaction at a time among a process's threads, handed over without sleeping.

SQLite lets one writer in at a time; a connection that finds the write lock taken waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, ... 100 ms between tries, however soon the lock
comes free. A stage worker running a batch has a thread per job, and at the batch's end all of
them write at once (progress, completion, events): measured in the embedded default at batch 8,
those threads were mostly asleep in that handler while the lead waited for them
(docs/benchmarks.md, "Service images/s"). With turns, the threads of one process queue on a
condition variable instead and the next one starts as a transaction ends. (The turn passes at
SQLAlchemy's commit event, just before the database's COMMIT, so the next thread can still
meet SQLite's lock for that instant.)

Opt-in per engine (`engine_for_url(..., sqlite_turns=True)`: the stage workers). A turn is taken
when a connection begins a transaction and given back when it commits or rolls back, or at the
latest when the connection goes back to the pool. The owning thread may take it again (a
nested session). A thread that waits longer than `wait_s` goes ahead without a turn, leaving it
to SQLite's own busy wait as before, so a thread that holds a transaction open while waiting
for another thread's can slow the others down by `wait_s`, never lock them out. Other
processes (the API, the sweeper) still meet this one at SQLite's lock, as before.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event

# Worker transactions take milliseconds; a wait this long means a holder is stuck.
TURN_WAIT_S = 2.0
_INFO_KEY = "unclip_sqlite_turn"


class TransactionTurns:
    """A reentrant turn that any thread may give back for its owner (by owner id)."""

    def __init__(self, wait_s: float = TURN_WAIT_S) -> None:
        self.wait_s = wait_s
        self._free = threading.Condition()
        self._owner: int | None = None
        self._depth = 0

    def take(self) -> int | None:
        """This thread's id once it holds the turn; None when it waited `wait_s` in vain."""
        me = threading.get_ident()
        with self._free:
            if self._owner == me:
                self._depth += 1
                return me
            if not self._free.wait_for(lambda: self._owner is None, timeout=self.wait_s):
                return None
            self._owner, self._depth = me, 1
            return me

    def give(self, owner: int) -> None:
        """Give back one take of `owner`'s (ignored when `owner` no longer holds the turn)."""
        with self._free:
            if self._owner != owner:
                return
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._free.notify()

    @property
    def owner(self) -> int | None:
        return self._owner


def install_sqlite_turns(engine: Engine, turns: TransactionTurns | None = None) -> TransactionTurns:
    """Make `engine`'s transactions take turns (see the module docstring); the turns used."""
    turns = turns or TransactionTurns()

    def take(connection: Any) -> None:
        owner = turns.take()
        if owner is not None:
            connection.info.setdefault(_INFO_KEY, []).append(owner)

    def give(connection: Any) -> None:
        held = connection.info.get(_INFO_KEY)
        if held:
            turns.give(held.pop())

    def give_all(_dbapi_connection: Any, record: Any) -> None:
        for owner in record.info.pop(_INFO_KEY, []):
            turns.give(owner)

    event.listen(engine, "begin", take)
    event.listen(engine, "commit", give)
    event.listen(engine, "rollback", give)
    event.listen(engine, "checkin", give_all)
    return turns
