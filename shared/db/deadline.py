"""Client-side deadlines on PostgreSQL calls: a server that accepts TCP but never answers.

Connect and statement timeouts do not cover a connection that is already open to a server
that stopped answering (a stalled host, a black-holing network path): the server never runs
its statement timeout and the kernel keeps acknowledging. install_deadlines() wraps every
call of an engine's dialect that talks to the server (execute, commit, rollback, the pool's
ping) so a call still waiting after its deadline gets its socket shut down: psycopg then
raises OperationalError (a disconnect, so the pool drops the connection), and the caller gets
DatabaseUnavailable (503 in the API) instead of a thread stuck for minutes. One watchdog
thread per process keeps every armed deadline (a heap, earliest first) and cuts the calls
that outlive theirs: arming a call costs a heap push, not a thread of its own (a
threading.Timer per call waited for its new thread to start, about 9 ms of a busy worker's
wall time per database call; docs/benchmarks.md).

Opening a connection has a deadline too (install_connect_deadline): libpq and psycopg round
connect_timeout to whole seconds and never go below 2 s, too slow for an API that must
answer within a second or two, so the connect runs in a helper thread that the caller
stops waiting for at the deadline (a late connection is closed when it arrives).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Engine, event

T = TypeVar("T")


def _cut(fd: int) -> None:
    """Shut the socket down under libpq; its pending wait then ends with an error."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # already closed
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@dataclass(order=True)
class _Armed:
    """One armed deadline: cut `fd` at `when` (time.monotonic) unless disarmed first."""

    when: float
    seq: int
    fd: int = field(compare=False)
    done: bool = field(default=False, compare=False)  # disarmed, or already cut


class _Watchdog:
    """The process's one deadline thread, started on first use (again in a forked child)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also the fork hook: the child has none of the parent's threads, and its copy of
        # the lock may be held by a thread that no longer exists there.
        self._cond = threading.Condition()
        self._heap: list[_Armed] = []
        self._seq = itertools.count()
        self._wake_at = math.inf  # when the thread wakes next (inf: not before a notify)
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> _Armed:
        armed = _Armed(time.monotonic() + seconds, next(self._seq), fd)
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-deadlines",
                                                daemon=True)  # fmt: skip
                self._thread.start()
            heapq.heappush(self._heap, armed)
            if armed.when < self._wake_at:  # earlier than the thread's next wake-up
                self._wake_at = armed.when
                self._cond.notify()
        return armed

    def disarm(self, armed: _Armed) -> None:
        """After this returns the call's socket is never cut (it may have been already)."""
        with self._cond:
            armed.done = True

    def armed(self) -> int:
        """Deadlines still held (disarmed ones leave the heap when their time comes)."""
        with self._cond:
            return sum(not a.done for a in self._heap)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0].done or self._heap[0].when <= now):
                    armed = heapq.heappop(self._heap)
                    if not armed.done:  # under the lock: disarm() waits for the cut
                        armed.done = True
                        _cut(armed.fd)
                self._wake_at = self._heap[0].when if self._heap else math.inf
                self._cond.wait(None if not self._heap else self._wake_at - now)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG._reset)


@contextlib.contextmanager
def deadline(dbapi_connection: Any, seconds: float) -> Iterator[None]:
    """Cut `dbapi_connection` if the block is still running after `seconds`."""
    try:
        fd = int(dbapi_connection.fileno())
    except Exception:  # a closed or broken connection: nothing to wait on
        yield
        return
    armed = _WATCHDOG.arm(fd, seconds)
    try:
        yield
    finally:
        _WATCHDOG.disarm(armed)


def _bounded(call: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    def bounded(dbapi_connection: Any, *args: Any, **kwargs: Any) -> Any:
        with deadline(dbapi_connection, seconds):
            return call(dbapi_connection, *args, **kwargs)

    return bounded


def install_deadlines(engine: Engine, *, statement_s: float, ping_s: float) -> None:
    """Give every server call of `engine` a deadline: statements, commits and rollbacks
    `statement_s` (set above the server's statement timeout, which answers first when the
    server is alive), the pool's liveness ping `ping_s`."""
    dialect = engine.dialect

    @event.listens_for(engine, "do_execute")
    def _execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        with deadline(cursor.connection, statement_s):
            cursor.execute(statement, parameters)
        return True

    @event.listens_for(engine, "do_executemany")
    def _executemany(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        with deadline(cursor.connection, statement_s):
            cursor.executemany(statement, parameters)
        return True

    @event.listens_for(engine, "do_execute_no_params")
    def _execute_no_params(cursor: Any, statement: str, context: Any) -> bool:
        with deadline(cursor.connection, statement_s):
            cursor.execute(statement)
        return True

    # Instance attributes shadow the dialect's methods for this engine alone.
    dialect.do_commit = _bounded(dialect.do_commit, statement_s)  # type: ignore[method-assign]
    dialect.do_rollback = _bounded(dialect.do_rollback, statement_s)  # type: ignore[method-assign]
    dialect.do_ping = _bounded(dialect.do_ping, ping_s)  # type: ignore[method-assign]


def connect_within(
    connect: Callable[[], T], seconds: float, *, close: Callable[[T], object], timeout_error: type
) -> T:
    """connect() in a helper thread, waited for `seconds`; past that raise `timeout_error`
    (the driver's OperationalError) and close the connection whenever it does arrive."""
    done = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            made = connect()
        except BaseException as exc:  # handed to the waiting caller
            outcome["error"] = exc
            done.set()
            return
        with lock:
            outcome["connection"] = made
            late = outcome.get("abandoned", False)
        done.set()
        if late:
            with contextlib.suppress(Exception):
                close(made)

    threading.Thread(target=attempt, name="db-connect", daemon=True).start()
    done.wait(seconds)
    with lock:
        if "connection" not in outcome and "error" not in outcome:
            outcome["abandoned"] = True
            raise timeout_error(f"connection timeout expired: no connection within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connection"]  # type: ignore[no-any-return]


def install_connect_deadline(engine: Engine, *, connect_s: float) -> None:
    """Bound every new connection of `engine` by `connect_s` seconds (fractions allowed)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connect_within(
            lambda: dialect.connect(*cargs, **cparams), connect_s,
            close=lambda connection: connection.close(),
            timeout_error=dialect.loaded_dbapi.OperationalError,
        )  # fmt: skip
